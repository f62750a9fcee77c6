// cuda_kernels/dev_common.cuh: device helpers shared by the kernel files: bf16
// bits <-> f32 (round to nearest even, as src/common.h's f32_to_bf16) and warp
// reductions over all 32 lanes.
#ifndef JANUS_CUDA_DEV_COMMON_CUH
#define JANUS_CUDA_DEV_COMMON_CUH

#include <cuda_bf16.h>
#include <stdint.h>

__device__ __forceinline__ float bf(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
__device__ __forceinline__ uint16_t to_bf(float f) {
    __nv_bfloat16 b = __float2bfloat16(f);
    return *(uint16_t *)&b;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

#endif
