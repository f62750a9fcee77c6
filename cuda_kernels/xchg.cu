// cuda_kernels/xchg.cu: the exchange's routing on the GPU (see xchg.h): one
// block turns the handshake counts and the schedule into each pair's
// destination (attention side) or the grouping and return addresses of the
// rows it serves (MoE side); row kernels then move rows straight into the
// peers' IPC-mapped buffers.
//
// The routing block, in order: seg[a, s] (thread per expert: its stream of
// rows cut by the slots' shares, as route() in comm/exchange.c) and the rows
// each attention rank sends each MoE rank (atomics); then the
// positions, all prefix sums done as block scans (a thread a contiguous
// chunk, a warp scan of the chunk sums), so no thread walks a long list; and
// on the attention side a stable multisplit of the pairs by expert (chunks of
// one block: a warp's equal experts by __match_any_sync, per-warp histograms
// in shared memory, a running count per expert), which gives each pair its
// index among this rank's pairs of its expert, hence its slot and row.
#include <cuda_runtime.h>
#include <limits.h>
#include <stdint.h>

#include "dev_common.cuh"
#include "xchg.h"

#define XT 256         // threads of the routing block
#define NW (XT / 32)   // its warps
#define FULL 0xffffffffu
#define MAX_E 1024     // per-warp histograms of the multisplit: (NW + 1) * E int32 of shared memory

// Scratch in the plan's workspace (int32 units).
typedef struct {
    int32_t *seg, *ram, *x, *posm, *offm, *y, *gb, *in_off, *offatt;
} route_ws;

__host__ __device__ static size_t route_carve(uintptr_t base, int S, int A, int M, route_ws *w) {
    size_t o = 0;
#define TAKE(f, count) (w->f = (int32_t *)(base + o), o += (sizeof(int32_t) * (size_t)(count) + 15) & ~(size_t)15)
    TAKE(seg, (size_t)A * S), TAKE(ram, (size_t)A * M), TAKE(x, S + 1), TAKE(posm, S), TAKE(offm, M);
    TAKE(y, (size_t)A * S + 1), TAKE(gb, (size_t)A * S + 1), TAKE(in_off, A), TAKE(offatt, A);
#undef TAKE
    return o;
}

// out[i] = f(0) + .. + f(i-1) for i <= N (out[N]: the total); every thread calls it.
template <typename F>
__device__ static void block_scan(int N, F f, int32_t *out, int32_t *sh) {
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    const int c = (N + XT - 1) / XT, b = tid * c < N ? tid * c : N, e = b + c < N ? b + c : N;
    int sum = 0;
    for (int i = b; i < e; i++) sum += f(i);
    int v = sum;
    for (int o = 1; o < 32; o <<= 1) {
        const int t = __shfl_up_sync(FULL, v, o);
        if (lane >= o) v += t;
    }
    if (lane == 31) sh[w] = v;
    __syncthreads();
    if (tid == 0) {
        int acc = 0;
        for (int k = 0; k < NW; k++) {
            const int t = sh[k];
            sh[k] = acc, acc += t;
        }
        out[N] = acc;
    }
    __syncthreads();
    int run = sh[w] + v - sum;
    for (int i = b; i < e; i++) out[i] = run, run += f(i);
    __syncthreads();
}

