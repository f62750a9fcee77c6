// cuda_kernels/moe_ffn.cu: grouped few-row GEMV for MoE decode.
//
// Three kernels: the staged kernel (staged_gemv_kernel, below: a cp.async
// pipeline through shared memory, ldmatrix, one block per expert task; the
// default where K <= 2048 and the grid is thick, i.e. Qwen3-sized experts),
// and two register-ring kernels described here (the FMA variant and the
// tensor-core variant tc_gemv_kernel), which take the other shapes.
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
//
// Work items are numbered over the *active* experts only (each warp finds the
// a-th non-empty group in seg with a ballot scan), so the blocks that do work
// come first in the grid and the trailing ones exit at once. Weight loads skip
// L1 and are marked evict-first in L2. jk_moe_ffn_decode launches the down
// projection with programmatic dependent launch (Hopper): its blocks start
// while gate/up is still streaming, prefetch (part of) their own weight slice
// into L2, and only then wait for act (griddepcontrol.wait).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "dev_common.cuh"
#include "moe_ffn.h"
#include <stdio.h>
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


// ---- streaming helpers -------------------------------------------------------
__device__ __forceinline__ uint64_t evict_first_policy() {
    uint64_t p;
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
    return p;
}

// 16 bytes of weights: read-only, not kept in L1, first to go from L2.
__device__ __forceinline__ uint4 ldw(const void *ptr, uint64_t pol) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0,%1,%2,%3}, [%4], %5;"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(ptr), "l"(pol));
    return v;
}

// L2 prefetch of [p, p + bytes) (p and bytes multiples of 16), one thread.
__device__ __forceinline__ void prefetch_l2(const void *p, unsigned long long bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const char *c = (const char *)p;
    while (bytes >= 16) {
        const unsigned n = bytes > (1u << 20) ? (1u << 20) : (unsigned)(bytes & ~15ull);
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(c), "r"(n) : "memory");
        c += n, bytes -= n;
    }
#endif
}

// Warp-wide (all 32 lanes): the expert of the a-th non-empty group of seg
// (-1 if fewer), and the number of non-empty groups. Reads seg[0..E] only.
__device__ __forceinline__ int nth_active(const int32_t *__restrict__ seg, int E, int a, int *nact) {
    const int lane = threadIdx.x & 31;
    int base = 0, found = -1;
    for (int e0 = 0; e0 < E; e0 += 256) {
        int cnt[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int e = e0 + 32 * i + lane;
            cnt[i] = e < E ? __ldg(seg + e + 1) - __ldg(seg + e) : 0;
        }
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const unsigned m = __ballot_sync(0xffffffffu, cnt[i] > 0);
            const int c = __popc(m);
            if (found < 0 && a >= base && a < base + c) {
                const int k = a - base; // the k-th set bit of m
                const bool me = ((m >> lane) & 1u) && __popc(m & ((1u << lane) - 1u)) == k;
                found = e0 + 32 * i + __ffs(__ballot_sync(0xffffffffu, me)) - 1;
            }
            base += c;
        }
    }
    *nact = base;
    return found;
}

// The share of each block's weight slice that the down launch prefetches into
// L2 while gate/up still runs: at most budget bytes over all active experts.
__device__ __forceinline__ unsigned long long prefetch_share(unsigned long long slice, int nact, size_t expert_bytes,
                                                             long long budget) {
    if (budget <= 0 || nact <= 0) return 0;
    const double total = (double)nact * (double)expert_bytes;
    const double f = total <= (double)budget ? 1.0 : (double)budget / total;
    return (unsigned long long)(f * (double)slice) & ~15ull;
}

