// cuda_check.h: the error path of host code that calls the CUDA runtime
// (CUDA builds only): a failing call dies through janus_die naming the call,
// and device allocations go through one checked helper.
#ifndef JANUS_CUDA_CHECK_H
#define JANUS_CUDA_CHECK_H

#include <cuda_runtime_api.h>

#include "common.h"

// what: who is calling ("CUDA", "CUDA IPC exchange", ...); x: a call returning
// a cudaError_t (or 0 / an error code as int).
#define JANUS_CUDA_CK(what, x)                                                                                 \
    do {                                                                                                       \
        int rc_ = (int)(x);                                                                                    \
        if (rc_) janus_die(NULL, "%s: %s: error %d (%s)", what, #x, rc_, cudaGetErrorString((cudaError_t)rc_)); \
    } while (0)

// cudaMalloc of bytes (at least 4, so an empty buffer is still a valid pointer).
static inline void *janus_cuda_alloc(size_t bytes) {
    void *p = NULL;
    JANUS_CUDA_CK("CUDA", cudaMalloc(&p, bytes ? bytes : 4));
    return p;
}

#endif
