// plan/planner.c: performance model and SLO planner (see planner.h).
//
// Per MoE layer and micro-batch of b' = b / m sequences per attention GPU:
//   t_attn = (attention-side weights + KV of b' sequences) / (HBM x eff)
//            + FLOPs / peak + overhead                 (weights re-read per micro-batch)
//   t_moe  = (activated experts per MoE GPU x bytes of one expert) / (HBM x eff)
//            + expert FLOPs / peak + overhead, with the A b' k routed pairs
//            spread over the MoE GPUs by the activation scheduler
//   t_xchg = 2 (alpha + b' r H payload_bytes / link bandwidth)   (there and back)
//            r rows per token: on one node with hw->intra_sums, across nodes
//            with hw->inter_sums (CUDA IPC, host MPI, CUDA-aware MPI), a
//            token's row goes once to each MoE rank holding one of its k
//            experts and one sum comes back (janus_rows_per_token); else
//            (NCCL, JANUS_XCHG_DEDUP=0 / JANUS_XCHG_SUMS=0) r = k, a row per pair
// Disaggregated, ping-pong over m micro-batches:
//   T_layer = m max(t_attn, t_xchg + t_moe) + min(t_attn, t_xchg + t_moe)
// or, where one message exceeds hw->overlap_max_bytes (host MPI moves it only
// when the sender calls MPI again), serially: m (t_attn + t_xchg + t_moe).
// Monolithic (every GPU attends b sequences and holds E / G experts):
//   T_layer = t_attn(b) + t_xchg + t_moe(G b k pairs over G GPUs)
// TPOT = sum over layers + lm_head (its read, and its FLOPs for every sequence).
// Dense layers: attention + dense FFN. Activations and the KV cache take
// hw->act_bytes per element (f32 on CPUs); the exchange payload hw->payload_bytes.
// Every rank on one GPU (hw->ranks_share_gpu): the driver time-slices the
// processes, so per MoE layer and micro-batch the work of all of them adds up
// (every attention rank's attention, one read of every activated expert, the
// rows as device copies) and every context hand-off costs time (planner.h):
//   T_layer = m (t_attn_all + t_experts + t_copies + 2 overhead + t_handoffs)
//   t_handoffs = (A == 1 ? h : A h_attn) + M_roles h
// h = shared_handoff_s, h_attn = shared_attn_handoff_s, M_roles = M (G when
// monolithic, each rank being an attention and a MoE process).
#include "plan/planner.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const janus_hw PRESETS[] = {
    // name   HBM B/s  eff    FLOP/s  memory   NVLink B/s alpha   network B/s alpha  layer overhead  GPUs/node
    //        activation bytes, overlap limit (CPU: Open MPI's shared-memory eager limit, 4 KiB),
    //        ranks share one GPU (0: one GPU per rank) and its per-layer switch times,
    //        exchange payload bytes per element (f32 rows), rows once per (token, MoE rank) within a node
    //        and across nodes (every transport but NCCL)
    //        and the share of peak FLOP/s prompt steps reach (one H200, Qwen3-30B-A3B, docs/plan.md)
    {"h100", 3.35e12, 0.80, 989e12, 80e9, 450e9, 5e-6, 50e9, 10e-6, 20e-6, 8, 2, 0, 0, 0, 0, 4, 1, 1, 0.35},
    {"h200", 4.80e12, 0.80, 989e12, 141e9, 450e9, 5e-6, 50e9, 10e-6, 20e-6, 8, 2, 0, 0, 0, 0, 4, 1, 1, 0.35},
    {"cpu", 30e9, 0.10, 100e9, 24e9, 10e9, 2e-6, 10e9, 20e-6, 50e-6, 2, 4, 4096, 0, 0, 0, 4, 1, 1, 0.35},
};

const janus_hw *janus_hw_preset(const char *name) {
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        if (!strcmp(PRESETS[i].name, name)) return &PRESETS[i];
    return NULL;
}

