// cuda_kernels/moe_prefill.cu: grouped expert FFN for prefill (see moe_prefill.h).
//
// With tens to thousands of rows per expert the FFN is two GEMMs per expert,
// matrix-bound: cuBLAS tensor cores, bf16 in, f32 accumulation. Steps:
//   xb  = bf16(x)                                    [R, H]   one pass for all rows
//   gu  = xb_e W_gu_e^T    per expert e              [R, 2I]  bf16 out
//   act = bf16(silu(gate) * up)                      [R, I]
//   y   = act_e W_down_e^T per expert e              [R, H]   (grouped: bf16 yb, then f32)
// Row-major [n, K] is column-major [K, n], so each GEMM is C (N x n) =
// op_T(W: K x N) * (X: K x n), as the dense projections in engine/gpu.c.
// cublasGemmGroupedBatchedEx covers every expert in one call but writes bf16
// only (bf16 x bf16 -> f32 is not one of its type combinations); the loop
// path issues one cublasGemmEx per expert and writes f32 y directly.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "moe_prefill.h"

#define ST(s) ((cudaStream_t)(s))
#define ALIGN_UP(n) (((n) + 255) & ~(size_t)255)

// Workspace layout (offsets in bytes, each region 256-byte aligned).
typedef struct {
    size_t xb, gu, act, ptrs, total;
} ws_layout;

static ws_layout layout(int R, int H, int I) {
    ws_layout l;
    l.xb = 0;                                              // bf16 [R, H] x, later y (grouped path)
    l.gu = l.xb + ALIGN_UP((size_t)R * H * 2);             // bf16 [R, 2I]
    l.act = l.gu + ALIGN_UP((size_t)R * 2 * I * 2);        // bf16 [R, I]
    l.ptrs = l.act + ALIGN_UP((size_t)R * I * 2);          // 6 x JK_PREFILL_MAX_GROUPS pointers
    l.total = l.ptrs + ALIGN_UP(6 * (size_t)JK_PREFILL_MAX_GROUPS * sizeof(void *));
    return l;
}

extern "C" size_t jk_moe_prefill_ws_bytes(int R, int H, int I) { return layout(R > 0 ? R : 0, H, I).total; }

__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}
__device__ __forceinline__ float lo_f(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float hi_f(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

// dst: [n8 * 8] bf16 = src f32, 8 elements (32 bytes in, 16 out) per step.
__global__ void f32_to_bf16_x8_kernel(uint4 *__restrict__ dst, const float4 *__restrict__ src, size_t n8) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8; i += (size_t)gridDim.x * blockDim.x) {
        const float4 a = src[2 * i], b = src[2 * i + 1];
        dst[i] = make_uint4(pack2(a.x, a.y), pack2(a.z, a.w), pack2(b.x, b.y), pack2(b.z, b.w));
    }
}

// dst: [n8 * 8] f32 = src bf16.
__global__ void bf16_to_f32_x8_kernel(float4 *__restrict__ dst, const uint4 *__restrict__ src, size_t n8) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8; i += (size_t)gridDim.x * blockDim.x) {
        const uint4 v = src[i];
        dst[2 * i] = make_float4(lo_f(v.x), hi_f(v.x), lo_f(v.y), hi_f(v.y));
        dst[2 * i + 1] = make_float4(lo_f(v.z), hi_f(v.z), lo_f(v.w), hi_f(v.w));
    }
}

// act: [R, I] bf16 = silu(gu[r, n]) * gu[r, I + n], gu: [R, 2I] bf16; 8 columns per step (I % 8 == 0).
__global__ void swiglu_bf16_kernel(uint4 *__restrict__ act, const uint4 *__restrict__ gu, int I8, size_t n8) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / I8, c = i % I8;
        const uint4 g = gu[r * 2 * I8 + c], u = gu[r * 2 * I8 + I8 + c];
        const uint32_t gw[4] = {g.x, g.y, g.z, g.w}, uw[4] = {u.x, u.y, u.z, u.w};
        uint32_t o[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float g0 = lo_f(gw[k]), g1 = hi_f(gw[k]);
            o[k] = pack2(g0 / (1.0f + __expf(-g0)) * lo_f(uw[k]), g1 / (1.0f + __expf(-g1)) * hi_f(uw[k]));
        }
        act[i] = make_uint4(o[0], o[1], o[2], o[3]);
    }
}