__global__ void __launch_bounds__(XT) route_kernel(jk_xchg_route_args a) {
    extern __shared__ int32_t smem[]; // hist [NW, E], run [E] (attention side)
    __shared__ int32_t sh[NW];
    route_ws w;
    route_carve((uintptr_t)a.ws, a.S, a.A, a.M, &w);
    const int E = a.E, S = a.S, A = a.A, M = a.M, tid = threadIdx.x;
    const int32_t *rep_off = a.rep_off, *rep_rank = a.rep_rank, *rs_off = a.rs_off, *rs_slot = a.rs_slot;
    int32_t *seg = w.seg, *ram = w.ram;
    for (int i = tid; i < A * M; i += XT) ram[i] = 0;
    __syncthreads();
    // seg[a, s]: expert e's stream of rows (attention ranks in order) cut by its slots' shares.
    for (int e = tid; e < E; e += XT) {
        int64_t P0 = 0;
        for (int ar = 0; ar < A; ar++) {
            const int64_t C = a.cnt[(size_t)ar * E + e];
            int64_t S0 = 0;
            for (int s = rep_off[e]; s < rep_off[e + 1]; s++) {
                const int64_t sh_s = a.share[s];
                const int64_t lo = P0 > S0 ? P0 : S0, hi = P0 + C < S0 + sh_s ? P0 + C : S0 + sh_s;
                const int v = hi > lo ? (int)(hi - lo) : 0;
                seg[(size_t)ar * S + s] = v;
                if (v) atomicAdd(&ram[ar * M + rep_rank[s]], v);
                S0 += sh_s;
            }
            P0 += C;
        }
    }
    __syncthreads();

    if (a.ai >= 0) {
        const int ai = a.ai;
        const int32_t *sg = seg + (size_t)ai * S;
        // x: this rank's rows over the rank-CSR order (ranks ascending, then
        // slots ascending = experts ascending): the layout of its return
        // buffer, and, relative to each rank's start, of its part of that
        // rank's receive buffer.
        block_scan(S, [&](int k) { return sg[rs_slot[k]]; }, w.x, sh);
        for (int k = tid; k < S; k += XT) {
            const int s = rs_slot[k];
            w.posm[s] = w.x[k] - w.x[rs_off[rep_rank[s]]];
        }
        for (int m = tid; m < M; m += XT) {
            int o = 0;
            for (int b = 0; b < ai; b++) o += ram[b * M + m];
            w.offm[m] = o; // ai's rows start after those of attention ranks before it
        }
        int32_t *hist = smem, *run = smem + NW * E;
        for (int e = tid; e < E; e += XT) run[e] = 0;
        __syncthreads();
        const int lane = tid & 31, wp = tid >> 5;
        for (int base = 0; base < a.P; base += XT) {
            for (int i = tid; i < NW * E; i += XT) hist[i] = 0;
            __syncthreads();
            const int q = base + tid, e = q < a.P ? a.ids[q] : -1;
            const unsigned peers = __match_any_sync(FULL, e);
            const int rk = __popc(peers & ((1u << lane) - 1));
            if (e >= 0 && rk == 0) hist[wp * E + e] = __popc(peers);
            __syncthreads();
            if (e >= 0) {
                int j = run[e] + rk; // pairs of this rank with expert e before q
                for (int v = 0; v < wp; v++) j += hist[v * E + e];
                int s = rep_off[e], lo = 0;
                for (; s < rep_off[e + 1] - 1; s++) {
                    const int n = sg[s];
                    if (j < lo + n) break;
                    lo += n;
                }
                const int m = rep_rank[s], r = w.posm[s] + j - lo;
                a.dst_m[q] = m;
                a.dst_row[q] = w.offm[m] + r;
                a.ret_row[q] = w.x[rs_off[m]] + r;
            }
            __syncthreads();
            for (int e2 = tid; e2 < E; e2 += XT) {
                int t = 0;
                for (int v = 0; v < NW; v++) t += hist[v * E + e2];
                run[e2] += t;
            }
            __syncthreads();
        }
    }

    if (a.mi >= 0) {
        const int mi = a.mi, k0 = rs_off[mi], nm = rs_off[mi + 1] - k0;
        for (int ar = tid; ar < A; ar += XT) {
            int o = 0, o2 = 0;
            for (int b = 0; b < ar; b++) o += ram[b * M + mi];
            for (int q = 0; q < mi; q++) o2 += ram[ar * M + q];
            w.in_off[ar] = o;  // ar's rows in the receive buffer
            w.offatt[ar] = o2; // this rank's rows in ar's return buffer
        }
        // y: each attention rank's rows here, slot by slot (its part of the
        // receive buffer); gb: the grouped order (slot-major, then rank).
        block_scan(A * nm, [&](int t) { return seg[(size_t)(t / nm) * S + rs_slot[k0 + t % nm]]; }, w.y, sh);
        block_scan(A * nm, [&](int t) { return seg[(size_t)(t % A) * S + rs_slot[k0 + t / A]]; }, w.gb, sh);
        for (int j = tid; j <= a.n_loc; j += XT) a.lseg[j] = w.gb[a.lseg_k[j] * A];
        if (tid == 0) {
            a.n_rows[0] = w.gb[A * nm];
            a.served[0] += w.gb[A * nm];
        }
        const int lane = tid & 31, wp = tid >> 5;
        for (int t = wp; t < A * nm; t += NW) { // warp per (slot, attention rank) segment
            const int k = t / A, ar = t % A, n = seg[(size_t)ar * S + rs_slot[k0 + k]], g0 = w.gb[t];
            const int p = w.y[ar * nm + k] - w.y[ar * nm];
            for (int r = lane; r < n; r += 32) {
                a.perm[g0 + r] = w.in_off[ar] + p + r;
                a.out_a[g0 + r] = ar;
                a.out_row[g0 + r] = w.offatt[ar] + p + r;
            }
        }
    }
}

