// cuda_kernels/dev_common.cuh: device helpers shared by the kernel files: bf16
// bits <-> f32 (round to nearest even, as src/common.h's f32_to_bf16), warp
// reductions over all 32 lanes, cp.async (16 bytes, global -> shared, not kept
// in L1; a zero-filling form), ldmatrix x4 (plain and transposed), the bf16
// mma.sync m16n8k16, 2^x and bf16x2 packing; programmatic dependent launch (the wait, the
// trigger, and the host-side launch helper).
#ifndef JANUS_CUDA_DEV_COMMON_CUH
#define JANUS_CUDA_DEV_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

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

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices from shared memory (lane l gives the address of row l % 8
// of matrix l / 8), in mma fragment order.
__device__ __forceinline__ void ldsm4(uint32_t *r, const void *smem) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

// ldsm4 transposed (ldmatrix .trans): the B fragments of a row-major [k][n] tile.
__device__ __forceinline__ void ldsm4t(uint32_t *r, const void *smem) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
// cp.async of 16 bytes that reads only `bytes` of them (0: none) and zero-fills the rest.
__device__ __forceinline__ void cp_async16_zfill(void *smem, const void *gmem, int bytes) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes) : "memory");
}
// 2^x (ex2.approx.ftz): the softmaxes keep scores in log2 units.
__device__ __forceinline__ float ex2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
// Two f32 -> one bf16x2 word (lo in the low half, as mma fragments want).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(const uint32_t *)&v;
}
// d += A (16x16 bf16, row) B (16x8 bf16, col), f32 accumulators (mma.sync m16n8k16).
__device__ __forceinline__ void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Programmatic dependent launch: a kernel launched as a dependent may start
// before the previous one in its stream ends; pdl_wait blocks until that one
// has finished and its writes are visible (a no-op in a plain launch), and
// pdl_trigger lets this kernel's own dependent start early.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Dependent launches unless JANUS_PDL=0 (experiments: every launch plain).
static inline int pdl_enabled(void) {
    const char *v = getenv("JANUS_PDL");
    return !(v && atoi(v) == 0);
}

// Launch, as a programmatic dependent of the previous kernel in the stream
// when dependent (falls back to a plain launch where the driver refuses).
template <typename... KArgs, typename... Args>
static inline cudaError_t pdl_launch(void (*k)(KArgs...), dim3 grid, dim3 block, cudaStream_t st, int dependent,
                                      size_t smem,
                                      Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at, cfg.numAttrs = dependent ? 1 : 0;
    cudaError_t rc = cudaLaunchKernelEx(&cfg, k, ((KArgs)args)...);
    if (rc != cudaSuccess && dependent) {
        (void)cudaGetLastError();
        cfg.numAttrs = 0;
        rc = cudaLaunchKernelEx(&cfg, k, ((KArgs)args)...);
    }
    return rc;
}


// ---- the combine's sum (fused.cu, layers.cu, and the exchange's MoE-side sums
// in xchg.cu, which must add the same terms in the same order to the bit) ----
// A token's k (expert output row, weight) pairs in ascending expert id (the
// order every combine sums in): thread j < k loads pair j and places it at its
// rank among the token's ids (distinct; equal ids would keep their order), so
// the k loads go out together instead of one sorting thread's chain. lead
// (NULL: every pair, weights w): only the pairs with lead[j] != 0 take part,
// with weight 1 (their rows already hold weighted sums: the exchange's
// per-MoE-rank sums). Returns the pairs placed; every thread calls it.
__device__ __forceinline__ int combine_order(int *s_row, float *s_w, const int32_t *ids, const int32_t *slot,
                                             const float *w, const int32_t *lead, int k) {
    const int j = threadIdx.x;
    if (j < k && (!lead || lead[j])) {
        const int id = ids[j];
        int r = 0;
        for (int i = 0; i < k; i++) {
            const int o = ids[i];
            r += (!lead || lead[i]) && (o < id || (o == id && i < j));
        }
        s_row[r] = slot[j], s_w[r] = lead ? 1.f : w[j];
    }
    __syncthreads();
    if (!lead) return k;
    int n = 0;
    for (int i = 0; i < k; i++) n += lead[i] != 0;
    return n;
}

// The weighted sum of float4 c4 of a token's k output rows (in the order
// combine_order left them), every row's load in flight before the sum. Each
// product and sum rounds on its own (no fused multiply-add): the MoE side's
// sums of a token's pairs there and the attention side's sum of all of them
// give the same bits where one MoE rank holds them all.
__device__ __forceinline__ float4 combine4(const float *y, const int *s_row, const float *s_w, int k, int H, int c4) {
    float4 v[16];
#pragma unroll
    for (int q = 0; q < 16; q++)
        if (q < k) v[q] = ((const float4 *)(y + (size_t)s_row[q] * H))[c4];
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int q = 0; q < 16; q++) {
        if (q >= k) break;
        const float wj = s_w[q];
        const float4 m = make_float4(__fmul_rn(v[q].x, wj), __fmul_rn(v[q].y, wj), __fmul_rn(v[q].z, wj),
                                     __fmul_rn(v[q].w, wj));
        if (q == 0) acc = m;
        else acc = make_float4(__fadd_rn(acc.x, m.x), __fadd_rn(acc.y, m.y), __fadd_rn(acc.z, m.z), __fadd_rn(acc.w, m.w));
    }
    return acc;
}

#endif
