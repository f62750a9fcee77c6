// cuda_kernels/sched.cu: the activation scheduler (DESIGN section 4) as one
// thread block, with results identical to janus_sched (src/sched/sched.c):
// the same decisions, reached in parallel where the C version scans.
//
// The C version, in order: (1) greedy, active experts by decreasing tokens
// (ties: lower index), each whole to its replica rank with the least
// (activated experts, tokens, rank); (2) augmenting paths: from the lowest
// rank at the maximum L that can reach a rank at <= L-2 (moving an assigned
// expert to another of its replicas, repeatedly), the first such rank in BFS
// order is reached and the experts on the path move; repeat; (3) split tokens
// off the busiest-by-tokens rank. Here:
//
// (1) Dataflow. An expert's decision reads only its replica ranks' state,
// which depends only on the experts before it on those ranks. So: per slot,
// `need` = the experts with a choice (>1 replica) before it on its rank, and
// the count and tokens of the one-replica experts before it there (they go
// where they must: a prefix, no decision). Each round, every undecided expert
// whose ranks have each seen exactly `need` decisions is ready: it sees the
// state the C loop would show it; ready experts share no rank, so they decide
// at once. A ready expert whose successor on every one of its ranks is one
// and the same expert with the same ranks (uniform placements: all of them)
// decides that one too, and on, in registers ("runs"). Rounds = the longest
// chain of experts sharing ranks (8 for 256 experts x 64 ranks x 2 replicas,
// 1 with runs).
// (2) Warp 0, ranks as bits of a 64-bit mask (M <= 64). Ranks that can reach
// T = {act <= L-2}: a fixpoint of ballots over the adjacency masks; the lowest
// root at L among them is the C version's first successful root (the others
// fail there too: a BFS finds a target iff one is reachable). Its BFS is
// level-synchronous: each new rank's discovery key (queue index of its first
// parent, slot index in that parent, replica index) orders the next level as
// the C queue does, and the first target is the least key of the first level
// that holds one.
// (3) Warp 0: argmax over tokens and over the candidate splits with warp
// reductions, ties to the lower index as the C scans.
//
// Cost (H100, tools/sched_bench.cu with -DSCHED_PROF: thread 0's clock64 per
// phase; 256 experts x 64 ranks x 2 replicas, Zipf 1.0, 4096 pairs): tables
// in 1.7k cycles, setup scans 4.6k, runs 1.0k, greedy 7.0k, augmenting 0.4k,
// split 1.8k; about 9 us a layer in a CUDA graph. Few ranks are slower than
// the C version: the runs are long (256 x 2: one run of ~256 experts) and one
// thread's serial code costs ~400 cycles per member, the setup scans ~120 per
// entry: dependent-instruction and branch latency, not memory (ld.shared
// instead of generic loads changed nothing there). Hence: packed keys for the
// setup scans (one compare per entry), run members' data indexed by their
// place in each rank's order (no dependent loads, the next one loading while
// this one decides), the plan's tables brought in as one flat copy (one
// global latency), and the adjacency masks only when a target exists.
//
// More than 64 MoE ranks (or JK_SCHED_FORCE_GENERAL): the general kernel sorts
// the experts in parallel and runs the C steps themselves (sched/sched_core.h)
// on one thread. Scratch lives in dynamic shared memory (one carve, offsets as
// fast_carve says), or in the plan's device workspace when it does not fit.
#include <cuda_runtime.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sched/sched_core.h"
#include "sched_gpu.h"

#define NT 256         // threads of the block
#define KMAX 4         // runs: experts with up to KMAX replicas (rank state in registers)
#define FULL 0xffffffffu

// Debug: -DSCHED_PROF accumulates thread 0's clock64() per phase of the fast
// kernel into g_sched_prof (tools/sched_bench.cu reads it); off: no code.
#ifdef SCHED_PROF
__device__ unsigned long long g_sched_prof[32];
#define PROF_DECL long long prof_t = clock64();
#define PROF(i) do { if (threadIdx.x == 0) { long long t_ = clock64(); atomicAdd(&g_sched_prof[i], (unsigned long long)(t_ - prof_t)); prof_t = t_; } } while (0)
#define PROF_CNT(i, v) do { atomicAdd(&g_sched_prof[i], (unsigned long long)(v)); } while (0)
extern "C" void jk_sched_prof(unsigned long long *out, int reset) {
    cudaMemcpyFromSymbol(out, g_sched_prof, sizeof g_sched_prof);
    if (reset) { unsigned long long z[32] = {0}; cudaMemcpyToSymbol(g_sched_prof, z, sizeof z); }
}
#else
#define PROF_DECL
#define PROF(i) do { } while (0)
#define PROF_CNT(i, v) do { } while (0)
#endif

typedef struct {
    int E, M, S;
    const int32_t *rep_off, *rep_rank, *slot_exp, *rs_off, *rs_slot, *rs_exp;
    const uint64_t *rep_mask;
    const char *tab; // the tables above, contiguous (tab_bytes)
    int tab_bytes;
    const int64_t *n_tok;
    int64_t *share;
    int32_t *act;
    int64_t *tok;
    char *ws; // general kernel, or fast kernel whose scratch is not in shared memory
} sched_args;

