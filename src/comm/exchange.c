// comm/exchange.c: handshake, schedule-derived routing and host-MPI payload of
// the attention <-> MoE exchange (see exchange.h).
#include "comm/exchange.h"

#include "comm/hier.h"

void janus_xchg_free_device(janus_xchg *x) {
    if (x->dev) x->dev->free(x);
    x->dev = NULL, x->dev_state = NULL, x->dev_sched = NULL;
}

#include <stdio.h>
#include <stdlib.h>

#define TAG_SPAN 16000 // tags (l * n_mb + i) mod TAG_SPAN, x2 for rows / outputs

// One activation row (H floats, moved as 4H bytes: the host payload's rows of
// pair indices and weights are int32 and float bits): message counts are
// rows, so a message of more than 2^31 / H rows does not overflow the int
// count of MPI.
static MPI_Datatype g_row = MPI_DATATYPE_NULL;

// The outputs summed on the MoE ranks take top-k up to this (the GPU
// combine's bound, JK_XCHG_SUM_MAX_K).
#define HOST_SUM_MAX_K 16

// Rows of (token row, router weight) that go with c pairs (host dedup).
static int64_t side_rows(int64_t c, int H) { return c ? (2 * c + H - 1) / H : 0; }

int janus_xchg_tag(const janus_xchg *x, int l, int i, int out) {
    return 2 * ((l * x->n_mb + i) % TAG_SPAN) + out;
}

static void cpu_sums_hook(void *ctx, int l, const int32_t *seg, int max_rows, const float *in, const int32_t *tok0,
                          const int32_t *n_tok, int n_reg, const int32_t *src_row, int R, const int32_t *off,
                          const int32_t *gi, const float *w, int n_out, float *out);

void janus_xchg_init(janus_xchg *x, MPI_Comm world, int n_attn, int n_moe, bool monolithic, const janus_config *c,
                     janus_placement *place, int n_mb, janus_xpath path, int node_size, const janus_model *m) {
    memset(x, 0, sizeof *x);
    x->world = world;
    MPI_Comm_rank(world, &x->rank);
    MPI_Comm_size(world, &x->size);
    x->n_attn = n_attn;
    x->n_moe = n_moe;
    x->attn_world = xmalloc(sizeof(int) * n_attn);
    x->moe_world = xmalloc(sizeof(int) * n_moe);
    for (int a = 0; a < n_attn; a++) x->attn_world[a] = a;
    for (int q = 0; q < n_moe; q++) x->moe_world[q] = monolithic ? q : n_attn + q;
    x->attn_idx = x->moe_idx = -1;
    for (int a = 0; a < n_attn; a++) if (x->attn_world[a] == x->rank) x->attn_idx = a;
    for (int q = 0; q < n_moe; q++) if (x->moe_world[q] == x->rank) x->moe_idx = q;
    x->E = c->n_experts;
    x->k = c->top_k;
    x->H = c->hidden;
    x->n_layers = c->n_layers;
    x->place = place;
    x->path = path;
    x->node_size = node_size > 0 ? node_size : x->size;
    x->n_mb = n_mb;
    x->model = m;
    if (g_row != MPI_DATATYPE_NULL) MPI_Type_free(&g_row);
    MPI_Type_contiguous(4 * x->H, MPI_BYTE, &g_row);
    MPI_Type_commit(&g_row);
    int S = 0;
    for (int l = 0; l < c->n_layers; l++)
        if (c->layer_moe[l] && place[l].rep_off[x->E] > S) S = place[l].rep_off[x->E];
    x->ws = xcalloc(c->n_layers, sizeof(janus_sched_ws));
    for (int l = 0; l < c->n_layers; l++)
        if (c->layer_moe[l]) janus_sched_ws_init(&x->ws[l], &place[l]);
    x->hs_send = xcalloc(x->E, sizeof(int32_t));
    x->hs_all = xcalloc((size_t)x->size * x->E, sizeof(int32_t));
    x->n_tok = xcalloc(x->E, sizeof(int64_t));
    x->share = xcalloc(S, sizeof(int64_t));
    x->tok = xcalloc(n_moe, sizeof(int64_t));
    x->act = xcalloc(n_moe, sizeof(int32_t));
    x->seg = xcalloc((size_t)n_attn * S, sizeof(int64_t));
    x->rows_am = xcalloc((size_t)n_mb * n_attn * n_moe, sizeof(int64_t));
    x->tok_am = xcalloc((size_t)n_mb * n_attn * n_moe, sizeof(int64_t));
    x->fwd_am = xcalloc((size_t)n_mb * n_attn * n_moe, sizeof(int64_t));
    x->back_am = xcalloc((size_t)n_mb * n_attn * n_moe, sizeof(int64_t));
    x->dd_send = xcalloc(x->E + n_moe, sizeof(int32_t));
    x->dd_all = xcalloc((size_t)x->size * (x->E + n_moe), sizeof(int32_t));
    x->hd_first = xcalloc(n_moe, sizeof(int)), x->hd_ntok = xcalloc(n_moe, sizeof(int));
    x->hd_reg = xcalloc(n_moe, sizeof(int64_t));
    x->hs_tok0 = xcalloc(n_attn, sizeof(int32_t)), x->hs_ntok = xcalloc(n_attn, sizeof(int32_t));
    x->hs_pb = xcalloc(n_attn, sizeof(int32_t));
    x->unrep = xcalloc(c->n_layers, sizeof(bool));
    for (int l = 0; l < c->n_layers; l++) {
        x->unrep[l] = c->layer_moe[l];
        for (int e = 0; e < x->E && x->unrep[l]; e++) x->unrep[l] = place[l].rep_off[e + 1] - place[l].rep_off[e] == 1;
    }
    // The host payload's rows once per (token, MoE rank) and summed outputs:
    // the same switches as the device transports'; every rank agrees.
    const char *dd = getenv("JANUS_XCHG_DEDUP"), *su = getenv("JANUS_XCHG_SUMS");
    if (dd && strcmp(dd, "0") && strcmp(dd, "1")) janus_die_all(NULL, "JANUS_XCHG_DEDUP=%s: expected 0 or 1", dd);
    if (su && strcmp(su, "0") && strcmp(su, "1")) janus_die_all(NULL, "JANUS_XCHG_SUMS=%s: expected 0 or 1", su);
    int hf[2] = {!dd || dd[0] == '1', 0};
    hf[1] = hf[0] && (!su || su[0] == '1') && x->k <= HOST_SUM_MAX_K && x->H % 4 == 0;
    MPI_Allreduce(MPI_IN_PLACE, hf, 2, MPI_INT, MPI_MIN, world);
    x->host_dedup = hf[0], x->host_sums = hf[1];
    const char *hk = getenv("JANUS_XCHG_SUMS_HOOK"); // tests: the CPU experts through the GPU's hook's tables
    if (hk && strcmp(hk, "cpu")) janus_die_all(NULL, "JANUS_XCHG_SUMS_HOOK=%s: expected cpu (a test hook)", hk);
    if (hk) x->experts_sums_fn = cpu_sums_hook, x->experts_ctx = x;
    if (path == XPATH_HIER) janus_hier_init(x);
    x->e_start = xcalloc(x->E + 1, sizeof(int));
    x->e_fill = xcalloc(x->E + 1, sizeof(int));
    x->m_fill = xcalloc(n_moe, sizeof(int));
    x->a_cur = xcalloc(n_attn + 1, sizeof(int));
    x->seg32 = xcalloc(x->E + 1, sizeof(int32_t));
    x->sched_on_gpu = xcalloc(n_mb, 1);
    x->my_slot = xmalloc(sizeof(int) * (size_t)c->n_layers * x->E);
    for (int l = 0; l < c->n_layers; l++)
        for (int e = 0; e < x->E; e++) {
            int *ms = &x->my_slot[(size_t)l * x->E + e];
            *ms = -1;
            if (!c->layer_moe[l]) continue;
            for (int s = place[l].rep_off[e]; s < place[l].rep_off[e + 1]; s++)
                if (place[l].rep_rank[s] == x->moe_idx) *ms = s;
        }
    const int nn = (x->size + x->node_size - 1) / x->node_size;
    if (x->attn_idx >= 0) {
        x->xa = xcalloc(n_mb, sizeof(janus_xmb_attn));
        for (int i = 0; i < n_mb; i++) {
            x->xa[i].cnt = xcalloc(n_moe, sizeof(int));
            x->xa[i].off = xcalloc(n_moe + 1, sizeof(int));
            x->xa[i].foff = xcalloc(n_moe + 1, sizeof(int));
            x->xa[i].boff = xcalloc(n_moe + 1, sizeof(int));
            x->xa[i].req = xcalloc(2 * n_moe + 2 * nn, sizeof(MPI_Request));
        }
    }
    if (x->moe_idx >= 0) {
        x->xm = xcalloc(n_mb, sizeof(janus_xmb_moe));
        for (int i = 0; i < n_mb; i++) {
            x->xm[i].cnt = xcalloc(n_attn, sizeof(int));
            x->xm[i].off = xcalloc(n_attn + 1, sizeof(int));
            x->xm[i].foff = xcalloc(n_attn + 1, sizeof(int));
            x->xm[i].boff = xcalloc(n_attn + 1, sizeof(int));
            x->xm[i].req = xcalloc(2 * n_attn + 2 * nn, sizeof(MPI_Request));
        }
        int inter = c->moe_inter;
        janus_ffn_scratch_init(&x->ffn, 256, inter);
    }
}

