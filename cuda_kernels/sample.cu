// cuda_kernels/sample.cu: token choice on the device (see sample.h), the twin
// of janus_sample (src/engine/sample.c) and cpu_logprob (src/cpu/kernels.c).
//
// One block of 1024 threads per row; the row is re-read from global memory (L2)
// by each pass instead of being sorted, so no scratch memory is needed:
//   1. max logit, its first index (greedy), and the last element of the CPU's
//      sort order (logit descending, index ascending: cmp_desc);
//   2. the log-softmax normaliser (raw logits) and the total sampling mass;
//   3. sampled rows only:
//      - no top-k / top-p: the CPU walks the tokens in index order; a tiled
//        block scan finds the first index whose running mass exceeds the draw;
//      - otherwise the CPU walks the sorted order. We never sort: the element
//        at which a running total (a count for top-k, the mass for top-p and
//        for the draw) first reaches a threshold is found by radix descent
//        over a 64-bit key that realises cmp_desc's total order (float bits
//        made monotone, then ~index), 8 bits per pass, with a histogram of
//        (count, mass) per digit; a pass whose chosen digit holds one element
//        ends the search. The top-k cut, then the top-p cut within it, then
//        the draw within that: the order in which the CPU applies them.
//
// Masses are sums of p = expf(logit * (1/T) - max), computed with the CPU's
// float operations (__fmul_rn / __fsub_rn: no FMA contraction), held in 64-bit
// fixed point (p * 2^(62 - bits(V)), exact for p >= ~2^-40) so that every sum
// is exact and independent of the summation order: a row gives the same token
// whatever the grid, and the only difference from the CPU's double sums is
// expf's last bit (CUDA expf: <= 2 ulp), which matters only when the draw (or
// the top-p threshold) falls within ~1e-7 of a boundary of the cumulative
// distribution. Logits are assumed not NaN.
#include <cuda_runtime.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "sample_gpu.h"

#define ST(s) ((cudaStream_t)(s))

typedef unsigned long long u64;

enum { NT = 1024, NW = NT / 32 }; // threads per block (one block per row); warps
static_assert(NW == 32, "the block reductions assume 32 warps of 32");
static_assert(sizeof(jk_sample_params) == 32, "jk_sample_params: the layout sample.h promises");

// ---- the RNG: a twin of splitmix64 / janus_rng_uniform in src/engine/sample.c.
// Both must change together (tests/test_cuda_sample.c compares the tokens).
__device__ __forceinline__ u64 splitmix64(u64 x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
__device__ __forceinline__ float rng_uniform(u64 seed, u64 id, u64 step) {
    u64 x = splitmix64(seed);
    x = splitmix64(x ^ id);
    x = splitmix64(x ^ step);
    return (float)(x >> 40) * (1.0f / 16777216.0f);
}

// Sort key: a larger key comes first in cmp_desc's order (logit descending,
// then index ascending). -0 is +0 (equal logits on the CPU, ordered by index).
__device__ __forceinline__ u64 order_key(float v, int i) {
    uint32_t b = __float_as_uint(v == 0.f ? 0.f : v);
    b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return ((u64)b << 32) | (u64)(0xffffffffu - (uint32_t)i);
}
__device__ __forceinline__ int key_index(u64 k) { return (int)(0xffffffffu - (uint32_t)k); }

// Sampling weight of a logit in fixed point: the CPU's p = expf(v * inv_t - mx)
// (two roundings, as in C without contraction) times scale.
__device__ __forceinline__ u64 weight(float v, float inv_t, float mx, double scale) {
    const float p = expf(__fsub_rn(__fmul_rn(v, inv_t), mx));
    return __double2ull_rn((double)p * scale);
}

struct smem_t {
    uint32_t cnt[256]; // histogram of one descent pass: elements per digit
    u64 mass[256];     //   their mass
    int idx[256];      //   an element's index (the element when cnt is 1)
    float rf[NW];      // per-warp partials of the reductions
    int ri[NW];
    u64 ru[NW], ru2[NW];
    double rd[NW];
    int pick_d;        // the digit a descent pass chose,
    u64 pick_c, pick_m; // and the count and mass of all elements before it
    int found;
};

__device__ __forceinline__ u64 warp_sum_u64(u64 v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_f64(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ u64 warp_min_u64(u64 v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const u64 w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w < v ? w : v;
    }
    return v;
}
// (value, index): the larger value, the lower index on ties.
__device__ __forceinline__ void warp_argmax(float &v, int &i) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
    }
}
// Inclusive prefix sum over the lanes of a warp.
__device__ __forceinline__ u64 warp_scan_u64(u64 v, int lane) {
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const u64 w = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += w;
    }
    return v;
}

