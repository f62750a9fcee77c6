// cuda_kernels/layers.cu: per-layer kernels of the forward pass (see layers.h).
// Row-parallel and simple: one block or one warp per row; the heavy lifting
// (weights) is in moe_ffn.cu's grouped GEMV, which also serves the dense
// projections (one "expert" holding all rows).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <float.h>

#include "attn_decode.h"
#include "dev_common.cuh"
#include "layers.h"

#define ST(s) ((cudaStream_t)(s))


// ---- embedding, norms, elementwise --------------------------------------------
__global__ void embed_kernel(float *x, const uint16_t *emb, const int32_t *tok, int H) {
    const int t = blockIdx.x;
    const uint16_t *e = emb + (size_t)tok[t] * H;
    for (int i = threadIdx.x; i < H; i += blockDim.x) x[(size_t)t * H + i] = bf(e[i]);
}
extern "C" int jk_embed(float *x, const uint16_t *emb, const int32_t *tok, int T, int H, void *s) {
    if (T <= 0) return 0;
    embed_kernel<<<T, 256, 0, ST(s)>>>(x, emb, tok, H);
    return (int)cudaGetLastError();
}

// One warp per row (rows are short: hidden size or head_dim).
__global__ void rmsnorm_kernel(float *y, const float *x, const uint16_t *w, int R, int n, float eps) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= R) return;
    const float *xr = x + (size_t)row * n;
    float ss = 0.f;
    for (int i = lane; i < n; i += 32) ss += xr[i] * xr[i];
    ss = warp_sum(ss);
    const float inv = rsqrtf(ss / (float)n + eps);
    float *yr = y + (size_t)row * n;
    for (int i = lane; i < n; i += 32) yr[i] = bf(w[i]) * (xr[i] * inv);
}
extern "C" int jk_rmsnorm(float *y, const float *x, const uint16_t *w, int R, int n, float eps, void *s) {
    if (R <= 0) return 0;
    rmsnorm_kernel<<<(R + 7) / 8, 256, 0, ST(s)>>>(y, x, w, R, n, eps);
    return (int)cudaGetLastError();
}

__global__ void add_kernel(float *x, const float *d, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) x[i] += d[i];
}
extern "C" int jk_add(float *x, const float *d, size_t n, void *s) {
    if (!n) return 0;
    add_kernel<<<(unsigned)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096), 256, 0, ST(s)>>>(x, d, n);
    return (int)cudaGetLastError();
}

__global__ void add_bias_kernel(float *y, const uint16_t *b, int T, int N) {
    const size_t n = (size_t)T * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] += bf(b[i % N]);
}
extern "C" int jk_add_bias(float *y, const uint16_t *b, int T, int N, void *s) {
    if (T <= 0) return 0;
    add_bias_kernel<<<256, 256, 0, ST(s)>>>(y, b, T, N);
    return (int)cudaGetLastError();
}

__global__ void sigmoid_scale_add_kernel(float *x, const float *sh, const float *g, int T, int H) {
    const int t = blockIdx.x;
    const float sg = 1.0f / (1.0f + expf(-g[t]));
    for (int i = threadIdx.x; i < H; i += blockDim.x) x[(size_t)t * H + i] += sg * sh[(size_t)t * H + i];
}
extern "C" int jk_sigmoid_scale_add(float *x, const float *sh, const float *g, int T, int H, void *s) {
    if (T <= 0) return 0;
    sigmoid_scale_add_kernel<<<T, 256, 0, ST(s)>>>(x, sh, g, T, H);
    return (int)cudaGetLastError();
}

// ---- RoPE (rotate_half layout) ------------------------------------------------
__global__ void rope_kernel(float *x, const int32_t *pos, const float *inv_freq, int nh, int hd) {
    const int t = blockIdx.x, half = hd / 2;
    for (int i = threadIdx.x; i < nh * half; i += blockDim.x) {
        const int h = i / half, d = i % half;
        float sn, cs;
        sincosf((float)pos[t] * inv_freq[d], &sn, &cs);
        float *v = x + ((size_t)t * nh + h) * hd;
        const float a = v[d], b = v[d + half];
        v[d] = a * cs - b * sn;
        v[d + half] = b * cs + a * sn;
    }
}
extern "C" int jk_rope(float *x, const int32_t *pos, const float *inv_freq, int T, int nh, int hd, void *s) {
    if (T <= 0) return 0;
    rope_kernel<<<T, 128, 0, ST(s)>>>(x, pos, inv_freq, nh, hd);
    return (int)cudaGetLastError();
}

// ---- paged KV cache and attention ----------------------------------------------
__global__ void kv_store_kernel(uint16_t *kc, uint16_t *vc, const float *k, const float *v, const int32_t *bt,
                                int max_blocks, const int32_t *pos, int kv_dim, int bs) {
    const int t = blockIdx.x;
    const size_t slot = (size_t)bt[(size_t)t * max_blocks + pos[t] / bs] * bs + pos[t] % bs;
    for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
        kc[slot * kv_dim + i] = to_bf(k[(size_t)t * kv_dim + i]);
        vc[slot * kv_dim + i] = to_bf(v[(size_t)t * kv_dim + i]);
    }
}
extern "C" int jk_kv_store(uint16_t *kc, uint16_t *vc, const float *k, const float *v, const int32_t *bt, int max_blocks,
                           const int32_t *pos, int T, int kv_dim, int bs, void *s) {
    if (T <= 0) return 0;
    kv_store_kernel<<<T, 128, 0, ST(s)>>>(kc, vc, k, v, bt, max_blocks, pos, kv_dim, bs);
    return (int)cudaGetLastError();
}