// grid.x >= (active experts) * col_tiles; block = WARPS warps.
// Not gated: y[r, n] = sum_k x[r, k] w[e, n, k], n < N.
// Gated: w rows [0, N) gate, [N, 2N) up; y[r, n] = silu(g) * u.
// pf_budget > 0: launched as a programmatic dependent (x is written by the
// previous kernel): prefetch weights, then wait before reading x.
template <int MAXR, int NC>
__global__ void __launch_bounds__(WARPS * 32) grouped_gemv_kernel(const float *__restrict__ x,
                                                                   const int32_t *__restrict__ seg,
                                                                   const __nv_bfloat16 *__restrict__ w,
                                                                   float *__restrict__ y, int N, int K, int gated,
                                                                   int col_tiles, int cols_per_block, int E,
                                                                   int dependent, long long pf_budget,
                                                                   const int32_t *__restrict__ xmap, int xdiv) {
    pdl_trigger();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const size_t w_rows = gated ? 2 * (size_t)N : (size_t)N;
    const int cols_per_pass = gated ? NC / 2 : NC; // output columns a warp finishes per pass
    if (dependent) { // prefetch this block's weight slices, then wait for x
        if (!gated && threadIdx.x < 32) {
            for (int item = blockIdx.x;; item += gridDim.x) {
                int nact;
                const int e = nth_active(seg, E, item / col_tiles, &nact);
                if (e < 0) break;
                const int c0 = (item % col_tiles) * cols_per_block, c1 = min(N, c0 + cols_per_block);
                if (lane == 0)
                    prefetch_l2(w + ((size_t)e * N + c0) * K, prefetch_share((unsigned long long)(c1 - c0) * K * 2, nact,
                                                                         (size_t)N * K * 2, pf_budget));
            }
        }
        pdl_wait();
    }
    for (int item = blockIdx.x;; item += gridDim.x) {
    int nact;
    const int e = nth_active(seg, E, item / col_tiles, &nact), tile = item % col_tiles;
    if (e < 0) return;
    const int r0 = seg[e], r1 = seg[e + 1];
    const __nv_bfloat16 *we = w + (size_t)e * w_rows * K;
    const int c0 = tile * cols_per_block, c1 = min(N, c0 + cols_per_block);
    const uint64_t pol = evict_first_policy();
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
                for (int j = 0; j < NC; j++) bf16x8_to_f32(ldw(row[j] + k, pol), wf[j]);
#pragma unroll
                for (int r = 0; r < MAXR; r++) {
                    if (r < nr) {
                        const float4 *xp = (const float4 *)(x + (size_t)(xmap ? xmap[rb + r] / xdiv : rb + r) * K + k);
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
}

// ---- tensor-core variant (rows per expert > 4) -------------------------------
// mma.sync m16n8k16 (bf16 in, f32 accumulate): a 16-row tile of an expert's
// rows (A, converted to bf16) times 8 weight rows (B). A warp owns NB blocks
// of 8 weight rows (gated: gate/up pairs). Each lane reads 16 bytes of a
// weight row per 32-wide K chunk: K is permuted inside the chunk (lane t of a
// quad owns physical k = 8t..8t+7, which the two mma steps see as logical k
// {2t, 2t+1, 2t+8, 2t+9}); A uses the same permutation, so the dot products
// are unchanged.
// Template knobs: MT 16-row tiles per pass (share each weight load), NB blocks
// of 8 weight rows per warp, KS warps splitting one task's K (32-wide chunks
// dealt round robin, partial sums added through shared memory), D weight
// chunks in flight per warp (a register ring). A block is 4 warps: 4 / KS
// tasks of KS warps each.
#define TC_WARPS 4


__device__ __forceinline__ void mma_bf16(float *c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void group_sync(int id, int nthreads) {
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(nthreads) : "memory");
}

template <int GATED, int MT, int NB, int KS, int D>
__global__ void __launch_bounds__(TC_WARPS * 32) tc_gemv_kernel(const float *__restrict__ x,
                                                                const int32_t *__restrict__ seg,
                                                                const __nv_bfloat16 *__restrict__ w,
                                                                float *__restrict__ y, int N, int K, int tasks, int E,
                                                                int dependent, long long pf_budget,
                                                                const int32_t *__restrict__ xmap, int xdiv) {
    constexpr int TP = TC_WARPS / KS; // tasks per block
    __shared__ float red[KS > 1 ? TC_WARPS : 1][KS > 1 ? MT * NB * 4 * 32 : 1];
    pdl_trigger();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int tp = warp / KS, ks = warp % KS;
    const int cols = GATED ? NB / 2 * 8 : NB * 8; // output columns of a task
    const size_t w_rows = GATED ? 2 * (size_t)N : (size_t)N;
    if (dependent) { // prefetch this group's weight slices, then wait for x
        if (!GATED && ks == 0) {
            for (int item = blockIdx.x * TP + tp;; item += gridDim.x * TP) {
                int nact;
                const int e = nth_active(seg, E, item / tasks, &nact);
                if (e < 0) break;
                const int c0 = (item % tasks) * cols, c1 = min(N, c0 + cols);
                if (lane == 0)
                    prefetch_l2(w + ((size_t)e * N + c0) * K, prefetch_share((unsigned long long)(c1 - c0) * K * 2, nact,
                                                                         (size_t)N * K * 2, pf_budget));
            }
        }
        pdl_wait();
    }
    // The weight stream of a warp runs on across passes and tasks: the last D-1
    // chunk loads of one pass fetch the first chunks of the next pass (the
    // same task's next row tile, or the group's next task), so the register
    // ring never drains at a task boundary (chained when the warp's chunk
    // count is a multiple of D).
    const uint64_t pol = evict_first_policy();
    const int kstep = 32 * KS, kw0 = ks * 32;
    const int nch = kw0 < K ? (K - kw0 + kstep - 1) / kstep : 0; // this warp's K chunks per pass
    const bool can_chain = nch >= D && nch % D == 0;
    int item = blockIdx.x * TP + tp, nact;
    int e = nth_active(seg, E, item / tasks, &nact);
    if (e < 0) return; // the whole task group leaves together
    const __nv_bfloat16 *wrow[NB], *wnext[NB];
    auto rows_of = [&](const __nv_bfloat16 **wr, int ee, int tk) {
        const __nv_bfloat16 *we = w + (size_t)ee * w_rows * K;
        const int cc = tk * cols;
#pragma unroll
        for (int j = 0; j < NB; j++) { // this lane's weight row in each block j
            int col = GATED ? cc + (j >> 1) * 8 + g : cc + j * 8 + g;
            col = min(col, N - 1);
            const size_t rr = GATED ? (size_t)col + ((j & 1) ? (size_t)N : 0) : (size_t)col;
            wr[j] = we + rr * K + t * 8 + kw0;
        }
    };
    rows_of(wrow, e, item % tasks);
    uint4 wv[D][NB];
    bool primed = false; // ring slots 0 .. D-2 hold this pass's first chunks
    for (;;) {
    const int tk = item % tasks, item_n = item + gridDim.x * TP;
    int nact_n;
    const int e_n = nth_active(seg, E, item_n / tasks, &nact_n);
    if (e_n >= 0) rows_of(wnext, e_n, item_n % tasks);
    const int c0 = tk * cols;
    const int r0 = seg[e], r1 = seg[e + 1];
    for (int rt = r0; rt < r1; rt += 16 * MT) {
        float acc[MT][NB][4];
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int j = 0; j < NB; j++) acc[m][j][0] = acc[m][j][1] = acc[m][j][2] = acc[m][j][3] = 0.f;
        bool va[MT], vb[MT];
        const float *xa[MT], *xb[MT];
#pragma unroll
        for (int m = 0; m < MT; m++) {
            const int ra = rt + 16 * m + g, rb = ra + 8;
            va[m] = ra < r1, vb[m] = rb < r1;
            const int sa = va[m] ? ra : r0, sb = vb[m] ? rb : r0; // rows of x (xmap: gathered on the fly)
            xa[m] = x + (size_t)(xmap ? xmap[sa] / xdiv : sa) * K + t * 8;
            xb[m] = x + (size_t)(xmap ? xmap[sb] / xdiv : sb) * K + t * 8;
        }
        const int mt_used = (r1 - rt + 15) / 16; // tiles with any valid row
        const bool last_pass = rt + 16 * MT >= r1;
        // where the loads past this pass's last chunk go: this task again (next row tile) or the next task
        const bool chain = can_chain && (!last_pass || e_n >= 0);
        if (!primed) {
#pragma unroll
            for (int d = 0; d < D - 1; d++)
                if (d < nch) {
#pragma unroll
                    for (int j = 0; j < NB; j++) wv[d][j] = ldw(wrow[j] + d * kstep, pol);
                }
        }
        primed = false;
        for (int cb = 0; cb < nch; cb += D) {
#pragma unroll
            for (int d = 0; d < D; d++) {
                const int c = cb + d;
                if (c >= nch) break;
                const int cp = c + D - 1; // the chunk loaded now, into slot (d + D - 1) % D
                if (cp < nch) {
#pragma unroll
                    for (int j = 0; j < NB; j++) wv[(d + D - 1) % D][j] = ldw(wrow[j] + cp * kstep, pol);
                } else if (chain) {
#pragma unroll
                    for (int j = 0; j < NB; j++)
                        wv[(d + D - 1) % D][j] = ldw((last_pass ? wnext[j] : wrow[j]) + (cp - nch) * kstep, pol);
                }
                const int kb = kw0 + c * kstep;
#pragma unroll
                for (int m = 0; m < MT; m++) {
                    if (m >= mt_used) break;
                    float4 a_lo = make_float4(0, 0, 0, 0), a_hi = a_lo, b_lo = a_lo, b_hi = a_lo;
                    if (va[m]) a_lo = __ldg((const float4 *)(xa[m] + kb)), a_hi = __ldg((const float4 *)(xa[m] + kb) + 1);
                    if (vb[m]) b_lo = __ldg((const float4 *)(xb[m] + kb)), b_hi = __ldg((const float4 *)(xb[m] + kb) + 1);
                    const uint32_t p0 = pack_bf16(a_lo.x, a_lo.y), p1 = pack_bf16(a_lo.z, a_lo.w),
                                   p2 = pack_bf16(a_hi.x, a_hi.y), p3 = pack_bf16(a_hi.z, a_hi.w);
                    const uint32_t q0 = pack_bf16(b_lo.x, b_lo.y), q1 = pack_bf16(b_lo.z, b_lo.w),
                                   q2 = pack_bf16(b_hi.x, b_hi.y), q3 = pack_bf16(b_hi.z, b_hi.w);
#pragma unroll
                    for (int j = 0; j < NB; j++) {
                        mma_bf16(acc[m][j], p0, q0, p1, q1, wv[d][j].x, wv[d][j].y);
                        mma_bf16(acc[m][j], p2, q2, p3, q3, wv[d][j].z, wv[d][j].w);
                    }
                }
            }
        }
        primed = chain;
        if (KS > 1) { // add the other warps' partial sums into warp ks == 0
            if (ks > 0) {
#pragma unroll
                for (int m = 0; m < MT; m++)
#pragma unroll
                    for (int j = 0; j < NB; j++)
#pragma unroll
                        for (int i = 0; i < 4; i++) red[warp][((m * NB + j) * 4 + i) * 32 + lane] = acc[m][j][i];
            }
            group_sync(1 + tp, KS * 32);
            if (ks == 0) {
#pragma unroll
                for (int s = 1; s < KS; s++)
#pragma unroll
                    for (int m = 0; m < MT; m++)
#pragma unroll
                        for (int j = 0; j < NB; j++)
#pragma unroll
                            for (int i = 0; i < 4; i++) acc[m][j][i] += red[warp + s][((m * NB + j) * 4 + i) * 32 + lane];
            }
            group_sync(1 + tp, KS * 32); // red is free again for the next pass
            if (ks > 0) continue;
        }
        // acc[m][j]: [0],[1] row rt+16m+g, columns 2t, 2t+1 of block j; [2],[3] row +8.
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int half = 0; half < 2; half++) {
                const int row = rt + 16 * m + g + 8 * half;
                if (row >= r1) continue;
                float *yr = y + (size_t)row * N;
                if (GATED) {
#pragma unroll
                    for (int p = 0; p < NB / 2; p++)
#pragma unroll
                        for (int q = 0; q < 2; q++) {
                            const int col = c0 + p * 8 + 2 * t + q;
                            const float gt = acc[m][2 * p][2 * half + q], up = acc[m][2 * p + 1][2 * half + q];
                            if (col < N) yr[col] = gt / (1.0f + __expf(-gt)) * up;
                        }
                } else {
#pragma unroll
                    for (int j = 0; j < NB; j++)
#pragma unroll
                        for (int q = 0; q < 2; q++) {
                            const int col = c0 + j * 8 + 2 * t + q;
                            if (col < N) yr[col] = acc[m][j][2 * half + q];
                        }
                }
            }
    }
    if (e_n < 0) return;
    item = item_n, e = e_n;
#pragma unroll
    for (int j = 0; j < NB; j++) wrow[j] = wnext[j];
    }
}

// ---- staged variant: cp.async pipeline, ldmatrix --------------------------------
// A block of 8 warps owns one task: 128 weight rows of one expert (gated: 64
// gate rows and the matching 64 up rows) over all of K, for up to 8 NT of the
// expert's rows at a time (more rows: further passes). K streams through an
// S-stage cp.async pipeline of 64-column stages: weights 16 KB (each 128-byte
// row segment requested by 8 neighbouring threads at once, 16-byte pieces
// swizzled so that ldmatrix reads them without bank conflicts) and the
// expert's x rows in f32 (256 bytes a row, pieces swizzled by 2 (row & 7)),
// rounded to bf16 as the B fragments are built. Weights are the A operand of
// mma.sync m16n8k16 (warp w: rows 16w..16w+15 of the task), x rows the B
// operand (8-row tiles). The f32 results go through shared memory to the
// output: gated, act = silu(gate) * up; else y.
#define ST_WARPS 8
#define ST_ROWS 128
#define ST_BK 64
#define ST_STAGES 4 // stages in the pipeline: 3 (48 KB of weights a block) in flight while one is used

template <int GATED, int NT>
__global__ void __launch_bounds__(ST_WARPS * 32) staged_gemv_kernel(const float *__restrict__ x,
                                                                    const int32_t *__restrict__ seg,
                                                                    const __nv_bfloat16 *__restrict__ w,
                                                                    float *__restrict__ y, int N, int K, int tasks,
                                                                    int E, int dependent,
                                                                    const int32_t *__restrict__ xmap, int xdiv) {
    extern __shared__ __align__(128) unsigned char st_smem[];
    constexpr int WST = ST_ROWS * ST_BK * 2, XST = 8 * NT * ST_BK * 4, ST = WST + XST; // bytes per stage
    constexpr int XR = 8 * NT, S = ST_STAGES;
    float *part = (float *)st_smem; // after the K loop: [XR][ST_ROWS]
    pdl_trigger();
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    int nact;
    const int e = nth_active(seg, E, blockIdx.x / tasks, &nact), tk = blockIdx.x % tasks;
    if (e < 0) return;
    const int r0 = seg[e], r1 = seg[e + 1];
    const size_t w_rows = GATED ? 2 * (size_t)N : (size_t)N;
    const __nv_bfloat16 *we = w + (size_t)e * w_rows * K;
    const int c0 = tk * (GATED ? ST_ROWS / 2 : ST_ROWS); // first output column of the task
    const int nst = K / ST_BK;
    // This thread's 16-byte pieces of a stage: weights (4: rows tid / 8 + 32 i,
    // piece tid % 8; clamped: rows past N are computed and dropped) and x rows.
    constexpr int WPT = ST_ROWS * 8 / (ST_WARPS * 32), XPT = (XR * 16 + ST_WARPS * 32 - 1) / (ST_WARPS * 32);
    const __nv_bfloat16 *wp[WPT];
    unsigned wo[WPT];
#pragma unroll
    for (int i = 0; i < WPT; i++) {
        const int r = i * 32 + (tid >> 3), c = tid & 7;
        const __nv_bfloat16 *row;
        if (GATED) row = we + ((size_t)min(c0 + (r & 63), N - 1) + (r >= 64 ? (size_t)N : 0)) * K;
        else row = we + (size_t)min(c0 + r, N - 1) * K;
        wp[i] = row + c * 8;
        wo[i] = r * 128 + ((c ^ (r & 7)) << 4);
    }
    auto load_w = [&](int st) {
        unsigned char *buf = st_smem + (size_t)(st % S) * ST;
#pragma unroll
        for (int i = 0; i < WPT; i++) cp_async16(buf + wo[i], wp[i] + st * ST_BK);
    };
    const float *xp[XPT];
    unsigned xo[XPT];
    auto set_x = [&](int rb, int nr) {
#pragma unroll
        for (int i = 0; i < XPT; i++) {
            const int p = i * ST_WARPS * 32 + tid, r = (p >> 4) < XR ? p >> 4 : XR - 1, c = p & 15;
            const int gr = rb + min(r, nr - 1); // rows past the expert's: its last row again, dropped
            xp[i] = x + (size_t)(xmap ? xmap[gr] / xdiv : gr) * K + c * 4;
            xo[i] = r * 256 + ((c ^ ((r & 7) << 1)) << 4);
        }
    };
    auto load_x = [&](int st) {
        unsigned char *buf = st_smem + (size_t)(st % S) * ST + WST;
#pragma unroll
        for (int i = 0; i < XPT; i++)
            if (i * ST_WARPS * 32 + tid < XR * 16) cp_async16(buf + xo[i], xp[i] + st * ST_BK);
    };
    const int ar = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, ap = lane >> 4;
    const int g = lane >> 2, t = lane & 3;
    bool first = true;
    for (int rb = r0; rb < r1; rb += XR) {
        const int nr = min(XR, r1 - rb);
        set_x(rb, nr);
        if (first && dependent) { // weights do not depend on the previous kernel: start them first
#pragma unroll
            for (int st = 0; st < S - 1; st++)
                if (st < nst) load_w(st);
            pdl_wait();
#pragma unroll
            for (int st = 0; st < S - 1; st++) {
                if (st < nst) load_x(st);
                cp_async_commit();
            }
        } else {
#pragma unroll
            for (int st = 0; st < S - 1; st++) {
                if (st < nst) load_w(st), load_x(st);
                cp_async_commit();
            }
        }
        first = false;
        float acc[NT][4];
#pragma unroll
        for (int i = 0; i < NT; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
        for (int st = 0; st < nst; st++) {
            cp_async_wait<S - 2>();
            __syncthreads(); // stage st landed for every thread; stage st - 1's buffer is free
            if (st + S - 1 < nst) load_w(st + S - 1), load_x(st + S - 1);
            cp_async_commit();
            const unsigned char *buf = st_smem + (size_t)(st % S) * ST;
            const float *xs = (const float *)(buf + WST);
#pragma unroll
            for (int h = 0; h < 2; h++) { // 32 columns: two k16 steps
                uint32_t a0[4], a1[4];
                ldsm4(a0, buf + ar * 128 + (((4 * h + ap) ^ (ar & 7)) << 4));
                ldsm4(a1, buf + ar * 128 + (((4 * h + 2 + ap) ^ (ar & 7)) << 4));
#pragma unroll
                for (int i = 0; i < NT; i++) {
                    const int r = 8 * i + g;
                    const float *xr = xs + r * 64;
                    uint32_t b[4];
#pragma unroll
                    for (int q = 0; q < 4; q++) { // columns 32h + 8q + 2t, +1
                        const int col = 32 * h + 8 * q + 2 * t;
                        const float2 v = *(const float2 *)(xr + ((((col >> 2) ^ ((r & 7) << 1))) << 2) + (col & 3));
                        b[q] = pack_bf16(v.x, v.y);
                    }
                    mma_bf16(acc[i], a0[0], a0[1], a0[2], a0[3], b[0], b[1]);
                    mma_bf16(acc[i], a1[0], a1[1], a1[2], a1[3], b[2], b[3]);
                }
            }
        }
        cp_async_wait<0>();
        __syncthreads(); // every warp is done with the stages: part reuses them
#pragma unroll
        for (int i = 0; i < NT; i++) { // acc[i]: [0],[1] task row 16 warp + g, x rows 8i+2t, +1; [2],[3] task row + 8
            const int r = 8 * i + 2 * t, col = warp * 16 + g;
            part[r * ST_ROWS + col] = acc[i][0];
            part[(r + 1) * ST_ROWS + col] = acc[i][1];
            part[r * ST_ROWS + col + 8] = acc[i][2];
            part[(r + 1) * ST_ROWS + col + 8] = acc[i][3];
        }
        __syncthreads();
        if (GATED) {
            for (int p = tid; p < nr * 64; p += ST_WARPS * 32) {
                const int r = p >> 6, j = p & 63;
                if (c0 + j < N) {
                    const float gt = part[r * ST_ROWS + j], up = part[r * ST_ROWS + 64 + j];
                    y[(size_t)(rb + r) * N + c0 + j] = gt / (1.0f + __expf(-gt)) * up;
                }
            }
        } else {
            for (int p = tid; p < nr * ST_ROWS; p += ST_WARPS * 32) {
                const int r = p >> 7, j = p & 127;
                if (c0 + j < N) y[(size_t)(rb + r) * N + c0 + j] = part[r * ST_ROWS + j];
            }
        }
        __syncthreads(); // part is read before the next pass's stages overwrite it
    }
}

// ---- host side ----------------------------------------------------------------
typedef void (*tc_fn)(const float *, const int32_t *, const __nv_bfloat16 *, float *, int, int, int, int, int, long long,
                      const int32_t *, int);

template <int G, int MT>
static tc_fn tc_pick3(int NB, int KS, int D) {
#define TC_CASE(nb, ks, d) \
    if (NB == nb && KS == ks && D == d) return tc_gemv_kernel<G, MT, nb, ks, d>;
    TC_CASE(8, 1, 2) TC_CASE(8, 2, 2) TC_CASE(8, 4, 2)
    TC_CASE(4, 1, 2) TC_CASE(4, 2, 2) TC_CASE(4, 4, 2)
    TC_CASE(4, 1, 4) TC_CASE(4, 2, 4) TC_CASE(4, 4, 4)
#undef TC_CASE
    return NULL;
}

static tc_fn tc_pick(int gated, int MT, int NB, int KS, int D) {
    if (gated) return MT == 1 ? tc_pick3<1, 1>(NB, KS, D) : tc_pick3<1, 2>(NB, KS, D);
    return MT == 1 ? tc_pick3<0, 1>(NB, KS, D) : tc_pick3<0, 2>(NB, KS, D);
}

typedef void (*st_fn)(const float *, const int32_t *, const __nv_bfloat16 *, float *, int, int, int, int, int,
                      const int32_t *, int);

template <int G>
static st_fn st_pick_nt(int NT) {
    switch (NT) {
    case 1: return staged_gemv_kernel<G, 1>;
    case 2: return staged_gemv_kernel<G, 2>;
    case 4: return staged_gemv_kernel<G, 4>;
    default: return staged_gemv_kernel<G, 8>;
    }
}

static size_t st_smem_bytes(int NT) {
    const size_t stages = (size_t)ST_STAGES * (ST_ROWS * ST_BK * 2 + 8 * NT * ST_BK * 4), part = (size_t)8 * NT * ST_ROWS * 4;
    return stages > part ? stages : part;
}

// Once per kernel: allow the dynamic shared memory it is launched with (fixed by NT).
static int st_raise(st_fn k, size_t smem) {
    static st_fn done[8];
    static int n;
    for (int i = 0; i < n; i++)
        if (done[i] == k) return 1;
    if (cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess) return 0;
    if (n < 8) done[n++] = k;
    return 1;
}

static int sm_count(void) {
    static int sms = 0;
    if (!sms) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
            sms <= 0)
            sms = 132;
        (void)cudaGetLastError();
    }
    return sms;
}