// Device pointer arrays of the two grouped GEMMs, from host-known (expert, first row)
// pairs passed by value (no host buffer has to outlive the launch).
typedef struct {
    int n;
    int e[JK_PREFILL_MAX_GROUPS], r0[JK_PREFILL_MAX_GROUPS];
} group_list;

__global__ void prefill_ptrs_kernel(const void **p, group_list gl, const __nv_bfloat16 *w_gu, const __nv_bfloat16 *w_down,
                                    __nv_bfloat16 *xb, __nv_bfloat16 *gu, __nv_bfloat16 *act, int H, int I) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= gl.n) return;
    const size_t e = gl.e[i], r0 = gl.r0[i];
    const int M = JK_PREFILL_MAX_GROUPS;
    p[0 * M + i] = w_gu + e * 2 * I * H; // GEMM 1: A = W_gu_e, B = xb_e, C = gu_e
    p[1 * M + i] = xb + r0 * H;
    p[2 * M + i] = gu + r0 * 2 * I;
    p[3 * M + i] = w_down + e * H * I;   // GEMM 2: A = W_down_e, B = act_e, C = yb_e (yb aliases xb)
    p[4 * M + i] = act + r0 * I;
    p[5 * M + i] = xb + r0 * H;
}

static unsigned grid_for(size_t n) {
    const size_t b = (n + 255) / 256;
    return (unsigned)(b < 8192 ? (b ? b : 1) : 8192);
}

#define CUDA_TRY(x)                                   \
    do {                                              \
        cudaError_t e_ = (x);                         \
        if (e_ != cudaSuccess) return (int)e_;        \
    } while (0)
#define LAUNCH_TRY() CUDA_TRY(cudaGetLastError())
#define BLAS_TRY(x)                                                          \
    do {                                                                     \
        cublasStatus_t s_ = (x);                                             \
        if (s_ != CUBLAS_STATUS_SUCCESS) return JK_PREFILL_CUBLAS_ERR + (int)s_; \
    } while (0)

