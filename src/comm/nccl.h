// comm/nccl.h: the exchange payload through NCCL point-to-point (CUDA builds
// with NCCL), for GPUs of one or several nodes, one rank per GPU (NCCL refuses
// two ranks of one communicator on one device: ranks sharing a GPU use
// comm/ipc.c or host-staged MPI).
//
// Same data layout and the same four entry points as comm/ipc.c; what moves
// the bytes differs. Two communicators: `fwd` carries rows to the MoE ranks,
// `back` carries outputs home, each on its own stream, so the pipelined order
// (micro-batch i+1's rows leave before micro-batch i's outputs are back) never
// makes a receive wait behind a send on one stream. Ranks that hold both roles
// (monolithic) post their sends and receives of one (layer, micro-batch) in one
// NCCL group per direction, so no rank's send waits for a peer whose matching
// receive is queued behind its own send.
//
// Run on two H200s of one node (tests/test_gpu_layouts.py: 1+1, 1+1 with two
// micro-batches and monolithic 2 give one GPU's tokens; docs/results.md). Not
// yet run across nodes, nor on four GPUs.
#ifndef JANUS_COMM_NCCL_H
#define JANUS_COMM_NCCL_H

#include "comm/exchange.h"

// Collective over x->world; every rank on its own GPU (checked: dies naming the
// two ranks that share one). stream: the rank's compute stream. Sets x->dev
// (the entry points, the same as comm/ipc.c's) and x->dev_state.
void janus_nccl_init(janus_xchg *x, int max_tokens, void *stream);

#endif