void janus_xchg_free(janus_xchg *x) {
    janus_xchg_free_device(x);
    if (x->attn_idx >= 0 && x->t.h_pairs) { // this attention rank's host payload (the log: rank 0's)
        const janus_xchg_times *t = &x->t;
        janus_log("host MPI exchange: rows sent %s; outputs back %s",
                  x->host_dedup ? "once per (token, MoE rank)" : "once per (token, expert) pair (JANUS_XCHG_DEDUP=0)",
                  x->host_sums ? "once per (token, MoE rank), summed there"
                               : x->host_dedup ? "once per pair (JANUS_XCHG_SUMS=0)" : "once per pair");
        janus_log("host MPI exchange: %lld (token, expert) pairs went out as %lld rows and came back as %lld rows "
                  "(rank 0; %.2f and %.2f pairs per row; %lld rows of pair indices and weights went with them)",
                  (long long)t->h_pairs, (long long)t->h_rows_out, (long long)t->h_rows_back,
                  t->h_rows_out ? (double)t->h_pairs / t->h_rows_out : 0.0,
                  t->h_rows_back ? (double)t->h_pairs / t->h_rows_back : 0.0, (long long)t->h_side_out);
        janus_vlog("rank %d: %lld pairs, %lld rows out (+%lld), %lld rows back", x->rank, (long long)t->h_pairs,
                   (long long)t->h_rows_out, (long long)t->h_side_out, (long long)t->h_rows_back);
    }
    if (x->xa)
        for (int i = 0; i < x->n_mb; i++) {
            janus_xmb_attn *a = &x->xa[i];
            free(a->send), free(a->recv), free(a->pair), free(a->cnt), free(a->off), free(a->req);
            free(a->foff), free(a->boff), free(a->slot), free(a->lead);
        }
    if (x->xm) {
        for (int i = 0; i < x->n_mb; i++) {
            janus_xmb_moe *q = &x->xm[i];
            free(q->in), free(q->out), free(q->xs), free(q->ys), free(q->perm), free(q->cnt), free(q->off), free(q->req);
            free(q->inv), free(q->foff), free(q->boff);
        }
        janus_ffn_scratch_free(&x->ffn);
    }
    free(x->xa), free(x->xm);
    free(x->attn_world), free(x->moe_world), free(x->hs_send), free(x->hs_all), free(x->n_tok), free(x->share);
    free(x->tok), free(x->act), free(x->seg), free(x->rows_am);
    free(x->e_start), free(x->e_fill), free(x->m_fill), free(x->a_cur), free(x->order), free(x->my_slot), free(x->seg32);
    free(x->sched_on_gpu);
    free(x->tok_am), free(x->fwd_am), free(x->back_am), free(x->dd_send), free(x->dd_all), free(x->unrep);
    free(x->hd_first), free(x->hd_ntok), free(x->hd_reg), free(x->hd_tok), free(x->hd_src), free(x->hd_mark), free(x->hd_seen);
    free(x->hs_tok0), free(x->hs_ntok), free(x->hs_pb), free(x->hs_srow), free(x->hs_off), free(x->hs_gi), free(x->hs_w);
    janus_hier_free(x);
    if (g_row != MPI_DATATYPE_NULL) MPI_Type_free(&g_row);
    for (int l = 0; l < x->n_layers; l++)
        if (x->ws[l].E) janus_sched_ws_free(&x->ws[l]);
    free(x->ws);
    memset(x, 0, sizeof *x);
}

