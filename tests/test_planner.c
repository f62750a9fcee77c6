// tests/test_planner.c: the SLO planner against brute force and its own model.
// For several models, hardware profiles, GPU budgets (1..6) and SLOs: the
// binary-searched plan equals an exhaustive scan of every batch; every plan
// returned meets its SLO and fits in memory when re-evaluated; the search is
// deterministic; TPOT grows with the batch (what the binary search assumes);
// and the expected-activated-experts formula matches a Monte-Carlo count.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "plan/planner.h"

static int passed, failed;
static void check(int ok, const char *what) {
    ok ? passed++ : failed++;
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : ".";
    const char *models[] = {"inputs/configs/qwen3-30b-a3b", "inputs/configs/mixtral-8x7b", "tests/fixtures/dev/qwen2_moe"};
    const char *hws[] = {"h100", "cpu"};
    const double slos[] = {0.005, 0.02, 0.05, 0.2};
    char path[1024], what[512];
    for (size_t mi = 0; mi < 3; mi++) {
        janus_config c;
        janus_err e;
        snprintf(path, sizeof path, "%s/%s", root, models[mi]);
        if (janus_config_load(path, &c, &e)) { printf("FAIL %s\n", e.msg); return 1; }
        for (size_t hi = 0; hi < 2; hi++) {
            const janus_hw *hw = janus_hw_preset(hws[hi]);
            janus_workload w = {300, 120, mi == 0 ? 1.0 : 0.0};
            int equal = 1, valid = 1, det = 1, cases = 0;
            for (int g = 1; g <= 6; g++)
                for (size_t si = 0; si < 4; si++) {
                    janus_plan a[4], b[4], d[4];
                    int na = janus_plan_search(&c, hw, &w, g, slos[si], 256, false, a, 4);
                    int nb = janus_plan_search(&c, hw, &w, g, slos[si], 256, true, b, 4);
                    int nd = janus_plan_search(&c, hw, &w, g, slos[si], 256, false, d, 4);
                    cases++;
                    if (na != nb || (na && (a[0].attn != b[0].attn || a[0].moe != b[0].moe || a[0].micro != b[0].micro ||
                                            a[0].batch != b[0].batch)))
                        equal = 0;
                    if (nd != na || (na && memcmp(&a[0], &d[0], sizeof a[0]) != 0)) det = 0;
                    for (int i = 0; i < (na < 4 ? na : 4); i++) {
                        janus_plan r = {.attn = a[i].attn, .moe = a[i].moe, .batch = a[i].batch, .micro = a[i].micro};
                        janus_plan_eval(&c, hw, &w, &r);
                        if (!r.fits || r.tpot_s > slos[si] || a[i].attn + a[i].moe > g) valid = 0;
                        if (i && a[i].per_gpu > a[i - 1].per_gpu + 1e-9) valid = 0; // ranked best first
                    }
                }
            snprintf(what, sizeof what, "%s on %s: binary search equals exhaustive search (%d budgets x SLOs)", models[mi], hws[hi], cases);
            check(equal, what);
            snprintf(what, sizeof what, "%s on %s: every plan meets its SLO and memory, ranked by tokens/s per GPU", models[mi], hws[hi]);
            check(valid, what);
            snprintf(what, sizeof what, "%s on %s: deterministic", models[mi], hws[hi]);
            check(det, what);
            int mono = 1;
            for (int layout = 0; layout < 3; layout++) {
                double prev = 0;
                for (int bsz = 1; bsz <= 512; bsz++) {
                    janus_plan p = {.attn = layout == 0 ? 4 : 2, .moe = layout == 0 ? 0 : 2, .micro = layout == 2 ? 2 : 1, .batch = bsz};
                    janus_plan_eval(&c, hw, &w, &p);
                    if (p.tpot_s < prev - 1e-15) mono = 0;
                    prev = p.tpot_s;
                }
            }
            snprintf(what, sizeof what, "%s on %s: TPOT never falls as the batch grows", models[mi], hws[hi]);
            check(mono, what);
        }
    }
    // Expected activated experts: formula vs Monte-Carlo (i.i.d. pairs).
    const int E = 64;
    double p[64], t = 0;
    for (int e = 0; e < E; e++) t += (p[e] = pow(e + 1.0, -1.0));
    for (int e = 0; e < E; e++) p[e] /= t;
    uint64_t x = 12345;
    for (int pairs = 8; pairs <= 512; pairs *= 4) {
        double mc = 0;
        const int S = 4000;
        for (int s = 0; s < S; s++) {
            int seen[64] = {0}, d = 0;
            for (int q = 0; q < pairs; q++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                double u = (double)(x >> 11) / 9007199254740992.0, acc = 0;
                int e = 0;
                while (e < E - 1 && (acc += p[e]) < u) e++;
                d += !seen[e], seen[e] = 1;
            }
            mc += (double)d / S;
        }
        double f = janus_expected_active(E, pairs, p);
        snprintf(what, sizeof what, "expected activated experts, Zipf(1) over 64, %d pairs: formula %.2f vs Monte-Carlo %.2f",
                 pairs, f, mc);
        check(fabs(f - mc) < 0.02 * mc + 0.05, what);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
