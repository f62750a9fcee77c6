// cuda_kernels/util.h: small device helpers with a C API: deterministic random
// fills (synthetic weights, benchmarks), a read-bandwidth probe and an SM copy.
#ifndef JANUS_CUDA_UTIL_H
#define JANUS_CUDA_UTIL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// dst[i] = bf16(scale * u(seed, i)), u uniform in [-sqrt(3), sqrt(3)) (unit variance).
int jk_fill_bf16(uint16_t *dst, size_t n, uint64_t seed, float scale, void *stream);
// dst[i] = scale * u(seed, i) in f32.
int jk_fill_f32(float *dst, size_t n, uint64_t seed, float scale, void *stream);

// Reads bytes (a multiple of 16) at p and nothing else (sink: 4 bytes written
// only if the data XOR to a magic value): the roofline of a streaming kernel
// of that size, ramp-up and drain included. blocks_per_sm blocks of 256
// threads per SM, 4 independent 16-byte loads in flight per thread.
int jk_read_probe(const void *p, size_t bytes, int blocks_per_sm, unsigned *sink, void *stream);

// dst[0..bytes) = src[0..bytes) by the SMs (16-byte loads and stores where
// both are 16-byte aligned and bytes a multiple of 16, else bytes): a copy
// into a peer GPU's memory (CUDA IPC, peer access) as the exchange's kernels
// store rows there, beside the copy engines' cudaMemcpy (janus bench exchange).
int jk_copy_bytes(void *dst, const void *src, size_t bytes, void *stream);

#ifdef __cplusplus
}
#endif

#endif
