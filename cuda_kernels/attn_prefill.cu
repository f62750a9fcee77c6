// cuda_kernels/attn_prefill.cu: causal attention for prompt chunks on tensor
// cores (flash-attention 2 with mma.sync), over the paged bf16 KV cache.
//
// The decode kernels (layers.cu, attn_decode.cu) score one token against its
// context; a prompt chunk of n tokens would read and score its context n
// times with 8 of 16 mma rows live. Here one block takes a tile of BM = 16
// PA_WARPS query rows (96): TPB = BM / HB consecutive tokens of one sequence
// times HB query heads of one kv head (HB: the largest power of two dividing
// nh / nkv and BM, <= 32 at 96 rows, so a K/V tile in shared memory serves HB heads at
// once; Qwen3: 8 heads x 12 tokens). Row r of the tile is token r / HB, head
// r % HB of the block's head group; warp w owns rows 16w .. 16w + 15.
//
// The block walks its context in tiles of 64 positions (positions 0 .. the
// last token's), K and V through a 2-stage cp.async ring (rows padded by 16
// bytes so ldmatrix hits distinct banks; positions past the last token are
// zero-filled). Per tile and warp:
//   S = Q K^T    A = Q (bf16, scaled by log2(e) / sqrt(hd), in registers for
//                the whole walk), B = K rows (ldmatrix), 8 n-tiles of 8 positions;
//   mask         position > the row's own position: -inf (causal; only in the
//                tiles past the first token's position; rows past the chunk's
//                end score Q = 0 at the last position and are never stored);
//   online softmax per row: the 4 lanes of a quad hold a row's 64 scores;
//                P = 2^(S - m), the running sum and output rescaled by 2^(m_old - m);
//   O += P V     A = P rounded to bf16 straight from the S accumulators
//                (flash-attention's register reuse), B = V (ldmatrix.trans).
// Q and P in bf16 cost ~2e-3 relative against the f32 reference (the decode
// kernels keep ~f32 with a hi/lo split; here that would double the work).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "dev_common.cuh"
#include "layers.h"

#ifndef PA_WARPS
#define PA_WARPS 6    // warps per block, 16 query rows each (-DPA_WARPS=4 or 8: experiments)
#endif
#define PA_BM (16 * PA_WARPS) // query rows per block
#define PA_BN 64      // positions per K/V tile
#define PA_THREADS (32 * PA_WARPS)
// Blocks per SM the registers must allow: 168 registers at hd 128 either way.
// H100, Qwen3 16 x 1024 prompt tokens: 6 warps x 2 blocks 781 us, 4 x 3 837,
// 4 x 2 (213 registers) 950, 8 x 1 (203) 884.
#ifndef PA_MINB
#define PA_MINB (PA_WARPS == 4 ? 3 : PA_WARPS == 6 ? 2 : 1)
#endif


template <int HD> struct pa_shape {
    static constexpr int KSTR = HD + 8;              // bf16 per shared row
    static constexpr int TILE = PA_BN * KSTR;        // bf16 per K (or V) tile
    static constexpr size_t SMEM = (size_t)2 * 2 * TILE * 2; // 2 stages x (K, V)
};

// K and V rows of positions j0 .. j0 + 63 (kv head kvh) -> Kd, Vd; past p_last: zeros.
template <int HD>
__device__ __forceinline__ void pa_load(uint16_t *Kd, uint16_t *Vd, const uint16_t *__restrict__ kc,
                                        const uint16_t *__restrict__ vc, const int32_t *__restrict__ tbl, int j0,
                                        int p_last, int bs, int kv_dim, int kvh) {
    constexpr int VPR = HD / 8, KSTR = pa_shape<HD>::KSTR;
    for (int i = threadIdx.x; i < PA_BN * VPR; i += PA_THREADS) {
        const int r = i / VPR, v = i % VPR, p = j0 + r;
        const bool ok = p <= p_last;
        const size_t off = ok ? ((size_t)tbl[p / bs] * bs + p % bs) * kv_dim + (size_t)kvh * HD + v * 8 : 0;
        cp_async16_zfill(Kd + r * KSTR + v * 8, kc + off, ok ? 16 : 0);
        cp_async16_zfill(Vd + r * KSTR + v * 8, vc + off, ok ? 16 : 0);
    }
}