int janus_hw_load(const char *path, janus_hw *hw, janus_err *e) {
    json_error_t je;
    json_t *r = json_load_file(path, 0, &je);
    if (!r) return janus_errf(e, "%s: line %d: %s", path, je.line, je.text);
    const char *base = json_string_value(json_object_get(r, "base"));
    const janus_hw *b = janus_hw_preset(base ? base : "h100");
    if (!b) {
        json_decref(r);
        return janus_errf(e, "%s: base: \"%s\" is not one of h100, h200, cpu", path, base);
    }
    *hw = *b;
    static char name[64];
    snprintf(name, sizeof name, "%s", json_string_value(json_object_get(r, "name")) ? json_string_value(json_object_get(r, "name")) : "calibrated");
    hw->name = name;
    struct { const char *k; double *v; } f[] = {{"hbm_Bps", &hw->hbm_Bps}, {"eff", &hw->eff}, {"flops", &hw->flops},
        {"mem_bytes", &hw->mem_bytes}, {"intra_Bps", &hw->intra_Bps}, {"intra_alpha_s", &hw->intra_alpha_s},
        {"inter_Bps", &hw->inter_Bps}, {"inter_alpha_s", &hw->inter_alpha_s}, {"layer_overhead_s", &hw->layer_overhead_s},
        {"act_bytes", &hw->act_bytes}, {"overlap_max_bytes", &hw->overlap_max_bytes},
        {"ranks_share_gpu", &hw->ranks_share_gpu}, {"shared_handoff_s", &hw->shared_handoff_s},
        {"shared_attn_handoff_s", &hw->shared_attn_handoff_s}, {"payload_bytes", &hw->payload_bytes},
        {"intra_sums", &hw->intra_sums}, {"inter_sums", &hw->inter_sums}, {"prefill_eff", &hw->prefill_eff}};
    // The per-role constants of the first shared-GPU model: a file with them
    // was fitted to a different formula, so its numbers would mislead here.
    if (json_object_get(r, "shared_attn_rank_s") || json_object_get(r, "shared_moe_rank_s")) {
        json_decref(r);
        return janus_errf(e, "%s: shared_attn_rank_s / shared_moe_rank_s belong to the old shared-GPU model: refit with "
                             "tools/gpu-plan-check (shared_handoff_s, shared_attn_handoff_s)", path);
    }
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        json_t *v = json_object_get(r, f[i].k);
        if (!v) continue;
        if (!json_is_number(v) || json_number_value(v) < 0) {
            json_decref(r);
            return janus_errf(e, "%s: %s: not a non-negative number", path, f[i].k);
        }
        *f[i].v = json_number_value(v);
    }
    json_t *g = json_object_get(r, "gpus_per_node");
    if (json_is_integer(g) && json_integer_value(g) > 0) hw->gpus_per_node = (int)json_integer_value(g);
    json_decref(r);
    if (!(hw->hbm_Bps > 0 && hw->eff > 0 && hw->flops > 0 && hw->act_bytes > 0 && hw->payload_bytes > 0 &&
          hw->prefill_eff > 0))
        return janus_errf(e, "%s: hbm_Bps, eff, flops, act_bytes, payload_bytes and prefill_eff must be positive", path);
    return 0;
}

int janus_hw_get(const char *name_or_path, janus_hw *hw, janus_err *e) {
    const janus_hw *p = janus_hw_preset(name_or_path);
    if (p) {
        *hw = *p;
        return 0;
    }
    FILE *f = fopen(name_or_path, "r");
    if (!f) return janus_errf(e, "--hardware: \"%s\" is not one of h100, h200, cpu, nor a calibration file", name_or_path);
    fclose(f);
    return janus_hw_load(name_or_path, hw, e);
}

double janus_expected_active(int E, double pairs, const double *p) {
    double s = 0;
    for (int e = 0; e < E; e++) {
        double q = p ? p[e] : 1.0 / E;
        if (q > 1) q = 1;
        s += 1.0 - pow(1.0 - q, pairs);
    }
    return s;
}

// Bytes and FLOPs of one layer's attention side for b sequences of context L
// (KV elements of kvb bytes).
static void attn_cost(const janus_config *c, int l, double b, double L, double kvb, double *bytes, double *flops) {
    const double H = c->hidden, nq = (double)c->n_heads * c->head_dim, nkv = (double)c->n_kv_heads * c->head_dim;
    double w = (2 * nq * H + 2 * nkv * H + 2 * H) * 2; // q, k, v, o, norms (bf16)
    if (c->layer_moe[l]) {
        w += (double)c->n_experts * H * 2;                                     // router
        if (c->shared_inter) w += (3.0 * c->shared_inter * H + H) * 2;        // shared expert
    } else {
        w += 3.0 * c->dense_inter * H * 2;                                     // dense FFN
    }
    const double kv = b * L * 2 * nkv * kvb;
    *bytes = w + kv;
    *flops = 2 * b * (w / 2) + 4 * b * L * nq; // matvecs + attention scores and values
}