// One warp per (token, head). Positions go 32 at a time: lane j scores position
// c+j against q (kept in shared memory), the warp updates a running max and
// sum (online softmax), then every lane accumulates its hd/32 output dims over
// the 32 positions (V rows read coalesced across lanes).
#define ATT_WARPS 4
#define ATT_MAX_HD 256
__global__ void attention_kernel(float *out, const float *q, const uint16_t *kc, const uint16_t *vc, const int32_t *bt,
                                 int max_blocks, const int32_t *pos, int T, int nh, int nkv, int hd, int bs) {
    __shared__ float qs[ATT_WARPS][ATT_MAX_HD];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int item = blockIdx.x * ATT_WARPS + warp;
    if (item >= T * nh) return;
    const int t = item / nh, h = item % nh, kvh = h / (nh / nkv), kv_dim = nkv * hd;
    const float scale = rsqrtf((float)hd);
    const float *qh = q + ((size_t)t * nh + h) * hd;
    for (int d = lane; d < hd; d += 32) qs[warp][d] = qh[d] * scale;
    __syncwarp();
    const int n = pos[t] + 1;
    const int32_t *tbl = bt + (size_t)t * max_blocks;
    float m = -FLT_MAX, l = 0.f, acc[ATT_MAX_HD / 32];
#pragma unroll
    for (int i = 0; i < ATT_MAX_HD / 32; i++) acc[i] = 0.f;
    for (int c = 0; c < n; c += 32) {
        const int j = c + lane;
        float sc = -FLT_MAX;
        if (j < n) {
            const uint16_t *kr = kc + ((size_t)tbl[j / bs] * bs + j % bs) * kv_dim + (size_t)kvh * hd;
            float s = 0.f;
            for (int d = 0; d < hd; d += 2) {
                const uint32_t two = *(const uint32_t *)(kr + d);
                s += qs[warp][d] * __uint_as_float(two << 16) + qs[warp][d + 1] * __uint_as_float(two & 0xffff0000u);
            }
            sc = s;
        }
        const float cm = warp_max(sc), nm = fmaxf(m, cm);
        const float p = j < n ? __expf(sc - nm) : 0.f;
        const float corr = __expf(m - nm);
        l = l * corr + warp_sum(p);
#pragma unroll
        for (int i = 0; i < ATT_MAX_HD / 32; i++) acc[i] *= corr;
        m = nm;
        const int cn = min(32, n - c);
        for (int jj = 0; jj < cn; jj++) {
            const float pj = __shfl_sync(0xffffffffu, p, jj);
            const int jp = c + jj;
            const uint16_t *vr = vc + ((size_t)tbl[jp / bs] * bs + jp % bs) * kv_dim + (size_t)kvh * hd;
#pragma unroll
            for (int i = 0; i < ATT_MAX_HD / 32; i++) {
                const int d = lane + 32 * i;
                if (d < hd) acc[i] += pj * bf(vr[d]);
            }
        }
    }
    float *o = out + ((size_t)t * nh + h) * hd;
    const float inv = 1.0f / l;
#pragma unroll
    for (int i = 0; i < ATT_MAX_HD / 32; i++) {
        const int d = lane + 32 * i;
        if (d < hd) o[d] = acc[i] * inv;
    }
}
// GQA-shared variant: one block per (token, kv head) serves the G = nh / nkv
// query heads that read the same K/V, so each K/V row is read once (the
// per-head kernel above reads it G times). Tiles of GQ_TILE positions: K and
// V rows land in shared memory with 16-byte loads (K rows padded by 4 bytes so
// the per-position dot products hit distinct banks), scores and an online
// softmax per head, then each thread updates its (head, dim) outputs.
#define GQ_TILE 64
#define GQ_THREADS 128
#define GQ_MAX_OUT 16 // (G * hd) / GQ_THREADS outputs per thread at most
__global__ void __launch_bounds__(GQ_THREADS) attention_gqa_kernel(float *out, const float *q, const uint16_t *kc,
                                                                   const uint16_t *vc, const int32_t *bt, int max_blocks,
                                                                   const int32_t *pos, int nh, int nkv, int hd, int bs) {
    extern __shared__ __align__(16) float smem[];
    const int t = blockIdx.x / nkv, kvh = blockIdx.x % nkv, G = nh / nkv, kv_dim = nkv * hd, tid = threadIdx.x;
    const int kstride = hd + 2; // bf16 elements per padded K row
    float *q_s = smem;                          // [G][hd]
    float *p_s = q_s + G * hd;                  // [G][GQ_TILE]
    float *m_s = p_s + G * GQ_TILE;             // [G]
    float *l_s = m_s + G, *c_s = l_s + G;       // [G], [G]
    uint16_t *k_s = (uint16_t *)(smem + ((G * hd + G * GQ_TILE + 3 * G + 3) & ~3)); // [GQ_TILE][hd + 2], 16-byte aligned
    uint16_t *v_s = k_s + GQ_TILE * kstride;    // [GQ_TILE][hd]
    const float scale = rsqrtf((float)hd);
    for (int i = tid; i < G * hd; i += GQ_THREADS) {
        const int g = i / hd, d = i % hd;
        q_s[i] = q[((size_t)t * nh + kvh * G + g) * hd + d] * scale;
    }
    for (int g = tid; g < G; g += GQ_THREADS) m_s[g] = -FLT_MAX, l_s[g] = 0.f;
    const int n = pos[t] + 1, n_out = G * hd;
    const int32_t *tbl = bt + (size_t)t * max_blocks;
    float acc[GQ_MAX_OUT];
#pragma unroll
    for (int i = 0; i < GQ_MAX_OUT; i++) acc[i] = 0.f;
    const int vec = hd / 8; // 16-byte vectors per row
    for (int c0 = 0; c0 < n; c0 += GQ_TILE) {
        const int rows = min(GQ_TILE, n - c0);
        __syncthreads();
        for (int i = tid; i < rows * vec; i += GQ_THREADS) {
            const int j = i / vec, v8 = i % vec, p = c0 + j;
            const size_t off = ((size_t)tbl[p / bs] * bs + p % bs) * kv_dim + (size_t)kvh * hd + v8 * 8;
            const uint4 kk = *(const uint4 *)(kc + off), vv = *(const uint4 *)(vc + off);
            uint32_t *kd = (uint32_t *)(k_s + j * kstride + v8 * 8); // 4-byte aligned (padded rows)
            kd[0] = kk.x, kd[1] = kk.y, kd[2] = kk.z, kd[3] = kk.w;
            *(uint4 *)(v_s + j * hd + v8 * 8) = vv;
        }
        __syncthreads();
        for (int i = tid; i < G * GQ_TILE; i += GQ_THREADS) {
            const int g = i / GQ_TILE, j = i % GQ_TILE;
            float sc = -FLT_MAX;
            if (j < rows) {
                const uint32_t *kr = (const uint32_t *)(k_s + j * kstride);
                const float *qg = q_s + g * hd;
                sc = 0.f;
                for (int d2 = 0; d2 < hd / 2; d2++) {
                    const uint32_t two = kr[d2];
                    sc += qg[2 * d2] * __uint_as_float(two << 16) + qg[2 * d2 + 1] * __uint_as_float(two & 0xffff0000u);
                }
            }
            p_s[i] = sc;
        }
        __syncthreads();
        // Online softmax per head: warp w takes heads w, w + 4, ...
        const int warp = tid >> 5, lane = tid & 31;
        for (int g = warp; g < G; g += GQ_THREADS / 32) {
            float mx = -FLT_MAX;
            for (int j = lane; j < GQ_TILE; j += 32) mx = fmaxf(mx, p_s[g * GQ_TILE + j]);
            mx = warp_max(mx);
            const float nm = fmaxf(m_s[g], mx), corr = __expf(m_s[g] - nm);
            float sum = 0.f;
            for (int j = lane; j < GQ_TILE; j += 32) {
                const float e = j < rows ? __expf(p_s[g * GQ_TILE + j] - nm) : 0.f;
                p_s[g * GQ_TILE + j] = e;
                sum += e;
            }
            sum = warp_sum(sum);
            if (lane == 0) l_s[g] = l_s[g] * corr + sum, m_s[g] = nm, c_s[g] = corr;
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < GQ_MAX_OUT; r++) {
            const int i = tid + r * GQ_THREADS;
            if (i >= n_out) break;
            const int g = i / hd, d = i % hd;
            float a = acc[r] * c_s[g];
            const float *pg = p_s + g * GQ_TILE;
            for (int j = 0; j < rows; j++) a += pg[j] * bf(v_s[j * hd + d]);
            acc[r] = a;
        }
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < GQ_MAX_OUT; r++) {
        const int i = tid + r * GQ_THREADS;
        if (i >= n_out) break;
        const int g = i / hd, d = i % hd;
        out[((size_t)t * nh + kvh * G + g) * hd + d] = acc[r] / l_s[g];
    }
}

