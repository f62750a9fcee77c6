// comm/cudampi.h: the exchange payload through a CUDA-aware MPI (CUDA builds):
// MPI_Isend / MPI_Irecv straight on device buffers, for ranks of any nodes
// (the MPI library moves GPU memory: GPUDirect RDMA, its own staging, or
// NVLink within a node). Same data layout and entry points as comm/nccl.c:
// an attention rank gathers its rows by destination on its GPU and sends each
// MoE rank its part; the MoE rank groups them by expert, runs its experts,
// puts the outputs back in arrival order and sends them home. A row per
// (token, expert) pair each way, f32, like the host-staged path, so results
// equal it bit for bit.
//
// `--transport cuda-mpi` asks for it; `auto` takes it across nodes where the
// MPI says it is CUDA-aware (janus_cuda_aware_mpi), and then `--exchange
// auto` takes the direct path (the hierarchical path stays host-staged). Test hook:
// JANUS_CUDA_MPI_MANAGED=1 puts its buffers in CUDA managed memory, which any
// MPI can read and write from the host, so the transport's code runs (and is
// tested) on an MPI that is not CUDA-aware.
#ifndef JANUS_COMM_CUDAMPI_H
#define JANUS_COMM_CUDAMPI_H

#include "comm/exchange.h"

// Whether this MPI moves device memory: MPIX_Query_cuda_support() (Open MPI),
// MPIX_GPU_query_support(MPIX_GPU_SUPPORT_CUDA) (MPICH 4), else 0; the
// environment JANUS_CUDA_AWARE_MPI=1 (or 0) overrides it for MPIs that do not
// say (e.g. Cray MPICH with MPICH_GPU_SUPPORT_ENABLED=1). *how: a phrase for
// the log. Every rank must call it (all must agree: the caller checks).
int janus_cuda_aware_mpi(const char **how);

// Collective over x->world. stream: this rank's GPU stream; max_tokens:
// tokens per micro-batch on attention ranks; managed: buffers in managed
// memory (JANUS_CUDA_MPI_MANAGED=1, parsed by the caller). Sets x->dev and
// x->dev_state.
void janus_cudampi_init(janus_xchg *x, int max_tokens, void *stream, bool managed);

#endif
