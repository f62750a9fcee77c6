// comm/ipc.h: the exchange payload GPU to GPU through CUDA IPC (CUDA builds),
// for ranks of one node: same GPU (ranks sharing a device) or peers over
// NVLink/PCIe. Every rank exports its receive buffers once (cudaIpcGetMemHandle,
// one MPI_Allgather of the handles) and maps everyone else's; per (layer,
// micro-batch) an attention rank gathers its rows by destination on its GPU
// and copies them straight into each MoE rank's buffer at the offset the
// schedule gives (every rank knows every count from the handshake), then
// tells it with a zero-byte MPI message; the MoE rank groups the rows by
// expert on its GPU, runs its experts and copies the outputs back the same
// way. MPI carries only the handshake and these signals.
//
// Buffer reuse is safe without more synchronisation: an attention rank writes
// (layer l+1, micro-batch i)'s rows only after it has (l, i)'s outputs, which
// the MoE rank sends only after it has consumed (l, i)'s rows; and outputs
// of (l, i) are consumed before (l+1, i) is dispatched.
#ifndef JANUS_COMM_IPC_H
#define JANUS_COMM_IPC_H

#include "comm/exchange.h"

// Collective over x->world. stream: this rank's GPU stream (cudaStream_t);
// max_tokens: tokens per micro-batch on attention ranks. Every rank must have
// called cudaSetDevice. Sets x->dev (the entry points) and x->dev_state.
void janus_ipc_init(janus_xchg *x, int max_tokens, void *stream);

#endif