extern "C" int jk_attention(float *out, const float *q, const uint16_t *kc, const uint16_t *vc, const int32_t *bt,
                            int max_blocks, const int32_t *pos, int T, int nh, int nkv, int hd, int bs, void *s) {
    if (T <= 0) return 0;
    if (hd > ATT_MAX_HD || hd % 2) return (int)cudaErrorInvalidValue;
    const int G = nh / nkv;
    if (hd % 8 == 0 && G * hd <= GQ_MAX_OUT * GQ_THREADS) {
        const size_t smem = sizeof(float) * (((size_t)G * hd + (size_t)G * GQ_TILE + 3 * G + 3) & ~(size_t)3) +
                            2 * (size_t)GQ_TILE * (hd + 2) + 2 * (size_t)GQ_TILE * hd + 16;
        if (smem > 48 * 1024) cudaFuncSetAttribute(attention_gqa_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        attention_gqa_kernel<<<T * nkv, GQ_THREADS, smem, ST(s)>>>(out, q, kc, vc, bt, max_blocks, pos, nh, nkv, hd, bs);
        return (int)cudaGetLastError();
    }
    const int items = T * nh;
    attention_kernel<<<(items + ATT_WARPS - 1) / ATT_WARPS, ATT_WARPS * 32, 0, ST(s)>>>(out, q, kc, vc, bt, max_blocks,
                                                                                        pos, T, nh, nkv, hd, bs);
    return (int)cudaGetLastError();
}

// ---- split-K (flash-decoding) attention ------------------------------------------
// Block (token t, kv head, head group, chunk): the GB query heads of one kv head
// (G = nh / nkv split into groups of GB <= 8 so that q and the accumulators fit
// in registers) over positions [c0, c0 + chunk) of t's context. K and V tiles
// of TILE rows go through shared memory with cp.async, two stages (tile i + 1
// loads while tile i is used). Thread layout: LPR = HD / 8 lanes per row, each
// lane owns 8 dims (one 16-byte vector), RPW = 32 / LPR row slots per warp.
// Per tile: (1) scores: each lane dots its 8 dims of LPR / 8 rows with the GB
// query heads (q in registers), a reduce-scatter over the LPR lanes completes
// them (one shuffle per score instead of log2(LPR)); (2) one
// warp per head takes the tile max, turns scores into probabilities in place and
// updates the block's running max m, sum l and rescale factor; (3) each lane
// accumulates p * V for its 8 dims and GB heads. The block ends by summing its
// warps' accumulators: one chunk = the output, else a partial (acc, m, l) in ws.
#define SK_WARPS 4
#define SK_THREADS (SK_WARPS * 32)
#define SK_TILE_ELEMS 8192    // TILE * HD: 16 KB of bf16 per K (or V) stage buffer
#define SK_TARGET_BLOCKS 1024 // split until about this many blocks (H100: 132 SMs x 3 resident)
#define SK_MIN_TILES 2        // at least this many tiles per chunk
#define SK_MAX_SPLITS 1024
#define SK_MAX_GB 8


__device__ __forceinline__ void bf16x8(uint4 v, float *f) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; i++) f[2 * i] = __uint_as_float(w[i] << 16), f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
}