extern "C" size_t jk_xchg_ws_bytes(int E, int S, int A, int M) {
    if (E > MAX_E) return 0;
    route_ws w;
    return route_carve(0, S, A, M, &w);
}

extern "C" int jk_xchg_route(const jk_xchg_route_args *a, void *stream) {
    if (a->E > MAX_E) return (int)cudaErrorInvalidValue;
    const size_t smem = a->ai >= 0 ? sizeof(int32_t) * (NW + 1) * (size_t)a->E : 0;
    route_kernel<<<1, XT, smem, (cudaStream_t)stream>>>(*a);
    return (int)cudaGetLastError();
}

// One row of H floats, by the block (16-byte accesses when both ends allow).
__device__ __forceinline__ static void copy_row(float *dst, const float *src, int H) {
    if (((H & 3) == 0) && (((uintptr_t)dst | (uintptr_t)src) & 15) == 0) {
        const float4 *s4 = (const float4 *)src;
        float4 *d4 = (float4 *)dst;
        for (int i = threadIdx.x; i < H / 4; i += blockDim.x) d4[i] = s4[i];
    } else {
        for (int i = threadIdx.x; i < H; i += blockDim.x) dst[i] = src[i];
    }
}

__global__ void send_rows_kernel(float *const *peer, size_t base, const float *x, const int32_t *dst_m,
                                 const int32_t *dst_row, int K, int H) {
    const int q = blockIdx.x;
    copy_row(peer[dst_m[q]] + (base + (size_t)dst_row[q]) * H, x + (size_t)(q / K) * H, H);
}

// dst[g] = src[idx[g]], or src[src_row[idx[g]]] through the deduplicated
// rows' index (src_row non-NULL); g < *n (n non-NULL).
__global__ void gather_rows_kernel(float *dst, const float *src, const int32_t *src_row, const int32_t *idx,
                                   const int32_t *n, int H) {
    const int g = blockIdx.x;
    if (n && g >= *n) return;
    const int r = src_row ? src_row[idx[g]] : idx[g];
    copy_row(dst + (size_t)g * H, src + (size_t)r * H, H);
}

__global__ void return_rows_kernel(float *const *peer, size_t base, const float *y, const int32_t *out_a,
                                   const int32_t *out_row, const int32_t *n, int H) {
    const int g = blockIdx.x;
    if (g >= *n) return;
    copy_row(peer[out_a[g]] + (base + (size_t)out_row[g]) * H, y + (size_t)g * H, H);
}

#define ROW_THREADS 128

extern "C" int jk_xchg_send_rows(float *const *peer, size_t base, const float *x, const int32_t *dst_m,
                                 const int32_t *dst_row, int K, int P, int H, void *stream) {
    if (P <= 0) return 0;
    send_rows_kernel<<<P, ROW_THREADS, 0, (cudaStream_t)stream>>>(peer, base, x, dst_m, dst_row, K, H);
    return (int)cudaGetLastError();
}

