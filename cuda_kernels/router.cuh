// cuda_kernels/router.cuh: the router's softmax top-k of one token on one warp,
// shared by router_kernel (layers.cu) and the fused router + grouping kernel
// (fused.cu), so both give the same bits. (twin: cpu_router_topk)
#ifndef JANUS_CUDA_ROUTER_CUH
#define JANUS_CUDA_ROUTER_CUH

#include <float.h>
#include <stdint.h>

// Logits l [E] (E <= 256) of one token -> ids [k], w [k]: softmax over E, k
// rounds of argmax (ties to the lower index), optional renormalisation. Lane
// holds logits lane + 32 j in registers, so the k rounds read no memory; lane 0
// writes the results.
__device__ __forceinline__ void router_warp_topk(int32_t *ids, float *w, const float *l, int E, int k, int renorm,
                                                 int lane) {
    float v[8];
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = lane + 32 * j < E ? l[lane + 32 * j] : -FLT_MAX;
    float mx = -FLT_MAX;
#pragma unroll
    for (int j = 0; j < 8; j++)
        if (lane + 32 * j < E) mx = fmaxf(mx, v[j]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < 8; j++)
        if (lane + 32 * j < E) sum += expf(v[j] - mx);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    uint32_t taken = 0; // bit j: this lane's expert lane + 32 j is taken
    float wsum = 0.f;
    for (int r = 0; r < k; r++) {
        float best = -FLT_MAX;
        int bi = 0x7fffffff;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const int e = lane + 32 * j;
            if (e < E && !(taken >> j & 1) && (v[j] > best || (v[j] == best && e < bi))) best = v[j], bi = e;
        }
        for (int o = 16; o > 0; o >>= 1) {
            const float ob = __shfl_xor_sync(0xffffffffu, best, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ob > best || (ob == best && oi < bi)) best = ob, bi = oi;
        }
        if ((bi & 31) == lane) taken |= 1u << (bi >> 5);
        const float p = expf(best - mx) / sum;
        if (lane == 0) ids[r] = bi, w[r] = p;
        wsum += p;
    }
    if (renorm && lane == 0)
        for (int r = 0; r < k; r++) w[r] /= wsum;
}

#endif
