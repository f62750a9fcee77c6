// tests/test_placement.c: expert replication and placement (src/plan): valid
// placements on many random popularity vectors (every expert placed, replicas
// of an expert on distinct ranks, no rank over its slots, every slot used,
// hotter experts never fewer replicas), determinism, rejected inputs,
// janus_zipf's normalisation, the Monte-Carlo estimator against closed forms,
// and the acceptance configuration (Zipf 1.0, 64 experts, 8 MoE
// ranks, top-8, 10 slots per rank) against contiguous sharding and against the
// lower bound no placement can beat.
// Standalone: prints one line per check and "N passed, N failed"; exits
// non-zero on any failure.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "plan/placement.h"

typedef struct {
    int passed, failed;
} T;

static void check(T *t, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void check(T *t, bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs(ok ? "ok   " : "FAIL ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    ok ? t->passed++ : t->failed++;
}

static uint64_t next(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }
static double unif(uint64_t *s) { return (double)(next(s) >> 11) / 9007199254740992.0; }

// Number of violated invariants of a placement made with (E, M, slots).
static int invalid(const janus_placement *pl, const double *p, int E, int M, int slots) {
    int bad = 0;
    if (pl->n_experts != E || pl->n_moe != M || pl->rep_off[0] != 0) return 1;
    int *cnt = calloc(M, sizeof(int));
    for (int e = 0; e < E; e++) {
        int r = pl->rep_off[e + 1] - pl->rep_off[e];
        bad += r < 1 || r > M;
        for (int a = pl->rep_off[e]; a < pl->rep_off[e + 1]; a++) {
            int m = pl->rep_rank[a];
            if (m < 0 || m >= M) { bad++; continue; }
            cnt[m]++;
            for (int b = a + 1; b < pl->rep_off[e + 1]; b++) bad += pl->rep_rank[b] == m;
        }
    }
    for (int m = 0; m < M; m++) bad += cnt[m] > slots;
    int per_rank = slots < E ? slots : E;
    bad += pl->rep_off[E] != M * per_rank; // every slot used (so within M * slots)
    // Hotter experts never get fewer replicas.
    for (int a = 0; a < E; a++)
        for (int b = 0; b < E; b++)
            if (p[a] > p[b]) bad += pl->rep_off[a + 1] - pl->rep_off[a] < pl->rep_off[b + 1] - pl->rep_off[b];
    free(cnt);
    return bad;
}

static void valid_on_random_popularity(T *t) {
    uint64_t s = 0x9e3779b97f4a7c15ull;
    int n = 5000, bad_inst = 0, nondet = 0, rc_fail = 0;
    double p[96];
    for (int it = 0; it < n; it++) {
        int E = 1 + (int)(next(&s) % 96), M = 1 + (int)(next(&s) % 16);
        int lo = (E + M - 1) / M, slots = lo + (int)(next(&s) % (E + 3 - lo));
        int kind = (int)(next(&s) % 5);
        for (int e = 0; e < E; e++) {
            double u = unif(&s);
            p[e] = kind == 0 ? u : kind == 1 ? (next(&s) % 3 ? 0 : u) : kind == 2 ? pow(u, 8) : kind == 3 ? (e == 0) : 1.0 / E;
        }
        janus_placement a, b;
        if (janus_place_replicated(p, E, M, slots, &a)) { rc_fail++; continue; }
        if (invalid(&a, p, E, M, slots)) {
            if (bad_inst++ < 3) printf("     invalid placement: E=%d M=%d slots=%d kind=%d\n", E, M, slots, kind);
        }
        janus_place_replicated(p, E, M, slots, &b);
        nondet += memcmp(a.rep_off, b.rep_off, sizeof(int32_t) * (E + 1)) ||
                  memcmp(a.rep_rank, b.rep_rank, sizeof(int32_t) * a.rep_off[E]);
        janus_placement_free(&a);
        janus_placement_free(&b);
    }
    check(t, rc_fail == 0 && bad_inst == 0,
          "placement_valid_on_%d_random_popularities (>=1 replica, distinct ranks, <=slots per rank, all slots used, "
          "hotter never fewer replicas): %d invalid, %d refused",
          n, bad_inst, rc_fail);
    check(t, nondet == 0, "placement_deterministic: %d of %d differ between two calls", nondet, n);
}

static void rejects_bad_input(T *t) {
    double p[8] = {0.5, 0.5, 0, 0, 0, 0, 0, 0}, neg[4] = {0.5, 0.7, -0.2, 0};
    janus_placement pl = {0};
    int a = janus_place_replicated(p, 8, 2, 3, &pl);  // 6 slots < 8 experts
    int b = janus_place_replicated(neg, 4, 2, 2, &pl); // negative entry
    int c = janus_place_replicated(p, 8, 0, 8, &pl);   // no ranks
    check(t, a == -1 && b == -1 && c == -1 && pl.rep_off == NULL,
          "placement_refuses_too_few_slots_negative_p_no_ranks: rc %d %d %d", a, b, c);
}

static void zipf_normalised(T *t) {
    double p[256];
    int bad = 0;
    const double ss[] = {0, 0.5, 1.0, 1.2, 3.0};
    for (int i = 0; i < 5; i++) {
        janus_zipf(p, 256, ss[i]);
        double sum = 0;
        for (int e = 0; e < 256; e++) sum += p[e], bad += e && p[e] > p[e - 1];
        bad += fabs(sum - 1) > 1e-12 || fabs(p[0] / p[1] - pow(2, ss[i])) > 1e-9;
    }
    janus_zipf(p, 256, 0);
    for (int e = 0; e < 256; e++) bad += fabs(p[e] - 1.0 / 256) > 1e-15;
    check(t, bad == 0, "zipf_sums_to_one_decreasing_ratio_2_to_the_s_uniform_at_0: %d bad", bad);
}

static void estimator_matches_closed_forms(T *t) {
    janus_placement c; // experts 0,1 on rank 0; 2,3 on rank 1
    janus_placement_uniform(&c, 4, 2, 1);
    double u[4] = {0.25, 0.25, 0.25, 0.25}, mt;
    // One token, top-1: exactly one expert on one rank.
    double v = janus_expected_max_activated(&c, u, 1, 1, 500, 1, &mt);
    check(t, v == 1.0 && mt == 1.0, "estimator_one_token_top1_is_exactly_1: %.6f activated, %.6f tokens", v, mt);
    // Two tokens, top-1: 2 iff both pick different experts of one rank (1/4).
    const int S = 40000;
    v = janus_expected_max_activated(&c, u, 2, 1, S, 2, NULL);
    double se = sqrt(0.25 * 0.75 / S);
    check(t, fabs(v - 1.25) < 5 * se, "estimator_two_tokens_top1_uniform: %.4f, exact 1.25 (5 sigma %.4f)", v, 5 * se);
    // One token, top-2 without replacement from p = .4,.3,.2,.1: the pair lies
    // on one rank with P = sum over same-rank pairs of p_i p_j / (1 - p_i) +
    // p_j p_i / (1 - p_j) = 0.371429 + 0.047222 (draws with replacement, or
    // independent of order, would give other values).
    double q[4] = {0.4, 0.3, 0.2, 0.1};
    double same = .4 * .3 / .6 + .3 * .4 / .7 + .2 * .1 / .8 + .1 * .2 / .9;
    v = janus_expected_max_activated(&c, q, 1, 2, S, 3, NULL);
    se = sqrt(same * (1 - same) / S);
    check(t, fabs(v - (1 + same)) < 5 * se, "estimator_top2_without_replacement_skewed: %.4f, exact %.4f (5 sigma %.4f)", v,
          1 + same, 5 * se);
    // Top-4 of 4 from a very skewed p (the rejection sampler's fallback): every
    // token activates all 4 experts, 2 per rank.
    double sk[4] = {1 - 3e-9, 1e-9, 1e-9, 1e-9};
    v = janus_expected_max_activated(&c, sk, 3, 4, 50, 4, &mt);
    check(t, v == 2.0 && mt == 6.0, "estimator_topk_equals_experts_skewed_is_exactly_2: %.4f activated, %.4f tokens", v, mt);
    // k above the experts with p > 0 is capped: one expert, one activation.
    double one[4] = {0, 0, 1, 0};
    v = janus_expected_max_activated(&c, one, 5, 3, 50, 5, &mt);
    check(t, v == 1.0 && mt == 5.0, "estimator_caps_k_at_nonzero_experts: %.4f activated, %.4f tokens", v, mt);
    janus_placement_free(&c);
    // Same seed, same estimate; another seed, another one (64 experts, 8
    // ranks, 16 tokens x top-8 from Zipf 1.0: the maximum varies per sample).
    double z[64], ta, tb, tc;
    janus_zipf(z, 64, 1.0);
    janus_placement_uniform(&c, 64, 8, 2);
    double a = janus_expected_max_activated(&c, z, 16, 8, 100, 9, &ta);
    double b = janus_expected_max_activated(&c, z, 16, 8, 100, 9, &tb);
    double d = janus_expected_max_activated(&c, z, 16, 8, 100, 10, &tc);
    check(t, a == b && ta == tb && (d != a || tc != ta),
          "estimator_deterministic_for_a_seed: seed 9 %.4f/%.4f twice %.4f/%.4f, seed 10 %.4f/%.4f", a, ta, b, tb, d, tc);
    janus_placement_free(&c);
    // Every expert on every rank: the scheduler reaches ceil(active / M), here
    // 1 for any 2 tokens x top-1 on 2 ranks.
    janus_placement f;
    janus_placement_uniform(&f, 4, 2, 2);
    v = janus_expected_max_activated(&f, u, 2, 1, 500, 6, NULL);
    check(t, v == 1.0, "estimator_full_replication_two_tokens_is_exactly_1: %.4f", v);
    janus_placement_free(&f);
}

// The configuration, and a grid around it: replicated placement never
// worse than contiguous sharding, and at the lower bound of any placement
// (every expert on every rank: ceil(active / M)) once it is the binding one.
static void acceptance(T *t) {
    const int E = 64, M = 8, k = 8;
    double p[64];
    janus_zipf(p, E, 1.0);
    janus_placement c, r, f;
    janus_placement_uniform(&c, E, M, 1);
    janus_placement_uniform(&f, E, M, M);
    janus_place_replicated(p, E, M, 10, &r);
    const int toks[] = {16, 64, 256};
    for (int i = 0; i < 3; i++) {
        const int S = 1000;
        double vc = janus_expected_max_activated(&c, p, toks[i], k, S, 11, NULL);
        double vr = janus_expected_max_activated(&r, p, toks[i], k, S, 11, NULL);
        double vf = janus_expected_max_activated(&f, p, toks[i], k, S, 11, NULL);
        double red = 100 * (vc - vr) / vc, reach = 100 * (vc - vf) / vc;
        // The issue asks for >= 20% fewer activated experts on the busiest rank;
        // no placement can go below the bound vf (the same samples), so where
        // the bound itself is within 20% of contiguous the bar is the bound.
        bool ok = vr <= fmax(0.8 * vc, vf + 0.05);
        check(t, ok,
              "zipf1.0_64experts_8ranks_top8_10slots_%d_tokens: busiest rank activates %.3f (contiguous) vs %.3f "
              "(replicated), -%.1f%%; any placement >= %.3f (-%.1f%% at most); need -20%% or within 0.05 of that bound",
              toks[i], vc, vr, red, vf, reach);
    }
    janus_placement_free(&c);
    janus_placement_free(&r);
    janus_placement_free(&f);
    // Grid: never worse than contiguous (a single LPT pass by expected load
    // over all replicas was: 8.65 vs 8.00 at Zipf 1.0, 10 slots, 64 tokens).
    const double zs[] = {0, 0.5, 1.0, 1.2};
    const int slots[] = {8, 10, 12};
    int worse = 0, cells = 0;
    double worst = 0;
    for (int zi = 0; zi < 4; zi++) {
        janus_zipf(p, E, zs[zi]);
        janus_placement_uniform(&c, E, M, 1);
        for (int si = 0; si < 3; si++) {
            janus_place_replicated(p, E, M, slots[si], &r);
            for (int i = 0; i < 3; i++) {
                double vc = janus_expected_max_activated(&c, p, toks[i], k, 200, 12, NULL);
                double vr = janus_expected_max_activated(&r, p, toks[i], k, 200, 12, NULL);
                cells++;
                // Where both are the same placement up to relabelling (Zipf 0,
                // 8 slots) they differ by sampling noise alone: 0.05 allows it.
                worse += vr > vc + 0.05;
                worst = fmax(worst, vr - vc);
            }
            janus_placement_free(&r);
        }
        janus_placement_free(&c);
    }
    check(t, worse == 0, "replicated_never_worse_than_contiguous_zipf_0_to_1.2_slots_8_to_12_tokens_16_to_256: %d of %d cells "
          "worse by over 0.05 (largest excess %.3f)", worse, cells, worst);
}

int main(void) {
    T t = {0, 0};
    valid_on_random_popularity(&t);
    rejects_bad_input(&t);
    zipf_normalised(&t);
    estimator_matches_closed_forms(&t);
    acceptance(&t);
    printf("%d passed, %d failed\n", t.passed, t.failed);
    return t.failed != 0;
}