// Scratch of the fast kernel. Per expert [E]: counts, assignment, flags; per
// slot [S]: prefix counts, order, shares, round commits; per rank [M]: state.
// rs_exp[k]: expert of the rank-CSR slot rs_slot[k]; ordx[rs_off[r] + i]: the
// i-th choice expert on rank r in greedy order.
typedef struct {
    int64_t *n, *ft, *share, *cm_t, *ctok, *ft_tot, *tok;
    uint64_t *rep_mask, *adj, *bkey, *rkey;
    int32_t *rep_off, *rep_rank, *slot_exp, *rs_off, *rs_slot, *rs_exp;
    int32_t *slot_of, *need, *fa, *ordx, *cm_a, *cm_d, *pfa, *psl;
    int64_t *pft, *pn;
    uint8_t *pmore;
    int32_t *cact, *done, *cc, *fa_tot, *act, *q, *prev_rank, *prev_exp;
    uint8_t *choice, *dec, *cont, *rdy;
} fast_ws;

// Lays the scratch out from base; returns its size in bytes (base may be
// (uintptr_t)0 to size it). The kernel passes a char pointer, so that the
// compiler sees shared-memory scratch as such (ld.shared, not generic loads).
template <typename B>
__host__ __device__ static size_t fast_carve(B base, int E, int M, int S, fast_ws *w) {
    size_t o = 0;
#define TAKE(f, type, count) (w->f = (type *)(base + o), o += (sizeof(type) * (size_t)(count) + 15) & ~(size_t)15)
    // First the plan's tables, laid out as in its device allocation (see
    // jk_sched_plan_init, tables_bytes): one flat copy brings them in.
    TAKE(rep_off, int32_t, E + 1), TAKE(rep_rank, int32_t, S), TAKE(slot_exp, int32_t, S);
    TAKE(rs_off, int32_t, M + 1), TAKE(rs_slot, int32_t, S), TAKE(rep_mask, uint64_t, E), TAKE(rs_exp, int32_t, S);
    TAKE(n, int64_t, E), TAKE(ft, int64_t, S), TAKE(share, int64_t, S), TAKE(cm_t, int64_t, S);
    TAKE(ctok, int64_t, M), TAKE(ft_tot, int64_t, M), TAKE(tok, int64_t, M);
    TAKE(adj, uint64_t, M), TAKE(bkey, uint64_t, M), TAKE(rkey, uint64_t, S);
    TAKE(slot_of, int32_t, E), TAKE(need, int32_t, S), TAKE(fa, int32_t, S), TAKE(ordx, int32_t, S);
    TAKE(cm_a, int32_t, S), TAKE(cm_d, int32_t, S), TAKE(pfa, int32_t, S), TAKE(psl, int32_t, S);
    TAKE(pft, int64_t, S), TAKE(pn, int64_t, S), TAKE(pmore, uint8_t, S);
    TAKE(cact, int32_t, M), TAKE(done, int32_t, M), TAKE(cc, int32_t, M), TAKE(fa_tot, int32_t, M);
    TAKE(act, int32_t, M), TAKE(q, int32_t, M), TAKE(prev_rank, int32_t, M), TAKE(prev_exp, int32_t, M);
    TAKE(choice, uint8_t, E), TAKE(dec, uint8_t, E), TAKE(cont, uint8_t, E), TAKE(rdy, uint8_t, E);
#undef TAKE
    return o;
}

// ---- warp helpers (full warp; ties to the lower index are the caller's) ----

__device__ __forceinline__ uint64_t ballot64(bool lo, bool hi) { // bit r: rank r (lane r, lane r - 32)
    return (uint64_t)__ballot_sync(FULL, lo) | (uint64_t)__ballot_sync(FULL, hi) << 32;
}
__device__ __forceinline__ uint64_t warp_or64(uint64_t v) {
    return (uint64_t)__reduce_or_sync(FULL, (unsigned)(v >> 32)) << 32 | __reduce_or_sync(FULL, (unsigned)v);
}
__device__ __forceinline__ int64_t warp_max_i64(int64_t v) {
    for (int o = 16; o > 0; o >>= 1) {
        int64_t x = __shfl_xor_sync(FULL, v, o);
        v = x > v ? x : v;
    }
    return v;
}
__device__ __forceinline__ uint64_t warp_min_u64(uint64_t v) {
    for (int o = 16; o > 0; o >>= 1) {
        uint64_t x = __shfl_xor_sync(FULL, v, o);
        v = x < v ? x : v;
    }
    return v;
}

// (a, t, r) before (ba, bt, br): fewer activated experts, then tokens, then the lower rank.
__device__ __forceinline__ bool lighter(int a, int64_t t, int r, int ba, int64_t bt, int br) {
    return a < ba || (a == ba && (t < bt || (t == bt && r < br)));
}

