// cuda_kernels/layers.cu: per-layer kernels of the forward pass (see layers.h).
// Row-parallel and simple: one block or one warp per row; the heavy lifting
// (weights) is in moe_ffn.cu's grouped GEMV, which also serves the dense
// projections (one "expert" holding all rows).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <float.h>

#include "layers.h"

#define ST(s) ((cudaStream_t)(s))

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

// ---- router, gather, combine --------------------------------------------------
// One warp per token: softmax over E logits, k rounds of argmax (ties to the
// lower index), optional renormalisation.
__global__ void router_kernel(int32_t *ids, float *w, const float *logits, int T, int E, int k, int renorm) {
    const int t = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (t >= T) return;
    const float *l = logits + (size_t)t * E;
    float mx = -FLT_MAX;
    for (int e = lane; e < E; e += 32) mx = fmaxf(mx, l[e]);
    mx = warp_max(mx);
    float sum = 0.f;
    for (int e = lane; e < E; e += 32) sum += expf(l[e] - mx);
    sum = warp_sum(sum);
    uint32_t taken[8] = {0, 0, 0, 0, 0, 0, 0, 0}; // bit e%32 of word e/32 (E <= 256), per lane for its e's
    float wsum = 0.f;
    for (int j = 0; j < k; j++) {
        float best = -FLT_MAX;
        int bi = 0x7fffffff;
        for (int e = lane; e < E; e += 32)
            if (!(taken[e >> 5] >> (e & 31) & 1) && (l[e] > best || (l[e] == best && e < bi))) best = l[e], bi = e;
        for (int o = 16; o > 0; o >>= 1) {
            const float ob = __shfl_xor_sync(0xffffffffu, best, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ob > best || (ob == best && oi < bi)) best = ob, bi = oi;
        }
        if ((bi & 31) == lane) taken[bi >> 5] |= 1u << (bi & 31);
        const float p = expf(best - mx) / sum;
        if (lane == 0) ids[(size_t)t * k + j] = bi, w[(size_t)t * k + j] = p;
        wsum += p;
    }
    if (renorm && lane == 0)
        for (int j = 0; j < k; j++) w[(size_t)t * k + j] /= wsum;
}
extern "C" int jk_router_topk(int32_t *ids, float *w, const float *logits, int T, int E, int k, int renorm, void *s) {
    if (T <= 0) return 0;
    if (E > 256) return (int)cudaErrorInvalidValue;
    router_kernel<<<(T + 7) / 8, 256, 0, ST(s)>>>(ids, w, logits, T, E, k, renorm);
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

__global__ void combine_kernel(float *out, const float *y, const int32_t *slot, const int32_t *ids, const float *w, int k,
                               int H) {
    const int t = blockIdx.x;
    int order[16];
    for (int j = 0; j < k; j++) order[j] = j;
    for (int a = 0; a < k; a++) // k <= 16: insertion by expert id
        for (int b = a + 1; b < k; b++)
            if (ids[(size_t)t * k + order[b]] < ids[(size_t)t * k + order[a]]) {
                const int tmp = order[a]; order[a] = order[b]; order[b] = tmp;
            }
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        float acc = 0.f;
        for (int q = 0; q < k; q++) {
            const int j = order[q];
            const float v = y[(size_t)slot[(size_t)t * k + j] * H + i] * w[(size_t)t * k + j];
            acc = q == 0 ? v : acc + v;
        }
        out[(size_t)t * H + i] = acc;
    }
}
extern "C" int jk_combine(float *out, const float *y, const int32_t *slot, const int32_t *ids, const float *w, int T,
                          int k, int H, void *s) {
    if (T <= 0) return 0;
    if (k > 16) return (int)cudaErrorInvalidValue;
    combine_kernel<<<T, 256, 0, ST(s)>>>(out, y, slot, ids, w, k, H);
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
        tok[r] = si[0];
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