enum { BY_COUNT, MASS_GE, MASS_GT };

// Radix descent: the first element, in cmp_desc order, whose running total
// (inclusive) satisfies `running >= T` (BY_COUNT: counting elements; MASS_GE:
// their mass) or `running > T` (MASS_GT). Returns its index; *G = the running
// mass up to and including it. Must be called by the whole block; T must be
// reachable (the last element satisfies it), else the last element is returned.
__device__ int descend(smem_t &s, const float *l, int V, float inv_t, float mx, double scale, int mode, double T,
                       u64 *G) {
    const int tid = threadIdx.x, lane = tid & 31;
    u64 prefix = 0, above_c = 0, above_m = 0; // key bits fixed so far; count and mass of elements before them
    for (int bits = 0;; bits += 8) {
        for (int b = tid; b < 256; b += NT) s.cnt[b] = 0, s.mass[b] = 0;
        __syncthreads();
        const int sh = 56 - bits;
        for (int i = tid; i < V; i += NT) {
            const float v = l[i];
            const u64 k = order_key(v, i);
            if (bits && (k >> (64 - bits)) != prefix) continue;
            const int d = (int)(k >> sh) & 255;
            atomicAdd(&s.cnt[d], 1u);
            const u64 w = weight(v, inv_t, mx, scale);
            if (w) atomicAdd(&s.mass[d], w);
            s.idx[d] = i; // any writer; the only one when cnt[d] == 1
        }
        __syncthreads();
        if (tid < 32) {
            // Lane L holds digits 255 - 8L .. 248 - 8L: lanes in descending digit order.
            u64 tc = 0, tm = 0;
            for (int j = 0; j < 8; j++) tc += s.cnt[255 - 8 * lane - j], tm += s.mass[255 - 8 * lane - j];
            const u64 ic = warp_scan_u64(tc, lane), im = warp_scan_u64(tm, lane);
            u64 cc = above_c + ic - tc, cm = above_m + im - tm; // before this lane's digits
            int hit = -1, last = -1;
            u64 hc = 0, hm = 0, lc = 0, lm = 0;
            for (int j = 0; j < 8; j++) {
                const int d = 255 - 8 * lane - j;
                const uint32_t n = s.cnt[d];
                if (!n) continue;
                const u64 nc = cc + n, nm = cm + s.mass[d];
                const bool ok = mode == BY_COUNT ? (double)nc >= T : mode == MASS_GE ? (double)nm >= T : (double)nm > T;
                if (ok && hit < 0) hit = d, hc = cc, hm = cm;
                last = d, lc = cc, lm = cm;
                cc = nc, cm = nm;
            }
            const unsigned hits = __ballot_sync(0xffffffffu, hit >= 0);
            const unsigned nonempty = __ballot_sync(0xffffffffu, last >= 0);
            if (hits) {
                if (lane == __ffs(hits) - 1) s.pick_d = hit, s.pick_c = hc, s.pick_m = hm;
            } else if (lane == 31 - __clz(nonempty)) { // not reachable: the last element
                s.pick_d = last, s.pick_c = lc, s.pick_m = lm;
            }
        }
        __syncthreads();
        const int d = s.pick_d;
        above_c = s.pick_c, above_m = s.pick_m;
        prefix = (prefix << 8) | (u64)d;
        const uint32_t n = s.cnt[d];
        const int i = s.idx[d];
        const u64 g = above_m + s.mass[d];
        __syncthreads(); // everyone has read the bins before they are cleared / reused
        if (n == 1 || bits == 56) { // keys are unique: 64 bits always end with one element
            *G = g;
            return i;
        }
    }
}

// Index-order walk (the CPU's order without top-k / top-p): the first index
// whose running mass exceeds u; V - 1 if none (u >= the total).
__device__ int scan_first_gt(smem_t &s, const float *l, int V, float inv_t, float mx, double scale, double u) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    u64 carry = 0;
    for (int base = 0; base < V; base += NT) {
        const int i = base + tid;
        const u64 w = i < V ? weight(l[i], inv_t, mx, scale) : 0;
        const u64 x = warp_scan_u64(w, lane);
        if (lane == 31) s.ru[warp] = x;
        __syncthreads();
        if (warp == 0) s.ru2[lane] = warp_scan_u64(s.ru[lane], lane);
        __syncthreads();
        const u64 incl = carry + x + (warp ? s.ru2[warp - 1] : 0); // exact: integers
        const bool hit = i < V && (double)incl > u;
        if (hit && !((double)(incl - w) > u)) s.found = i; // exactly one thread: the running total is monotone
        carry += s.ru2[NW - 1];
        if (__syncthreads_or(hit)) return s.found;
    }
    return V - 1;
}