double janus_rows_per_token(int E, int K, int M) {
    if (M <= 1) return 1;
    if (K >= E) return M;
    const double per = (double)E / M; // experts per rank
    double none = 1; // P(a given rank holds none of the token's k distinct experts)
    for (int i = 0; i < K; i++) none *= fmax(0.0, (E - per - i) / (E - i));
    return M * (1 - none);
}

static double link_time(const janus_hw *hw, bool intra, double bytes) {
    return intra ? hw->intra_alpha_s + bytes / hw->intra_Bps : hw->inter_alpha_s + bytes / hw->inter_Bps;
}

static void zipf_probs(double *p, int E, double s) {
    double t = 0;
    for (int e = 0; e < E; e++) t += (p[e] = pow(e + 1.0, -s));
    for (int e = 0; e < E; e++) p[e] /= t;
}

void janus_plan_eval(const janus_config *c, const janus_hw *hw, const janus_workload *w, janus_plan *pl) {
    const int E = c->n_experts, K = c->top_k;
    const bool mono = pl->moe == 0;
    const int G = pl->attn + pl->moe, M = mono ? pl->attn : pl->moe, m = pl->micro;
    const double bw = hw->hbm_Bps * hw->eff, L = w->prompt_len + w->output_len / 2;
    const double expert_bytes = 3.0 * c->hidden * c->moe_inter * 2, expert_flops = 6.0 * c->hidden * c->moe_inter;
    double *p = xmalloc(sizeof(double) * E);
    zipf_probs(p, E, w->zipf);
    const bool intra = G <= hw->gpus_per_node;
    const double bm = (double)pl->batch / m; // sequences per attention GPU per micro-batch
    double tpot = 0, ta1 = 0, tm1 = 0, tx1 = 0, act1 = 0, moe_layer = -1, dense_layer = -1;
    for (int l = 0; l < c->n_layers; l++) {
        double ab, af;
        // Every MoE layer (and every dense layer) of a model costs the same:
        // compute one of each kind.
        if (c->layer_moe[l] && moe_layer >= 0) { tpot += moe_layer; continue; }
        if (!c->layer_moe[l] && dense_layer >= 0) { tpot += dense_layer; continue; }
        const double before = tpot;
        if (!c->layer_moe[l]) {
            attn_cost(c, l, pl->batch, L, hw->act_bytes, &ab, &af);
            tpot += (hw->ranks_share_gpu > 0 ? pl->attn : 1) * (ab / bw + af / hw->flops) + hw->layer_overhead_s;
            dense_layer = tpot - before;
            continue;
        }
        if (hw->ranks_share_gpu > 0 && G > 1) { // every rank on one GPU: the work of all of them adds up
            const int A = pl->attn, Mr = mono ? G : M; // attention ranks, MoE roles
            const double b = mono ? pl->batch : bm;   // sequences per attention rank and micro-batch
            attn_cost(c, l, b, L, hw->act_bytes, &ab, &af);
            const double t_a = A * m * (ab / bw + af / hw->flops);
            const double pairs = (double)A * b * K;
            const double act = janus_expected_active(E, pairs, p); // one device reads every activated expert
            const double t_e = m * (act * expert_bytes / bw + pairs * expert_flops / hw->flops);
            const double rows = (double)A * b * (hw->intra_sums > 0 ? janus_rows_per_token(E, K, Mr) : K);
            const double t_x = m * 2 * 2 * rows * c->hidden * hw->payload_bytes / bw; // there and back: read + write
            // Context hand-offs per micro-batch: one to each MoE process in turn
            // and, with one attention process, one back to it; with several
            // attention-side processes each gives the GPU away at its own
            // synchronisations (shared_attn_handoff_s each).
            const double h_attn = A == 1 ? hw->shared_handoff_s : A * hw->shared_attn_handoff_s;
            const double t_s = m * (h_attn + Mr * hw->shared_handoff_s);
            tpot += t_a + t_e + t_x + t_s + m * 2 * hw->layer_overhead_s;
            ta1 = t_a, tm1 = t_e, tx1 = t_x + t_s, act1 = act; // the exchange: copies and hand-offs
            moe_layer = tpot - before;
            continue;
        }
        if (mono) { // attention and experts on the same GPUs, one after the other
            attn_cost(c, l, pl->batch, L, hw->act_bytes, &ab, &af);
            double pairs = (double)G * pl->batch * K;
            double act = fmin((double)E / G + 1, janus_expected_active(E, pairs, p) / G);
            double t_a = ab / bw + af / hw->flops;
            double t_e = act * expert_bytes / bw + pairs / G * expert_flops / hw->flops;
            const double r = (intra ? hw->intra_sums : hw->inter_sums) > 0 ? janus_rows_per_token(E, K, G) : K; // to all G
            double t_x = G > 1 ? 2 * link_time(hw, intra, (double)pl->batch * r * c->hidden * hw->payload_bytes * (G - 1) / G) : 0;
            tpot += t_a + t_e + t_x + 2 * hw->layer_overhead_s;
            ta1 = t_a, tm1 = t_e, tx1 = t_x, act1 = act;
            moe_layer = tpot - before;
            continue;
        }
        attn_cost(c, l, bm, L, hw->act_bytes, &ab, &af);
        const double t_a = ab / bw + af / hw->flops + hw->layer_overhead_s;
        const double pairs = (double)pl->attn * bm * K;
        // The scheduler spreads the activated experts: ceil(active / M), at most
        // the experts a MoE GPU holds.
        double act = fmin(ceil((double)E / M), ceil(janus_expected_active(E, pairs, p) / M - 1e-9));
        const double t_e = act * expert_bytes / bw + pairs / M * expert_flops / hw->flops + hw->layer_overhead_s;
        const double r = (intra ? hw->intra_sums : hw->inter_sums) > 0 ? janus_rows_per_token(E, K, M) : K; // per token
        const double t_x = 2 * link_time(hw, intra, bm * r * c->hidden * hw->payload_bytes);
        const double stage = t_x + t_e;
        // Rows from one attention GPU to one MoE GPU per micro-batch: beyond the
        // overlap limit they wait for the sender's next MPI call, i.e. the end of
        // the next micro-batch's attention, and the pipeline runs serially.
        const double msg = bm * r * c->hidden * hw->payload_bytes / M;
        if (hw->overlap_max_bytes > 0 && msg > hw->overlap_max_bytes) tpot += m * (t_a + stage);
        else tpot += m * fmax(t_a, stage) + fmin(t_a, stage);
        ta1 = t_a, tm1 = t_e, tx1 = t_x, act1 = act;
        moe_layer = tpot - before;
    }
    // lm_head: its weights once, its matvecs for every sequence of the step
    // (once per attention rank when they share one GPU).
    const double heads = hw->ranks_share_gpu > 0 ? pl->attn : 1;
    tpot += heads * ((double)c->vocab * c->hidden * 2 / bw + 2.0 * pl->batch * c->vocab * c->hidden / hw->flops);
    pl->tpot_s = tpot;
    pl->t_attn_s = ta1, pl->t_moe_s = tm1, pl->t_xchg_s = tx1, pl->act_per_moe_gpu = act1;
    pl->tokens_per_s = (double)pl->attn * pl->batch / tpot;
    pl->per_gpu = pl->tokens_per_s / G;
    // The prompts of one batch per attention GPU: per prompt token, its FLOPs
    // at prefill_eff of peak (attention side at context P / 2 on average,
    // k experts of every MoE layer) and its rows through the exchange as in
    // decode; the job = that prefill + output_len decode steps.
    {
        const double P = w->prompt_len, tok = (double)pl->batch * P; // prompt tokens per attention GPU
        const double F = hw->flops * hw->prefill_eff;
        double fa = 0, fm = 0, xb = 0; // per token: attention-side FLOPs, expert FLOPs, exchange bytes (one way)
        for (int l = 0; l < c->n_layers; l++) {
            double ab, af;
            attn_cost(c, l, 1, P / 2, hw->act_bytes, &ab, &af);
            fa += af;
            if (!c->layer_moe[l]) continue;
            fm += K * expert_flops;
            const int Mx = mono ? G : M;
            const double r = (hw->ranks_share_gpu > 0 || intra ? hw->intra_sums : hw->inter_sums) > 0
                                 ? janus_rows_per_token(E, K, Mx) : K;
            // to the other ranks only, monolithic on their own GPUs (one GPU's ranks: every row, as decode)
            xb += r * c->hidden * hw->payload_bytes * (mono && hw->ranks_share_gpu <= 0 ? (double)(G - 1) / G : 1.0);
        }
        double pre;
        if (hw->ranks_share_gpu > 0) { // every rank's work on one GPU adds up; the rows are device copies
            const double all = (mono ? G : pl->attn) * tok;
            pre = all * (fa + fm) / F + all * 2 * 2 * xb / bw;
        } else if (mono) {
            pre = tok * (fa + fm) / F + (G > 1 ? tok * 2 * xb / (intra ? hw->intra_Bps : hw->inter_Bps) : 0);
        } else {
            const double sa = tok * fa / F; // an attention GPU
            const double sm = pl->attn * tok * fm / M / F + tok * 2 * xb / (intra ? hw->intra_Bps : hw->inter_Bps);
            pre = m > 1 ? fmax(sa, sm) + fmin(sa, sm) / m : sa + sm;
        }
        pl->prefill_s = pre;
        const double job_s = pre + w->output_len * tpot;
        pl->job_per_gpu = job_s > 0 ? (double)pl->attn * pl->batch * w->output_len / job_s / G : 0;
    }
    // Memory: weights, KV for every sequence's whole length, 10% for activations.
    double attn_w = 0, expert_w = 0;
    for (int l = 0; l < c->n_layers; l++) {
        double ab, af;
        attn_cost(c, l, 0, 0, hw->act_bytes, &ab, &af);
        attn_w += ab;
        if (c->layer_moe[l]) expert_w += E * expert_bytes;
    }
    attn_w += 2.0 * c->vocab * c->hidden * 2; // embedding + lm_head
    const double kv = (double)pl->batch * (w->prompt_len + w->output_len) * c->n_layers * 2.0 * c->n_kv_heads * c->head_dim * hw->act_bytes;
    if (mono) {
        pl->attn_mem = pl->moe_mem = attn_w + expert_w / G + kv;
    } else {
        pl->attn_mem = attn_w + kv;
        pl->moe_mem = expert_w / M;
    }
    if (hw->ranks_share_gpu > 0) // every rank on one GPU: its memory holds all of them
        pl->attn_mem = pl->moe_mem = mono ? G * pl->attn_mem : pl->attn * pl->attn_mem + M * pl->moe_mem;
    pl->fits = pl->attn_mem <= 0.9 * hw->mem_bytes && pl->moe_mem <= 0.9 * hw->mem_bytes;
    free(p);
}

