// sched/sched_core.h: the activation scheduler's steps once the active experts
// are in order (greedy, augmenting paths, token splitting), written once for
// the C scheduler (sched/sched.c) and the CUDA kernel's general path
// (cuda_kernels/sched.cu, one thread, any number of MoE ranks): the same code,
// so the same results. Plain arrays only (no janus headers), so that nvcc can
// compile it; JANUS_HD marks it __host__ __device__ there.
#ifndef JANUS_SCHED_SCHED_CORE_H
#define JANUS_SCHED_SCHED_CORE_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __CUDACC__
#define JANUS_HD __host__ __device__
#else
#define JANUS_HD
#endif

// One layer's placement and the scheduler's tables and scratch (the fields of
// janus_placement and janus_sched_ws of the same names).
typedef struct {
    int E, M;
    const int32_t *rep_off, *rep_rank;          // [E+1], [S]: replicas of each expert
    const int32_t *slot_exp, *rs_off, *rs_slot; // [S], [M+1], [S]: expert of each slot, slots of each rank
    int32_t *order;                             // [E] active experts by decreasing tokens (ties: lower index)
    int32_t *slot_of;                           // [E] the slot an expert went to whole, -1 when inactive
    int32_t *queue, *prev_rank, *prev_exp;      // [M] each: search scratch
    uint8_t *seen;                              // [M]
} janus_sched_core;

// Slot of expert e on rank r, or -1.
static inline JANUS_HD int janus_sched_slot_on(const janus_sched_core *c, int e, int r) {
    for (int s = c->rep_off[e]; s < c->rep_off[e + 1]; s++)
        if (c->rep_rank[s] == r) return s;
    return -1;
}

// One augmenting path from a rank at the maximum L to a rank at <= L-2.
static inline JANUS_HD bool janus_sched_augment(const janus_sched_core *c, const int64_t *n, int32_t *act, int64_t *tok,
                                                int L) {
    const int M = c->M;
    for (int r0 = 0; r0 < M; r0++) {
        if (act[r0] != L) continue;
        for (int r = 0; r < M; r++) c->seen[r] = 0;
        int head = 0, tail = 0;
        c->queue[tail++] = r0;
        c->seen[r0] = 1;
        while (head < tail) {
            int u = c->queue[head++];
            for (int k = c->rs_off[u]; k < c->rs_off[u + 1]; k++) {
                int e = c->slot_exp[c->rs_slot[k]];
                if (c->slot_of[e] != c->rs_slot[k]) continue; // e is not assigned to u
                for (int s = c->rep_off[e]; s < c->rep_off[e + 1]; s++) {
                    int v = c->rep_rank[s];
                    if (c->seen[v]) continue;
                    c->seen[v] = 1;
                    c->prev_rank[v] = u;
                    c->prev_exp[v] = e;
                    if (act[v] <= L - 2) { // move experts along the path back to r0
                        for (int x = v; x != r0;) {
                            int from = c->prev_rank[x], ex = c->prev_exp[x];
                            c->slot_of[ex] = janus_sched_slot_on(c, ex, x);
                            act[from]--, act[x]++;
                            tok[from] -= n[ex], tok[x] += n[ex];
                            x = from;
                        }
                        return true;
                    }
                    c->queue[tail++] = v;
                }
            }
        }
    }
    return false;
}

// The schedule from the ordered active experts: order[0 .. na) filled,
// slot_of[] = -1, act, tok and share zero; any_choice: some active expert has
// more than one replica.
static inline JANUS_HD void janus_sched_finish(const janus_sched_core *c, int na, bool any_choice, const int64_t *n_tok,
                                               int64_t *share, int32_t *act, int64_t *tok) {
    const int E = c->E, M = c->M;
    const int32_t *rep_off = c->rep_off, *rep_rank = c->rep_rank;
    // Greedy: whole expert to its least loaded replica (act, then tokens, then rank).
    for (int i = 0; i < na; i++) {
        int e = c->order[i], best = -1;
        for (int s = rep_off[e]; s < rep_off[e + 1]; s++) {
            int r = rep_rank[s];
            if (best < 0) { best = s; continue; }
            int b = rep_rank[best];
            if (act[r] < act[b] || (act[r] == act[b] && (tok[r] < tok[b] || (tok[r] == tok[b] && r < b)))) best = s;
        }
        c->slot_of[e] = best;
        act[rep_rank[best]]++;
        tok[rep_rank[best]] += n_tok[e];
    }
    if (any_choice) {
        for (;;) { // augmenting paths until the maximum is provably optimal
            int L = 0;
            for (int r = 0; r < M; r++) L = act[r] > L ? act[r] : L;
            if (!janus_sched_augment(c, n_tok, act, tok, L)) break;
        }
    }
    for (int e = 0; e < E; e++)
        if (c->slot_of[e] >= 0) share[c->slot_of[e]] = n_tok[e];
    if (!any_choice) return;
    // Secondary: split tokens off the busiest rank without raising the maximum
    // of activated experts.
    int L = 0;
    for (int r = 0; r < M; r++) L = act[r] > L ? act[r] : L;
    for (int iter = 0; iter < 2 * E + M; iter++) {
        int r1 = 0;
        for (int r = 1; r < M; r++) if (tok[r] > tok[r1]) r1 = r;
        int64_t best_d = 0;
        int bs1 = -1, bs2 = -1;
        for (int k = c->rs_off[r1]; k < c->rs_off[r1 + 1]; k++) {
            int s1 = c->rs_slot[k], e = c->slot_exp[s1];
            if (share[s1] == 0) continue;
            for (int s2 = rep_off[e]; s2 < rep_off[e + 1]; s2++) {
                int r2 = rep_rank[s2];
                if (r2 == r1) continue;
                if (share[s2] == 0 && act[r2] + 1 > L) continue;
                int64_t d = (tok[r1] - tok[r2]) / 2;
                if (d > share[s1]) d = share[s1];
                if (d > best_d) best_d = d, bs1 = s1, bs2 = s2;
            }
        }
        if (best_d <= 0) break;
        int r2 = rep_rank[bs2];
        if (share[bs2] == 0) act[r2]++;
        share[bs2] += best_d;
        share[bs1] -= best_d;
        if (share[bs1] == 0) act[r1]--;
        tok[r1] -= best_d;
        tok[r2] += best_d;
    }
}

#endif