// tiles[i] = {t0, n, p0, -}: tokens t0 .. t0 + n - 1 at positions p0 .. p0 + n - 1
// of one sequence; its block table is row t0 + n - 1 of bt.
template <int HD>
__global__ void __launch_bounds__(PA_THREADS, PA_MINB)
    attn_prefill_kernel(float *__restrict__ out, uint16_t *__restrict__ out_b, const float *__restrict__ q,
                        const uint16_t *__restrict__ kc, const uint16_t *__restrict__ vc, const int32_t *__restrict__ bt,
                        int max_blocks, const int4 *__restrict__ tiles, int nh, int nkv, int hb, int bs, float qscale) {
    constexpr int KSTR = pa_shape<HD>::KSTR, TILE = pa_shape<HD>::TILE, KS = HD / 16, DT = HD / 8;
    extern __shared__ __align__(16) uint16_t pa_smem[];
    const int G = nh / nkv, hgroups = G / hb, per_tile = nkv * hgroups;
    const int4 tl = tiles[blockIdx.x / per_tile];
    const int rem = blockIdx.x % per_tile, kvh = rem / hgroups, hg = rem % hgroups;
    const int t0 = tl.x, ntok = tl.y, p0 = tl.z, p_last = p0 + ntok - 1;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, quad = lane & 3;
    const int kv_dim = nkv * HD;
    // the last token's row: each token's row of the block table may hold only
    // the blocks up to its own position (the engine copies no more)
    const int32_t *tbl = bt + (size_t)(t0 + ntok - 1) * max_blocks;
    const int n_kv = p_last / PA_BN + 1;

    pa_load<HD>(pa_smem, pa_smem + TILE, kc, vc, tbl, 0, p_last, bs, kv_dim, kvh);
    cp_async_commit();

    // This thread's two rows: r = 16 warp + lane / 4 (+ 8).
    // Rows past the chunk's end (valid false) score Q = 0 as if at the last
    // position, and are never stored: no tile but the diagonal ones needs a mask.
    int rpos[2];
    bool valid[2];
    size_t qoff[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int r = warp * 16 + (lane >> 2) + 8 * i, tok = r / hb;
        const int head = kvh * G + hg * hb + r % hb;
        valid[i] = tok < ntok;
        rpos[i] = valid[i] ? p0 + tok : p_last;
        qoff[i] = ((size_t)(t0 + (valid[i] ? tok : 0)) * nh + head) * HD;
    }
    uint32_t qa[KS][4];
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
#pragma unroll
        for (int h = 0; h < 2; h++) { // h: columns +0 / +8
#pragma unroll
            for (int i = 0; i < 2; i++) {
                float2 v = make_float2(0.f, 0.f);
                if (valid[i]) v = *(const float2 *)(q + qoff[i] + kk * 16 + h * 8 + quad * 2);
                qa[kk][2 * h + i] = pack_bf16(v.x * qscale, v.y * qscale);
            }
        }
    }
    float o[DT][4];
#pragma unroll
    for (int d = 0; d < DT; d++) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    const int lm = lane >> 3, lr = lane & 7; // ldmatrix: matrix and row this lane addresses

    for (int it = 0; it < n_kv; it++) {
        if (it + 1 < n_kv) {
            uint16_t *Kn = pa_smem + ((it + 1) & 1) * 2 * TILE;
            pa_load<HD>(Kn, Kn + TILE, kc, vc, tbl, (it + 1) * PA_BN, p_last, bs, kv_dim, kvh);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const uint16_t *Ks = pa_smem + (it & 1) * 2 * TILE, *Vs = Ks + TILE;
        float s[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t b[4];
                ldsm4(b, Ks + ((2 * np + (lm >> 1)) * 8 + lr) * KSTR + kk * 16 + (lm & 1) * 8);
                mma16816(s[2 * np], qa[kk], b[0], b[1]);
                mma16816(s[2 * np + 1], qa[kk], b[2], b[3]);
            }
        }
        // causal mask (tiles reaching past the first token's position only),
        // then the online softmax of rows i = 0, 1 (registers c = 2i, 2i + 1)
        if ((it + 1) * PA_BN - 1 > p0) {
            const int j0 = it * PA_BN + quad * 2;
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int n = 0; n < 8; n++)
#pragma unroll
                    for (int c = 0; c < 2; c++)
                        if (j0 + n * 8 + c > rpos[i]) s[n][2 * i + c] = -INFINITY;
        }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float mx = -INFINITY;