// Rows of expert e form one stream ordered by attention rank; replica slot s
// takes share[s] consecutive rows of it. seg[a, s] = rows of a's part of the
// stream that fall in slot s.
static void route(janus_xchg *x, const janus_placement *p, int i) {
    const int A = x->n_attn, S = p->rep_off[x->E];
    for (int e = 0; e < x->E; e++) {
        int64_t P = 0;
        for (int a = 0; a < A; a++) {
            int64_t C = x->hs_all[(size_t)x->attn_world[a] * x->E + e], S0 = 0;
            for (int s = p->rep_off[e]; s < p->rep_off[e + 1]; s++) {
                int64_t lo = P > S0 ? P : S0, hi = (P + C) < (S0 + x->share[s]) ? (P + C) : (S0 + x->share[s]);
                x->seg[(size_t)a * S + s] = hi > lo ? hi - lo : 0;
                S0 += x->share[s];
            }
            P += C;
        }
    }
    int64_t *ram = x->rows_am + (size_t)i * A * x->n_moe; // kept per micro-batch for the return path
    memset(ram, 0, sizeof(int64_t) * (size_t)A * x->n_moe);
    for (int a = 0; a < A; a++)
        for (int s = 0; s < S; s++) ram[(size_t)a * x->n_moe + p->rep_rank[s]] += x->seg[(size_t)a * S + s];
    const size_t n = (size_t)A * x->n_moe; // the host payload: a row per pair each way, unless host_tables says
    memcpy(x->fwd_am + (size_t)i * n, ram, sizeof(int64_t) * n);
    memcpy(x->back_am + (size_t)i * n, ram, sizeof(int64_t) * n);
}

static bool host_dedup_on(const janus_xchg *x) { return x->host_dedup && !x->dev; }

// o = y w (first) or o += y w: janus_combine's own operations, so one MoE
// rank's sum equals the combine's bits.
static void sum_into(float *o, const float *y, float w, int H, bool first) {
    if (first)
        for (int d = 0; d < H; d++) o[d] = y[d] * w;
    else
        for (int d = 0; d < H; d++) o[d] += y[d] * w;
}

// JANUS_XCHG_SUMS_HOOK=cpu (tests): the CPU backend's experts through
// experts_sums_fn, step for step as janus_gpu_serve_experts_sums does it
// (pack the token rows, gather each grouped row, the experts, the sums), so
// the tables serve builds for that hook run in CI.
static void cpu_sums_hook(void *ctx, int l, const int32_t *seg, int max_rows, const float *in, const int32_t *tok0,
                          const int32_t *n_tok, int n_reg, const int32_t *src_row, int R, const int32_t *off,
                          const int32_t *gi, const float *w, int n_out, float *out) {
    janus_xchg *x = ctx;
    const int H = x->H;
    (void)max_rows;
    if (R <= 0) return;
    size_t np = 0;
    for (int r = 0; r < n_reg; r++) np += (size_t)n_tok[r];
    float *pk = xmalloc(sizeof(float) * np * H), *xs = xmalloc(sizeof(float) * (size_t)R * H),
          *ys = xmalloc(sizeof(float) * (size_t)R * H);
    for (int r = 0, at = 0; r < n_reg; at += n_tok[r++])
        memcpy(pk + (size_t)at * H, in + (size_t)tok0[r] * H, sizeof(float) * (size_t)n_tok[r] * H);
    for (int g = 0; g < R; g++) {
        if (src_row[g] < 0 || (size_t)src_row[g] >= np) janus_die(NULL, "internal: packed token row %d of %zu", src_row[g], np);
        memcpy(xs + (size_t)g * H, pk + (size_t)src_row[g] * H, sizeof(float) * H);
    }
    const janus_layer *L = &x->model->layers[l];
    for (int e = 0; e < x->E; e++)
        if (seg[e + 1] > seg[e])
            janus_swiglu_ffn(ys + (size_t)seg[e] * H, xs + (size_t)seg[e] * H, seg[e + 1] - seg[e], &L->gate[e], &L->up[e],
                             &L->down[e], &x->ffn);
    for (int o = 0; o < n_out; o++)
        for (int j = off[o]; j < off[o + 1]; j++) sum_into(out + (size_t)o * H, ys + (size_t)gi[j] * H, w[j], H, j == off[o]);
    free(pk), free(xs), free(ys);
}

// Host payload, rows once per (token, MoE rank): tok (the distinct tokens
// attention rank a sends MoE rank m, known to every rank) gives the rows of
// micro-batch i both ways: a's token rows and their (token row, weight) rows
// out, the summed outputs (or a row per pair) back.
static void host_tables(janus_xchg *x, int i, const int64_t *tok) {
    const int A = x->n_attn, M = x->n_moe;
    const size_t base = (size_t)i * A * M;
    for (int a = 0; a < A; a++)
        for (int m = 0; m < M; m++) {
            const size_t o = base + (size_t)a * M + m;
            const int64_t pairs = x->rows_am[o], t = tok[(size_t)a * M + m];
            if (t > pairs || (pairs && !t))
                janus_die(NULL, "internal: %lld distinct tokens for %lld pairs (attention %d -> MoE %d)", (long long)t,
                          (long long)pairs, a, m);
            x->tok_am[o] = t;
            x->fwd_am[o] = t + side_rows(pairs, x->H);
            x->back_am[o] = x->host_sums ? t : pairs;
        }
}

