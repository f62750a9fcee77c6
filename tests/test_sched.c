// tests/test_sched.c: the activation scheduler against exhaustive search.
// Random small instances (3..8 active experts, 2..4 MoE ranks, 1..M replicas
// per expert on random ranks, random token counts): the busiest rank's
// activated experts must equal the brute-force optimum on at least 95% of
// instances and never exceed it by more than one; every schedule must give
// each expert exactly its tokens, only on ranks holding it; the same input
// must give the same schedule; and splitting must never raise the maximum.
#include <stdio.h>
#include <stdlib.h>

#include "sched/sched.h"

static int best;
// Exhaustive: every active expert whole on one of its replicas.
static void brute(const janus_placement *p, const int64_t *n, int e, int *act) {
    if (e == p->n_experts) {
        int mx = 0;
        for (int r = 0; r < p->n_moe; r++) mx = act[r] > mx ? act[r] : mx;
        if (mx < best) best = mx;
        return;
    }
    if (n[e] == 0) { brute(p, n, e + 1, act); return; }
    for (int s = p->rep_off[e]; s < p->rep_off[e + 1]; s++) {
        act[p->rep_rank[s]]++;
        brute(p, n, e + 1, act);
        act[p->rep_rank[s]]--;
    }
}

static uint64_t rng = 88172645463325252ull;
static int rnd(int n) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (int)(rng % (uint64_t)n); }

int main(void) {
    int n_inst = 3000, optimal = 0, worse_by_more = 0, broken = 0, nondet = 0;
    for (int it = 0; it < n_inst; it++) {
        int E = 3 + rnd(6), M = 2 + rnd(3);
        janus_placement p = {E, M, malloc(sizeof(int32_t) * (E + 1)), malloc(sizeof(int32_t) * E * M)};
        int k = 0;
        for (int e = 0; e < E; e++) {
            p.rep_off[e] = k;
            int nr = 1 + rnd(M), first = rnd(M);
            for (int j = 0; j < nr; j++) p.rep_rank[k++] = (first + j) % M;
        }
        p.rep_off[E] = k;
        int64_t n[8];
        for (int e = 0; e < E; e++) n[e] = rnd(4) ? 1 + rnd(40) : 0;
        int64_t share[64], share2[64], tok[4], tok2[4];
        int32_t act[4], act2[4];
        janus_sched_ws w;
        janus_sched_ws_init(&w, &p);
        janus_sched(&p, n, share, act, tok, &w);
        janus_sched(&p, n, share2, act2, tok2, &w);
        for (int s = 0; s < k; s++) nondet += share[s] != share2[s];
        // invariants: each expert's shares sum to its tokens; act/tok agree with shares
        int32_t a_chk[4] = {0};
        int64_t t_chk[4] = {0};
        for (int e = 0; e < E; e++) {
            int64_t sum = 0;
            for (int s = p.rep_off[e]; s < p.rep_off[e + 1]; s++) {
                if (share[s] < 0) broken++;
                sum += share[s];
                if (share[s] > 0) a_chk[p.rep_rank[s]]++, t_chk[p.rep_rank[s]] += share[s];
            }
            if (sum != n[e]) broken++;
        }
        int mx = 0;
        for (int r = 0; r < M; r++) {
            if (a_chk[r] != act[r] || t_chk[r] != tok[r]) broken++;
            mx = act[r] > mx ? act[r] : mx;
        }
        best = 1 << 30;
        int tmp[4] = {0};
        brute(&p, n, 0, tmp);
        if (best == 1 << 30) best = 0;
        if (mx == best) optimal++;
        if (mx > best + 1) worse_by_more++;
        janus_sched_ws_free(&w);
        free(p.rep_off);
        free(p.rep_rank);
    }
    int passed = 0, failed = 0;
    double frac = (double)optimal / n_inst;
    printf("%s optimal on %d of %d instances (%.1f%%, need >= 95%%)\n", frac >= 0.95 ? "ok  " : "FAIL", optimal, n_inst, 100 * frac);
    frac >= 0.95 ? passed++ : failed++;
    printf("%s %d instances more than one expert above the optimum (need 0)\n", worse_by_more ? "FAIL" : "ok  ", worse_by_more);
    worse_by_more ? failed++ : passed++;
    printf("%s %d broken invariants (shares sum to tokens, only on replicas, act/tok consistent)\n", broken ? "FAIL" : "ok  ", broken);
    broken ? failed++ : passed++;
    printf("%s %d nondeterministic shares\n", nondet ? "FAIL" : "ok  ", nondet);
    nondet ? failed++ : passed++;
    // Uniform placement: replicas on distinct ranks, every expert placed.
    janus_placement u;
    janus_placement_uniform(&u, 64, 8, 2);
    int bad = 0;
    for (int e = 0; e < 64; e++) bad += u.rep_rank[2 * e] == u.rep_rank[2 * e + 1] || u.rep_rank[2 * e] != e * 8 / 64;
    printf("%s uniform placement: contiguous primary, distinct replicas (%d bad)\n", bad ? "FAIL" : "ok  ", bad);
    bad ? failed++ : passed++;
    janus_placement_free(&u);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
