// cuda_kernels/fused.cu: fused kernels of the decode step (see fused.h). The
// arithmetic of each is that of the unfused kernels in layers.cu, in the same
// order, so a fused and an unfused step agree to the last bit where cuBLAS
// does.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <float.h>

#include "dev_common.cuh"
#include "fused.h"

#define ST(s) ((cudaStream_t)(s))

// ---- RMSNorm, one block per row --------------------------------------------------
#define RN_THREADS 256
// Four elements v of a row times inv times their weights ww (4 bf16), rounded
// to bf16 (4 bf16); their f32 values to *o when o is not NULL.
__device__ __forceinline__ uint2 norm4(float4 v, uint2 ww, float inv, float4 *o) {
    float4 r;
    r.x = bf((uint16_t)(ww.x & 0xffff)) * (v.x * inv);
    r.y = bf((uint16_t)(ww.x >> 16)) * (v.y * inv);
    r.z = bf((uint16_t)(ww.y & 0xffff)) * (v.z * inv);
    r.w = bf((uint16_t)(ww.y >> 16)) * (v.w * inv);
    if (o) *o = r;
    uint2 b;
    b.x = (uint32_t)to_bf(r.x) | (uint32_t)to_bf(r.y) << 16;
    b.y = (uint32_t)to_bf(r.z) | (uint32_t)to_bf(r.w) << 16;
    return b;
}

__global__ void __launch_bounds__(RN_THREADS) rmsnorm_rows_kernel(float *y, uint16_t *yb, const float *x,
                                                                   const uint16_t *w, int n, float eps) {
    __shared__ float red[RN_THREADS / 32];
    const int row = blockIdx.x, tid = threadIdx.x;
    const float4 *xr = (const float4 *)(x + (size_t)row * n);
    const int n4 = n / 4;
    float ss = 0.f;
    for (int i = tid; i < n4; i += RN_THREADS) {
        const float4 v = xr[i];
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    ss = warp_sum(ss);
    if ((tid & 31) == 0) red[tid >> 5] = ss;
    __syncthreads();
    float tot = 0.f;
#pragma unroll
    for (int i = 0; i < RN_THREADS / 32; i++) tot += red[i];
    const float inv = rsqrtf(tot / (float)n + eps);
    const uint2 *w4 = (const uint2 *)w; // 4 bf16
    for (int i = tid; i < n4; i += RN_THREADS) {
        float4 o;
        const uint2 b = norm4(xr[i], w4[i], inv, &o);
        if (y) ((float4 *)(y + (size_t)row * n))[i] = o;
        if (yb) ((uint2 *)(yb + (size_t)row * n))[i] = b;
    }
}

extern "C" int jk_rmsnorm_rows(float *y, uint16_t *yb, const float *x, const uint16_t *w, int R, int n, float eps,
                               void *s) {
    if (R <= 0) return 0;
    if (n % 4) return (int)cudaErrorInvalidValue;
    rmsnorm_rows_kernel<<<R, RN_THREADS, 0, ST(s)>>>(y, yb, x, w, n, eps);
    return (int)cudaGetLastError();
}

// ---- q|k|v: bias, per-head norm, RoPE, KV cache ------------------------------------
// One warp per (token, head) of q, k and v; lane holds elements lane + 32 j, so
// with hd % 64 == 0 the RoPE partner (d + hd/2) of each element is in the same lane.
#define QKV_WARPS 8
__global__ void __launch_bounds__(QKV_WARPS * 32)
    qkv_rope_store_kernel(float *q_out, uint16_t *kc, uint16_t *vc, const float *qkv, const uint16_t *bq,
                          const uint16_t *bk, const uint16_t *bv, const uint16_t *q_norm, const uint16_t *k_norm,
                          const float *inv_freq, const int32_t *pos, const int32_t *bt, int max_blocks, int T, int nh,
                          int nkv, int hd, int bs, float eps) {
    const int HS = nh + 2 * nkv, lane = threadIdx.x & 31;
    const long item = (long)blockIdx.x * QKV_WARPS + (threadIdx.x >> 5);
    if (item >= (long)T * HS) return;
    const int t = (int)(item / HS), s = (int)(item % HS);
    const int kind = s < nh ? 0 : s < nh + nkv ? 1 : 2, h = kind == 0 ? s : kind == 1 ? s - nh : s - nh - nkv;
    const float *src = qkv + (size_t)t * HS * hd + (size_t)s * hd;
    const uint16_t *b = kind == 0 ? bq : kind == 1 ? bk : bv;
    const uint16_t *nw = kind == 0 ? q_norm : kind == 1 ? k_norm : NULL;
    const int J = hd / 32;
    float v[8];
#pragma unroll
    for (int j = 0; j < 8; j++)
        if (j < J) {
            v[j] = src[lane + 32 * j];
            if (b) v[j] += bf(b[(size_t)h * hd + lane + 32 * j]); // as add_bias_kernel
        }
    if (nw) { // as rmsnorm_kernel: lane-strided sum, then the warp's
        float ss = 0.f;
#pragma unroll
        for (int j = 0; j < 8; j++)
            if (j < J) ss += v[j] * v[j];
        ss = warp_sum(ss);
        const float inv = rsqrtf(ss / (float)hd + eps);
#pragma unroll
        for (int j = 0; j < 8; j++)
            if (j < J) v[j] = bf(nw[lane + 32 * j]) * (v[j] * inv);
    }
    const int p = pos[t];
    if (kind < 2) { // RoPE, rotate_half: (d, d + hd/2)
        const int J2 = J / 2;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            if (j >= J2) break;
            const int d = lane + 32 * j;
            float sn, cs;
            sincosf((float)p * inv_freq[d], &sn, &cs);
            const float a = v[j], c = v[j + J2];
            v[j] = a * cs - c * sn;
            v[j + J2] = c * cs + a * sn;
        }
    }
    if (kind == 0) {
        float *o = q_out + ((size_t)t * nh + h) * hd;
#pragma unroll
        for (int j = 0; j < 8; j++)
            if (j < J) o[lane + 32 * j] = v[j];
        return;
    }
    const size_t kvd = (size_t)nkv * hd;
    const size_t slot = (size_t)bt[(size_t)t * max_blocks + p / bs] * bs + p % bs;
    uint16_t *o = (kind == 1 ? kc : vc) + slot * kvd + (size_t)h * hd;
#pragma unroll
    for (int j = 0; j < 8; j++)
        if (j < J) o[lane + 32 * j] = to_bf(v[j]);
}