__global__ void __launch_bounds__(NT) sample_kernel(int32_t *tok, float *lp, const float *logits,
                                                    const jk_sample_params *params, int V) {
    __shared__ smem_t s;
    const int r = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float *l = logits + (size_t)r * V;
    const jk_sample_params P = params[r];

    // 1. max and argmax (the first maximum, as the CPU's argmax), smallest key.
    float best = -INFINITY;
    int bi = INT_MAX;
    u64 kmin = ~0ull;
    for (int i = tid; i < V; i += NT) { // ascending i per thread: the first maximum is kept
        const float v = l[i];
        if (bi == INT_MAX || v > best) best = v, bi = i;
        const u64 k = order_key(v, i);
        kmin = k < kmin ? k : kmin;
    }
    warp_argmax(best, bi);
    kmin = warp_min_u64(kmin);
    if (lane == 0) s.rf[warp] = best, s.ri[warp] = bi, s.ru[warp] = kmin;
    __syncthreads();
    if (warp == 0) {
        best = s.rf[lane], bi = s.ri[lane], kmin = s.ru[lane];
        warp_argmax(best, bi);
        kmin = warp_min_u64(kmin);
        if (lane == 0) s.rf[0] = best, s.ri[0] = bi, s.ru[0] = kmin;
    }
    __syncthreads();
    const float mxr = s.rf[0];
    const int amax = s.ri[0];
    const int last = key_index(s.ru[0]); // the last element in cmp_desc order
    __syncthreads();

    // 2. log-softmax normaliser (cpu_logprob: max starts at -FLT_MAX) and the
    //    total sampling mass (janus_sample: mx over logit / T, from -FLT_MAX).
    const bool greedy = !(P.temperature > 0.f);
    const float mxl = fmaxf(-FLT_MAX, mxr);
    const float inv_t = greedy ? 0.f : __fdiv_rn(1.0f, P.temperature);
    const float mx = greedy ? 0.f : fmaxf(-FLT_MAX, __fmul_rn(mxr, inv_t));
    const double scale = ldexp(1.0, 62 - (32 - __clz(V))); // V * scale < 2^62: no sum overflows
    double es = 0;
    u64 S = 0;
    for (int i = tid; i < V; i += NT) {
        const float v = l[i];
        es += (double)expf(__fsub_rn(v, mxl));
        if (!greedy) S += weight(v, inv_t, mx, scale);
    }
    es = warp_sum_f64(es);
    S = warp_sum_u64(S);
    if (lane == 0) s.rd[warp] = es, s.ru[warp] = S;
    __syncthreads();
    if (warp == 0) {
        es = warp_sum_f64(s.rd[lane]);
        S = warp_sum_u64(s.ru[lane]);
        if (lane == 0) s.rd[0] = es, s.ru[0] = S;
    }
    __syncthreads();
    es = s.rd[0];
    S = s.ru[0];
    __syncthreads();

    // 3. the token.
    int t = amax;
    if (!greedy) {
        const float u = rng_uniform((u64)P.seed, (u64)P.id, (u64)P.step); // step: int to uint64, as on the CPU
        const bool top_k = P.top_k > 0 && P.top_k < V, top_p = P.top_p < 1.f;
        if (!top_k && !top_p) {
            t = S ? scan_first_gt(s, l, V, inv_t, mx, scale, (double)u * (double)S) : V - 1;
        } else {
            // The kept prefix of the sorted order ends at `cut`; Sc is its mass.
            int cut = last;
            u64 Sc = S;
            if (top_k) cut = descend(s, l, V, inv_t, mx, scale, BY_COUNT, (double)P.top_k, &Sc);
            // The CPU's cumulative probability is NaN when the mass is 0: no top-p cut then.
            if (top_p && Sc) cut = descend(s, l, V, inv_t, mx, scale, MASS_GE, (double)P.top_p * (double)Sc, &Sc);
            u64 g;
            t = Sc ? descend(s, l, V, inv_t, mx, scale, MASS_GT, (double)u * (double)Sc, &g) : cut;
        }
    }
    if (tid == 0) {
        tok[r] = t;
        lp[r] = (float)((double)l[t] - (double)mxl - log(es));
    }
}

extern "C" int jk_sample(int32_t *tok, float *lp, const float *logits, const jk_sample_params *params, int R, int V,
                         void *stream) {
    if (R <= 0 || V <= 0) return 0;
    sample_kernel<<<R, NT, 0, ST(stream)>>>(tok, lp, logits, params, V);
    return (int)cudaGetLastError();
}
