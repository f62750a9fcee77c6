// cuda_kernels/util.cu: deterministic random fills (see util.h). The value of
// element i depends only on (seed, i): a splitmix64 hash, so fills are
// reproducible on any grid and match the CPU's janus_rng_uniform family.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "util.h"

__device__ __forceinline__ float unit_uniform(uint64_t seed, uint64_t i) {
    uint64_t x = seed ^ (i * 0x9e3779b97f4a7c15ull);
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    return ((float)(x >> 40) * (1.0f / 16777216.0f) - 0.5f) * 3.4641016f; // unit variance
}

__global__ void fill_bf16_kernel(__nv_bfloat16 *d, size_t n, uint64_t seed, float scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        d[i] = __float2bfloat16(scale * unit_uniform(seed, i));
}

__global__ void fill_f32_kernel(float *d, size_t n, uint64_t seed, float scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        d[i] = scale * unit_uniform(seed, i);
}

extern "C" int jk_fill_bf16(uint16_t *dst, size_t n, uint64_t seed, float scale, void *stream) {
    fill_bf16_kernel<<<1024, 256, 0, (cudaStream_t)stream>>>((__nv_bfloat16 *)dst, n, seed, scale);
    return (int)cudaGetLastError();
}

extern "C" int jk_fill_f32(float *dst, size_t n, uint64_t seed, float scale, void *stream) {
    fill_f32_kernel<<<1024, 256, 0, (cudaStream_t)stream>>>(dst, n, seed, scale);
    return (int)cudaGetLastError();
}