extern "C" int jk_qkv_rope_store(float *q_out, uint16_t *kc, uint16_t *vc, const float *qkv, const uint16_t *bq,
                                 const uint16_t *bk, const uint16_t *bv, const uint16_t *q_norm, const uint16_t *k_norm,
                                 const float *inv_freq, const int32_t *pos, const int32_t *bt, int max_blocks, int T,
                                 int nh, int nkv, int hd, int bs, float eps, void *s) {
    if (T <= 0) return 0;
    if (hd % 64 || hd > 256 || nh <= 0 || nkv <= 0) return (int)cudaErrorInvalidValue;
    const long items = (long)T * (nh + 2 * nkv);
    qkv_rope_store_kernel<<<(unsigned)((items + QKV_WARPS - 1) / QKV_WARPS), QKV_WARPS * 32, 0, ST(s)>>>(
        q_out, kc, vc, qkv, bq, bk, bv, q_norm, k_norm, inv_freq, pos, bt, max_blocks, T, nh, nkv, hd, bs, eps);
    return (int)cudaGetLastError();
}

// ---- combine + residual ------------------------------------------------------------
// (combine_order and combine4: dev_common.cuh, shared with the exchange's
// MoE-side sums in xchg.cu)

#define CB_THREADS 128
__global__ void __launch_bounds__(CB_THREADS) combine_add_kernel(float *x, const float *y, const int32_t *slot,
                                                                  const int32_t *ids, const float *w,
                                                                  const int32_t *lead, int k, int H) {
    const int t = blockIdx.x, c4 = blockIdx.y * CB_THREADS + threadIdx.x;
    __shared__ int s_row[16];
    __shared__ float s_w[16];
    const size_t b = (size_t)t * k;
    const int n = combine_order(s_row, s_w, ids + b, slot + b, w ? w + b : NULL, lead ? lead + b : NULL, k);
    if (c4 * 4 >= H) return;
    const float4 acc = combine4(y, s_row, s_w, n, H, c4);
    float4 *xr = (float4 *)(x + (size_t)t * H) + c4;
    float4 o = *xr;
    o.x += acc.x, o.y += acc.y, o.z += acc.z, o.w += acc.w;
    *xr = o;
}