// Scratch of janus_xchg_rows_once for P pairs of T tokens.
static janus_xchg_rows1 hd_scratch(janus_xchg *x, int P, int T) {
    if (P > x->hd_cap) {
        x->hd_cap = P;
        x->hd_tok = xrealloc(x->hd_tok, sizeof(int32_t) * P), x->hd_src = xrealloc(x->hd_src, sizeof(int32_t) * P);
    }
    if (T > x->hd_tcap) {
        x->hd_mark = xrealloc(x->hd_mark, sizeof(int32_t) * T);
        for (int t = x->hd_tcap; t < T; t++) x->hd_mark[t] = -1;
        x->hd_tcap = T;
    }
    return (janus_xchg_rows1){.tok = x->hd_tok, .src = x->hd_src, .first = x->hd_first, .n_tok = x->hd_ntok,
                              .reg = x->hd_reg, .mark = x->hd_mark};
}

// Does the pair (a world rank, another) use the direct path?
static bool direct(const janus_xchg *x, int w1, int w2) {
    return x->path == XPATH_DIRECT || !janus_hier_remote(x, w1, w2);
}

// Index arrays of `rows` pairs: the pair layout and (host payload summed)
// each pair's row back and lead; the row buffers are ensure_rows'.
static void ensure_attn(janus_xmb_attn *a, int rows) {
    if (rows <= a->cap) return;
    int cap = rows < 64 ? 64 : rows;
    a->pair = xrealloc(a->pair, sizeof(int32_t) * cap);
    a->slot = xrealloc(a->slot, sizeof(int32_t) * cap);
    a->lead = xrealloc(a->lead, sizeof(int32_t) * cap);
    a->cap = cap;
}

static void ensure_moe(janus_xmb_moe *q, int rows, int H) {
    if (rows <= q->cap) return;
    int cap = rows < 64 ? 64 : rows + rows / 2;
    if (H) {
        q->xs = xrealloc(q->xs, sizeof(float) * (size_t)cap * H);
        q->ys = xrealloc(q->ys, sizeof(float) * (size_t)cap * H);
    }
    q->perm = xrealloc(q->perm, sizeof(int32_t) * cap);
    q->inv = xrealloc(q->inv, sizeof(int32_t) * cap);
    q->cap = cap;
}

// A host row buffer of at least `rows` rows of H floats.
static void ensure_rows(float **b, size_t *cap, size_t rows, int H) {
    if (rows <= *cap) return;
    *cap = rows < 64 ? 64 : rows + rows / 2;
    *b = xrealloc(*b, sizeof(float) * *cap * H);
}

static void layout_rows(janus_xchg *x, int l, int i, const int32_t *ids, int T);
static void post_rows(janus_xchg *x, int l, int i, const float *xrows, const int32_t *ids, const float *w, int T);

void janus_xchg_dispatch(janus_xchg *x, int l, int i, const float *xrows, const int32_t *ids, const float *w, int T) {
    const int E = x->E, K = x->k;
    const janus_placement *p = &x->place[l];
    double t0 = janus_now_s();
    // Phase 1: per-expert counts of every attention rank reach every rank.
    memset(x->hs_send, 0, sizeof(int32_t) * E);
    if (x->attn_idx >= 0)
        for (int q = 0; q < T * K; q++) x->hs_send[ids[q]]++;
    const bool hd = host_dedup_on(x);
    const int M = x->n_moe, EM = E + M;
    if (hd && x->unrep[l]) {
        // One replica per expert: the distinct tokens this rank sends each MoE
        // rank are known now and ride on the handshake.
        memcpy(x->dd_send, x->hs_send, sizeof(int32_t) * E);
        int32_t *dd = x->dd_send + E;
        memset(dd, 0, sizeof(int32_t) * M);
        for (int t = 0; t < T && x->attn_idx >= 0; t++)
            for (int j = 0; j < K; j++) {
                const int m = p->rep_rank[p->rep_off[ids[t * K + j]]];
                int seen = 0;
                for (int u = 0; u < j && !seen; u++) seen = p->rep_rank[p->rep_off[ids[t * K + u]]] == m;
                dd[m] += !seen;
            }
        MPI_Allgather(x->dd_send, EM, MPI_INT32_T, x->dd_all, EM, MPI_INT32_T, x->world);
        for (int r = 0; r < x->size; r++) memcpy(x->hs_all + (size_t)r * E, x->dd_all + (size_t)r * EM, sizeof(int32_t) * E);
    } else {
        MPI_Allgather(x->hs_send, E, MPI_INT32_T, x->hs_all, E, MPI_INT32_T, x->world);
    }
    double t1 = janus_now_s();
    int64_t pairs = 0;
    for (int e = 0; e < E; e++) {
        x->n_tok[e] = 0;
        for (int a = 0; a < x->n_attn; a++) x->n_tok[e] += x->hs_all[(size_t)x->attn_world[a] * E + e];
        pairs += x->n_tok[e];
    }
    // Decode-sized steps (the expert kernels need no exact maximum, so no
    // count comes back from the GPU) may be scheduled and routed on the GPUs.
    x->sched_on_gpu[i] = x->dev_sched && x->path == XPATH_DIRECT && janus_ffn_variant_rows(pairs, pairs / K, E, -1) >= 0;
    x->t.routed_gpu += x->sched_on_gpu[i];
    x->t.routed_host += !x->sched_on_gpu[i];
    if (x->sched_on_gpu[i]) {
        x->t.handshake_s += t1 - t0;
        if (x->attn_idx >= 0) x->xa[i].tag_ret = janus_xchg_tag(x, l, i, 1);
        x->dev_sched->dispatch(x, l, i, xrows, ids, w, T); // times its own sched_s / send_s
        return;
    }
    janus_sched(p, x->n_tok, x->share, x->act, x->tok, &x->ws[l]);
    route(x, p, i);
    if (x->attn_idx >= 0) layout_rows(x, l, i, ids, T);
    if (hd) {
        // This rank's distinct tokens per MoE rank (its token lists, below);
        // with replicas they are known only now, so one more allgather.
        if (x->attn_idx >= 0) {
            janus_xchg_rows1 d = hd_scratch(x, T * K, T);
            janus_xchg_rows_once(x, i, NULL, &d);
            for (int m = 0; m < M; m++)
                if (x->unrep[l] && x->hd_ntok[m] != x->dd_send[E + m])
                    janus_die(NULL, "internal: MoE rank %d gets %d token rows, the handshake said %d", m, x->hd_ntok[m],
                              x->dd_send[E + m]);
        }
        int64_t *tok = x->tok_am + (size_t)i * x->n_attn * M; // [A, M]
        if (x->unrep[l]) {
            for (int a = 0; a < x->n_attn; a++)
                for (int m = 0; m < M; m++) tok[(size_t)a * M + m] = x->dd_all[(size_t)x->attn_world[a] * EM + E + m];
        } else {
            int32_t *mine = x->dd_send + E;
            for (int m = 0; m < M; m++) mine[m] = x->attn_idx >= 0 ? x->hd_ntok[m] : 0;
            MPI_Allgather(mine, M, MPI_INT32_T, x->dd_all, M, MPI_INT32_T, x->world);
            for (int a = 0; a < x->n_attn; a++)
                for (int m = 0; m < M; m++) tok[(size_t)a * M + m] = x->dd_all[(size_t)x->attn_world[a] * M + m];
        }
        host_tables(x, i, tok);
    }
    double t2 = janus_now_s();
    x->t.handshake_s += t1 - t0;
    x->t.sched_s += t2 - t1;
    if (x->attn_idx >= 0) {
        x->xa[i].tag_ret = janus_xchg_tag(x, l, i, 1);
        post_rows(x, l, i, xrows, ids, w, T);
    }
    if (x->path == XPATH_HIER) janus_hier_gateway_forward(x, l, i);
    x->t.send_s += janus_now_s() - t2;
}