extern "C" int jk_xchg_gather_rows(float *dst, const float *src, const int32_t *idx, const int32_t *n, int n_max, int H,
                                   void *stream) {
    if (n_max <= 0) return 0;
    gather_rows_kernel<<<n_max, ROW_THREADS, 0, (cudaStream_t)stream>>>(dst, src, NULL, idx, n, H);
    return (int)cudaGetLastError();
}

extern "C" int jk_xchg_return_rows(float *const *peer, size_t base, const float *y, const int32_t *out_a,
                                   const int32_t *out_row, const int32_t *n, int n_max, int H, void *stream) {
    if (n_max <= 0) return 0;
    return_rows_kernel<<<n_max, ROW_THREADS, 0, (cudaStream_t)stream>>>(peer, base, y, out_a, out_row, n, H);
    return (int)cudaGetLastError();
}

// ---- decode rows once per (token, MoE rank) ----------------------------------

extern "C" size_t jk_xchg_dedup_ws_bytes(int T, int M) {
    return sizeof(int32_t) * ((size_t)T + 1) * (size_t)(M > 0 ? M : 1);
}

// Block m: the region start of this rank's rows in MoE rank m's receive
// buffer (the smallest dst_row of its pairs there), the tokens with a pair
// there (a scan over the tokens), their rows.
__global__ void __launch_bounds__(XT) dedup_kernel(const int32_t *dst_m, const int32_t *dst_row, int T, int K, int M,
                                                   int32_t *tok_dst, int64_t *rows_out, int32_t *ws) {
    __shared__ int32_t sh[NW];
    __shared__ int32_t start;
    const int tid = threadIdx.x, P = T * K, m = blockIdx.x;
    int32_t *scan = ws + (size_t)m * (T + 1);
    if (tid == 0) start = INT_MAX;
    __syncthreads();
    int lo = INT_MAX;
    for (int q = tid; q < P; q += XT)
        if (dst_m[q] == m && dst_row[q] < lo) lo = dst_row[q];
    if (lo != INT_MAX) atomicMin(&start, lo);
    auto has = [&](int t) {
        int h = 0;
        for (int j = 0; j < K; j++) h |= dst_m[(size_t)t * K + j] == m;
        return h;
    };
    block_scan(T, has, scan, sh); // its __syncthreads also publish start
    for (int t = tid; t < T; t += XT) tok_dst[(size_t)t * M + m] = has(t) ? start + scan[t] : -1;
    if (tid == 0 && rows_out) atomicAdd((unsigned long long *)rows_out, (unsigned long long)scan[T]);
}

extern "C" int jk_xchg_dedup(const int32_t *dst_m, const int32_t *dst_row, int T, int K, int M, int32_t *tok_dst,
                             int64_t *rows_out, void *ws, void *stream) {
    if (T <= 0 || M <= 0) return 0;
    dedup_kernel<<<M, XT, 0, (cudaStream_t)stream>>>(dst_m, dst_row, T, K, M, tok_dst, rows_out, (int32_t *)ws);
    return (int)cudaGetLastError();
}

__global__ void send_tokens_kernel(float *const *peer, size_t base, const float *x, const int32_t *tok_dst, int M,
                                   int H) {
    const int b = blockIdx.x, r = tok_dst[b];
    if (r < 0) return;
    copy_row(peer[b % M] + (base + (size_t)r) * H, x + (size_t)(b / M) * H, H);
}