extern "C" int jk_moe_ffn_prefill(const jk_moe_prefill_args *a, void *cublas_handle, void *stream) {
    const int E = a->E, H = a->H, I = a->I;
    const int R = a->h_seg[E];
    if (R <= 0) return 0;
    if (H % 8 || I % 8) return (int)cudaErrorInvalidValue;
    const ws_layout l = layout(R, H, I);
    if (!a->ws || a->ws_bytes < l.total) return (int)cudaErrorInvalidValue;
    cublasHandle_t hb = (cublasHandle_t)cublas_handle;
    cudaStream_t st = ST(stream);
    BLAS_TRY(cublasSetStream(hb, st));
    char *ws = (char *)a->ws;
    __nv_bfloat16 *xb = (__nv_bfloat16 *)(ws + l.xb), *gu = (__nv_bfloat16 *)(ws + l.gu),
                  *act = (__nv_bfloat16 *)(ws + l.act);
    const __nv_bfloat16 *w_gu = (const __nv_bfloat16 *)a->w_gu, *w_down = (const __nv_bfloat16 *)a->w_down;

    int active = 0;
    for (int e = 0; e < E; e++) active += a->h_seg[e + 1] > a->h_seg[e];
    int mode = a->mode;
    if (mode == JK_PREFILL_AUTO) mode = active > JK_PREFILL_GROUPED_MIN ? JK_PREFILL_GROUPED : JK_PREFILL_LOOP;
    if (active > JK_PREFILL_MAX_GROUPS) mode = JK_PREFILL_LOOP;

    const size_t nx8 = (size_t)R * H / 8, na8 = (size_t)R * I / 8;
    f32_to_bf16_x8_kernel<<<grid_for(nx8), 256, 0, st>>>((uint4 *)xb, (const float4 *)a->x, nx8);
    LAUNCH_TRY();
    const float one = 1.0f, zero = 0.0f;

    if (mode == JK_PREFILL_LOOP) {
        for (int e = 0; e < E; e++) {
            const int r0 = a->h_seg[e], n = a->h_seg[e + 1] - r0;
            if (n <= 0) continue;
            BLAS_TRY(cublasGemmEx(hb, CUBLAS_OP_T, CUBLAS_OP_N, 2 * I, n, H, &one, w_gu + (size_t)e * 2 * I * H, CUDA_R_16BF, H,
                                  xb + (size_t)r0 * H, CUDA_R_16BF, H, &zero, gu + (size_t)r0 * 2 * I, CUDA_R_16BF, 2 * I,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        }
        swiglu_bf16_kernel<<<grid_for(na8), 256, 0, st>>>((uint4 *)act, (const uint4 *)gu, I / 8, na8);
        LAUNCH_TRY();
        for (int e = 0; e < E; e++) {
            const int r0 = a->h_seg[e], n = a->h_seg[e + 1] - r0;
            if (n <= 0) continue;
            BLAS_TRY(cublasGemmEx(hb, CUBLAS_OP_T, CUBLAS_OP_N, H, n, I, &one, w_down + (size_t)e * H * I, CUDA_R_16BF, I,
                                  act + (size_t)r0 * I, CUDA_R_16BF, I, &zero, a->y + (size_t)r0 * H, CUDA_R_32F, H,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        }
        return 0;
    }

    // Grouped: one group per active expert (each has its own row count n).
    group_list gl;
    int m1[JK_PREFILL_MAX_GROUPS], m2[JK_PREFILL_MAX_GROUPS], nn[JK_PREFILL_MAX_GROUPS], k1[JK_PREFILL_MAX_GROUPS],
        k2[JK_PREFILL_MAX_GROUPS], ld_h[JK_PREFILL_MAX_GROUPS], ld_i[JK_PREFILL_MAX_GROUPS], ld_2i[JK_PREFILL_MAX_GROUPS],
        gsize[JK_PREFILL_MAX_GROUPS];
    float alpha[JK_PREFILL_MAX_GROUPS], beta[JK_PREFILL_MAX_GROUPS];
    cublasOperation_t opT[JK_PREFILL_MAX_GROUPS], opN[JK_PREFILL_MAX_GROUPS];
    gl.n = 0;
    for (int e = 0; e < E; e++) {
        const int r0 = a->h_seg[e], n = a->h_seg[e + 1] - r0;
        if (n <= 0) continue;
        const int i = gl.n++;
        gl.e[i] = e, gl.r0[i] = r0;
        m1[i] = 2 * I, m2[i] = H, nn[i] = n, k1[i] = H, k2[i] = I;
        ld_h[i] = H, ld_i[i] = I, ld_2i[i] = 2 * I, gsize[i] = 1;
        alpha[i] = 1.0f, beta[i] = 0.0f, opT[i] = CUBLAS_OP_T, opN[i] = CUBLAS_OP_N;
    }
    const void **p = (const void **)(ws + l.ptrs);
    const int M = JK_PREFILL_MAX_GROUPS;
    prefill_ptrs_kernel<<<(gl.n + 127) / 128, 128, 0, st>>>(p, gl, w_gu, w_down, xb, gu, act, H, I);
    LAUNCH_TRY();
    BLAS_TRY(cublasGemmGroupedBatchedEx(hb, opT, opN, m1, nn, k1, alpha, p + 0 * M, CUDA_R_16BF, ld_h, p + 1 * M, CUDA_R_16BF,
                                        ld_h, beta, (void *const *)(p + 2 * M), CUDA_R_16BF, ld_2i, gl.n, gsize,
                                        CUBLAS_COMPUTE_32F));
    swiglu_bf16_kernel<<<grid_for(na8), 256, 0, st>>>((uint4 *)act, (const uint4 *)gu, I / 8, na8);
    LAUNCH_TRY();
    BLAS_TRY(cublasGemmGroupedBatchedEx(hb, opT, opN, m2, nn, k2, alpha, p + 3 * M, CUDA_R_16BF, ld_i, p + 4 * M, CUDA_R_16BF,
                                        ld_i, beta, (void *const *)(p + 5 * M), CUDA_R_16BF, ld_h, gl.n, gsize,
                                        CUBLAS_COMPUTE_32F));
    bf16_to_f32_x8_kernel<<<grid_for(nx8), 256, 0, st>>>((float4 *)a->y, (const uint4 *)xb, nx8);
    LAUNCH_TRY();
    return 0;
}