#pragma unroll
            for (int n = 0; n < 8; n++) mx = fmaxf(mx, fmaxf(s[n][2 * i], s[n][2 * i + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float mn = fmaxf(m[i], mx), base = mn == -INFINITY ? 0.f : mn;
            const float corr = ex2_approx(m[i] - base);
            m[i] = mn;
            float sum = 0.f;
#pragma unroll
            for (int n = 0; n < 8; n++)
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    float &v = s[n][2 * i + c];
                    v = ex2_approx(v - base);
                    sum += v;
                }
            l[i] = l[i] * corr + sum;
#pragma unroll
            for (int d = 0; d < DT; d++) o[d][2 * i] *= corr, o[d][2 * i + 1] *= corr;
        }
#pragma unroll
        for (int kp = 0; kp < 4; kp++) {
            const uint32_t a[4] = {pack_bf16(s[2 * kp][0], s[2 * kp][1]), pack_bf16(s[2 * kp][2], s[2 * kp][3]),
                                   pack_bf16(s[2 * kp + 1][0], s[2 * kp + 1][1]),
                                   pack_bf16(s[2 * kp + 1][2], s[2 * kp + 1][3])};
#pragma unroll
            for (int dp = 0; dp < DT / 2; dp++) {
                uint32_t b[4];
                ldsm4t(b, Vs + (kp * 16 + (lm & 1) * 8 + lr) * KSTR + (2 * dp + (lm >> 1)) * 8);
                mma16816(o[2 * dp], a, b[0], b[1]);
                mma16816(o[2 * dp + 1], a, b[2], b[3]);
            }
        }
        __syncthreads(); // the next iteration loads into this stage
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
        if (!valid[i]) continue;
        const float inv = 1.0f / l[i];
#pragma unroll
        for (int d = 0; d < DT; d++) {
            const size_t e = qoff[i] + d * 8 + quad * 2;
            const float2 v = make_float2(o[d][2 * i] * inv, o[d][2 * i + 1] * inv);
            *(float2 *)(out + e) = v;
            if (out_b) *(__nv_bfloat162 *)(out_b + e) = __floats2bfloat162_rn(v.x, v.y);
        }
    }
}

static int pa_heads_per_block(int nh, int nkv) {
    const int G = nh / nkv;
    for (int b = 64; b > 1; b >>= 1)
        if (G % b == 0 && PA_BM % b == 0) return b;
    return 1;
}

extern "C" int jk_attn_prefill_supported(int nh, int nkv, int hd) {
    return nkv > 0 && nh % nkv == 0 && (hd == 16 || hd == 32 || hd == 64 || hd == 128);
}

extern "C" int jk_attn_prefill_tokens_per_tile(int nh, int nkv) { return PA_BM / pa_heads_per_block(nh, nkv); }

static int pa_cmp_desc(const void *a, const void *b) { // by last position, longest first
    const int32_t *x = (const int32_t *)a, *y = (const int32_t *)b;
    const int32_t ex = x[2] + x[1], ey = y[2] + y[1];
    return ex != ey ? (ey > ex ? 1 : -1) : (x[0] > y[0]) - (x[0] < y[0]);
}