// Ranks the experts assigned to rank u could move to (their replicas), as a mask.
__device__ static uint64_t adj_of(const fast_ws &w, int u) {
    uint64_t m = 0;
    for (int k = w.rs_off[u]; k < w.rs_off[u + 1]; k++) {
        const int s = w.rs_slot[k], e = w.rs_exp[k];
        if (w.slot_of[e] == s) m |= w.rep_mask[e];
    }
    return m;
}

// A run member's data, position-indexed (tools of decide_run): for the slot
// s of choice expert e at place i of rank r's greedy order (p = rs_off[r] + i,
// ordx[p] = e): pfa / pft, the count and tokens of the one-replica experts
// before e on r; psl, s; pn, e's tokens; pmore, whether e's run goes on.
typedef struct {
    int x, fa[KMAX], sl[KMAX];
    int64_t ft[KMAX], n;
    bool more;
} member;

__device__ __forceinline__ void load_member(const fast_ws &w, const int (&pb)[KMAX], int k, int i, member &m) {
    const int p0 = pb[0] + i;
    m.x = w.ordx[p0], m.n = w.pn[p0], m.more = w.pmore[p0];
#pragma unroll
    for (int j = 0; j < KMAX; j++)
        if (j < k) m.fa[j] = w.pfa[pb[j] + i], m.ft[j] = w.pft[pb[j] + i], m.sl[j] = w.psl[pb[j] + i];
}

// Greedy decision of ready expert e (k <= KMAX replicas from slot o) and of
// its run: the same-ranked experts that follow it on all its ranks, at the
// same distance behind e in each of those ranks' orders, so that member i's
// data sit at pb[j] + i (pb[j]: e's place on its j-th rank). Rank state of
// the run in registers, the next member's data loading while this one
// decides. The ranks' new state goes to the commit arrays of e's slots,
// applied after the round.
__device__ static void decide_run(const fast_ws &w, int e, int o, int k) {
    int rk[KMAX], ca[KMAX], pb[KMAX];
    int64_t ct[KMAX];
#pragma unroll
    for (int j = 0; j < KMAX; j++) {
        rk[j] = j < k ? w.rep_rank[o + j] : -1;
        ca[j] = j < k ? w.cact[rk[j]] : 0;
        ct[j] = j < k ? w.ctok[rk[j]] : 0;
        pb[j] = j < k ? w.rs_off[rk[j]] + w.need[o + j] : 0;
    }
    member cur, nxt;
    load_member(w, pb, k, 0, cur);
    int len = 0;
    for (;;) {
        if (cur.more) load_member(w, pb, k, len + 1, nxt);
        int bj = 0, ba = 0, br = -1;
        int64_t bt = 0;
#pragma unroll
        for (int j = 0; j < KMAX; j++) {
            if (j >= k) break;
            const int a = cur.fa[j] + ca[j];
            const int64_t t = cur.ft[j] + ct[j];
            if (j == 0 || lighter(a, t, rk[j], ba, bt, br)) bj = j, ba = a, bt = t, br = rk[j];
        }
        int sl = cur.sl[0];
#pragma unroll
        for (int j = 0; j < KMAX; j++)
            if (j < k && j == bj) ca[j]++, ct[j] += cur.n, sl = cur.sl[j];
        w.slot_of[cur.x] = sl;
        w.dec[cur.x] = 1;
        len++;
        if (!cur.more) break;
        cur = nxt;
    }
#pragma unroll
    for (int j = 0; j < KMAX; j++)
        if (j < k) w.cm_a[o + j] = ca[j], w.cm_t[o + j] = ct[j], w.cm_d[o + j] = w.need[o + j] + len;
}

// Greedy decision of ready expert e with more than KMAX replicas.
__device__ static void decide_one(const fast_ws &w, int e, int o, int k) {
    int bs = -1, ba = 0, br = 0;
    int64_t bt = 0;
    for (int s = o; s < o + k; s++) {
        const int r = w.rep_rank[s], a = w.fa[s] + w.cact[r];
        const int64_t t = w.ft[s] + w.ctok[r];
        if (bs < 0 || lighter(a, t, r, ba, bt, br)) bs = s, ba = a, bt = t, br = r;
    }
    w.slot_of[e] = bs;
    w.dec[e] = 1;
    for (int s = o; s < o + k; s++) {
        const int r = w.rep_rank[s];
        w.cm_a[s] = w.cact[r] + (s == bs);
        w.cm_t[s] = w.ctok[r] + (s == bs ? w.n[e] : 0);
        w.cm_d[s] = w.need[s] + 1;
    }
}