// Pair q's token row (its token's, at its MoE rank) where the MoE rank looks
// for q. With sums (hdr non-NULL): q's rank r among its token's pairs bound to
// the same MoE rank (ascending expert id, as the combine sums) places q's row
// there and its weight in the token row's header, r == 0 (the lead) pads the
// rest with -1, and lead[q] = (r == 0).
__global__ void send_index_kernel(int32_t *const *peer_idx, int32_t *const *peer_hdr, size_t base,
                                  const int32_t *dst_m, const int32_t *dst_row, const int32_t *tok_dst,
                                  const int32_t *ids, const float *w, int32_t *lead, int K, int M, int P) {
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= P) return;
    const int m = dst_m[q], t = q / K, jq = q - t * K;
    const int row = tok_dst[(size_t)t * M + m];
    peer_idx[m][base + (size_t)dst_row[q]] = row;
    if (!peer_hdr) return;
    const int32_t *tid = ids + (size_t)t * K, *tm = dst_m + (size_t)t * K;
    const int id = ids[q];
    int r = 0, n = 0;
    for (int j = 0; j < K; j++) {
        r += tm[j] == m && (tid[j] < id || (tid[j] == id && j < jq));
        n += tm[j] == m;
    }
    lead[q] = r == 0;
    int32_t *h = peer_hdr[m] + (base + (size_t)row) * 2 * K;
    h[r] = dst_row[q];
    h[K + r] = __float_as_int(w[q]);
    if (r == 0)
        for (int e = n; e < K; e++) h[e] = -1;
}

extern "C" int jk_xchg_send_tokens(float *const *peer, int32_t *const *peer_idx, int32_t *const *peer_hdr, size_t base,
                                   const float *x, const int32_t *tok_dst, const int32_t *dst_m,
                                   const int32_t *dst_row, const int32_t *ids, const float *w, int32_t *lead, int T,
                                   int K, int M, int H, void *stream) {
    if (T <= 0 || M <= 0) return 0;
    if (peer_hdr && (K > JK_XCHG_SUM_MAX_K || !ids || !w || !lead)) return (int)cudaErrorInvalidValue;
    const int P = T * K;
    send_index_kernel<<<(P + 255) / 256, 256, 0, (cudaStream_t)stream>>>(peer_idx, peer_hdr, base, dst_m, dst_row,
                                                                          tok_dst, ids, w, lead, K, M, P);
    send_tokens_kernel<<<T * M, ROW_THREADS, 0, (cudaStream_t)stream>>>(peer, base, x, tok_dst, M, H);
    return (int)cudaGetLastError();
}

// Host-routed steps: entry e = {MoE rank m, row, K receive rows, K pair
// indices} -> m's header at row: the rows, then w of each pair (0 past them).
__global__ void put_headers_kernel(int32_t *const *peer_hdr, const int32_t *ent, const float *w, int n, int K) {
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n) return;
    const int32_t *x = ent + (size_t)e * (2 + 2 * K);
    int32_t *h = peer_hdr[x[0]] + (size_t)x[1] * 2 * K;
    for (int j = 0; j < K; j++) {
        const int q = x[2 + K + j];
        h[j] = x[2 + j];
        h[K + j] = q >= 0 ? __float_as_int(w[q]) : 0;
    }
}

extern "C" int jk_xchg_put_headers(int32_t *const *peer_hdr, const int32_t *ent, const float *w, int n, int K,
                                   void *stream) {
    if (n <= 0) return 0;
    if (K > JK_XCHG_SUM_MAX_K) return (int)cudaErrorInvalidValue;
    put_headers_kernel<<<(n + 127) / 128, 128, 0, (cudaStream_t)stream>>>(peer_hdr, ent, w, n, K);
    return (int)cudaGetLastError();
}

// ---- outputs back once per (token, MoE rank): the MoE rank's weighted sums ----

__global__ void inverse_perm_kernel(int32_t *inv, const int32_t *perm, const int32_t *n, int n_max) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g < (n ? *n : n_max)) inv[perm[g]] = g;
}