// K and V rows p0 .. p0 + rows - 1 of t's context (table tbl), kv head kvh -> dk, dv: [rows][HD].
template <int HD>
__device__ __forceinline__ void sk_load_tile(uint16_t *dk, uint16_t *dv, const uint16_t *kc, const uint16_t *vc,
                                             const int32_t *tbl, int p0, int rows, int bs, int kv_dim, int kvh) {
    constexpr int VPR = HD / 8; // 16-byte vectors per row
    for (int i = threadIdx.x; i < rows * VPR; i += SK_THREADS) {
        const int j = i / VPR, v8 = i % VPR, p = p0 + j;
        const size_t off = ((size_t)tbl[p / bs] * bs + p % bs) * kv_dim + (size_t)kvh * HD + v8 * 8;
        cp_async16(dk + j * HD + v8 * 8, kc + off);
        cp_async16(dv + j * HD + v8 * 8, vc + off);
    }
}

static size_t sk_smem_bytes(int hd, int gb) {
    const int tile = SK_TILE_ELEMS / hd;
    return 4 * (size_t)SK_TILE_ELEMS * sizeof(uint16_t) + sizeof(float) * ((size_t)gb * (tile + 1) + 3 * (size_t)gb);
}

template <int HD, int GB>
__global__ void __launch_bounds__(SK_THREADS)
    attention_split_kernel(float *__restrict__ out, float *__restrict__ o_part, float *__restrict__ ml_part,
                           const float *__restrict__ q, const uint16_t *__restrict__ kc, const uint16_t *__restrict__ vc,
                           const int32_t *__restrict__ bt, int max_blocks, const int32_t *__restrict__ pos, int nh, int nkv,
                           int bs, int hgroups, int chunk, int splits) {
    pdl_trigger(); // the combine kernel (a programmatic dependent) may launch and wait
    constexpr int TILE = SK_TILE_ELEMS / HD, LPR = HD / 8, RPW = 32 / LPR, SP = TILE + 1;
    constexpr int RPL = LPR / 8, RSTEP = RPW * RPL; // scores: rows per lane, rows per warp step (4)
    constexpr int LOG_LPR = LPR == 8 ? 3 : LPR == 16 ? 4 : 5;
    extern __shared__ __align__(16) unsigned char sk_smem[];
    uint16_t *kv_s = (uint16_t *)sk_smem;                                  // [stage 2][K, V][TILE][HD]
    float *s_s = (float *)(sk_smem + 4 * SK_TILE_ELEMS * sizeof(uint16_t)); // [GB][SP] scores, then p
    float *m_s = s_s + GB * SP, *l_s = m_s + GB, *c_s = l_s + GB;           // [GB] each
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, r_in = lane / LPR, dl = lane % LPR;
    int item = blockIdx.x;
    const int split = item % splits;
    item /= splits;
    const int hg = item % hgroups;
    item /= hgroups;
    const int kvh = item % nkv, t = item / nkv;
    const int G = GB * hgroups, kv_dim = nkv * HD, h0 = kvh * G + hg * GB;
    const int n = pos[t] + 1, c0 = split * chunk, c_end = min(n, c0 + chunk);
    const size_t row0 = (size_t)t * nh + h0; // output row of head g is row0 + g
    if (c0 >= n) { // nothing of this chunk is in t's context (only when splits > 1)
        for (int i = tid; i < GB * HD; i += SK_THREADS) o_part[((row0 + i / HD) * splits + split) * HD + i % HD] = 0.f;
        if (tid < GB) ml_part[((row0 + tid) * splits + split) * 2] = -FLT_MAX, ml_part[((row0 + tid) * splits + split) * 2 + 1] = 0.f;
        return;
    }
    const float scale = rsqrtf((float)HD);
    float qf[GB][8], acc[GB][8];
#pragma unroll
    for (int g = 0; g < GB; g++) {
        const float4 *qp = (const float4 *)(q + (row0 + g) * HD + dl * 8);
        const float4 a = qp[0], b = qp[1];
        qf[g][0] = a.x * scale, qf[g][1] = a.y * scale, qf[g][2] = a.z * scale, qf[g][3] = a.w * scale;
        qf[g][4] = b.x * scale, qf[g][5] = b.y * scale, qf[g][6] = b.z * scale, qf[g][7] = b.w * scale;
#pragma unroll
        for (int i = 0; i < 8; i++) acc[g][i] = 0.f;
    }
    if (tid < GB) m_s[tid] = -FLT_MAX, l_s[tid] = 0.f;
    const int32_t *tbl = bt + (size_t)t * max_blocks;
    const int ntiles = (c_end - c0 + TILE - 1) / TILE;
    sk_load_tile<HD>(kv_s, kv_s + SK_TILE_ELEMS, kc, vc, tbl, c0, min(TILE, c_end - c0), bs, kv_dim, kvh);
    cp_async_commit();
    for (int it = 0; it < ntiles; it++) {
        const int p0 = c0 + it * TILE, rows = min(TILE, c_end - p0), buf = it & 1;
        if (it + 1 < ntiles) { // the other stage was released by the barrier that ended the last tile
            const int p1 = p0 + TILE;
            uint16_t *nb = kv_s + (size_t)(buf ^ 1) * 2 * SK_TILE_ELEMS;
            sk_load_tile<HD>(nb, nb + SK_TILE_ELEMS, kc, vc, tbl, p1, min(TILE, c_end - p1), bs, kv_dim, kvh);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const uint16_t *ks = kv_s + (size_t)buf * 2 * SK_TILE_ELEMS, *vs = ks + SK_TILE_ELEMS;
        // (1) scores. A lane dots its 8 dims of RPL rows with the GB query heads:
        // LPR values per lane (row rr, head g at rr * 8 + g; heads >= GB are 0),
        // then a reduce-scatter over the LPR lanes of the row group (recursive
        // halving: LPR - 1 shuffles) leaves value dl, complete, in lane dl.
        // j0 is warp-uniform (the shuffles need every lane); rows j >= rows read
        // stale shared memory and are not stored.
        for (int j0 = warp * RSTEP; j0 < rows; j0 += SK_WARPS * RSTEP) {
            float v[LPR];
#pragma unroll
            for (int rr = 0; rr < RPL; rr++) {
                const int j = j0 + r_in * RPL + rr; // < TILE: TILE is a multiple of SK_WARPS * RSTEP
                float kf[8];
                bf16x8(*(const uint4 *)(ks + j * HD + dl * 8), kf);
#pragma unroll
                for (int g = 0; g < 8; g++) {
                    float a = 0.f;
                    if (g < GB)
#pragma unroll
                        for (int i = 0; i < 8; i++) a = fmaf(qf[g < GB ? g : 0][i], kf[i], a);
                    v[rr * 8 + g] = a;
                }
            }
#pragma unroll
            for (int step = 0; step < LOG_LPR; step++) { // linear counter: fully unrolled, v stays in registers
                const int o = (LPR / 2) >> step;
                const bool up = dl & o; // keeps the upper half, sends the lower one
#pragma unroll
                for (int i = 0; i < LPR / 2; i++) { // fixed trip count so that both loops unroll
                    if (i < o) {
                        const float send = up ? v[i] : v[i + o], keep = up ? v[i + o] : v[i];
                        v[i] = keep + __shfl_xor_sync(0xffffffffu, send, o);
                    }
                }
            }
            const int g = dl & 7, j = j0 + r_in * RPL + (dl >> 3);
            if (g < GB && j < rows) s_s[g * SP + j] = v[0];
        }
        __syncthreads();
        // (2) online softmax, one warp per head.
        for (int g = warp; g < GB; g += SK_WARPS) {
            const float m_old = m_s[g];
            float mx = -FLT_MAX;
            for (int j = lane; j < rows; j += 32) mx = fmaxf(mx, s_s[g * SP + j]);
            mx = warp_max(mx);
            const float nm = fmaxf(m_old, mx);
            float sum = 0.f;
            for (int j = lane; j < TILE; j += 32) {
                const float e = j < rows ? __expf(s_s[g * SP + j] - nm) : 0.f;
                s_s[g * SP + j] = e;
                sum += e;
            }
            sum = warp_sum(sum);
            if (lane == 0) {
                const float corr = __expf(m_old - nm); // 0 on the first tile (m_old = -FLT_MAX)
                c_s[g] = corr, l_s[g] = l_s[g] * corr + sum, m_s[g] = nm;
            }
        }
        __syncthreads();
        // (3) acc = acc * corr + p V over this warp's rows.
#pragma unroll
        for (int g = 0; g < GB; g++) {
            const float corr = c_s[g];
#pragma unroll
            for (int i = 0; i < 8; i++) acc[g][i] *= corr;
        }
        for (int j0 = warp * RPW; j0 < rows; j0 += SK_WARPS * RPW) {
            const int j = j0 + r_in;
            if (j < rows) {
                float vf[8];
                bf16x8(*(const uint4 *)(vs + j * HD + dl * 8), vf);
#pragma unroll
                for (int g = 0; g < GB; g++) {
                    const float p = s_s[g * SP + j];
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[g][i] = fmaf(p, vf[i], acc[g][i]);
                }
            }
        }
        __syncthreads(); // releases stage buf and s_s for the next tile
    }
    // The RPW row slots of a warp hold different rows: sum them into lanes 0 .. LPR-1.
#pragma unroll
    for (int o = LPR; o < 32; o <<= 1)
#pragma unroll
        for (int g = 0; g < GB; g++)
#pragma unroll
            for (int i = 0; i < 8; i++) acc[g][i] += __shfl_xor_sync(0xffffffffu, acc[g][i], o);
    // Then the warps, through shared memory (the K/V stages are free: every copy was
    // waited for and the loop ended with a barrier). red: [SK_WARPS][GB][HD] f32.
    float *red = (float *)sk_smem;
    if (lane < LPR) {
#pragma unroll
        for (int g = 0; g < GB; g++) {
            float4 *d = (float4 *)(red + (warp * GB + g) * HD + lane * 8);
            d[0] = make_float4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]);
            d[1] = make_float4(acc[g][4], acc[g][5], acc[g][6], acc[g][7]);
        }
    }
    __syncthreads();
    for (int i = tid; i < GB * HD; i += SK_THREADS) {
        const int g = i / HD, d = i % HD;
        float v = 0.f;
#pragma unroll
        for (int w = 0; w < SK_WARPS; w++) v += red[(w * GB + g) * HD + d];
        if (splits == 1) out[(row0 + g) * HD + d] = v / l_s[g];
        else o_part[((row0 + g) * splits + split) * HD + d] = v;
    }
    if (splits > 1 && tid < GB)
        ml_part[((row0 + tid) * splits + split) * 2] = m_s[tid], ml_part[((row0 + tid) * splits + split) * 2 + 1] = l_s[tid];
}

