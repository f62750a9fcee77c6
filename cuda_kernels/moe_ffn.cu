// cuda_kernels/moe_ffn.cu: grouped few-row GEMV for MoE decode.
//
// Decode sends a handful of rows to each activated expert, so the work is
// weight streaming: every bf16 weight byte is read once from HBM and used for
// every row of its expert. A warp owns NC weight rows at a time (2 columns x
// {gate, up} when gated, 4 columns otherwise); each lane reads 16-byte vectors
// (8 bf16) of each row, 256 elements apart, so a warp reads 512 contiguous
// bytes per row per step; the rows' x values are read through L1 (they are
// small and shared by every warp of the expert) and reused for all NC rows.
// Up to MAXR rows are accumulated in registers at once (f32); more rows loop.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "moe_ffn.h"

#define MAXR 8           // rows accumulated per pass
#define NC 4             // weight rows per warp per pass
#define WARPS 8          // warps per block
#define COLS_PER_BLOCK 64 // output columns per block (per expert)

__device__ __forceinline__ void bf16x8_to_f32(uint4 v, float *f) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// grid.x = E * col_tiles; block = WARPS warps.
// Not gated: y[r, n] = sum_k x[r, k] w[e, n, k], n < N.
// Gated: w rows [0, N) gate, [N, 2N) up; y[r, n] = silu(g) * u.
__global__ void __launch_bounds__(WARPS * 32) grouped_gemv_kernel(const float *__restrict__ x,
                                                                   const int32_t *__restrict__ seg,
                                                                   const __nv_bfloat16 *__restrict__ w,
                                                                   float *__restrict__ y, int N, int K, int gated,
                                                                   int col_tiles) {
    const int e = blockIdx.x / col_tiles, tile = blockIdx.x % col_tiles;
    const int r0 = seg[e], r1 = seg[e + 1];
    if (r0 >= r1) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t w_rows = gated ? 2 * (size_t)N : (size_t)N;
    const __nv_bfloat16 *we = w + (size_t)e * w_rows * K;
    const int cols_per_pass = gated ? NC / 2 : NC; // output columns a warp finishes per pass
    const int c0 = tile * COLS_PER_BLOCK, c1 = min(N, c0 + COLS_PER_BLOCK);
    for (int n0 = c0 + warp * cols_per_pass; n0 < c1; n0 += WARPS * cols_per_pass) {
        // The NC weight rows of this pass (clamped to valid rows; extra ones discarded).
        const __nv_bfloat16 *row[NC];
#pragma unroll
        for (int j = 0; j < NC; j++) {
            int col = gated ? n0 + (j >> 1) : n0 + j;
            col = min(col, N - 1);
            size_t rr = gated ? (size_t)col + ((j & 1) ? (size_t)N : 0) : (size_t)col;
            row[j] = we + rr * K;
        }
        for (int rb = r0; rb < r1; rb += MAXR) {
            const int nr = min(MAXR, r1 - rb);
            float acc[MAXR][NC];
#pragma unroll
            for (int r = 0; r < MAXR; r++)
#pragma unroll
                for (int j = 0; j < NC; j++) acc[r][j] = 0.f;
#pragma unroll 2
            for (int k = lane * 8; k < K; k += 256) {
                float wf[NC][8];
#pragma unroll
                for (int j = 0; j < NC; j++) bf16x8_to_f32(__ldg((const uint4 *)(row[j] + k)), wf[j]);
#pragma unroll
                for (int r = 0; r < MAXR; r++) {
                    if (r < nr) {
                        const float4 *xp = (const float4 *)(x + (size_t)(rb + r) * K + k);
                        const float4 a = __ldg(xp), b = __ldg(xp + 1);
                        const float xv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
                        for (int j = 0; j < NC; j++)
#pragma unroll
                            for (int q = 0; q < 8; q++) acc[r][j] = fmaf(xv[q], wf[j][q], acc[r][j]);
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < MAXR; r++) {
                if (r >= nr) break;
#pragma unroll
                for (int j = 0; j < NC; j++) acc[r][j] = warp_sum(acc[r][j]);
                if (lane == 0) {
                    float *yr = y + (size_t)(rb + r) * N;
                    if (gated) {
#pragma unroll
                        for (int c = 0; c < NC / 2; c++) {
                            const int col = n0 + c;
                            if (col < c1) {
                                const float g = acc[r][2 * c], u = acc[r][2 * c + 1];
                                yr[col] = g / (1.0f + __expf(-g)) * u;
                            }
                        }
                    } else {
#pragma unroll
                        for (int c = 0; c < NC; c++)
                            if (n0 + c < c1) yr[n0 + c] = acc[r][c];
                    }
                }
            }
        }
    }
}

extern "C" int jk_grouped_gemv(const float *x, const int32_t *seg, const uint16_t *w, float *y, int E, int N, int K,
                               int gated, void *stream) {
    if (K % 8 || E <= 0 || N <= 0) return (int)cudaErrorInvalidValue;
    const int col_tiles = (N + COLS_PER_BLOCK - 1) / COLS_PER_BLOCK;
    grouped_gemv_kernel<<<E * col_tiles, WARPS * 32, 0, (cudaStream_t)stream>>>(
        x, seg, (const __nv_bfloat16 *)w, y, N, K, gated, col_tiles);
    return (int)cudaGetLastError();
}

extern "C" int jk_moe_ffn_decode(const jk_moe_ffn_args *a, void *stream) {
    int rc = jk_grouped_gemv(a->x, a->seg, a->w_gu, a->act, a->E, a->I, a->H, 1, stream);
    if (rc) return rc;
    return jk_grouped_gemv(a->act, a->seg, a->w_down, a->y, a->E, a->H, a->I, 0, stream);
}