// Block g: if grouped row g is its token's lead here, the weighted sum of the
// token's outputs on this rank (combine4: the attention side's own order and
// rounding) to the lead's return row; other rows send nothing.
__global__ void __launch_bounds__(ROW_THREADS) return_sums_kernel(float *const *peer, size_t base, const float *y,
                                                                  const int32_t *perm, const int32_t *src_row,
                                                                  const int32_t *hdr, const int32_t *inv,
                                                                  const int32_t *out_a, const int32_t *out_row,
                                                                  const int32_t *n, int K, int H) {
    __shared__ int s_row[JK_XCHG_SUM_MAX_K];
    __shared__ float s_w[JK_XCHG_SUM_MAX_K];
    __shared__ int s_n;
    const int g = blockIdx.x;
    if (n && g >= *n) return;
    const int r = perm[g];
    const int32_t *h = hdr + (size_t)src_row[r] * 2 * K;
    if (h[0] != r) return; // (the whole block alike)
    const int j = threadIdx.x;
    if (j < K) {
        const int pr = h[j];
        if (pr >= 0) s_row[j] = inv[pr], s_w[j] = __int_as_float(h[K + j]);
    }
    if (j == 0) {
        int c = 0;
        for (int e = 0; e < K; e++) c += h[e] >= 0;
        s_n = c;
    }
    __syncthreads();
    const int cnt = s_n;
    const size_t at = out_row ? (size_t)out_row[g] : (size_t)src_row[r]; // (NULL: the token row itself)
    float4 *dst = (float4 *)(peer[out_a ? out_a[g] : 0] + (base + at) * H);
    for (int c4 = threadIdx.x; c4 < H / 4; c4 += blockDim.x) dst[c4] = combine4(y, s_row, s_w, cnt, H, c4);
}

extern "C" int jk_xchg_return_sums(float *const *peer, size_t base, const float *y, const int32_t *perm,
                                   const int32_t *src_row, const int32_t *hdr, int32_t *inv, const int32_t *out_a,
                                   const int32_t *out_row, const int32_t *n, int n_max, int K, int H, void *stream) {
    if (n_max <= 0) return 0;
    if (K > JK_XCHG_SUM_MAX_K || H % 4) return (int)cudaErrorInvalidValue;
    inverse_perm_kernel<<<(n_max + 255) / 256, 256, 0, (cudaStream_t)stream>>>(inv, perm, n, n_max);
    return_sums_kernel<<<n_max, ROW_THREADS, 0, (cudaStream_t)stream>>>(peer, base, y, perm, src_row, hdr, inv, out_a,
                                                                         out_row, n, K, H);
    return (int)cudaGetLastError();
}

extern "C" int jk_xchg_gather_rows_via(float *dst, const float *src, const int32_t *src_row, const int32_t *idx,
                                       const int32_t *n, int n_max, int H, void *stream) {
    if (n_max <= 0) return 0;
    gather_rows_kernel<<<n_max, ROW_THREADS, 0, (cudaStream_t)stream>>>(dst, src, src_row, idx, n, H);
    return (int)cudaGetLastError();
}

// out[o] = sum over j in [off[o], off[o+1]) of y[gi[j]] * w[j], in j order,
// each product and sum rounded on its own (janus_combine's and combine4's
// operations). A block per output row; every row has at least one term.
__global__ void sum_rows_kernel(float *out, const float *y, const int32_t *off, const int32_t *gi, const float *w,
                                int H) {
    const int o = blockIdx.x, j0 = off[o], j1 = off[o + 1];
    for (int d = threadIdx.x; d < H; d += blockDim.x) {
        float acc = __fmul_rn(y[(size_t)gi[j0] * H + d], w[j0]);
        for (int j = j0 + 1; j < j1; j++) acc = __fadd_rn(acc, __fmul_rn(y[(size_t)gi[j] * H + d], w[j]));
        out[(size_t)o * H + d] = acc;
    }
}

extern "C" int jk_xchg_sum_rows(float *out, const float *y, const int32_t *off, const int32_t *gi, const float *w,
                                int n_out, int H, void *stream) {
    if (n_out <= 0) return 0;
    if (H <= 0) return (int)cudaErrorInvalidValue;
    sum_rows_kernel<<<n_out, ROW_THREADS, 0, (cudaStream_t)stream>>>(out, y, off, gi, w, H);
    return (int)cudaGetLastError();
}