// One block per (token, head) row: out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s.
#define SKC_THREADS 128
__global__ void __launch_bounds__(SKC_THREADS)
    attention_combine_kernel(float *__restrict__ out, uint16_t *__restrict__ out_b, const float *__restrict__ o_part,
                             const float *__restrict__ ml_part, int splits, int hd) {
    extern __shared__ float w_s[]; // [splits] weights e^(m_s - M)
    __shared__ float red[SKC_THREADS / 32];
    pdl_wait(); // launched as a programmatic dependent of the split kernel: its parts are written
    const size_t row = blockIdx.x;
    const float *ml = ml_part + row * splits * 2;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    float mx = -FLT_MAX;
    for (int s = tid; s < splits; s += SKC_THREADS) mx = fmaxf(mx, ml[2 * s]);
    mx = warp_max(mx);
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    mx = red[0];
#pragma unroll
    for (int w = 1; w < SKC_THREADS / 32; w++) mx = fmaxf(mx, red[w]);
    __syncthreads(); // red is reused below
    float den = 0.f;
    for (int s = tid; s < splits; s += SKC_THREADS) {
        const float w = expf(ml[2 * s] - mx); // empty chunks: m = -FLT_MAX, l = 0 -> weight 0
        w_s[s] = w;
        den += w * ml[2 * s + 1];
    }
    den = warp_sum(den);
    if (lane == 0) red[warp] = den;
    __syncthreads();
    den = 0.f;
#pragma unroll
    for (int w = 0; w < SKC_THREADS / 32; w++) den += red[w];
    const float inv = 1.0f / den;
    const float *op = o_part + row * splits * hd;
    for (int d = tid; d < hd; d += SKC_THREADS) {
        float v = 0.f;
        for (int s = 0; s < splits; s++) v = fmaf(w_s[s], op[(size_t)s * hd + d], v);
        out[row * hd + d] = v * inv;
        if (out_b) out_b[row * hd + d] = to_bf(v * inv);
    }
}