extern "C" int jk_combine_add(float *x, const float *y, const int32_t *slot, const int32_t *ids, const float *w,
                              const int32_t *lead, int T, int k, int H, void *s) {
    if (T <= 0) return 0;
    if (k > 16 || k <= 0 || H % 4 || (!w && !lead)) return (int)cudaErrorInvalidValue;
    dim3 grid((unsigned)T, (unsigned)((H / 4 + CB_THREADS - 1) / CB_THREADS));
    combine_add_kernel<<<grid, CB_THREADS, 0, ST(s)>>>(x, y, slot, ids, w, lead, k, H);
    return (int)cudaGetLastError();
}

// combine + residual, then the next layer's input norm: one block of
// RN_THREADS per token. Element i4 (a float4) of the row is thread i4 % RN_THREADS's,
// as in rmsnorm_rows_kernel, and each element's sum is combine_add_kernel's, so
// x and yb equal those of jk_combine_add + jk_rmsnorm_rows to the bit.
#define CBN_MAX_V 4 // float4s per thread: H <= 4 * 4 * RN_THREADS
__global__ void __launch_bounds__(RN_THREADS) combine_add_norm_kernel(float *x, uint16_t *yb, const float *y,
                                                                       const int32_t *slot, const int32_t *ids,
                                                                       const float *w, const int32_t *lead, int k,
                                                                       int H, const uint16_t *nw, float eps) {
    const int t = blockIdx.x, tid = threadIdx.x, n4 = H / 4;
    __shared__ int s_row[16];
    __shared__ float s_w[16];
    __shared__ float red[RN_THREADS / 32];
    const size_t o = (size_t)t * k;
    const int n = combine_order(s_row, s_w, ids + o, slot + o, w ? w + o : NULL, lead ? lead + o : NULL, k);
    float4 *xr = (float4 *)(x + (size_t)t * H);
    float4 xo[CBN_MAX_V];
    float ss = 0.f;
#pragma unroll
    for (int u = 0; u < CBN_MAX_V; u++) {
        const int c4 = tid + u * RN_THREADS;
        xo[u] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (c4 >= n4) continue;
        const float4 acc = combine4(y, s_row, s_w, n, H, c4);
        float4 v = xr[c4];
        v.x += acc.x, v.y += acc.y, v.z += acc.z, v.w += acc.w;
        xr[c4] = v;
        xo[u] = v;
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    ss = warp_sum(ss);
    if ((tid & 31) == 0) red[tid >> 5] = ss;
    __syncthreads();
    float tot = 0.f;
#pragma unroll
    for (int i = 0; i < RN_THREADS / 32; i++) tot += red[i];
    const float inv = rsqrtf(tot / (float)H + eps);
    const uint2 *w4 = (const uint2 *)nw;
#pragma unroll
    for (int u = 0; u < CBN_MAX_V; u++) {
        const int c4 = tid + u * RN_THREADS;
        if (c4 >= n4) continue;
        ((uint2 *)(yb + (size_t)t * H))[c4] = norm4(xo[u], w4[c4], inv, NULL);
    }
}

extern "C" int jk_combine_add_norm(float *x, uint16_t *yb, const float *y, const int32_t *slot, const int32_t *ids,
                                   const float *w, const int32_t *lead, int T, int k, int H, const uint16_t *norm_w,
                                   float eps, void *s) {
    if (T <= 0) return 0;
    if (k > 16 || k <= 0 || H % 4 || H > 4 * CBN_MAX_V * RN_THREADS || (!w && !lead)) return (int)cudaErrorInvalidValue;
    combine_add_norm_kernel<<<T, RN_THREADS, 0, ST(s)>>>(x, yb, y, slot, ids, w, lead, k, H, norm_w, eps);
    return (int)cudaGetLastError();
}

// ---- pairs grouped by expert -------------------------------------------------------
// Warp 0 only (all 32 lanes): v[0..E) becomes its exclusive prefix sum, copied
// to seg[0..E); seg[E] = the total, which lane 0 returns.
__device__ __forceinline__ int warp_exclusive_scan(int *v, int32_t *seg, int E) {
    const int lane = threadIdx.x & 31;
    int carry = 0;
    for (int b = 0; b < E; b += 32) {
        const int e = b + lane, c = e < E ? v[e] : 0;
        int x = c;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const int u = __shfl_up_sync(0xffffffffu, x, o);
            if (lane >= o) x += u;
        }
        if (e < E) v[e] = carry + x - c, seg[e] = carry + x - c;
        carry += __shfl_sync(0xffffffffu, x, 31);
    }
    if (lane == 0) seg[E] = carry;
    return carry;
}