// The C version's BFS from root r0 (warp 0, level by level): returns the
// first target it discovers, with prev_rank / prev_exp set along the path.
// T: targets (act <= L-2); r0 reaches one.
__device__ static int bfs_target(const fast_ws &w, int M, int r0, uint64_t T, int lane) {
    if (lane == 0) w.q[0] = r0;
    uint64_t seen = 1ull << r0, front = seen;
    int fb = 0, fe = 1; // this level's queue entries
    for (;;) {
        __syncwarp();
        uint64_t mine = 0;
        for (int h = 0; h < 2; h++) {
            const int u = lane + 32 * h;
            if (u < M && (front >> u & 1)) mine |= w.adj[u];
        }
        const uint64_t nw = warp_or64(mine) & ~seen; // the next level
        if (!nw) return -1;                          // (r0 reaches a target: not taken)
        uint64_t key[2] = {~0ull, ~0ull};
        for (int h = 0; h < 2; h++) {
            const int v = lane + 32 * h;
            if (v >= M || !(nw >> v & 1)) continue;
            int i = fb; // first parent in queue order
            while (!(w.adj[w.q[i]] >> v & 1)) i++;
            const int u = w.q[i];
            int k = w.rs_off[u], e, s1; // its first slot whose assigned expert has a replica on v
            for (;; k++) {
                s1 = w.rs_slot[k], e = w.rs_exp[k];
                if (w.slot_of[e] == s1 && (w.rep_mask[e] >> v & 1)) break;
            }
            int s = w.rep_off[e];
            while (w.rep_rank[s] != v) s++;
            key[h] = (uint64_t)i << 44 | (uint64_t)(k - w.rs_off[u]) << 24 | (uint64_t)(s - w.rep_off[e]) << 8 | (uint64_t)v;
            w.prev_rank[v] = u;
            w.prev_exp[v] = e;
            w.bkey[v] = key[h];
        }
        const uint64_t tn = nw & T;
        if (tn) { // the first target discovered in this level ends the search
            uint64_t t = ~0ull;
            for (int h = 0; h < 2; h++)
                if (key[h] != ~0ull && (tn >> (key[h] & 0xff) & 1)) t = key[h] < t ? key[h] : t;
            t = warp_min_u64(t);
            __syncwarp();
            return (int)(t & 0xff);
        }
        __syncwarp();
        for (int h = 0; h < 2; h++) { // queue order of the new level: by key
            if (key[h] == ~0ull) continue;
            int c = 0;
            for (uint64_t m = nw; m; m &= m - 1) c += w.bkey[__ffsll((long long)m) - 1] < key[h];
            w.q[fe + c] = (int)(key[h] & 0xff);
        }
        seen |= nw;
        front = nw;
        fb = fe;
        fe += __popcll((unsigned long long)nw);
    }
}