// Launch plan of jk_attention_splitk: head groups of gb heads, tile rows, chunk
// positions, number of chunks; s_pre is the number before rounding to whole
// tiles (an upper bound of splits that only grows with max_ctx).
typedef struct {
    int gb, hgroups, tile, chunk, splits, s_pre;
} sk_plan;

static int sk_supported(int nh, int nkv, int hd) {
    return nkv > 0 && nh % nkv == 0 && (hd == 64 || hd == 128 || hd == 256);
}

static sk_plan sk_make_plan(int T, int nh, int nkv, int hd, int max_ctx) {
    sk_plan p;
    const int G = nh / nkv;
    p.gb = 1;
    for (int b = SK_MAX_GB; b >= 1; b--)
        if (G % b == 0) { p.gb = b; break; }
    p.hgroups = G / p.gb;
    p.tile = SK_TILE_ELEMS / hd;
    const long base = (long)T * nkv * p.hgroups;
    const int tiles = max_ctx > 0 ? (max_ctx + p.tile - 1) / p.tile : 1;
    const long want = (SK_TARGET_BLOCKS + base - 1) / base;
    const int most = (tiles + SK_MIN_TILES - 1) / SK_MIN_TILES;
    long s = want < most ? want : most;
    if (s > SK_MAX_SPLITS) s = SK_MAX_SPLITS;
    if (s < 1) s = 1;
    p.s_pre = (int)s;
    const int chunk_tiles = (tiles + p.s_pre - 1) / p.s_pre;
    p.chunk = chunk_tiles * p.tile;
    p.splits = (tiles + chunk_tiles - 1) / chunk_tiles;
    return p;
}

static size_t sk_ws_bytes(int splits, int T, int nh, int hd) {
    return splits > 1 ? sizeof(float) * (size_t)T * nh * splits * (hd + 2) : 0;
}

// Which split-K kernel a call takes: the tensor-core one (attn_decode.cu) for
// head sizes 64 and 128, the FP32 one above otherwise.
static int sk_use_mma(int kernel, int nh, int nkv, int hd) {
    if (!jk_attn_mma_supported(nh, nkv, hd)) return 0;
    return kernel == JK_ATTN_AUTO || kernel >= JK_ATTN_MMA;
}

extern "C" size_t jk_attention_ws_bytes(int max_T, int nh, int nkv, int hd, int max_ctx) {
    if (max_T <= 0 || !sk_supported(nh, nkv, hd)) return 0;
    size_t most = 0; // enough for every kernel jk_attention_splitk_with can be asked for
    for (int T = 1; T <= max_T; T++) { // T * splits is not monotone in T
        const sk_plan p = sk_make_plan(T, nh, nkv, hd, max_ctx);
        size_t b = sk_ws_bytes(p.s_pre, T, nh, hd);
        if (b > most) most = b;
        if (!jk_attn_mma_supported(nh, nkv, hd)) continue;
        for (int cfg = 0; cfg < JK_ATTN_MMA_CONFIGS; cfg++) {
            b = sk_ws_bytes(jk_attn_mma_splits(cfg, T, nh, nkv, hd, max_ctx), T, nh, hd);
            if (b > most) most = b;
        }
    }
    return most;
}