// Phase 2 (attention side): this rank's pairs to each MoE rank, expert order
// then token order (a->pair, a->cnt, a->off).
static void layout_rows(janus_xchg *x, int l, int i, const int32_t *ids, int T) {
    const int E = x->E, K = x->k, M = x->n_moe;
    const janus_placement *p = &x->place[l];
    const int S = p->rep_off[E];
    janus_xmb_attn *a = &x->xa[i];
    const int ai = x->attn_idx;
    memset(a->cnt, 0, sizeof(int) * M);
    for (int s = 0; s < S; s++) a->cnt[p->rep_rank[s]] += (int)x->seg[(size_t)ai * S + s];
    a->off[0] = 0;
    for (int m = 0; m < M; m++) a->off[m + 1] = a->off[m] + a->cnt[m];
    ensure_attn(a, T * K);
    // Counting sort of this rank's pairs by expert (stable).
    if (T * K > x->order_cap) {
        x->order_cap = T * K;
        x->order = xrealloc(x->order, sizeof(int32_t) * x->order_cap);
    }
    int *start = x->e_start, *fill = x->m_fill, *f = x->e_fill;
    int32_t *order = x->order;
    memset(start, 0, sizeof(int) * (E + 1));
    for (int q = 0; q < T * K; q++) start[ids[q] + 1]++;
    for (int e = 0; e < E; e++) start[e + 1] += start[e];
    memcpy(f, start, sizeof(int) * (E + 1));
    for (int q = 0; q < T * K; q++) order[f[ids[q]]++] = q;
    memcpy(fill, a->off, sizeof(int) * M);
    for (int e = 0; e < E; e++) {
        int at = start[e];
        for (int s = p->rep_off[e]; s < p->rep_off[e + 1]; s++) {
            int n = (int)x->seg[(size_t)ai * S + s], m = p->rep_rank[s];
            for (int r = 0; r < n; r++, at++) a->pair[fill[m]++] = order[at];
        }
    }
}

