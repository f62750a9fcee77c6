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

typedef struct {
    int E, M, S;
    const int32_t *rep_off, *rep_rank, *slot_exp, *rs_off, *rs_slot;
    const uint64_t *rep_mask;
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
    uint64_t *rep_mask, *adj, *bkey;
    int32_t *rep_off, *rep_rank, *slot_exp, *rs_off, *rs_slot, *rs_exp;
    int32_t *slot_of, *need, *fa, *ordx, *cm_a, *cm_d;
    int32_t *cact, *done, *cc, *fa_tot, *act, *q, *prev_rank, *prev_exp;
    uint8_t *choice, *dec, *cont, *rdy;
} fast_ws;

// Lays the scratch out from base; returns its size in bytes (base may be 0 to size it).
__host__ __device__ static size_t fast_carve(uintptr_t base, int E, int M, int S, fast_ws *w) {
    size_t o = 0;
#define TAKE(f, type, count) (w->f = (type *)(base + o), o += (sizeof(type) * (size_t)(count) + 15) & ~(size_t)15)
    TAKE(n, int64_t, E), TAKE(ft, int64_t, S), TAKE(share, int64_t, S), TAKE(cm_t, int64_t, S);
    TAKE(ctok, int64_t, M), TAKE(ft_tot, int64_t, M), TAKE(tok, int64_t, M);
    TAKE(rep_mask, uint64_t, E), TAKE(adj, uint64_t, M), TAKE(bkey, uint64_t, M);
    TAKE(rep_off, int32_t, E + 1), TAKE(rep_rank, int32_t, S), TAKE(slot_exp, int32_t, S);
    TAKE(rs_off, int32_t, M + 1), TAKE(rs_slot, int32_t, S), TAKE(rs_exp, int32_t, S);
    TAKE(slot_of, int32_t, E), TAKE(need, int32_t, S), TAKE(fa, int32_t, S), TAKE(ordx, int32_t, S);
    TAKE(cm_a, int32_t, S), TAKE(cm_d, int32_t, S);
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

// A run member's data: per replica, the rank and the count and tokens of the
// one-replica experts before it there; its tokens; whether the run goes on.
typedef struct {
    int x, r[KMAX], fa[KMAX];
    int64_t ft[KMAX], n;
    bool more;
} member;

__device__ __forceinline__ void load_member(const fast_ws &w, int S, int x, int k, member &m) {
    const int o = w.rep_off[x];
    m.x = x;
#pragma unroll
    for (int q = 0; q < KMAX; q++) {
        const int s = o + q < S ? o + q : S - 1;
        m.r[q] = q < k ? w.rep_rank[s] : -1, m.fa[q] = w.fa[s], m.ft[q] = w.ft[s];
    }
    m.n = w.n[x], m.more = w.cont[x];
}

// Greedy decision of ready expert e (k <= KMAX replicas from slot o) and of
// its run: the same-ranked experts that follow it on all its ranks. Rank
// state of the run in registers; members are known before their decisions
// (they follow e on rank rk[0]), so the next one's data loads while this one
// decides. The ranks' new state goes to the commit arrays of e's slots,
// applied after the round.
__device__ static void decide_run(const fast_ws &w, int S, int e, int o, int k) {
    int rk[KMAX], ca[KMAX];
    int64_t ct[KMAX];
#pragma unroll
    for (int j = 0; j < KMAX; j++) {
        rk[j] = j < k ? w.rep_rank[o + j] : -1;
        ca[j] = j < k ? w.cact[rk[j]] : 0;
        ct[j] = j < k ? w.ctok[rk[j]] : 0;
    }
    const int base = w.rs_off[rk[0]] + w.need[o], end = w.rs_off[rk[0]] + w.cc[rk[0]]; // e's place in rk[0]'s order
    member cur, nxt;
    load_member(w, S, e, k, cur);
    int x1 = base + 1 < end ? w.ordx[base + 1] : -1; // the next one on rk[0] (a member if cur.more)
    int len = 0;
    for (;;) {
        if (x1 >= 0) load_member(w, S, x1, k, nxt);
        const int x2 = base + len + 2 < end ? w.ordx[base + len + 2] : -1;
        int bq = 0, br = -1, ba = 0; // lightest replica (index, rank, act, tokens)
        int64_t bt = 0;
#pragma unroll
        for (int q = 0; q < KMAX; q++) {
            if (q >= k) break;
            const int r = cur.r[q];
            int a = cur.fa[q];
            int64_t t = cur.ft[q];
#pragma unroll
            for (int j = 0; j < KMAX; j++)
                if (rk[j] == r) a += ca[j], t += ct[j];
            if (q == 0 || lighter(a, t, r, ba, bt, br)) bq = q, br = r, ba = a, bt = t;
        }
        const int x = cur.x;
        w.slot_of[x] = w.rep_off[x] + bq;
        w.dec[x] = 1;
        const int rb = br;
#pragma unroll
        for (int j = 0; j < KMAX; j++)
            if (rk[j] == rb) ca[j]++, ct[j] += cur.n;
        len++;
        if (!cur.more) break;
        cur = nxt;
        x1 = x2;
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
    fast_carve(kShared ? (uintptr_t)smem_u64 : (uintptr_t)a.ws, a.E, a.M, a.S, &w);
    const int E = a.E, M = a.M, S = a.S, tid = threadIdx.x, lane = tid & 31;

    // Tables and counts in, state zeroed.
    for (int e = tid; e <= E; e += NT) w.rep_off[e] = a.rep_off[e];
    for (int r = tid; r <= M; r += NT) w.rs_off[r] = a.rs_off[r];
    for (int s = tid; s < S; s += NT) {
        w.rep_rank[s] = a.rep_rank[s], w.slot_exp[s] = a.slot_exp[s], w.rs_slot[s] = a.rs_slot[s];
        w.rs_exp[s] = a.slot_exp[a.rs_slot[s]];
        w.share[s] = 0;
    }
    for (int e = tid; e < E; e += NT) {
        const int64_t n = a.n_tok[e];
        w.n[e] = n, w.rep_mask[e] = a.rep_mask[e], w.slot_of[e] = -1;
        w.choice[e] = n > 0 && a.rep_off[e + 1] - a.rep_off[e] > 1;
        w.dec[e] = 0, w.cont[e] = 0, w.rdy[e] = 0;
    }
    for (int r = tid; r < M; r += NT) w.cact[r] = 0, w.ctok[r] = 0, w.done[r] = 0;
    __syncthreads();

    // Per slot of a choice expert e on rank r: the choice experts before e on
    // r (need), the one-replica experts before e on r (fa, ft); ordx: each
    // rank's choice experts in order. Per rank: totals.
    int any = 0;
    for (int s = tid; s < S; s += NT) {
        const int e = w.slot_exp[s];
        if (!w.choice[e]) continue;
        any = 1;
        const int64_t ne = w.n[e];
        const int r = w.rep_rank[s];
        int nd = 0, fa = 0;
        int64_t ft = 0;
        for (int k = w.rs_off[r]; k < w.rs_off[r + 1]; k++) {
            const int e2 = w.rs_exp[k];
            const int64_t n2 = w.n[e2];
            if (n2 <= 0 || !(n2 > ne || (n2 == ne && e2 < e))) continue;
            if (w.choice[e2]) nd++;
            else fa++, ft += n2;
        }
        w.need[s] = nd, w.fa[s] = fa, w.ft[s] = ft;
        w.ordx[w.rs_off[r] + nd] = e;
    }
    for (int r = tid; r < M; r += NT) {
        int cc = 0, fa = 0;
        int64_t ft = 0;
        for (int k = w.rs_off[r]; k < w.rs_off[r + 1]; k++) {
            const int e2 = w.rs_exp[k];
            const int64_t n2 = w.n[e2];
            if (n2 <= 0) continue;
            if (w.choice[e2]) cc++;
            else fa++, ft += n2;
        }
        w.cc[r] = cc, w.fa_tot[r] = fa, w.ft_tot[r] = ft;
    }
    any = __syncthreads_or(any);

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
        }
        __syncthreads();
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
                if (k <= KMAX) decide_run(w, S, e, o, k);
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
        }
    }
    for (int e = tid; e < E; e += NT)
        if (w.n[e] > 0 && !w.choice[e]) w.slot_of[e] = w.rep_off[e];
    for (int r = tid; r < M; r += NT) w.act[r] = w.fa_tot[r] + w.cact[r], w.tok[r] = w.ft_tot[r] + w.ctok[r];
    __syncthreads();

    if (any) {
        for (int u = tid; u < M; u += NT) w.adj[u] = adj_of(w, u);
        __syncthreads();
        // Augmenting paths (warp 0; lane l owns ranks l and l + 32).
        if (tid < 32) {
            const int u0 = lane, u1 = lane + 32;
            for (;;) {
                const int a0 = u0 < M ? w.act[u0] : INT_MIN, a1 = u1 < M ? w.act[u1] : INT_MIN;
                const int L = __reduce_max_sync(FULL, a0 > a1 ? a0 : a1);
                const uint64_t T = ballot64(u0 < M && a0 <= L - 2, u1 < M && a1 <= L - 2);
                if (!T) break;
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
                __syncwarp();
                if (moved >> u0 & 1) w.adj[u0] = adj_of(w, u0);
                if (u1 < M && (moved >> u1 & 1)) w.adj[u1] = adj_of(w, u1);
                __syncwarp();
            }
        }
        __syncthreads();
    }
    for (int e = tid; e < E; e += NT)
        if (w.slot_of[e] >= 0) w.share[w.slot_of[e]] = w.n[e];
    __syncthreads();

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
                 o_ws = o_mask + align16(8 * (size_t)E);
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

    // Path and scratch: the fast kernel with its scratch in shared memory when
    // it fits the device's opt-in limit, else in the workspace.
    p->E = E, p->M = M, p->S = S;
    p->path = M <= 64 && !(flags & JK_SCHED_FORCE_GENERAL) ? JK_SCHED_FAST : JK_SCHED_GENERAL;
    size_t ws_bytes = 0;
    int rc = 0;
    if (p->path == JK_SCHED_FAST) {
        fast_ws w;
        const size_t need = fast_carve(0, E, M, S, &w);
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
    sched_args a = {p->E, p->M, p->S, p->rep_off, p->rep_rank, p->slot_exp, p->rs_off, p->rs_slot, p->rep_mask,
                    n_tok, share, act, tok, (char *)p->ws};
    cudaStream_t st = (cudaStream_t)stream;
    if (p->path == JK_SCHED_GENERAL) sched_general<<<1, NT, 0, st>>>(a);
    else if (p->ws) sched_fast<false><<<1, NT, 0, st>>>(a);
    else sched_fast<true><<<1, NT, p->smem_bytes, st>>>(a);
    return (int)cudaGetLastError();
}