template <int HD, int GB>
static int sk_launch(float *out, float *o_part, float *ml_part, const float *q, const uint16_t *kc, const uint16_t *vc,
                     const int32_t *bt, int max_blocks, const int32_t *pos, int T, int nh, int nkv, int bs, const sk_plan *p,
                     cudaStream_t st) {
    const size_t smem = sk_smem_bytes(HD, GB);
    cudaError_t e = cudaFuncSetAttribute(attention_split_kernel<HD, GB>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return (int)e;
    const long blocks = (long)T * nkv * p->hgroups * p->splits;
    attention_split_kernel<HD, GB><<<(unsigned)blocks, SK_THREADS, smem, st>>>(
        out, o_part, ml_part, q, kc, vc, bt, max_blocks, pos, nh, nkv, bs, p->hgroups, p->chunk, p->splits);
    return (int)cudaGetLastError();
}

template <int HD>
static int sk_launch_hd(float *out, float *o_part, float *ml_part, const float *q, const uint16_t *kc, const uint16_t *vc,
                        const int32_t *bt, int max_blocks, const int32_t *pos, int T, int nh, int nkv, int bs,
                        const sk_plan *p, cudaStream_t st) {
#define SK_GB(n) \
    case n: return sk_launch<HD, n>(out, o_part, ml_part, q, kc, vc, bt, max_blocks, pos, T, nh, nkv, bs, p, st);
    switch (p->gb) {
        SK_GB(1) SK_GB(2) SK_GB(3) SK_GB(4) SK_GB(5) SK_GB(6) SK_GB(7) SK_GB(8)
    }
#undef SK_GB
    return (int)cudaErrorInvalidValue;
}

static int attention_then_bf16(float *out, uint16_t *out_b, const float *q, const uint16_t *kc, const uint16_t *vc,
                               const int32_t *bt, int max_blocks, const int32_t *pos, int T, int nh, int nkv, int hd,
                               int bs, void *s) {
    int rc = jk_attention(out, q, kc, vc, bt, max_blocks, pos, T, nh, nkv, hd, bs, s);
    if (!rc && out_b) rc = jk_f32_to_bf16(out_b, out, (size_t)T * nh * hd, s);
    return rc;
}

extern "C" int jk_attention_splitk_with(int kernel, float *out, uint16_t *out_b, const float *q, const uint16_t *kc, const uint16_t *vc,
                                        const int32_t *bt, int max_blocks, const int32_t *pos, int T, int nh, int nkv,
                                        int hd, int bs, float *ws, size_t ws_bytes, void *s) {
    if (T <= 0) return 0;
    // Paths that write no bf16 copy themselves: f32 out, then the rounding.
    if (!sk_supported(nh, nkv, hd)) return attention_then_bf16(out, out_b, q, kc, vc, bt, max_blocks, pos, T, nh, nkv, hd, bs, s);
    const int mma = sk_use_mma(kernel, nh, nkv, hd);
    const int cfg = kernel > JK_ATTN_MMA && kernel < JK_ATTN_MMA + JK_ATTN_MMA_CONFIGS ? kernel - JK_ATTN_MMA
                    : kernel == JK_ATTN_AUTO && mma                              ? jk_attn_mma_auto_cfg(T, nh, nkv, hd, max_blocks * bs)
                                                                                 : 0;
    const sk_plan p = sk_make_plan(T, nh, nkv, hd, max_blocks * bs);
    const int splits = mma ? jk_attn_mma_splits(cfg, T, nh, nkv, hd, max_blocks * bs) : p.splits;
    const size_t need = sk_ws_bytes(splits, T, nh, hd);
    if (need > ws_bytes || (need && !ws))
        return attention_then_bf16(out, out_b, q, kc, vc, bt, max_blocks, pos, T, nh, nkv, hd, bs, s);
    float *o_part = ws, *ml_part = ws ? ws + (size_t)T * nh * splits * hd : NULL;
    int rc;
    if (mma) rc = jk_attn_mma_run(cfg, out, out_b, o_part, ml_part, q, kc, vc, bt, max_blocks, pos, T, nh, nkv, hd, bs, splits, s);
    else switch (hd) {
    case 64: rc = sk_launch_hd<64>(out, o_part, ml_part, q, kc, vc, bt, max_blocks, pos, T, nh, nkv, bs, &p, ST(s)); break;
    case 128: rc = sk_launch_hd<128>(out, o_part, ml_part, q, kc, vc, bt, max_blocks, pos, T, nh, nkv, bs, &p, ST(s)); break;
    default: rc = sk_launch_hd<256>(out, o_part, ml_part, q, kc, vc, bt, max_blocks, pos, T, nh, nkv, bs, &p, ST(s)); break;
    }
    if (!rc && !mma && splits == 1 && out_b) rc = jk_f32_to_bf16(out_b, out, (size_t)T * nh * hd, s);
    if (rc || splits == 1) return rc;
    // w_s rounded up to whole 16-byte vectors: compute-sanitizer saw 12-byte
    // shared reads past splits floats (vectorised loads of the last weights).
    const size_t wbytes = sizeof(float) * (size_t)((splits + 3) & ~3);
    // As a programmatic dependent: its blocks launch while the split kernel
    // ends and wait for its parts (JANUS_PDL=0: a plain launch).
    return (int)pdl_launch(attention_combine_kernel, dim3((unsigned)((long)T * nh)), dim3(SKC_THREADS), ST(s),
                           pdl_enabled(), wbytes, out, out_b, (const float *)o_part, (const float *)ml_part, splits,
                           hd);
}

extern "C" int jk_attention_splitk(float *out, const float *q, const uint16_t *kc, const uint16_t *vc, const int32_t *bt,
                                   int max_blocks, const int32_t *pos, int T, int nh, int nkv, int hd, int bs, float *ws,
                                   size_t ws_bytes, void *s) {
    return jk_attention_splitk_with(JK_ATTN_AUTO, out, NULL, q, kc, vc, bt, max_blocks, pos, T, nh, nkv, hd, bs, ws, ws_bytes,
                                    s);
}

// ---- router, gather, combine --------------------------------------------------
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
    mx = warp_max(mx);
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < 8; j++)
        if (lane + 32 * j < E) sum += expf(v[j] - mx);
    sum = warp_sum(sum);
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

// One warp per token.
__global__ void router_kernel(int32_t *ids, float *w, const float *logits, int T, int E, int k, int renorm) {
    const int t = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (t >= T) return;
    router_warp_topk(ids + (size_t)t * k, w + (size_t)t * k, logits + (size_t)t * E, E, k, renorm, lane);
}
extern "C" int jk_router_topk(int32_t *ids, float *w, const float *logits, int T, int E, int k, int renorm, void *s) {
    if (T <= 0) return 0;
    if (E > 256) return (int)cudaErrorInvalidValue;
    router_kernel<<<(T + 3) / 4, 128, 0, ST(s)>>>(ids, w, logits, T, E, k, renorm);
    return (int)cudaGetLastError();
}

