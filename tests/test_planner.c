// tests/test_planner.c: the SLO planner against brute force and its own model.
// For several models, hardware profiles, GPU budgets (1..6) and SLOs: the
// binary-searched plan equals an exhaustive scan of every batch; every plan
// returned meets its SLO and fits in memory when re-evaluated; the search is
// deterministic; TPOT grows with the batch (what the binary search assumes);
// and the expected-activated-experts formula matches a Monte-Carlo count.
// Ranks sharing one GPU (ranks_share_gpu): the same search properties; the
// hand-off term against a count of context changes in the time-sliced GPU's
// cyclic order of process segments; TPOT linear in the fitted numbers (what
// tools/plan_fit_shared.py relies on); the one-GPU-per-rank model untouched.
// The exchange priced at payload_bytes per element, against the formula.
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
    janus_hw hws[3] = {*janus_hw_preset("h100"), *janus_hw_preset("cpu"), *janus_hw_preset("h100")};
    hws[2].name = "h100 shared by every rank", hws[2].ranks_share_gpu = 1, hws[2].layer_overhead_s = 60e-6;
    hws[2].shared_handoff_s = 200e-6, hws[2].shared_attn_handoff_s = 550e-6;
    const double slos[] = {0.005, 0.02, 0.05, 0.2};
    char path[1024], what[512];
    for (size_t mi = 0; mi < 3; mi++) {
        janus_config c;
        janus_err e;
        snprintf(path, sizeof path, "%s/%s", root, models[mi]);
        if (janus_config_load(path, &c, &e)) { printf("FAIL %s\n", e.msg); return 1; }
        for (size_t hi = 0; hi < 3; hi++) {
            const janus_hw *hw = &hws[hi];
            janus_workload w = {300, 120, mi == 0 ? 1.0 : 0.0, 0};
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
            snprintf(what, sizeof what, "%s on %s: binary search equals exhaustive search (%d budgets x SLOs)", models[mi], hw->name, cases);
            check(equal, what);
            snprintf(what, sizeof what, "%s on %s: every plan meets its SLO and memory, ranked by tokens/s per GPU", models[mi], hw->name);
            check(valid, what);
            snprintf(what, sizeof what, "%s on %s: deterministic", models[mi], hw->name);
            check(det, what);
            // The whole job's objective: the search's winner against every
            // (layout, batch) that meets the SLO in memory, brute force.
            {
                janus_workload wj = w;
                wj.job = 1;
                int job_ok = 1, jcases = 0;
                for (int g = 1; g <= 4; g++)
                    for (size_t si = 1; si < 4; si++) {
                        janus_plan top[2];
                        const int nf = janus_plan_search(&c, hw, &wj, g, slos[si], 256, false, top, 2);
                        double best = 0;
                        for (int a = 1; a <= g; a++)
                            for (int mo = 0; a + mo <= g; mo++)
                                for (int m = 1; m <= (mo ? 4 : 1); m++)
                                    for (int bsz = m; bsz <= 256; bsz++) {
                                        janus_plan p = {.attn = a, .moe = mo, .micro = m, .batch = bsz};
                                        janus_plan_eval(&c, hw, &wj, &p);
                                        if (p.fits && p.tpot_s <= slos[si] && p.job_per_gpu > best) best = p.job_per_gpu;
                                    }
                        jcases++;
                        if ((nf > 0) != (best > 0) || (nf && fabs(top[0].job_per_gpu - best) > 1e-9 * best)) {
                            job_ok = 0;
                            printf("     %d GPUs, SLO %.0f ms: search %.3f job tok/s/GPU, brute force %.3f\n", g,
                                   slos[si] * 1e3, nf ? top[0].job_per_gpu : 0.0, best);
                        }
                    }
                snprintf(what, sizeof what, "%s on %s: --objective job: the search's winner is the best whole-job plan "
                         "of a brute-force scan (%d budgets x SLOs)", models[mi], hw->name, jcases);
                check(job_ok, what);
            }
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
            snprintf(what, sizeof what, "%s on %s: TPOT never falls as the batch grows", models[mi], hw->name);
            check(mono, what);
        }
    }
    // Shared GPU: the hand-off term. Oracle: one layer and micro-batch is a
    // cyclic sequence of GPU segments, each tagged with its process: a lone
    // attention process's three synchronised segments (router read-back, rows
    // out, outputs back) run back to back, nobody else having work then, and
    // then each MoE process's one; a context change is a hand-off. With
    // several attention-side processes the model charges a fitted cost per
    // attention process instead (shared_attn_handoff_s), and a monolithic
    // rank is an attention process and a MoE process.
    {
        janus_config c;
        janus_err e;
        snprintf(path, sizeof path, "%s/inputs/configs/qwen3-moe-12l", root);
        if (janus_config_load(path, &c, &e)) { printf("FAIL %s\n", e.msg); return 1; }
        janus_workload w = {64, 64, 0, 0};
        janus_hw h0 = hws[2];
        h0.shared_handoff_s = h0.shared_attn_handoff_s = 0;
        int hand_ok = 1, lin_ok = 1, sep_ok = 1, mem_ok = 1, cases = 0;
        for (int a = 1; a <= 4; a++)
            for (int mo = 0; mo <= 4; mo++)
                for (int m = 1; m <= (mo ? 3 : 1); m++) {
                    if (a + mo < 2) continue;
                    janus_plan p0 = {.attn = a, .moe = mo, .batch = 12, .micro = m}, p1 = p0, p2 = p0;
                    janus_plan_eval(&c, &h0, &w, &p0);
                    janus_plan_eval(&c, &hws[2], &w, &p1);
                    double expect; // seconds of hand-offs per layer and micro-batch
                    if (a == 1 && mo > 0) {
                        int seq[16], n = 0, changes = 0; // process ids: 0 attention, 1.. MoE
                        for (int k = 0; k < 3; k++) seq[n++] = 0;
                        for (int q = 1; q <= mo; q++) seq[n++] = q;
                        for (int k = 0; k < n; k++) changes += seq[k] != seq[(k + 1) % n];
                        expect = changes * hws[2].shared_handoff_s;
                    } else {
                        const int procs = mo ? mo : a; // MoE processes (monolithic: every rank)
                        expect = a * hws[2].shared_attn_handoff_s + procs * hws[2].shared_handoff_s;
                    }
                    const double got = (p1.tpot_s - p0.tpot_s) / (janus_n_moe_layers(&c) * m);
                    if (fabs(got - expect) > 1e-9) {
                        hand_ok = 0;
                        printf("     %d+%d m%d: hand-offs %.1f us per layer and micro-batch, expected %.1f\n", a, mo, m,
                               got * 1e6, expect * 1e6);
                    }
                    janus_hw h2 = hws[2];
                    h2.shared_handoff_s *= 2, h2.shared_attn_handoff_s *= 2, h2.layer_overhead_s *= 2;
                    janus_hw h1o = h0;
                    h1o.layer_overhead_s = 0;
                    janus_plan p3 = p0;
                    janus_plan_eval(&c, &h2, &w, &p2);
                    janus_plan_eval(&c, &h1o, &w, &p3);
                    // T(2x) - T(x) = T(x) - T(0), with x = (overhead, h, h_attn)
                    if (fabs((p2.tpot_s - p1.tpot_s) - (p1.tpot_s - p3.tpot_s)) > 1e-12) lin_ok = 0;
                    janus_hw s0 = *janus_hw_preset("h100"), s1 = s0;
                    s1.shared_handoff_s = 1, s1.shared_attn_handoff_s = 1; // ignored without ranks_share_gpu
                    janus_plan q0 = {.attn = a, .moe = mo, .batch = 12, .micro = m}, q1 = q0;
                    janus_plan_eval(&c, &s0, &w, &q0);
                    janus_plan_eval(&c, &s1, &w, &q1);
                    if (q0.tpot_s != q1.tpot_s) sep_ok = 0;
                    // memory of the one shared GPU: every rank's, as one GPU per rank counts them
                    const double total = mo ? a * q0.attn_mem + mo * q0.moe_mem : a * q0.attn_mem;
                    if (fabs(p1.attn_mem - total) > 1e-9 * total || fabs(p1.moe_mem - total) > 1e-9 * total ||
                        p1.fits != (total <= 0.9 * hws[2].mem_bytes)) {
                        mem_ok = 0;
                        printf("     %d+%d m%d: shared GPU memory %.3g GB, ranks' sum %.3g GB\n", a, mo, m, p1.attn_mem / 1e9,
                               total / 1e9);
                    }
                    cases++;
                }
        snprintf(what, sizeof what, "shared GPU: hand-offs per layer and micro-batch match the segment count (%d layouts)", cases);
        check(hand_ok, what);
        check(lin_ok, "shared GPU: TPOT is linear in layer_overhead_s, shared_handoff_s, shared_attn_handoff_s");
        check(sep_ok, "one GPU per rank: the shared-GPU numbers do not enter the model");
        check(mem_ok, "shared GPU: the memory check adds up every rank's weights and KV cache");
        { // Qwen3-30B-A3B as 4 monolithic ranks on one H100: one rank's share fits, the four do not
            janus_config q;
            snprintf(path, sizeof path, "%s/inputs/configs/qwen3-30b-a3b", root);
            if (janus_config_load(path, &q, &e)) { printf("FAIL %s\n", e.msg); return 1; }
            janus_plan m4 = {.attn = 4, .moe = 0, .batch = 256, .micro = 1}, m4s = m4;
            janus_hw one = *janus_hw_preset("h100");
            janus_plan_eval(&q, &one, &w, &m4);
            janus_plan_eval(&q, &hws[2], &w, &m4s);
            snprintf(what, sizeof what, "shared GPU: Qwen3-30B-A3B mono4 at batch 256 fits one GPU per rank (%.1f GB each), not one shared H100 (%.1f GB)",
                     m4.attn_mem / 1e9, m4s.attn_mem / 1e9);
            check(m4.fits && !m4s.fits, what);
        }
    }
    // The exchange is priced at payload_bytes per element (janus moves f32
    // rows), not at act_bytes, and on one node at one row per (token, MoE
    // rank) each way: per layer, disaggregated 1+1 2 (alpha + b H payload /
    // link), monolithic on 2 GPUs 2 (alpha + b r H payload / 2 / link) with r
    // = 2 (1 - C(E/2, k) / C(E, k)) (docs/plan.md); r against a Monte-Carlo
    // draw of k distinct experts.
    {
        janus_config q;
        janus_err e;
        snprintf(path, sizeof path, "%s/inputs/configs/qwen3-30b-a3b", root);
        if (janus_config_load(path, &q, &e)) { printf("FAIL %s\n", e.msg); return 1; }
        janus_workload w = {512, 256, 0, 0};
        janus_hw h = *janus_hw_preset("h200");
        const int ok_default = h.payload_bytes == 4 && janus_hw_preset("h100")->payload_bytes == 4 &&
                               janus_hw_preset("cpu")->payload_bytes == 4;
        int ok = 1;
        for (int pb = 1; pb <= 4; pb *= 2) {
            h.payload_bytes = pb;
            const double row = (double)q.hidden * pb;
            double none = 1; // C(E/2, k) / C(E, k)
            for (int i = 0; i < q.top_k; i++) none *= (q.n_experts / 2.0 - i) / (q.n_experts - i);
            janus_plan d = {.attn = 1, .moe = 1, .batch = 256, .micro = 1}, m2 = {.attn = 2, .moe = 0, .batch = 256, .micro = 1};
            janus_plan_eval(&q, &h, &w, &d);
            janus_plan_eval(&q, &h, &w, &m2);
            const double want_d = 2 * (h.intra_alpha_s + 256 * row / h.intra_Bps);
            const double want_m = 2 * (h.intra_alpha_s + 256 * row * 2 * (1 - none) / 2 / h.intra_Bps);
            if (fabs(d.t_xchg_s - want_d) > 1e-12 || fabs(m2.t_xchg_s - want_m) > 1e-12) {
                ok = 0;
                printf("     payload %d B: 1+1 exchange %.3f us (want %.3f), monolithic 2 %.3f us (want %.3f)\n", pb,
                       d.t_xchg_s * 1e6, want_d * 1e6, m2.t_xchg_s * 1e6, want_m * 1e6);
            }
        }
        check(ok_default, "every preset prices the exchange at 4 bytes per element (f32 rows)");
        check(ok, "the exchange per layer is 2 (alpha + rows x payload_bytes / link) at 1, 2 and 4 bytes (1+1, monolithic 2)");
        { // intra_sums 0 (host MPI, NCCL): a row per pair; the cpu preset says so
            janus_hw pp = *janus_hw_preset("h200");
            pp.intra_sums = 0;
            janus_plan d = {.attn = 1, .moe = 1, .batch = 256, .micro = 1};
            janus_plan_eval(&q, &pp, &w, &d);
            const double want = 2 * (pp.intra_alpha_s + 256.0 * q.top_k * q.hidden * pp.payload_bytes / pp.intra_Bps);
            check(fabs(d.t_xchg_s - want) < 1e-12 && janus_hw_preset("cpu")->intra_sums == 1 &&
                      janus_hw_preset("h100")->intra_sums == 1 && janus_hw_preset("h200")->intra_sums == 1,
                  "intra_sums 0 prices a row per (token, expert) pair (NCCL); every preset sums");
            // Across nodes (one GPU per node): a row per pair with inter_sums 0 (NCCL).
            janus_hw xn = *janus_hw_preset("h200");
            xn.gpus_per_node = 1;
            janus_plan e0 = {.attn = 1, .moe = 1, .batch = 256, .micro = 1}, e1 = e0;
            xn.inter_sums = 0;
            janus_plan_eval(&q, &xn, &w, &e0);
            xn.inter_sums = 1;
            janus_plan_eval(&q, &xn, &w, &e1);
            const double w0 = 2 * (xn.inter_alpha_s + 256.0 * q.top_k * q.hidden * xn.payload_bytes / xn.inter_Bps);
            const double w1 = 2 * (xn.inter_alpha_s + 256.0 * q.hidden * xn.payload_bytes / xn.inter_Bps);
            check(fabs(e0.t_xchg_s - w0) < 1e-12 && fabs(e1.t_xchg_s - w1) < 1e-12 && janus_hw_preset("h100")->inter_sums == 1 &&
                      janus_hw_preset("cpu")->inter_sums == 1,
                  "across nodes a row per pair with inter_sums 0, one per token each way with it (1+1; every preset)");
        }
        // janus_rows_per_token against draws of k distinct experts of E over M ranks.
        uint64_t z = 99;
        int ok_r = 1;
        const int cases[][3] = {{128, 8, 2}, {128, 8, 3}, {128, 8, 8}, {8, 2, 4}, {64, 6, 16}, {16, 4, 1}};
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            const int E = cases[ci][0], K = cases[ci][1], M = cases[ci][2];
            const int draws = 20000;
            double sum = 0;
            for (int d = 0; d < draws; d++) {
                int pick[16], n = 0, hit[16] = {0};
                while (n < K) {
                    z ^= z << 13, z ^= z >> 7, z ^= z << 17;
                    const int e = (int)(z % (uint64_t)E);
                    int dup = 0;
                    for (int j = 0; j < n; j++) dup |= pick[j] == e;
                    if (!dup) pick[n++] = e;
                }
                for (int j = 0; j < K; j++) hit[pick[j] * M / E] = 1; // rank of expert e: e / (E / M)
                for (int r = 0; r < M; r++) sum += hit[r];
            }
            const double mc = sum / draws, f = janus_rows_per_token(E, K, M);
            if (fabs(mc - f) > 0.02 * f + 0.01) {
                ok_r = 0;
                printf("     E=%d k=%d M=%d: rows per token %.4f, Monte-Carlo %.4f\n", E, K, M, f, mc);
            }
        }
        check(ok_r, "rows per token on one node (once per MoE rank holding one of its experts) match Monte-Carlo draws");
        // Prefill: one GPU prices every prompt token's FLOPs at prefill_eff of
        // peak: 2 x its weights' multiply-adds (q, k, v, o, router, k experts
        // of 3 H I) + the scores and values over P / 2 positions (4 (P/2) nq).
        {
            janus_hw one = *janus_hw_preset("h200");
            janus_plan p1 = {.attn = 1, .moe = 0, .batch = 100, .micro = 1};
            janus_plan_eval(&q, &one, &w, &p1);
            const double H = q.hidden, nq = (double)q.n_heads * q.head_dim, nkv = (double)q.n_kv_heads * q.head_dim;
            const double per_layer = 2 * (2 * nq * H + 2 * nkv * H + 2 * H + (double)q.n_experts * H) +
                                     q.top_k * 6.0 * H * q.moe_inter + 4 * (w.prompt_len / 2) * nq;
            const double want = 100 * w.prompt_len * q.n_layers * per_layer / (one.flops * one.prefill_eff);
            const double job = 100 * w.output_len / (want + w.output_len * p1.tpot_s);
            char what[200];
            snprintf(what, sizeof what, "prefill of one GPU: %.3f s for 100 prompts of %.0f (want %.3f), job %.1f tok/s (want %.1f)",
                     p1.prefill_s, w.prompt_len, want, p1.job_per_gpu, job);
            check(fabs(p1.prefill_s - want) < 1e-9 * want && fabs(p1.job_per_gpu - job) < 1e-9 * job, what);
            // 1+1: the same FLOPs one after the other, plus every token's rows
            // there and back (one row each way with sums; k without).
            janus_plan d1 = {.attn = 1, .moe = 1, .batch = 100, .micro = 1};
            janus_plan_eval(&q, &one, &w, &d1);
            const double x1 = 100 * w.prompt_len * (double)q.n_layers * 2 * H * one.payload_bytes / one.intra_Bps;
            janus_hw pp = one;
            pp.intra_sums = 0;
            janus_plan d0 = d1;
            janus_plan_eval(&q, &pp, &w, &d0);
            snprintf(what, sizeof what, "prefill of 1+1: FLOPs + one row per token each way (%.3f s, want %.3f), "
                     "a row per pair without sums (%.3f s, want %.3f)", d1.prefill_s, want + x1, d0.prefill_s,
                     want + q.top_k * x1);
            check(fabs(d1.prefill_s - (want + x1)) < 1e-9 * want && fabs(d0.prefill_s - (want + q.top_k * x1)) < 1e-9 * want,
                  what);
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