#define GP_THREADS 1024
#define GP_MAX_E JK_GROUP_MAX_E
__global__ void __launch_bounds__(GP_THREADS) group_pairs_kernel(const int32_t *topi, int P, int E, int32_t *seg,
                                                                  int32_t *order, int32_t *slot,
                                                                  unsigned long long *counts) {
    __shared__ int cnt[GP_MAX_E + 1];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nw = GP_THREADS / 32;
    for (int e = tid; e <= E; e += GP_THREADS) cnt[e] = 0;
    __syncthreads();
    for (int p = tid; p < P; p += GP_THREADS) atomicAdd(&cnt[topi[p]], 1);
    __syncthreads();
    if (counts)
        for (int e = tid; e < E; e += GP_THREADS)
            if (cnt[e]) counts[e] += (unsigned long long)cnt[e];
    __syncthreads();
    if (warp == 0) { // exclusive scan, 32 experts at a time
        const int total = warp_exclusive_scan(cnt, seg, E);
        if (lane == 0) cnt[E] = total;
    }
    __syncthreads();
    // Stable placement: warp w takes experts w, w + 32, ...; pairs in order, 32 at a time.
    for (int e = warp; e < E; e += nw) {
        int base = cnt[e];
        if (cnt[e + 1] == base) continue; // no pairs
        for (int p0 = 0; p0 < P; p0 += 32) {
            const int p = p0 + lane;
            const bool m = p < P && topi[p] == e;
            const unsigned bal = __ballot_sync(0xffffffffu, m);
            if (m) {
                const int at = base + __popc(bal & ((1u << lane) - 1u));
                order[at] = p, slot[p] = at;
            }
            base += __popc(bal);
            if (base == cnt[e + 1]) break;
        }
    }
}

// Decode-sized (P <= 1024 pairs, E <= 256): one pair per thread. Within a warp
// the lanes of one expert find each other (match.any), their leader writes the
// warp's count of that expert; per expert, a prefix over the 32 warps; the
// experts' exclusive scan; then pair p goes to seg[e] + (pairs of e in earlier
// warps) + (its rank among e's lanes of its warp): stable, one pass.
#define GPF_MAX_E 256
__global__ void __launch_bounds__(GP_THREADS) group_pairs_small_kernel(const int32_t *topi, int P, int E, int32_t *seg,
                                                                        int32_t *order, int32_t *slot,
                                                                        unsigned long long *counts) {
    __shared__ int wc[32][GPF_MAX_E]; // pairs of expert e in warp w, then their offset
    __shared__ int base[GPF_MAX_E + 1];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int i = tid; i < 32 * GPF_MAX_E; i += GP_THREADS) (&wc[0][0])[i] = 0;
    const int e = tid < P ? topi[tid] : -1;
    __syncthreads();
    const unsigned peers = __match_any_sync(0xffffffffu, e);
    const int rank = __popc(peers & ((1u << lane) - 1u));
    if (e >= 0 && rank == 0) wc[warp][e] = __popc(peers);
    __syncthreads();
    if (tid < E) {
        int s = 0;
        for (int w = 0; w < 32; w++) {
            const int c = wc[w][tid];
            wc[w][tid] = s, s += c;
        }
        base[tid] = s; // total of expert tid, scanned below
        if (counts && s) counts[tid] += (unsigned long long)s;
    }
    __syncthreads();
    if (warp == 0) warp_exclusive_scan(base, seg, E);
    __syncthreads();
    if (e >= 0) {
        const int at = base[e] + wc[warp][e] + rank;
        order[at] = tid, slot[tid] = at;
    }
}