__global__ void gather_kernel(float *dst, const float *src, const int32_t *idx, int div, int H) {
    const int r = blockIdx.x;
    const float *sr = src + (size_t)(idx[r] / div) * H;
    for (int i = threadIdx.x; i < H; i += blockDim.x) dst[(size_t)r * H + i] = sr[i];
}
extern "C" int jk_gather_rows(float *dst, const float *src, const int32_t *idx, int div, int n, int H, void *s) {
    if (n <= 0) return 0;
    gather_kernel<<<n, 256, 0, ST(s)>>>(dst, src, idx, div, H);
    return (int)cudaGetLastError();
}

// As gather_kernel, rounding to bf16 (nearest even) on the way: H % 2 == 0.
__global__ void gather_bf16_kernel(__nv_bfloat162 *dst, const float2 *src, const int32_t *idx, int div, int H2) {
    const int r = blockIdx.x;
    const float2 *sr = src + (size_t)(idx[r] / div) * H2;
    for (int i = threadIdx.x; i < H2; i += blockDim.x) dst[(size_t)r * H2 + i] = __float22bfloat162_rn(sr[i]);
}
extern "C" int jk_gather_rows_bf16(uint16_t *dst, const float *src, const int32_t *idx, int div, int n, int H, void *s) {
    if (n <= 0) return 0;
    if (H % 2) return (int)cudaErrorInvalidValue;
    gather_bf16_kernel<<<n, 256, 0, ST(s)>>>((__nv_bfloat162 *)dst, (const float2 *)src, idx, div, H / 2);
    return (int)cudaGetLastError();
}

// Products and sums round one by one, as combine4 (dev_common.cuh): the same
// bits as jk_combine_add's sum for the same pairs.
__global__ void combine_kernel(float *out, const float *y, const int32_t *slot, const int32_t *ids, const float *w,
                               const int32_t *lead, int k, int H) {
    const int t = blockIdx.x;
    int order[16], n = 0;
    for (int j = 0; j < k; j++)
        if (!lead || lead[(size_t)t * k + j]) order[n++] = j;
    for (int a = 0; a < n; a++) // k <= 16: insertion by expert id
        for (int b = a + 1; b < n; b++)
            if (ids[(size_t)t * k + order[b]] < ids[(size_t)t * k + order[a]]) {
                const int tmp = order[a]; order[a] = order[b]; order[b] = tmp;
            }
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        float acc = 0.f;
        for (int q = 0; q < n; q++) {
            const int j = order[q];
            const float v = __fmul_rn(y[(size_t)slot[(size_t)t * k + j] * H + i], lead ? 1.f : w[(size_t)t * k + j]);
            acc = q == 0 ? v : __fadd_rn(acc, v);
        }
        out[(size_t)t * H + i] = acc;
    }
}
extern "C" int jk_combine(float *out, const float *y, const int32_t *slot, const int32_t *ids, const float *w,
                          const int32_t *lead, int T, int k, int H, void *s) {
    if (T <= 0) return 0;
    if (k > 16 || (!w && !lead)) return (int)cudaErrorInvalidValue;
    combine_kernel<<<T, 256, 0, ST(s)>>>(out, y, slot, ids, w, lead, k, H);
    return (int)cudaGetLastError();
}

// ---- greedy choice ---------------------------------------------------------------
__global__ void argmax_kernel(int32_t *tok, float *lp, const float *logits, int V) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const int r = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const float *l = logits + (size_t)r * V;
    float best = -FLT_MAX;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        if (l[i] > best) best = l[i], bi = i; // ascending i per thread: first maximum kept
    for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ob > best || (ob == best && oi < bi)) best = ob, bi = oi;
    }
    if (lane == 0) sv[warp] = best, si[warp] = bi;
    __syncthreads();
    if (warp == 0) {
        best = lane < nw ? sv[lane] : -FLT_MAX;
        bi = lane < nw ? si[lane] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1) {
            const float ob = __shfl_xor_sync(0xffffffffu, best, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ob > best || (ob == best && oi < bi)) best = ob, bi = oi;
        }
        if (lane == 0) sv[0] = best, si[0] = bi;
    }
    __syncthreads();
    const float mx = sv[0];
    float sum = 0.f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) sum += __expf(l[i] - mx);
    sum = warp_sum(sum);
    __syncthreads();
    if (lane == 0) sv[warp] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.f;
        for (int w = 0; w < nw; w++) s += sv[w];
        tok[r] = si[0] == 0x7fffffff ? 0 : si[0]; // a row of -inf: token 0, as the CPU's argmax
        lp[r] = -logf(s); // logits[tok] - max = 0
    }
}
extern "C" int jk_argmax_logprob(int32_t *tok, float *lp, const float *logits, int R, int V, void *s) {
    if (R <= 0) return 0;
    argmax_kernel<<<R, 256, 0, ST(s)>>>(tok, lp, logits, V);
    return (int)cudaGetLastError();
}

__global__ void f32_to_bf16_kernel(uint16_t *d, const float *s, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) d[i] = to_bf(s[i]);
}
extern "C" int jk_f32_to_bf16(uint16_t *dst, const float *src, size_t n, void *s) {
    if (!n) return 0;
    f32_to_bf16_kernel<<<(unsigned)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096), 256, 0, ST(s)>>>(dst, src, n);
    return (int)cudaGetLastError();
}

__global__ void silu_mul_split_kernel(float *y, const float *gu, int N) {
    const int t = blockIdx.x;
    for (int n = threadIdx.x; n < N; n += blockDim.x) {
        const float g = gu[(size_t)t * 2 * N + n], u = gu[(size_t)t * 2 * N + N + n];
        y[(size_t)t * N + n] = g / (1.0f + __expf(-g)) * u;
    }
}
extern "C" int jk_silu_mul_split(float *y, const float *gu, int T, int N, void *s) {
    if (T <= 0) return 0;
    silu_mul_split_kernel<<<T, 256, 0, ST(s)>>>(y, gu, N);
    return (int)cudaGetLastError();
}
