// cuda_kernels/moe_ffn.cu: grouped few-row GEMV for MoE decode.
//
// Decode sends a handful of rows to each activated expert, so the work is
// weight streaming: every bf16 weight byte is read once from HBM and used for
// every row of its expert. A warp owns NC weight rows at a time (2 columns x
// {gate, up} when gated, 4 columns otherwise); each lane reads 16-byte vectors
// (8 bf16) of each row, 256 elements apart, so a warp reads 512 contiguous
// bytes per row per step; the rows' x values are read through L1 (they are
// small and shared by every warp of the expert) and reused for all NC rows.
// (FMA variant, up to 4 rows per expert.) Up to MAXR rows are accumulated in registers at once (f32); more rows loop.
// MAXR and NC are template parameters picked per launch from the largest row
// count of any expert: one row per expert (small-batch decode) streams 8
// weight rows per warp with little arithmetic; more rows accumulate more.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "moe_ffn.h"
#include <stdlib.h>

#define WARPS 8           // warps per block
#define COLS_PER_BLOCK 64 // default output columns per block (per expert); see jk_grouped_gemv

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
template <int MAXR, int NC>
__global__ void __launch_bounds__(WARPS * 32) grouped_gemv_kernel(const float *__restrict__ x,
                                                                   const int32_t *__restrict__ seg,
                                                                   const __nv_bfloat16 *__restrict__ w,
                                                                   float *__restrict__ y, int N, int K, int gated,
                                                                   int col_tiles, int cols_per_block) {
    const int e = blockIdx.x / col_tiles, tile = blockIdx.x % col_tiles;
    const int r0 = seg[e], r1 = seg[e + 1];
    if (r0 >= r1) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t w_rows = gated ? 2 * (size_t)N : (size_t)N;
    const __nv_bfloat16 *we = w + (size_t)e * w_rows * K;
    const int cols_per_pass = gated ? NC / 2 : NC; // output columns a warp finishes per pass
    const int c0 = tile * cols_per_block, c1 = min(N, c0 + cols_per_block);
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
#pragma unroll 4
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


// ---- tensor-core variant (rows per expert > 4) -------------------------------
// mma.sync m16n8k16 (bf16 in, f32 accumulate): a 16-row tile of an expert's
// rows (A, converted to bf16) times 8 weight rows (B). A warp owns TC_NB
// blocks of 8 weight rows (gated: gate/up pairs) and runs the whole K. Each
// lane reads 16 bytes of a weight row per 32-wide K chunk: K is permuted
// inside the chunk (lane t of a quad owns physical k = 8t..8t+7, which the two
// mma steps see as logical k {2t, 2t+1, 2t+8, 2t+9}); A uses the same
// permutation, so the dot products are unchanged.
#define TC_NB 8
#define TC_WARPS 4
#define TC_MT 2 // 16-row tiles per pass

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

__device__ __forceinline__ void mma_bf16(float *c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

template <int GATED>
__global__ void __launch_bounds__(TC_WARPS * 32) tc_gemv_kernel(const float *__restrict__ x,
                                                                const int32_t *__restrict__ seg,
                                                                const __nv_bfloat16 *__restrict__ w,
                                                                float *__restrict__ y, int N, int K, int tasks, int E) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int task = blockIdx.x * TC_WARPS + warp;
    if (task >= E * tasks) return; // the last block's spare warps
    const int e = task / tasks, tk = task % tasks;
    const int cols = GATED ? TC_NB / 2 * 8 : TC_NB * 8; // output columns of this task
    const int c0 = tk * cols;
    if (c0 >= N) return;
    const int r0 = seg[e], r1 = seg[e + 1];
    if (r0 >= r1) return;
    const size_t w_rows = GATED ? 2 * (size_t)N : (size_t)N;
    const __nv_bfloat16 *we = w + (size_t)e * w_rows * K;
    // This lane's weight row in each block j.
    const __nv_bfloat16 *wrow[TC_NB];
#pragma unroll
    for (int j = 0; j < TC_NB; j++) {
        int col = GATED ? c0 + (j >> 1) * 8 + g : c0 + j * 8 + g;
        col = min(col, N - 1);
        size_t rr = GATED ? (size_t)col + ((j & 1) ? (size_t)N : 0) : (size_t)col;
        wrow[j] = we + rr * K + t * 8;
    }
    // Row tiles of MT x 16 rows share each weight load (MT = 2: up to 32 rows per pass).
    for (int rt = r0; rt < r1; rt += 16 * TC_MT) {
        float acc[TC_MT][TC_NB][4];
#pragma unroll
        for (int m = 0; m < TC_MT; m++)
#pragma unroll
            for (int j = 0; j < TC_NB; j++) acc[m][j][0] = acc[m][j][1] = acc[m][j][2] = acc[m][j][3] = 0.f;
        bool va[TC_MT], vb[TC_MT];
        const float *xa[TC_MT], *xb[TC_MT];
#pragma unroll
        for (int m = 0; m < TC_MT; m++) {
            const int ra = rt + 16 * m + g, rb = ra + 8;
            va[m] = ra < r1, vb[m] = rb < r1;
            xa[m] = x + (size_t)(va[m] ? ra : r0) * K + t * 8;
            xb[m] = x + (size_t)(vb[m] ? rb : r0) * K + t * 8;
        }
        const int mt_used = (r1 - rt + 15) / 16; // tiles with any valid row
#pragma unroll 2
        for (int kb = 0; kb < K; kb += 32) {
            uint4 wv[TC_NB];
#pragma unroll
            for (int j = 0; j < TC_NB; j++) wv[j] = __ldg((const uint4 *)(wrow[j] + kb));
#pragma unroll
            for (int m = 0; m < TC_MT; m++) {
                if (m >= mt_used) break;
                float4 a_lo = make_float4(0, 0, 0, 0), a_hi = a_lo, b_lo = a_lo, b_hi = a_lo;
                if (va[m]) a_lo = __ldg((const float4 *)(xa[m] + kb)), a_hi = __ldg((const float4 *)(xa[m] + kb) + 1);
                if (vb[m]) b_lo = __ldg((const float4 *)(xb[m] + kb)), b_hi = __ldg((const float4 *)(xb[m] + kb) + 1);
                const uint32_t p0 = pack_bf16(a_lo.x, a_lo.y), p1 = pack_bf16(a_lo.z, a_lo.w),
                               p2 = pack_bf16(a_hi.x, a_hi.y), p3 = pack_bf16(a_hi.z, a_hi.w);
                const uint32_t q0 = pack_bf16(b_lo.x, b_lo.y), q1 = pack_bf16(b_lo.z, b_lo.w),
                               q2 = pack_bf16(b_hi.x, b_hi.y), q3 = pack_bf16(b_hi.z, b_hi.w);
#pragma unroll
                for (int j = 0; j < TC_NB; j++) {
                    mma_bf16(acc[m][j], p0, q0, p1, q1, wv[j].x, wv[j].y);
                    mma_bf16(acc[m][j], p2, q2, p3, q3, wv[j].z, wv[j].w);
                }
            }
        }
        // acc[m][j]: [0],[1] row rt+16m+g, columns 2t, 2t+1 of block j; [2],[3] row +8.
#pragma unroll
        for (int m = 0; m < TC_MT; m++)
#pragma unroll
            for (int half = 0; half < 2; half++) {
                const int row = rt + 16 * m + g + 8 * half;
                if (row >= r1) continue;
                float *yr = y + (size_t)row * N;
                if (GATED) {
#pragma unroll
                    for (int p = 0; p < TC_NB / 2; p++)
#pragma unroll
                        for (int q = 0; q < 2; q++) {
                            const int col = c0 + p * 8 + 2 * t + q;
                            const float gt = acc[m][2 * p][2 * half + q], up = acc[m][2 * p + 1][2 * half + q];
                            if (col < N) yr[col] = gt / (1.0f + __expf(-gt)) * up;
                        }
                } else {
#pragma unroll
                    for (int j = 0; j < TC_NB; j++)
#pragma unroll
                        for (int q = 0; q < 2; q++) {
                            const int col = c0 + j * 8 + 2 * t + q;
                            if (col < N) yr[col] = acc[m][j][2 * half + q];
                        }
                }
            }
    }
}

extern "C" int jk_grouped_gemv(const float *x, const int32_t *seg, const uint16_t *w, float *y, int E, int N, int K,
                               int gated, int max_rows, void *stream) {
    if (K % 8 || E <= 0 || N <= 0) return (int)cudaErrorInvalidValue;
    if (max_rows <= 0) return 0;
    if (max_rows > 4 && K % 32 == 0) { // tensor cores
        const int cols = gated ? TC_NB / 2 * 8 : TC_NB * 8, tasks = (N + cols - 1) / cols;
        const int blocks = (E * tasks + TC_WARPS - 1) / TC_WARPS;
        if (gated)
            tc_gemv_kernel<1><<<blocks, TC_WARPS * 32, 0, (cudaStream_t)stream>>>(x, seg, (const __nv_bfloat16 *)w, y, N, K, tasks, E);
        else
            tc_gemv_kernel<0><<<blocks, TC_WARPS * 32, 0, (cudaStream_t)stream>>>(x, seg, (const __nv_bfloat16 *)w, y, N, K, tasks, E);
        return (int)cudaGetLastError();
    }
    // One or two rows per expert comes with few activated experts (small
    // batches): narrower column tiles give more blocks, so more bytes in flight.
    int cpb = COLS_PER_BLOCK;
    if (max_rows <= 2) cpb = 32;
    const char *ov = getenv("JANUS_GEMV_COLS"); // experiments: force a tile width
    if (ov && atoi(ov) >= 8) cpb = atoi(ov);
    const int col_tiles = (N + cpb - 1) / cpb;
    const dim3 grid(E * col_tiles), block(WARPS * 32);
    const __nv_bfloat16 *wb = (const __nv_bfloat16 *)w;
    cudaStream_t st = (cudaStream_t)stream;
    if (max_rows <= 1) grouped_gemv_kernel<1, 8><<<grid, block, 0, st>>>(x, seg, wb, y, N, K, gated, col_tiles, cpb);
    else if (max_rows <= 2) grouped_gemv_kernel<2, 8><<<grid, block, 0, st>>>(x, seg, wb, y, N, K, gated, col_tiles, cpb);
    else if (max_rows <= 4) grouped_gemv_kernel<4, 8><<<grid, block, 0, st>>>(x, seg, wb, y, N, K, gated, col_tiles, cpb);
    else if (max_rows <= 8) grouped_gemv_kernel<8, 4><<<grid, block, 0, st>>>(x, seg, wb, y, N, K, gated, col_tiles, cpb);
    else grouped_gemv_kernel<16, 4><<<grid, block, 0, st>>>(x, seg, wb, y, N, K, gated, col_tiles, cpb);
    return (int)cudaGetLastError();
}

extern "C" int jk_moe_ffn_decode(const jk_moe_ffn_args *a, void *stream) {
    int rc = jk_grouped_gemv(a->x, a->seg, a->w_gu, a->act, a->E, a->I, a->H, 1, a->max_rows, stream);
    if (rc) return rc;
    return jk_grouped_gemv(a->act, a->seg, a->w_down, a->y, a->E, a->H, a->I, 0, a->max_rows, stream);
}