extern "C" int jk_group_pairs(const int32_t *topi, int P, int E, int32_t *seg, int32_t *order, int32_t *slot,
                              unsigned long long *counts, void *s) {
    if (E <= 0 || E > GP_MAX_E) return (int)cudaErrorInvalidValue;
    if (P < 0) return (int)cudaErrorInvalidValue;
    if (P <= GP_THREADS && E <= GPF_MAX_E)
        group_pairs_small_kernel<<<1, GP_THREADS, 0, ST(s)>>>(topi, P, E, seg, order, slot, counts);
    else
        group_pairs_kernel<<<1, GP_THREADS, 0, ST(s)>>>(topi, P, E, seg, order, slot, counts);
    return (int)cudaGetLastError();
}

// Prompt-sized: chunks of GPL_CHUNK pairs, one warp each, in three launches.
// 1. each chunk's pairs per expert (bc [chunk][E]); 2. one block turns them
// into each chunk's first grouped position per expert (experts in order, then
// chunks in order) and seg; 3. each chunk places its pairs in order, 32 at a
// time (match.any ranks the lanes of one expert). Stable, as the kernels above.
#define GPL_CHUNK 1024
__global__ void __launch_bounds__(32) group_pairs_count_kernel(const int32_t *__restrict__ topi, int P, int E,
                                                                int32_t *__restrict__ bc) {
    extern __shared__ int gpl_cnt[];
    const int lane = threadIdx.x, p0 = blockIdx.x * GPL_CHUNK;
    for (int e = lane; e < E; e += 32) gpl_cnt[e] = 0;
    __syncwarp();
    for (int r = 0; r < GPL_CHUNK / 32; r++) {
        const int p = p0 + r * 32 + lane;
        const int e = p < P ? topi[p] : -1;
        const unsigned peers = __match_any_sync(0xffffffffu, e);
        if (e >= 0 && (peers & ((1u << lane) - 1u)) == 0) gpl_cnt[e] += __popc(peers);
        __syncwarp();
    }
    for (int e = lane; e < E; e += 32) bc[(size_t)blockIdx.x * E + e] = gpl_cnt[e];
}

__global__ void __launch_bounds__(GP_THREADS) group_pairs_scan_kernel(int32_t *bc, int nb, int E, int32_t *seg,
                                                                       unsigned long long *counts) {
    __shared__ int tot[GP_MAX_E + 1];
    const int tid = threadIdx.x;
    for (int e = tid; e < E; e += GP_THREADS) {
        int run = 0;
        for (int b = 0; b < nb; b++) {
            const int v = bc[(size_t)b * E + e];
            bc[(size_t)b * E + e] = run, run += v;
        }
        tot[e] = run;
        if (counts && run) counts[e] += (unsigned long long)run;
    }
    __syncthreads();
    if (tid < 32) warp_exclusive_scan(tot, seg, E);
    __syncthreads();
    for (int e = tid; e < E; e += GP_THREADS)
        for (int b = 0; b < nb; b++) bc[(size_t)b * E + e] += tot[e];
}

__global__ void __launch_bounds__(32) group_pairs_place_kernel(const int32_t *__restrict__ topi, int P, int E,
                                                                const int32_t *__restrict__ bc, int32_t *__restrict__ order,
                                                                int32_t *__restrict__ slot) {
    extern __shared__ int gpl_cnt[];
    const int lane = threadIdx.x, p0 = blockIdx.x * GPL_CHUNK;
    for (int e = lane; e < E; e += 32) gpl_cnt[e] = bc[(size_t)blockIdx.x * E + e];
    __syncwarp();
    for (int r = 0; r < GPL_CHUNK / 32; r++) {
        const int p = p0 + r * 32 + lane;
        const int e = p < P ? topi[p] : -1;
        const unsigned peers = __match_any_sync(0xffffffffu, e);
        const int rank = __popc(peers & ((1u << lane) - 1u));
        if (e >= 0) {
            const int at = gpl_cnt[e] + rank;
            order[at] = p, slot[p] = at;
        }
        __syncwarp();
        if (e >= 0 && rank == 0) gpl_cnt[e] += __popc(peers);
        __syncwarp();
    }
}