template <bool kShared>
__global__ void __launch_bounds__(NT) sched_fast(sched_args a) {
    extern __shared__ uint64_t smem_u64[];
    fast_ws w;
    if (kShared) fast_carve((char *)smem_u64, a.E, a.M, a.S, &w);
    else fast_carve(a.ws, a.E, a.M, a.S, &w);
    const int E = a.E, M = a.M, S = a.S, tid = threadIdx.x, lane = tid & 31;
    PROF_DECL
    if (tid == 0) PROF_CNT(31, 1);

    // Tables and counts in: the plan's tables as one flat copy (its layout
    // is the scratch's first part), every load of a pass issued before any
    // store, so that the global latency is paid about once.
    {
        constexpr int U = 8;
        const uint4 *src = (const uint4 *)a.tab;
        uint4 *dst = (uint4 *)w.rep_off;
        const int nch = a.tab_bytes / 16;
        for (int b = 0; b < nch || b == 0; b += U * NT) {
            uint4 v[U];
            int64_t nv[2] = {0, 0};
#pragma unroll
            for (int u = 0; u < U; u++)
                if (b + u * NT + tid < nch) v[u] = src[b + u * NT + tid];
            if (b == 0) {
#pragma unroll
                for (int u = 0; u < 2; u++)
                    if (u * NT + tid < E) nv[u] = a.n_tok[u * NT + tid];
            }
#pragma unroll
            for (int u = 0; u < U; u++)
                if (b + u * NT + tid < nch) dst[b + u * NT + tid] = v[u];
            if (b == 0) {
#pragma unroll
                for (int u = 0; u < 2; u++)
                    if (u * NT + tid < E) w.n[u * NT + tid] = nv[u];
            }
        }
        for (int e = 2 * NT + tid; e < E; e += NT) w.n[e] = a.n_tok[e];
    }
    for (int r = tid; r < M; r += NT) w.cact[r] = 0, w.ctok[r] = 0, w.done[r] = 0;
    for (int s = tid; s < S; s += NT) w.share[s] = 0;
    __syncthreads();
    PROF(1);
    for (int e = tid; e < E; e += NT) {
        w.slot_of[e] = -1;
        w.choice[e] = w.n[e] > 0 && w.rep_off[e + 1] - w.rep_off[e] > 1;
        w.dec[e] = 0, w.cont[e] = 0, w.rdy[e] = 0;
    }

    // Per slot of a choice expert e on rank r: the choice experts before e on
    // r (need), the one-replica experts before e on r (fa, ft); ordx: each
    // rank's choice experts in order. Per rank: totals.
    // Packed keys per rank-CSR entry: (tokens << 21 | (2^20 - 1 - e) << 1 |
    // choice), 0 when inactive (tokens < 2^43, E < 2^20: the C version's
    // bounds), so "e2 comes before e in the greedy order" is one compare:
    // key(e2) > (key(e) | 1).
    for (int k = tid; k < S; k += NT) {
        const int e2 = w.rs_exp[k];
        const int64_t n2 = w.n[e2];
        const uint64_t c2 = w.rep_off[e2 + 1] - w.rep_off[e2] > 1;
        w.rkey[k] = n2 > 0 ? (uint64_t)n2 << 21 | (uint64_t)((1 << 20) - 1 - e2) << 1 | c2 : 0;
    }
    __syncthreads();
    int any = 0;
    for (int s = tid; s < S; s += NT) {
        const int e = w.slot_exp[s];
        if (!w.choice[e]) continue;
        any = 1;
        const uint64_t me = (uint64_t)w.n[e] << 21 | (uint64_t)((1 << 20) - 1 - e) << 1 | 1;
        const int r = w.rep_rank[s], kb = w.rs_off[r], ke = w.rs_off[r + 1];
        int nd = 0, fa = 0;
        int64_t ft = 0;
#pragma unroll 4
        for (int k = kb; k < ke; k++) {
            const uint64_t q = w.rkey[k];
            const int c = (int)(q & 1);
            if (q > me) nd += c, fa += 1 - c, ft += c ? 0 : (int64_t)(q >> 21);
        }
        w.need[s] = nd, w.fa[s] = fa, w.ft[s] = ft;
        const int p = kb + nd;
        w.ordx[p] = e, w.pfa[p] = fa, w.pft[p] = ft, w.psl[p] = s, w.pn[p] = w.n[e];
    }
    for (int r = tid; r < M; r += NT) {
        int cc = 0, fa = 0;
        int64_t ft = 0;
#pragma unroll 4
        for (int k = w.rs_off[r]; k < w.rs_off[r + 1]; k++) {
            const uint64_t q = w.rkey[k];
            const int c = (int)(q & 1);
            if (q) cc += c, fa += 1 - c, ft += c ? 0 : (int64_t)(q >> 21);
        }
        w.cc[r] = cc, w.fa_tot[r] = fa, w.ft_tot[r] = ft;
    }
    any = __syncthreads_or(any);
    PROF(2);

    if (any) {
        // Runs: does e's successor on every rank of e exist and is it one
        // expert with the same ranks?
        for (int e = tid; e < E; e += NT) {
            if (!w.choice[e]) continue;
            const int o = w.rep_off[e], k = w.rep_off[e + 1] - o;
            int c = 0;
            const int r0 = w.rep_rank[o], p0 = w.need[o] + 1;
            if (k <= KMAX && p0 < w.cc[r0]) {
                const int y = w.ordx[w.rs_off[r0] + p0];
                c = w.rep_off[y + 1] - w.rep_off[y] == k;
                for (int s = o + 1; c && s < o + k; s++) {
                    const int r = w.rep_rank[s], p = w.need[s] + 1;
                    c = p < w.cc[r] && w.ordx[w.rs_off[r] + p] == y;
                }
            }
            w.cont[e] = (uint8_t)c;
            for (int s = o; s < o + k; s++) w.pmore[w.rs_off[w.rep_rank[s]] + w.need[s]] = (uint8_t)c;
        }
        __syncthreads();
        PROF(3);
        // Greedy rounds: decide the ready experts (and their runs), then
        // commit. Each round decides at least the first undecided expert; the
        // bound only keeps a broken invariant from hanging the GPU.
        for (int round = 0; round <= E; round++) {
            for (int e = tid; e < E; e += NT) {
                if (!w.choice[e] || w.dec[e]) continue;
                const int o = w.rep_off[e], k = w.rep_off[e + 1] - o;
                bool ready = true;
                for (int s = o; s < o + k && ready; s++) ready = w.done[w.rep_rank[s]] == w.need[s];
                if (!ready) continue;
                if (k <= KMAX) decide_run(w, e, o, k);
                else decide_one(w, e, o, k);
                w.rdy[e] = 1;
            }
            __syncthreads();
            int pend = 0;
            for (int e = tid; e < E; e += NT) {
                if (w.rdy[e]) {
                    w.rdy[e] = 0;
                    for (int s = w.rep_off[e]; s < w.rep_off[e + 1]; s++) {
                        const int r = w.rep_rank[s];
                        w.cact[r] = w.cm_a[s], w.ctok[r] = w.cm_t[s], w.done[r] = w.cm_d[s];
                    }
                } else if (w.choice[e] && !w.dec[e]) {
                    pend = 1;
                }
            }
            if (!__syncthreads_or(pend)) break;
            if (tid == 0) PROF_CNT(16, 1);
        }
    }
    for (int e = tid; e < E; e += NT)
        if (w.n[e] > 0 && !w.choice[e]) w.slot_of[e] = w.rep_off[e];
    for (int r = tid; r < M; r += NT) w.act[r] = w.fa_tot[r] + w.cact[r], w.tok[r] = w.ft_tot[r] + w.ctok[r];
    __syncthreads();
    PROF(5);

    if (any) {
        // Augmenting paths (warp 0; lane l owns ranks l and l + 32). The
        // adjacency masks only once a target exists (mostly none does).
        if (tid < 32) {
            const int u0 = lane, u1 = lane + 32;
            bool have_adj = false;
            for (;;) {
                const int a0 = u0 < M ? w.act[u0] : INT_MIN, a1 = u1 < M ? w.act[u1] : INT_MIN;
                const int L = __reduce_max_sync(FULL, a0 > a1 ? a0 : a1);
                const uint64_t T = ballot64(u0 < M && a0 <= L - 2, u1 < M && a1 <= L - 2);
                if (!T) break;
                if (!have_adj) {
                    for (int u = lane; u < M; u += 32) w.adj[u] = adj_of(w, u);
                    __syncwarp();
                    have_adj = true;
                }
                const uint64_t adj0 = u0 < M ? w.adj[u0] : 0, adj1 = u1 < M ? w.adj[u1] : 0;
                uint64_t B = T; // ranks with a path to a target
                for (;;) {
                    const uint64_t nb = B | ballot64((adj0 & B) != 0, (adj1 & B) != 0);
                    if (nb == B) break;
                    B = nb;
                }
                const uint64_t roots = ballot64(a0 == L, a1 == L) & B;
                if (!roots) break;
                const int r0 = __ffsll((long long)roots) - 1;
                const int v = bfs_target(w, M, r0, T, lane);
                uint64_t moved = 0;
                if (lane == 0 && v >= 0) { // move the experts along the path back to r0
                    for (int x = v; x != r0;) {
                        const int from = w.prev_rank[x], ex = w.prev_exp[x];
                        int s = w.rep_off[ex];
                        while (w.rep_rank[s] != x) s++;
                        w.slot_of[ex] = s;
                        w.act[from]--, w.act[x]++;
                        w.tok[from] -= w.n[ex], w.tok[x] += w.n[ex];
                        moved |= 1ull << from | 1ull << x;
                        x = from;
                    }
                }
                moved = __shfl_sync(FULL, moved, 0);
                if (!moved) break; // (not taken: see bfs_target)
                if (lane == 0) PROF_CNT(17, 1);
                __syncwarp();
                if (moved >> u0 & 1) w.adj[u0] = adj_of(w, u0);
                if (u1 < M && (moved >> u1 & 1)) w.adj[u1] = adj_of(w, u1);
                __syncwarp();
            }
        }
        __syncthreads();
        PROF(7);
    }
    for (int e = tid; e < E; e += NT)
        if (w.slot_of[e] >= 0) w.share[w.slot_of[e]] = w.n[e];
    __syncthreads();
    PROF(8);

    if (any && tid < 32) {
        // Secondary: split tokens off the busiest rank (warp 0).
        const int u0 = lane, u1 = lane + 32;
        const int a0 = u0 < M ? w.act[u0] : INT_MIN, a1 = u1 < M ? w.act[u1] : INT_MIN;
        const int L = __reduce_max_sync(FULL, a0 > a1 ? a0 : a1);
        for (int iter = 0; iter < 2 * E + M; iter++) {
            const int64_t t0 = u0 < M ? w.tok[u0] : INT64_MIN, t1 = u1 < M ? w.tok[u1] : INT64_MIN;
            const int64_t tmax = warp_max_i64(t0 > t1 ? t0 : t1);
            const unsigned b0 = __ballot_sync(FULL, t0 == tmax), b1 = __ballot_sync(FULL, t1 == tmax);
            const int r1 = b0 ? __ffs((int)b0) - 1 : 32 + __ffs((int)b1) - 1; // lowest busiest rank
            const int kb = w.rs_off[r1], ke = w.rs_off[r1 + 1];
            int64_t bd = 0;
            int bk = INT_MAX, bs1 = -1, bs2 = -1;
            for (int k = kb + lane; k < ke; k += 32) { // lane: slots k, k+32, ... of r1, in order
                const int s1 = w.rs_slot[k], e = w.rs_exp[k];
                const int64_t sh1 = w.share[s1];
                if (sh1 == 0) continue;
                for (int s2 = w.rep_off[e]; s2 < w.rep_off[e + 1]; s2++) {
                    const int r2 = w.rep_rank[s2];
                    if (r2 == r1) continue;
                    if (w.share[s2] == 0 && w.act[r2] + 1 > L) continue;
                    int64_t d = (tmax - w.tok[r2]) / 2;
                    if (d > sh1) d = sh1;
                    if (d > bd) bd = d, bk = k, bs1 = s1, bs2 = s2;
                }
            }
            const int64_t dmax = warp_max_i64(bd);
            if (dmax <= 0) break;
            if (lane == 0) PROF_CNT(18, 1);
            const int kmin = __reduce_min_sync(FULL, bd == dmax ? bk : INT_MAX); // first in the C scan
            if (bd == dmax && bk == kmin) {
                const int r2 = w.rep_rank[bs2];
                if (w.share[bs2] == 0) w.act[r2]++;
                w.share[bs2] += dmax;
                w.share[bs1] -= dmax;
                if (w.share[bs1] == 0) w.act[r1]--;
                w.tok[r1] -= dmax;
                w.tok[r2] += dmax;
            }
            __syncwarp();
        }
    }
    __syncthreads();
    PROF(9);
    for (int s = tid; s < S; s += NT) a.share[s] = w.share[s];
    for (int r = tid; r < M; r += NT) a.act[r] = w.act[r], a.tok[r] = w.tok[r];
}