double janus_plan_score(const janus_plan *pl, const janus_workload *w) { return w->job ? pl->job_per_gpu : pl->per_gpu; }

// Better: more tokens/s per GPU (decode, or the whole job's); then fewer
// GPUs; then lower TPOT; then a fixed order of the layout numbers (determinism).
static bool better(const janus_plan *a, const janus_plan *b, const janus_workload *w) {
    const double sa = janus_plan_score(a, w), sb = janus_plan_score(b, w);
    if (fabs(sa - sb) > 1e-9 * fmax(sa, sb)) return sa > sb;
    int ga = a->attn + a->moe, gb = b->attn + b->moe;
    if (ga != gb) return ga < gb;
    if (fabs(a->tpot_s - b->tpot_s) > 1e-12) return a->tpot_s < b->tpot_s;
    if (a->attn != b->attn) return a->attn < b->attn;
    if (a->moe != b->moe) return a->moe < b->moe;
    if (a->micro != b->micro) return a->micro < b->micro;
    return a->batch < b->batch;
}

static void keep(janus_plan *top, int ntop, int *n, const janus_plan *c, const janus_workload *w) {
    int i;
    if (*n < ntop) {
        i = (*n)++; // a free slot
    } else {
        i = ntop - 1; // full: replace the worst if c beats it
        if (!better(c, &top[i], w)) return;
    }
    top[i] = *c;
    while (i > 0 && better(&top[i], &top[i - 1], w)) {
        janus_plan t = top[i];
        top[i] = top[i - 1], top[i - 1] = t;
        i--;
    }
}