extern "C" int jk_attn_prefill_plan(int32_t *tiles, int32_t *ranges, int *n_ranges, const int32_t *pos,
                                    const int32_t *const *bt, int T, int nh, int nkv, int min_run) {
    const int tpb = jk_attn_prefill_tokens_per_tile(nh, nkv);
    int n = 0, nr = 0;
    if (min_run < 1) min_run = 1;
    for (int t = 0; t < T;) {
        int e = t + 1;
        while (e < T && bt[e] == bt[t] && pos[e] == pos[e - 1] + 1) e++;
        if (e - t >= min_run) {
            for (int s = t; s < e; s += tpb, n++) {
                tiles[4 * n] = s, tiles[4 * n + 1] = e - s < tpb ? e - s : tpb, tiles[4 * n + 2] = pos[s];
                tiles[4 * n + 3] = 0;
            }
        } else if (nr && ranges[2 * nr - 1] == t) {
            ranges[2 * nr - 1] = e; // continues the last per-token range
        } else {
            if (nr == JK_ATTN_PREFILL_MAX_RANGES) { // full: merge the two ranges closest together
                int best = 0;
                for (int i = 1; i < nr - 1; i++)
                    if (ranges[2 * i + 2] - ranges[2 * i + 1] < ranges[2 * best + 2] - ranges[2 * best + 1]) best = i;
                ranges[2 * best + 1] = ranges[2 * best + 3];
                for (int i = best + 1; i < nr - 1; i++) ranges[2 * i] = ranges[2 * i + 2], ranges[2 * i + 1] = ranges[2 * i + 3];
                nr--;
            }
            ranges[2 * nr] = t, ranges[2 * nr + 1] = e, nr++;
        }
        t = e;
    }
    // Under 2 min_run tokens in all: the per-token kernels. One block walks its
    // whole context alone, so a lone short run late in a long prompt is faster
    // token by token (H100, Qwen3 heads, 4-warp blocks, one run at position
    // ~8100: 64 tokens 383 us here vs 217 us per token, 128 tokens 380 vs 426,
    // 256 tokens 383 vs 831; 8 runs of 64: 456 vs 1622).
    int in_tiles = 0;
    for (int i = 0; i < n; i++) in_tiles += tiles[4 * i + 1];
    if (n && in_tiles < 2 * min_run) {
        ranges[0] = 0, ranges[1] = T, *n_ranges = 1;
        return 0;
    }
    qsort(tiles, (size_t)n, 4 * sizeof(int32_t), pa_cmp_desc); // long contexts start first
    *n_ranges = nr;
    return n;
}

template <int HD>
static int pa_launch(float *out, uint16_t *out_b, const float *q, const uint16_t *kc, const uint16_t *vc,
                     const int32_t *bt, int max_blocks, const int32_t *tiles, int n_tiles, int nh, int nkv, int bs,
                     cudaStream_t st) {
    const size_t smem = pa_shape<HD>::SMEM;
    static bool attr_set; // once per head size (and process: one device per rank)
    if (!attr_set) {
        cudaError_t e = cudaFuncSetAttribute(attn_prefill_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return (int)e;
        attr_set = true;
    }
    const int hb = pa_heads_per_block(nh, nkv);
    const long blocks = (long)n_tiles * nkv * (nh / nkv / hb);
    const float qscale = 1.4426950408889634f / sqrtf((float)HD); // scores in log2 units
    attn_prefill_kernel<HD><<<(unsigned)blocks, PA_THREADS, smem, st>>>(out, out_b, q, kc, vc, bt, max_blocks,
                                                                         (const int4 *)tiles, nh, nkv, hb, bs, qscale);
    return (int)cudaGetLastError();
}

extern "C" int jk_attention_prefill(float *out, uint16_t *out_b, const float *q, const uint16_t *kc, const uint16_t *vc,
                                    const int32_t *bt, int max_blocks, const int32_t *tiles, int n_tiles, int nh, int nkv,
                                    int hd, int bs, void *s) {
    if (n_tiles <= 0) return 0;
    if (!jk_attn_prefill_supported(nh, nkv, hd)) return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)s;
    switch (hd) {
    case 16: return pa_launch<16>(out, out_b, q, kc, vc, bt, max_blocks, tiles, n_tiles, nh, nkv, bs, st);
    case 32: return pa_launch<32>(out, out_b, q, kc, vc, bt, max_blocks, tiles, n_tiles, nh, nkv, bs, st);
    case 64: return pa_launch<64>(out, out_b, q, kc, vc, bt, max_blocks, tiles, n_tiles, nh, nkv, bs, st);
    default: return pa_launch<128>(out, out_b, q, kc, vc, bt, max_blocks, tiles, n_tiles, nh, nkv, bs, st);
    }
}