// Scratch of the general kernel, in the plan's workspace.
typedef struct {
    int32_t *order, *slot_of, *queue, *prev_rank, *prev_exp;
    uint8_t *seen;
} general_ws;

__host__ __device__ static size_t general_carve(uintptr_t base, int E, int M, general_ws *g) {
    size_t o = 0;
#define TAKE(f, type, count) (g->f = (type *)(base + o), o += (sizeof(type) * (size_t)(count) + 15) & ~(size_t)15)
    TAKE(order, int32_t, E), TAKE(slot_of, int32_t, E), TAKE(queue, int32_t, M);
    TAKE(prev_rank, int32_t, M), TAKE(prev_exp, int32_t, M), TAKE(seen, uint8_t, M);
#undef TAKE
    return o;
}

// Any size: the experts' order by counting (all threads), then the C steps on thread 0.
__global__ void __launch_bounds__(NT) sched_general(sched_args a) {
    general_ws g;
    general_carve((uintptr_t)a.ws, a.E, a.M, &g);
    const int E = a.E, M = a.M, S = a.S, tid = threadIdx.x;
    for (int s = tid; s < S; s += NT) a.share[s] = 0;
    for (int r = tid; r < M; r += NT) a.act[r] = 0, a.tok[r] = 0;
    int na = 0, any = 0;
    for (int e = tid; e < E; e += NT) {
        g.slot_of[e] = -1;
        const int64_t n = a.n_tok[e];
        if (n <= 0) continue;
        int pos = 0; // active experts before e: more tokens, or as many and a lower index
        for (int j = 0; j < E; j++) {
            const int64_t nj = a.n_tok[j];
            pos += nj > 0 && (nj > n || (nj == n && j < e));
        }
        g.order[pos] = e;
        na++;
        any |= a.rep_off[e + 1] - a.rep_off[e] > 1;
    }
    __shared__ int s_na;
    if (tid == 0) s_na = 0;
    __syncthreads();
    atomicAdd(&s_na, na);
    any = __syncthreads_or(any);
    if (tid == 0) {
        janus_sched_core c = {E, M, a.rep_off, a.rep_rank, a.slot_exp, a.rs_off, a.rs_slot,
                              g.order, g.slot_of, g.queue, g.prev_rank, g.prev_exp, g.seen};
        janus_sched_finish(&c, s_na, any != 0, a.n_tok, a.share, a.act, a.tok);
    }
}