// Then the rows leave: on a device transport by its post_rows; on the host
// either a row per pair, or (host dedup: janus_xchg_rows_once ran in
// dispatch) per MoE rank m the token rows then the pairs' (token row, router
// weight) as int32 and float bits, ceil(2 pairs / H) rows.
static void post_rows(janus_xchg *x, int l, int i, const float *xrows, const int32_t *ids, const float *w, int T) {
    const int K = x->k, H = x->H, M = x->n_moe, ai = x->attn_idx;
    janus_xmb_attn *a = &x->xa[i];
    a->n_req = 0;
    a->summed = false;
    if (x->dev) {
        x->dev->post_rows(x, l, i, xrows, ids, w);
        return;
    }
    const size_t base = ((size_t)i * x->n_attn + ai) * M;
    a->foff[0] = a->boff[0] = 0;
    for (int m = 0; m < M; m++) {
        a->foff[m + 1] = a->foff[m] + (int)x->fwd_am[base + m];
        a->boff[m + 1] = a->boff[m] + (int)x->back_am[base + m];
    }
    ensure_rows(&a->send, &a->cap_send, a->foff[M], H);
    ensure_rows(&a->recv, &a->cap_recv, a->boff[M], H);
    if (host_dedup_on(x)) {
        if (x->host_sums && T && !w) janus_die(NULL, "internal: outputs summed on the MoE ranks need the router's weights");
        for (int m = 0; m < M; m++) {
            const int nt = x->hd_ntok[m], f = x->hd_first[m];
            float *dst = a->send + (size_t)a->foff[m] * H;
            for (int j = 0; j < nt; j++) memcpy(dst + (size_t)j * H, xrows + (size_t)x->hd_tok[f + j] * H, sizeof(float) * H);
            int32_t *side = (int32_t *)(dst + (size_t)nt * H);
            const int r0 = a->off[m], n = a->cnt[m];
            for (int r = 0; r < n; r++) {
                const int q = a->pair[r0 + r], t = (int)(x->hd_src[r0 + r] - x->hd_reg[m]);
                side[2 * r] = t;
                const float wq = w ? w[q] : 0.f;
                memcpy(&side[2 * r + 1], &wq, 4);
                if (x->host_sums) { // the sum's row and whether this pair (the token's first there) reads it
                    a->slot[q] = a->boff[m] + t;
                    a->lead[q] = x->hd_mark[q / K] != m;
                    x->hd_mark[q / K] = m;
                }
            }
            for (int r = 0; r < n; r++) x->hd_mark[a->pair[r0 + r] / K] = -1;
            const int64_t pad = (int64_t)(a->foff[m + 1] - a->foff[m] - nt) * H - 2 * n; // the last row's tail
            if (pad > 0) memset(side + 2 * n, 0, sizeof(int32_t) * pad);
            x->t.h_side_out += a->foff[m + 1] - a->foff[m] - nt;
            x->t.h_rows_out += nt;
        }
        a->summed = x->host_sums;
    } else {
        for (int r = 0; r < a->off[M]; r++)
            memcpy(a->send + (size_t)r * H, xrows + (size_t)(a->pair[r] / K) * H, sizeof(float) * H);
        x->t.h_rows_out += a->off[M];
    }
    x->t.h_pairs += a->off[M];
    x->t.h_rows_back += a->boff[M];
    for (int m = 0; m < M; m++) {
        if (!a->cnt[m] || !direct(x, x->rank, x->moe_world[m])) continue;
        MPI_Irecv(a->recv + (size_t)a->boff[m] * H, a->boff[m + 1] - a->boff[m], g_row, x->moe_world[m],
                  janus_xchg_tag(x, l, i, 1), x->world, &a->req[a->n_req++]);
        MPI_Isend(a->send + (size_t)a->foff[m] * H, a->foff[m + 1] - a->foff[m], g_row, x->moe_world[m],
                  janus_xchg_tag(x, l, i, 0), x->world, &a->req[a->n_req++]);
        x->t.rows_sent += a->foff[m + 1] - a->foff[m];
        x->t.bytes_sent += (int64_t)(a->foff[m + 1] - a->foff[m]) * H * 4;
    }
    if (x->path == XPATH_HIER) janus_hier_attn_post(x, l, i);
}

