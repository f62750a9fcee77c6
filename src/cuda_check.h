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

// What the allocations under way are for, and how to make them fit, said
// when one runs out of memory (NULL: nothing to add). Defined in common.c.
extern const char *janus_cuda_alloc_hint;

// cudaMalloc of bytes (at least 4, so an empty buffer is still a valid pointer).
static inline void *janus_cuda_alloc(size_t bytes) {
    void *p = NULL;
    const cudaError_t rc = cudaMalloc(&p, bytes ? bytes : 4);
    if (rc == cudaErrorMemoryAllocation) {
        size_t free_b = 0, total_b = 0;
        (void)cudaGetLastError();
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
        janus_die(NULL, "GPU out of memory: %.2f GB more asked for, %.2f of %.2f GB free%s%s", bytes / 1e9, free_b / 1e9,
                  total_b / 1e9, janus_cuda_alloc_hint ? "; " : "", janus_cuda_alloc_hint ? janus_cuda_alloc_hint : "");
    }
    JANUS_CUDA_CK("CUDA", rc);
    return p;
}

#endif