// ---- host ------------------------------------------------------------------

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

// Offset of the plan's rs_exp table (expert of each rank-CSR entry) in its
// device allocation: after rep_off, rep_rank, slot_exp, rs_off, rs_slot, rep_mask.
static size_t rs_exp_offset(int E, int M, int S) {
    return align16(4 * (size_t)(E + 1)) + 3 * align16(4 * (size_t)S) + align16(4 * (size_t)(M + 1)) + align16(8 * (size_t)E);
}

extern "C" int jk_sched_plan_init(jk_sched_plan *p, int E, int M, const int32_t *rep_off, const int32_t *rep_rank,
                                  int flags) {
    memset(p, 0, sizeof *p);
    if (E < 1 || M < 1 || !rep_off || !rep_rank || rep_off[0] != 0) return (int)cudaErrorInvalidValue;
    for (int e = 0; e < E; e++) {
        if (rep_off[e + 1] <= rep_off[e]) return (int)cudaErrorInvalidValue; // no replica
        for (int s = rep_off[e]; s < rep_off[e + 1]; s++) {
            if (rep_rank[s] < 0 || rep_rank[s] >= M) return (int)cudaErrorInvalidValue;
            for (int s2 = rep_off[e]; s2 < s; s2++)
                if (rep_rank[s2] == rep_rank[s]) return (int)cudaErrorInvalidValue; // two on one rank
        }
    }
    const int S = rep_off[E];
    // Host tables, laid out as the device copy: rep_off, rep_rank, slot_exp,
    // rs_off, rs_slot (as janus_sched_ws_init builds them), rep_mask.
    const size_t o_rep_off = 0, o_rep_rank = o_rep_off + align16(4 * (size_t)(E + 1)),
                 o_slot_exp = o_rep_rank + align16(4 * (size_t)S), o_rs_off = o_slot_exp + align16(4 * (size_t)S),
                 o_rs_slot = o_rs_off + align16(4 * (size_t)(M + 1)), o_mask = o_rs_slot + align16(4 * (size_t)S),
                 o_rs_exp = rs_exp_offset(E, M, S), o_ws = o_rs_exp + align16(4 * (size_t)S);
    char *h = (char *)calloc(1, o_ws);
    if (!h) return (int)cudaErrorMemoryAllocation;
    int32_t *h_slot_exp = (int32_t *)(h + o_slot_exp), *h_rs_off = (int32_t *)(h + o_rs_off),
            *h_rs_slot = (int32_t *)(h + o_rs_slot);
    uint64_t *h_mask = (uint64_t *)(h + o_mask);
    memcpy(h + o_rep_off, rep_off, 4 * (size_t)(E + 1));
    memcpy(h + o_rep_rank, rep_rank, 4 * (size_t)S);
    for (int e = 0; e < E; e++)
        for (int s = rep_off[e]; s < rep_off[e + 1]; s++) {
            h_slot_exp[s] = e, h_rs_off[rep_rank[s] + 1]++;
            if (M <= 64) h_mask[e] |= 1ull << rep_rank[s];
        }
    for (int r = 0; r < M; r++) h_rs_off[r + 1] += h_rs_off[r];
    int32_t *fill = (int32_t *)malloc(sizeof(int32_t) * (M + 1));
    if (!fill) return free(h), (int)cudaErrorMemoryAllocation;
    memcpy(fill, h_rs_off, sizeof(int32_t) * (M + 1));
    for (int s = 0; s < S; s++) h_rs_slot[fill[rep_rank[s]]++] = s; // ascending slot = ascending expert
    free(fill);
    int32_t *h_rs_exp = (int32_t *)(h + o_rs_exp);
    for (int k = 0; k < S; k++) h_rs_exp[k] = h_slot_exp[h_rs_slot[k]];

    // Path and scratch: the fast kernel with its scratch in shared memory when
    // it fits the device's opt-in limit, else in the workspace.
    p->E = E, p->M = M, p->S = S;
    p->path = M <= 64 && !(flags & JK_SCHED_FORCE_GENERAL) ? JK_SCHED_FAST : JK_SCHED_GENERAL;
    size_t ws_bytes = 0;
    int rc = 0;
    if (p->path == JK_SCHED_FAST) {
        fast_ws w;
        const size_t need = fast_carve((uintptr_t)0, E, M, S, &w);
        int dev = 0, optin = 0;
        if ((rc = (int)cudaGetDevice(&dev)) || (rc = (int)cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)))
            return free(h), rc;
        if (need <= (size_t)optin) {
            p->smem_bytes = need;
            if ((rc = (int)cudaFuncSetAttribute(sched_fast<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)need)))
                return free(h), rc;
        } else {
            ws_bytes = need;
        }
    } else {
        general_ws g;
        ws_bytes = general_carve(0, E, M, &g);
    }
    void *d = NULL;
    if ((rc = (int)cudaMalloc(&d, o_ws + ws_bytes))) return free(h), rc;
    rc = (int)cudaMemcpy(d, h, o_ws, cudaMemcpyHostToDevice);
    free(h);
    if (rc) return cudaFree(d), memset(p, 0, sizeof *p), rc;
    char *dc = (char *)d;
    p->dev = d;
    p->rep_off = (const int32_t *)(dc + o_rep_off), p->rep_rank = (const int32_t *)(dc + o_rep_rank);
    p->slot_exp = (const int32_t *)(dc + o_slot_exp), p->rs_off = (const int32_t *)(dc + o_rs_off);
    p->rs_slot = (const int32_t *)(dc + o_rs_slot), p->rep_mask = (const uint64_t *)(dc + o_mask);
    p->ws = ws_bytes ? dc + o_ws : NULL;
    return 0;
}

extern "C" void jk_sched_plan_free(jk_sched_plan *p) {
    if (p->dev) cudaFree(p->dev);
    memset(p, 0, sizeof *p);
}

extern "C" int jk_sched(const jk_sched_plan *p, const int64_t *n_tok, int64_t *share, int32_t *act, int64_t *tok,
                        void *stream) {
    sched_args a = {p->E, p->M, p->S, p->rep_off, p->rep_rank, p->slot_exp, p->rs_off, p->rs_slot,
                    (const int32_t *)((const char *)p->dev + rs_exp_offset(p->E, p->M, p->S)), p->rep_mask,
                    (const char *)p->dev, (int)(rs_exp_offset(p->E, p->M, p->S) + align16(4 * (size_t)p->S)), n_tok, share, act, tok, (char *)p->ws};
    cudaStream_t st = (cudaStream_t)stream;
    if (p->path == JK_SCHED_GENERAL) sched_general<<<1, NT, 0, st>>>(a);
    else if (p->ws) sched_fast<false><<<1, NT, 0, st>>>(a);
    else sched_fast<true><<<1, NT, p->smem_bytes, st>>>(a);
    return (int)cudaGetLastError();
}