void janus_xchg_serve(janus_xchg *x, int l, int i) {
    if (x->moe_idx < 0) return;
    if (x->sched_on_gpu[i]) {
        int64_t pairs = 0;
        for (int e = 0; e < x->E; e++) pairs += x->n_tok[e];
        x->dev_sched->serve(x, l, i, janus_ffn_variant_rows(pairs, pairs / x->k, x->E, -1));
        return;
    }
    const int E = x->E, H = x->H, A = x->n_attn, mi = x->moe_idx;
    const janus_placement *p = &x->place[l];
    const int S = p->rep_off[E];
    janus_xmb_moe *q = &x->xm[i];
    double t0 = janus_now_s();
    const int *my_slot = x->my_slot + (size_t)l * E; // this rank's slot of each expert (-1: none)
    q->off[0] = 0;
    for (int a = 0; a < A; a++) {
        q->cnt[a] = 0;
        for (int e = 0; e < E; e++)
            if (my_slot[e] >= 0) q->cnt[a] += (int)x->seg[(size_t)a * S + my_slot[e]];
        q->off[a + 1] = q->off[a] + q->cnt[a];
    }
    int R = q->off[A];
    const bool host = !janus_xchg_on_device(x), hd = host_dedup_on(x);
    // Summed by the expert hook (the GPU's): the token rows go up as they
    // came, each grouped row named by its packed token row; no host rows
    // per pair (the same for the whole run).
    const bool gsum = hd && x->host_sums && x->experts_sums_fn;
    ensure_moe(q, R, host && !gsum ? H : 0);
    q->foff[0] = q->boff[0] = 0;
    for (int a = 0; a < A; a++) {
        const size_t o = ((size_t)i * A + a) * x->n_moe + mi;
        q->foff[a + 1] = q->foff[a] + (int)x->fwd_am[o];
        q->boff[a + 1] = q->boff[a] + (int)x->back_am[o];
    }
    if (host) {
        ensure_rows(&q->in, &q->cap_in, q->foff[A], H);
        ensure_rows(&q->out, &q->cap_out, q->boff[A], H);
    }
    q->n_req = 0;
    for (int a = 0; a < A && host; a++)
        if (q->cnt[a] && direct(x, x->rank, x->attn_world[a]))
            MPI_Irecv(q->in + (size_t)q->foff[a] * H, q->foff[a + 1] - q->foff[a], g_row, x->attn_world[a],
                      janus_xchg_tag(x, l, i, 0), x->world, &q->req[q->n_req++]);
    if (x->path == XPATH_HIER) janus_hier_moe_post_recv(x, l, i);
    if (host) MPI_Waitall(q->n_req, q->req, MPI_STATUSES_IGNORE);
    double t1 = janus_now_s();
    // Group rows by expert: for e ascending, for a ascending, a's rows of e.
    // Host dedup: a's region holds its token rows, then per pair (token row,
    // weight).
    const int64_t *tok = x->tok_am + (size_t)i * A * x->n_moe;
    if (gsum) {
        if (R > x->hs_cap) {
            x->hs_cap = R;
            x->hs_srow = xrealloc(x->hs_srow, sizeof(int32_t) * R), x->hs_gi = xrealloc(x->hs_gi, sizeof(int32_t) * R);
            x->hs_off = xrealloc(x->hs_off, sizeof(int32_t) * (R + 1)), x->hs_w = xrealloc(x->hs_w, sizeof(float) * R);
        }
        for (int a = 0, pb = 0; a < A; a++) {
            x->hs_tok0[a] = q->foff[a], x->hs_ntok[a] = (int32_t)tok[(size_t)a * x->n_moe + mi];
            x->hs_pb[a] = pb, pb += x->hs_ntok[a];
        }
    }
    int *cur = x->a_cur;
    memcpy(cur, q->off, sizeof(int) * (A + 1));
    int g = 0;
    const janus_layer *L = &x->model->layers[l];
    int32_t *seg = x->seg32; // [E+1] grouped rows of each expert
    seg[0] = 0;
    for (int e = 0; e < E; e++) {
        if (my_slot[e] >= 0)
            for (int a = 0; a < A; a++) {
                int n = (int)x->seg[(size_t)a * S + my_slot[e]];
                const float *reg = host ? q->in + (size_t)q->foff[a] * H : NULL;
                const int32_t *side = hd ? (const int32_t *)(reg + (size_t)tok[(size_t)a * x->n_moe + mi] * H) : NULL;
                for (int r = 0; r < n; r++) {
                    const int prow = cur[a] + r;
                    q->perm[g] = prow;
                    if (gsum) {
                        x->hs_srow[g] = x->hs_pb[a] + side[2 * (prow - q->off[a])];
                    } else if (host) {
                        const float *src = hd ? reg + (size_t)side[2 * (prow - q->off[a])] * H : q->in + (size_t)prow * H;
                        memcpy(q->xs + (size_t)g * H, src, sizeof(float) * H);
                    }
                    g++;
                }
                cur[a] += n;
            }
        seg[e + 1] = g;
    }
    int64_t maxr = 0, pairs = 0;
    for (int e = 0; e < E; e++) maxr = x->n_tok[e] > maxr ? x->n_tok[e] : maxr, pairs += x->n_tok[e];
    maxr = janus_ffn_variant_rows(pairs, pairs / x->k, E, maxr); // the kernels one rank would pick
    if (x->dev) { // rows, experts and outputs stay on the GPUs
        x->dev->serve(x, l, i, q->perm, seg, g, (int)maxr);
        return;
    }
    if (gsum && g == 0) {
        // no pairs here: no sums (n_out = 0)
    } else if (gsum) {
        // Per output row (boff[a] + token) its pairs in a's pair order
        // (ascending expert id): the grouped row and the weight.
        const int n_out = q->boff[A];
        int32_t *off = x->hs_off;
        memset(off, 0, sizeof(int32_t) * (n_out + 1));
        for (int r = 0; r < g; r++) q->inv[q->perm[r]] = r;
        for (int a = 0; a < A; a++) {
            const int32_t *side = (const int32_t *)(q->in + ((size_t)q->foff[a] + x->hs_ntok[a]) * H);
            for (int p = 0; p < q->cnt[a]; p++) off[q->boff[a] + side[2 * p] + 1]++;
        }
        for (int o = 0; o < n_out; o++) off[o + 1] += off[o];
        for (int a = 0; a < A; a++) {
            const int32_t *side = (const int32_t *)(q->in + ((size_t)q->foff[a] + x->hs_ntok[a]) * H);
            for (int p = 0; p < q->cnt[a]; p++) {
                const int j = off[q->boff[a] + side[2 * p]]++; // off[o] runs to off[o + 1]'s start
                x->hs_gi[j] = q->inv[q->off[a] + p];
                memcpy(&x->hs_w[j], &side[2 * p + 1], 4);
            }
        }
        for (int o = n_out; o > 0; o--) off[o] = off[o - 1]; // back to each range's start
        off[0] = 0;
        x->experts_sums_fn(x->experts_ctx, l, seg, (int)maxr, q->in, x->hs_tok0, x->hs_ntok, A, x->hs_srow, g, off,
                           x->hs_gi, x->hs_w, n_out, q->out);
    } else if (x->experts_fn) {
        x->experts_fn(x->experts_ctx, l, seg, (int)maxr, q->xs, q->ys, g);
    } else {
        for (int e = 0; e < E; e++) {
            const int g0 = seg[e], n = seg[e + 1] - seg[e];
            if (!n) continue;
            if (!L->gate[e].p) janus_die(NULL, "internal: expert %d of layer %d is not loaded on MoE rank %d", e, l, mi);
            janus_swiglu_ffn(q->ys + (size_t)g0 * H, q->xs + (size_t)g0 * H, n, &L->gate[e], &L->up[e], &L->down[e],
                             &x->ffn);
        }
    }
    if (gsum) {
        // summed by the hook
    } else if (hd && x->host_sums) {
        // One row per (attention rank, token): its pairs' outputs times their
        // weights, summed in the pair layout's order (ascending expert id),
        // each product and sum rounded on its own as janus_combine does.
        for (int r = 0; r < g; r++) q->inv[q->perm[r]] = r;
        for (int a = 0; a < A; a++) {
            const int nt = (int)tok[(size_t)a * x->n_moe + mi];
            const int32_t *side = (const int32_t *)(q->in + ((size_t)q->foff[a] + nt) * H);
            float *o = q->out + (size_t)q->boff[a] * H;
            if (nt > x->hd_seen_cap) x->hd_seen_cap = nt, x->hd_seen = xrealloc(x->hd_seen, nt);
            memset(x->hd_seen, 0, nt);
            for (int p = 0; p < q->cnt[a]; p++) {
                const int t = side[2 * p];
                float wq;
                memcpy(&wq, &side[2 * p + 1], 4);
                sum_into(o + (size_t)t * H, q->ys + (size_t)q->inv[q->off[a] + p] * H, wq, H, !x->hd_seen[t]);
                x->hd_seen[t] = 1;
            }
        }
    } else {
        for (int r = 0; r < g; r++) memcpy(q->out + (size_t)q->perm[r] * H, q->ys + (size_t)r * H, sizeof(float) * H);
    }
    q->n_req = 0;
    for (int a = 0; a < A; a++)
        if (q->cnt[a] && direct(x, x->rank, x->attn_world[a]))
            MPI_Isend(q->out + (size_t)q->boff[a] * H, q->boff[a + 1] - q->boff[a], g_row, x->attn_world[a],
                      janus_xchg_tag(x, l, i, 1), x->world, &q->req[q->n_req++]);
    if (x->path == XPATH_HIER) janus_hier_moe_send(x, l, i);
    x->t.rows_served += R;
    double t2 = janus_now_s();
    x->t.serve_wait_s += t1 - t0;
    x->t.experts_s += t2 - t1;
}