static bool ok(const janus_plan *p, double slo) { return p->fits && p->tpot_s <= slo; }

// Largest batch (1..max_batch) meeting the SLO in memory for a layout: TPOT and
// memory grow with the batch, so a binary search finds it (or a scan).
static int best_batch(const janus_config *c, const janus_hw *hw, const janus_workload *w, janus_plan *pl, double slo,
                      int max_batch, bool exhaustive) {
    int best = 0;
    if (exhaustive) {
        for (int b = 1; b <= max_batch; b++) {
            pl->batch = b;
            janus_plan_eval(c, hw, w, pl);
            if (ok(pl, slo)) best = b;
        }
    } else {
        int lo = 1, hi = max_batch;
        while (lo <= hi) {
            int mid = lo + (hi - lo) / 2;
            pl->batch = mid;
            janus_plan_eval(c, hw, w, pl);
            if (ok(pl, slo)) best = mid, lo = mid + 1;
            else hi = mid - 1;
        }
    }
    if (best) {
        pl->batch = best;
        janus_plan_eval(c, hw, w, pl);
    }
    return best;
}

int janus_plan_search(const janus_config *c, const janus_hw *hw, const janus_workload *w, int gpus, double slo_tpot_s,
                      int max_batch, bool exhaustive, janus_plan *top, int ntop) {
    int n = 0, feasible = 0;
    for (int g = 1; g <= gpus; g++) { // monolithic layouts of g GPUs
        janus_plan pl = {.attn = g, .moe = 0, .micro = 1};
        if (best_batch(c, hw, w, &pl, slo_tpot_s, max_batch, exhaustive)) feasible++, keep(top, ntop, &n, &pl, w);
    }
    for (int a = 1; a < gpus; a++)
        for (int mo = 1; a + mo <= gpus; mo++)
            for (int m = 1; m <= 4; m++) {
                janus_plan pl = {.attn = a, .moe = mo, .micro = m};
                if (best_batch(c, hw, w, &pl, slo_tpot_s, max_batch, exhaustive) && pl.batch >= m)
                    feasible++, keep(top, ntop, &n, &pl, w);
            }
    return feasible;
}