// Blocks of kernel fn (threads each) resident on the whole device at once.
static int resident_blocks(const void *fn, int threads) {
    static const void *keys[64];
    static int vals[64], n;
    for (int i = 0; i < n; i++)
        if (keys[i] == fn) return vals[i];
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, threads, 0) != cudaSuccess || per_sm <= 0) per_sm = 1;
    (void)cudaGetLastError();
    const int sms = sm_count();
    if (n < 64) keys[n] = fn, vals[n] = per_sm * sms, n++;
    return per_sm * sms;
}

// Bytes of weights the dependent (down) launch may prefetch into L2: half the L2.
static long long prefetch_budget(void) {
    static long long b = -1;
    if (b < 0) {
        int dev = 0, l2 = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev) != cudaSuccess) l2 = 0;
        b = l2 / 2;
    }
    const char *ov = getenv("JANUS_PF_BUDGET"); // experiments
    return ov ? atoll(ov) : b;
}

static int grouped_gemv(const float *x, const int32_t *seg, const uint16_t *w, float *y, int E, int N, int K,
                        int gated, int max_rows, int dependent, cudaStream_t st, const int32_t *xmap = NULL,
                        int xdiv = 1, int max_active = 0) {
    if (xdiv <= 0) xdiv = 1;
    if (K % 8 || E <= 0 || N <= 0) return (int)cudaErrorInvalidValue;
    if (max_rows <= 0) return 0;
    const long long pf = dependent ? prefetch_budget() : 0;
    const __nv_bfloat16 *wb = (const __nv_bfloat16 *)w;
    static int tc_min = -1; // rows per expert from which the tensor-core variant runs
    if (tc_min < 0) {
        const char *e = getenv("JANUS_TC_MIN_ROWS"); // experiments
        tc_min = e && atoi(e) > 0 ? atoi(e) : 5;
    }
    // The staged kernel runs one block per (expert, 128 weight rows) over all of
    // K. Where tasks are large (K > 2048: Mixtral's 1 MB gate/up and 3.7 MB
    // down tasks) the last wave of blocks streams alone for long, and where
    // even every expert active gives few blocks the grid is thin: there the
    // register-ring kernels, which deal small tasks over a persistent grid,
    // stream better (bench moe-layer, H100: Mixtral 1 token 71-75% staged vs
    // 93%, 8 tokens 76% mixed vs 90%). JANUS_FFN_STAGED: 0 never, 1 wherever
    // K allows (tests, experiments).
    const char *sv = getenv("JANUS_FFN_STAGED");
    const int force = sv ? atoi(sv) : -1;
    const int tasks_st = (N + (gated ? ST_ROWS / 2 : ST_ROWS) - 1) / (gated ? ST_ROWS / 2 : ST_ROWS);
    const int staged = force == 0   ? 0
                       : force == 1 ? 1
                                    : K <= 2048 && (long long)E * tasks_st >= 4LL * sm_count();
    if (staged && K % ST_BK == 0) {
        const int NT = max_rows <= 8 ? 1 : max_rows <= 16 ? 2 : max_rows <= 32 ? 4 : 8;
        const st_fn k = gated ? st_pick_nt<1>(NT) : st_pick_nt<0>(NT);
        const size_t smem = st_smem_bytes(NT);
        if (!st_raise(k, smem)) return (int)cudaErrorInvalidValue;
        // Blocks past the active experts' exit at once; a bound on the active
        // experts (max_active) keeps them out of the grid.
        const long long units = (long long)(max_active > 0 && max_active < E ? max_active : E) * tasks_st;
        return (int)pdl_launch(k, dim3((unsigned)units), dim3(ST_WARPS * 32), st, dependent, smem, x, seg, wb, y, N, K, tasks_st,
                           E, dependent, xmap, xdiv);
    }
    if (max_rows >= tc_min && K % 32 == 0) { // tensor cores
        // Measured on H100 (tools/moe_ffn_bench.cu sweep): 4 weight-row blocks per warp, K split over the 4
        // warps of a block, except the down projection with many tasks (Qwen3: 2 warps).
        int MT = max_rows <= 16 ? 1 : 2, NB = 4, KS = 0, D = 2;
        const char *ov = getenv("JANUS_TC"); // experiments: "MT,NB,KS,D", 0 = default
        if (ov) {
            int v[4] = {0, 0, 0, 0};
            sscanf(ov, "%d,%d,%d,%d", &v[0], &v[1], &v[2], &v[3]);
            if (v[0]) MT = v[0];
            if (v[1]) NB = v[1];
            if (v[2]) KS = v[2];
            if (v[3]) D = v[3];
        }
        const int cols = gated ? NB / 2 * 8 : NB * 8, tasks = (N + cols - 1) / cols;
        if (!KS) KS = (!gated && (long long)E * tasks >= 4096) ? 2 : 4;
        tc_fn k = tc_pick(gated, MT, NB, KS, D);
        if (!k) return (int)cudaErrorInvalidValue;
        const int per_block = TC_WARPS / KS;
        long long blocks = ((long long)E * tasks + per_block - 1) / per_block;
        const int cap = resident_blocks((const void *)k, TC_WARPS * 32); // a persistent grid: no empty blocks
        if (blocks > cap) blocks = cap;
        return (int)pdl_launch(k, dim3((unsigned)blocks), dim3(TC_WARPS * 32), st, dependent, (size_t)0, x, seg, wb, y, N, K, tasks, E,
                           dependent, pf, xmap, xdiv);
    }
    // One or two rows per expert comes with few activated experts (small
    // batches): narrower column tiles give more blocks, so more bytes in flight.
    int cpb = COLS_PER_BLOCK;
    if (max_rows <= 2 && gated) cpb = 32; // (not gated, 8 warps of 8 columns fill 64)
    const char *ov = getenv("JANUS_GEMV_COLS"); // experiments: force a tile width
    if (ov && atoi(ov) >= 8) cpb = atoi(ov);
    const int col_tiles = (N + cpb - 1) / cpb;
    void (*k)(const float *, const int32_t *, const __nv_bfloat16 *, float *, int, int, int, int, int, int, int, long long,
              const int32_t *, int);
    if (max_rows <= 1) k = grouped_gemv_kernel<1, 8>;
    else if (max_rows <= 2) k = grouped_gemv_kernel<2, 8>;
    else if (max_rows <= 4) k = grouped_gemv_kernel<4, 8>;
    else if (max_rows <= 8) k = grouped_gemv_kernel<8, 4>;
    else k = grouped_gemv_kernel<16, 4>;
    long long blocks = (long long)E * col_tiles;
    const int cap = resident_blocks((const void *)k, WARPS * 32); // a persistent grid: no empty blocks
    if (blocks > cap) blocks = cap;
    return (int)pdl_launch(k, dim3((unsigned)blocks), dim3(WARPS * 32), st, dependent, (size_t)0, x, seg, wb, y, N, K, gated, col_tiles, cpb, E, dependent, pf, xmap, xdiv);
}

extern "C" int jk_grouped_gemv(const float *x, const int32_t *seg, const uint16_t *w, float *y, int E, int N, int K,
                               int gated, int max_rows, void *stream) {
    return grouped_gemv(x, seg, w, y, E, N, K, gated, max_rows, 0, (cudaStream_t)stream);
}

extern "C" int jk_moe_ffn_decode(const jk_moe_ffn_args *a, void *stream) {
    int rc = grouped_gemv(a->x, a->seg, a->w_gu, a->act, a->E, a->I, a->H, 1, a->max_rows, 0, (cudaStream_t)stream,
                          a->x_rows, a->x_div, a->max_active);
    if (rc) return rc;
    const int dep = pdl_enabled(); // the down projection as a dependent of gate/up
    return grouped_gemv(a->act, a->seg, a->w_down, a->y, a->E, a->H, a->I, 0, a->max_rows, dep, (cudaStream_t)stream,
                        NULL, 1, a->max_active);
}