void janus_xchg_collect(janus_xchg *x, int i, float *y) {
    if (x->attn_idx < 0) return;
    janus_xmb_attn *a = &x->xa[i];
    double t0 = janus_now_s();
    if (x->dev) {
        if (x->sched_on_gpu[i]) x->dev_sched->collect(x, i, y);
        else x->dev->collect(x, i, y);
        x->t.wait_s += janus_now_s() - t0;
        return;
    }
    MPI_Waitall(a->n_req, a->req, MPI_STATUSES_IGNORE);
    a->n_req = 0;
    const int H = x->H, R = a->off[x->n_moe];
    if (!a->summed) // a row per pair came back (boff == off)
        for (int r = 0; r < R; r++) memcpy(y + (size_t)a->pair[r] * H, a->recv + (size_t)r * H, sizeof(float) * H);
    x->t.wait_s += janus_now_s() - t0;
}

bool janus_xchg_sums(const janus_xchg *x, int i, const float **y, const int32_t **slot, const int32_t **lead) {
    if (x->attn_idx < 0) return false;
    if (!x->dev) {
        const janus_xmb_attn *a = &x->xa[i];
        if (!a->summed) return false;
        *y = a->recv, *slot = a->slot, *lead = a->lead;
        return true;
    }
    if (!x->dev->sums) return false;
    return x->dev->sums(x, i, y, slot, lead);
}

int64_t janus_xchg_host_rows_back(const janus_xchg *x, int i) {
    return x->attn_idx >= 0 && !x->dev ? x->xa[i].boff[x->n_moe] : 0;
}

void janus_xchg_relay_back(janus_xchg *x, int l, int i) {
    if (x->path == XPATH_HIER) janus_hier_gateway_back(x, l, i);
}

int64_t janus_xchg_off_in_moe(const janus_xchg *x, int i, int a, int m) {
    const int64_t *ram = x->rows_am + (size_t)i * x->n_attn * x->n_moe;
    int64_t o = 0;
    for (int b = 0; b < a; b++) o += ram[(size_t)b * x->n_moe + m];
    return o;
}

int64_t janus_xchg_off_in_attn(const janus_xchg *x, int i, int a, int m) {
    const int64_t *ram = x->rows_am + (size_t)i * x->n_attn * x->n_moe;
    int64_t o = 0;
    for (int q = 0; q < m; q++) o += ram[(size_t)a * x->n_moe + q];
    return o;
}

int janus_xchg_rows_once(const janus_xchg *x, int i, const int32_t *ids, janus_xchg_rows1 *d) {
    const janus_xmb_attn *a = &x->xa[i];
    const int M = x->n_moe, K = x->k, P = a->off[M], T = P / K;
    int n = 0;
    for (int m = 0; m < M; m++) {
        const int64_t base = d->reg[m] = janus_xchg_off_in_moe(x, i, x->attn_idx, m);
        const int r0 = a->off[m], r1 = r0 + a->cnt[m];
        int tmin = T, tmax = -1;
        for (int r = r0; r < r1; r++) {
            const int t = a->pair[r] / K;
            d->mark[t] = 0, tmin = t < tmin ? t : tmin, tmax = t > tmax ? t : tmax;
        }
        d->first[m] = n;
        for (int t = tmin; t <= tmax; t++)
            if (d->mark[t] == 0) d->mark[t] = n - d->first[m] + 1, d->tok[n++] = t; // 1 + its rank
        d->n_tok[m] = n - d->first[m];
        for (int r = r0; r < r1; r++) d->src[r] = (int32_t)(base + d->mark[a->pair[r] / K] - 1);
        for (int r = r0; r < r1; r++) d->mark[a->pair[r] / K] = -1;
    }
    d->n_ent = 0;
    if (!ids) return n;
    for (int m = 0; m < M; m++)
        for (int r = a->off[m]; r < a->off[m + 1]; r++) d->rowof[a->pair[r]] = r, d->mof[a->pair[r]] = m;
    const int W = 2 + 2 * K;
    for (int t = 0; t < T; t++) {
        int ord[64]; // the token's pairs by (MoE rank, expert, slot); k <= 64 (the sums take k <= 16)
        if (K > 64) janus_die(NULL, "internal: rows once per (token, MoE rank) with top-%d", K);
        for (int j = 0; j < K; j++) {
            const int q = t * K + j;
            int k = j;
            while (k > 0) {
                const int o = t * K + ord[k - 1];
                if (d->mof[o] < d->mof[q] || (d->mof[o] == d->mof[q] && ids[o] <= ids[q])) break;
                ord[k] = ord[k - 1], k--;
            }
            ord[k] = j;
        }
        for (int j0 = 0; j0 < K;) {
            const int m = d->mof[t * K + ord[j0]];
            int j1 = j0;
            while (j1 < K && d->mof[t * K + ord[j1]] == m) j1++;
            const int64_t base = d->reg[m];
            const int rank = (int)(d->src[d->rowof[t * K + ord[j0]]] - base);
            int32_t *e = d->ent + (size_t)d->n_ent++ * W;
            e[0] = m, e[1] = rank;
            for (int u = 0; u < K; u++) {
                if (j0 + u < j1) {
                    const int q = t * K + ord[j0 + u];
                    e[2 + u] = (int32_t)(base + d->rowof[q] - a->off[m]), e[2 + K + u] = q;
                } else {
                    e[2 + u] = e[2 + K + u] = -1;
                }
            }
            for (int u = j0; u < j1; u++) {
                const int q = t * K + ord[u];
                d->lead[q] = u == j0;
                if (d->rank) d->rank[q] = rank;
            }
            j0 = j1;
        }
    }
    return n;
}

void janus_xchg_finish_layer(janus_xchg *x) {
    if (x->dev) x->dev->finish_layer(x);
    if (x->moe_idx >= 0)
        for (int i = 0; i < x->n_mb; i++) {
            MPI_Waitall(x->xm[i].n_req, x->xm[i].req, MPI_STATUSES_IGNORE);
            x->xm[i].n_req = 0;
        }
    if (x->path == XPATH_HIER) janus_hier_finish_layer(x);
}