void janus_plan_json(const janus_plan *pl, const char *hw, double slo_s, char *buf, size_t n) {
    snprintf(buf, n,
             "{\"mode\": \"%s\", \"attn_ranks\": %d, \"moe_ranks\": %d, \"micro_batches\": %d, \"max_batch\": %d, "
             "\"hardware\": \"%s\", \"slo_tpot_ms\": %.3f, \"predicted_tpot_ms\": %.4f, \"predicted_tokens_per_s\": %.3f, "
             "\"predicted_tokens_per_s_per_gpu\": %.3f, \"predicted_prefill_s\": %.4f, "
             "\"predicted_job_tokens_per_s_per_gpu\": %.3f}",
             pl->moe ? "disaggregated" : "monolithic", pl->attn, pl->moe, pl->micro, pl->batch, hw, slo_s * 1e3,
             pl->tpot_s * 1e3, pl->tokens_per_s, pl->per_gpu, pl->prefill_s, pl->job_per_gpu);
}

int janus_plan_read(const char *path, janus_plan *pl, janus_err *e) {
    json_error_t je;
    json_t *r = json_load_file(path, 0, &je);
    if (!r) return janus_errf(e, "%s: line %d: %s", path, je.line, je.text);
    const char *keys[4] = {"attn_ranks", "moe_ranks", "micro_batches", "max_batch"};
    int v[4];
    for (int i = 0; i < 4; i++) {
        json_t *x = json_object_get(r, keys[i]);
        const json_int_t hi = i == 2 ? 64 : (1 << 20);
        if (!json_is_integer(x) || json_integer_value(x) < (i == 1 ? 0 : 1) || json_integer_value(x) > hi) {
            json_decref(r);
            return janus_errf(e, "%s: %s: missing or not an integer in [%d, %lld]", path, keys[i], i == 1 ? 0 : 1,
                              (long long)hi);
        }
        v[i] = (int)json_integer_value(x);
    }
    json_decref(r);
    memset(pl, 0, sizeof *pl);
    pl->attn = v[0], pl->moe = v[1], pl->micro = v[2], pl->batch = v[3];
    return 0;
}