extern "C" size_t jk_group_pairs_ws_bytes(int P, int E) {
    return (size_t)4 * (size_t)(((P > 0 ? P : 0) + GPL_CHUNK - 1) / GPL_CHUNK) * (size_t)(E > 0 ? E : 0);
}

extern "C" int jk_group_pairs_large(const int32_t *topi, int P, int E, int32_t *seg, int32_t *order, int32_t *slot,
                                    unsigned long long *counts, void *ws, size_t ws_bytes, void *s) {
    if (E <= 0 || E > GP_MAX_E || P < 0) return (int)cudaErrorInvalidValue;
    if (ws_bytes < jk_group_pairs_ws_bytes(P, E) || (P > 0 && !ws)) return (int)cudaErrorInvalidValue;
    const int nb = (P + GPL_CHUNK - 1) / GPL_CHUNK;
    int32_t *bc = (int32_t *)ws;
    if (nb) group_pairs_count_kernel<<<nb, 32, 4 * E, ST(s)>>>(topi, P, E, bc);
    group_pairs_scan_kernel<<<1, GP_THREADS, 0, ST(s)>>>(bc, nb, E, seg, counts);
    if (nb) group_pairs_place_kernel<<<nb, 32, 4 * E, ST(s)>>>(topi, P, E, bc, order, slot);
    return (int)cudaGetLastError();
}

// ---- greedy choice over a wide vocabulary -------------------------------------------
// One block of 1024 threads per row, one pass: every thread keeps the first
// maximum of its elements and the sum of exp(l - its max), rescaled when the
// max grows; the block merges (max, sum, index) pairs. Ties go to the lower index.
#define AM_THREADS 1024
struct am_acc {
    float m, s;
    int i;
};
__device__ __forceinline__ void am_add(am_acc &a, float x, int i) {
    if (x > a.m) a.s = a.s * __expf(a.m - x) + 1.f, a.m = x, a.i = i;
    else a.s += __expf(x - a.m);
}
__device__ __forceinline__ am_acc am_merge(am_acc a, am_acc b) {
    am_acc r;
    r.m = fmaxf(a.m, b.m);
    r.s = a.s * __expf(a.m - r.m) + b.s * __expf(b.m - r.m);
    r.i = a.m > b.m ? a.i : b.m > a.m ? b.i : min(a.i, b.i);
    return r;
}
template <bool VEC>
__global__ void __launch_bounds__(AM_THREADS) argmax_rows_kernel(int32_t *tok, float *lp, const float *logits, int V) {
    __shared__ am_acc red[AM_THREADS / 32];
    const int r = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float *l = logits + (size_t)r * V;
    am_acc a = {-FLT_MAX, 0.f, 0x7fffffff};
    if (VEC) {
        const float4 *l4 = (const float4 *)l;
        for (int i = tid; i < V / 4; i += AM_THREADS) {
            const float4 v = l4[i];
            am_add(a, v.x, 4 * i), am_add(a, v.y, 4 * i + 1), am_add(a, v.z, 4 * i + 2), am_add(a, v.w, 4 * i + 3);
        }
    } else {
        for (int i = tid; i < V; i += AM_THREADS) am_add(a, l[i], i);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        am_acc b;
        b.m = __shfl_xor_sync(0xffffffffu, a.m, o), b.s = __shfl_xor_sync(0xffffffffu, a.s, o);
        b.i = __shfl_xor_sync(0xffffffffu, a.i, o);
        a = am_merge(a, b);
    }
    if (lane == 0) red[warp] = a;
    __syncthreads();
    if (tid == 0) {
        am_acc t = red[0];
        for (int w = 1; w < AM_THREADS / 32; w++) t = am_merge(t, red[w]);
        tok[r] = t.i == 0x7fffffff ? 0 : t.i; // a row of -inf: token 0, as the CPU's argmax
        lp[r] = -logf(t.s);                   // logits[tok] - max = 0
    }
}

extern "C" int jk_argmax_rows(int32_t *tok, float *lp, const float *logits, int R, int V, void *s) {
    if (R <= 0) return 0;
    if (V % 4 == 0) argmax_rows_kernel<true><<<R, AM_THREADS, 0, ST(s)>>>(tok, lp, logits, V);
    else argmax_rows_kernel<false><<<R, AM_THREADS, 0, ST(s)>>>(tok, lp, logits, V);
    return (int)cudaGetLastError();
}
