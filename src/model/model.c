// model/model.c: binds the tensors of a checkpoint to janus_model, checking
// every shape against config.json.
#include "model/model.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    janus_model *m;
    janus_err *e;
} binder;

static int shape_str(char *buf, size_t n, const janus_tensor *t) {
    int k = snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim; d++) k += snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    return snprintf(buf + k, n - k, "]");
}

static const janus_tensor *find_checked(binder *b, const char *name, bool required) {
    const janus_tensor *t = janus_st_find(&b->m->st, name);
    if (!t) {
        if (required) janus_errf(b->e, "%s: tensor %s: missing from the checkpoint", b->m->cfg.dir, name);
        return NULL;
    }
    if (!t->dtype_ok) {
        janus_errf(b->e, "%s: tensor %s: dtype %s is not supported (F32, F16, BF16)", t->file, name, t->dtype_name);
        return NULL;
    }
    return t;
}

// Whether any tensor's name starts with prefix (the set is sorted by name).
static bool any_with_prefix(const janus_st *st, const char *prefix) {
    size_t n = strlen(prefix);
    int lo = 0, hi = st->n_tensors;
    while (lo < hi) { // first name >= prefix
        int mid = lo + (hi - lo) / 2;
        if (strcmp(st->tensors[mid].name, prefix) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < st->n_tensors && strncmp(st->tensors[lo].name, prefix, n) == 0;
}

// Bind a vector [cols] (rows == 0) or matrix [rows, cols].
static int bind(binder *b, janus_w *w, const char *name, int64_t rows, int64_t cols, bool required) {
    memset(w, 0, sizeof *w);
    const janus_tensor *t = find_checked(b, name, required);
    if (!t) return (required || b->e->msg[0]) ? -1 : 0;
    bool ok = rows == 0 ? (t->ndim == 1 && t->shape[0] == cols)
                        : (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok) {
        char got[96];
        shape_str(got, sizeof got, t);
        if (rows == 0)
            return janus_errf(b->e, "%s: tensor %s: shape %s, expected [%lld] from config.json", t->file, name, got, (long long)cols);
        return janus_errf(b->e, "%s: tensor %s: shape %s, expected [%lld, %lld] from config.json", t->file, name, got,
                          (long long)rows, (long long)cols);
    }
    w->p = t->data;
    w->dt = t->dtype;
    w->rows = rows ? rows : 1;
    w->cols = cols;
    b->m->weight_bytes += t->nbytes;
    return 0;
}

static int bindf(binder *b, janus_w *w, int64_t rows, int64_t cols, bool required, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int bindf(binder *b, janus_w *w, int64_t rows, int64_t cols, bool required, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return bind(b, w, name, rows, cols, required);
}

// Routed experts of layer l: per-expert tensors (gate_proj/up_proj/down_proj or
// Mixtral's w1/w3/w2) or fused [E, 2I, H] gate_up_proj + [E, H, I] down_proj,
// under "mlp." or Mixtral's "block_sparse_moe.".
static int bind_experts(binder *b, int l, const char *pfx, const uint8_t *mask) {
    janus_config *c = &b->m->cfg;
    janus_layer *L = &b->m->layers[l];
    int E = c->n_experts, I = c->moe_inter, H = c->hidden;
    L->gate = xcalloc(E, sizeof(janus_w));
    L->up = xcalloc(E, sizeof(janus_w));
    L->down = xcalloc(E, sizeof(janus_w));
    char name[256];
    char dname[256];
    snprintf(name, sizeof name, "model.layers.%d.%s.experts.gate_up_proj", l, pfx);
    snprintf(dname, sizeof dname, "model.layers.%d.%s.experts.down_proj", l, pfx);
    // Fused when either fused tensor is there (the other one missing is then reported by name).
    if (janus_st_find(&b->m->st, name) || janus_st_find(&b->m->st, dname)) {
        const janus_tensor *gu = find_checked(b, name, true);
        if (!gu) return -1;
        const janus_tensor *dn = find_checked(b, dname, true);
        if (!dn) return -1;
        char got[96];
        if (gu->ndim != 3 || gu->shape[0] != E || gu->shape[1] != 2 * I || gu->shape[2] != H) {
            shape_str(got, sizeof got, gu);
            return janus_errf(b->e, "%s: tensor %s: shape %s, expected [%d, %d, %d] from config.json", gu->file, gu->name, got, E, 2 * I, H);
        }
        if (dn->ndim != 3 || dn->shape[0] != E || dn->shape[1] != H || dn->shape[2] != I) {
            shape_str(got, sizeof got, dn);
            return janus_errf(b->e, "%s: tensor %s: shape %s, expected [%d, %d, %d] from config.json", dn->file, dn->name, got, E, H, I);
        }
        size_t es = janus_dtype_size(gu->dtype), ds = janus_dtype_size(dn->dtype);
        for (int x = 0; x < E; x++) {
            if (mask && !mask[l * E + x]) continue;
            const uint8_t *g0 = (const uint8_t *)gu->data + (size_t)x * 2 * I * H * es;
            L->gate[x] = (janus_w){g0, gu->dtype, I, H};
            L->up[x] = (janus_w){g0 + (size_t)I * H * es, gu->dtype, I, H};
            L->down[x] = (janus_w){(const uint8_t *)dn->data + (size_t)x * H * I * ds, dn->dtype, H, I};
            b->m->weight_bytes += 3 * (size_t)I * H * es;
        }
        return 0;
    }
    // Per-expert names: which scheme does the layer use? (Any expert's w1/w2/w3
    // decides, so that a missing tensor is reported under the names in use.)
    static const char *schemes[2][3] = {{"gate_proj", "up_proj", "down_proj"}, {"w1", "w3", "w2"}};
    int s = 0;
    for (int x = 0; x < E && !s; x++)
        for (int k = 0; k < 3 && !s; k++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.experts.%d.%s.weight", l, pfx, x, schemes[1][k]);
            if (janus_st_find(&b->m->st, name)) s = 1;
        }
    for (int x = 0; x < E; x++) {
        if (mask && !mask[l * E + x]) continue;
        if (bindf(b, &L->gate[x], I, H, true, "model.layers.%d.%s.experts.%d.%s.weight", l, pfx, x, schemes[s][0]) ||
            bindf(b, &L->up[x], I, H, true, "model.layers.%d.%s.experts.%d.%s.weight", l, pfx, x, schemes[s][1]) ||
            bindf(b, &L->down[x], H, I, true, "model.layers.%d.%s.experts.%d.%s.weight", l, pfx, x, schemes[s][2]))
            return -1;
    }
    return 0;
}

static int bind_layer(binder *b, int l, int what, const uint8_t *mask) {
    janus_config *c = &b->m->cfg;
    janus_layer *L = &b->m->layers[l];
    int H = c->hidden, hd = c->head_dim, nq = c->n_heads * hd, nkv = c->n_kv_heads * hd;
    L->moe = c->layer_moe[l];
    // The MoE block's prefix: "mlp" (HF today) or "block_sparse_moe" (Mixtral).
    char name[256];
    const char *pfx = "mlp";
    snprintf(name, sizeof name, "model.layers.%d.block_sparse_moe.", l);
    if (any_with_prefix(&b->m->st, name)) pfx = "block_sparse_moe";
    if (what & JANUS_LOAD_ATTN) {
        const char *a = "model.layers.%d.self_attn.%s";
        if (bindf(b, &L->attn_norm, 0, H, true, "model.layers.%d.input_layernorm.weight", l) ||
            bindf(b, &L->ffn_norm, 0, H, true, "model.layers.%d.post_attention_layernorm.weight", l) ||
            bindf(b, &L->wq, nq, H, true, a, l, "q_proj.weight") || bindf(b, &L->wk, nkv, H, true, a, l, "k_proj.weight") ||
            bindf(b, &L->wv, nkv, H, true, a, l, "v_proj.weight") || bindf(b, &L->wo, H, nq, true, a, l, "o_proj.weight") ||
            bindf(b, &L->bq, 0, nq, false, a, l, "q_proj.bias") || bindf(b, &L->bk, 0, nkv, false, a, l, "k_proj.bias") ||
            bindf(b, &L->bv, 0, nkv, false, a, l, "v_proj.bias"))
            return -1;
        if (c->desc->qk_norm == QK_NORM_HEAD &&
            (bindf(b, &L->q_norm, 0, hd, true, a, l, "q_norm.weight") || bindf(b, &L->k_norm, 0, hd, true, a, l, "k_norm.weight")))
            return -1;
        if (c->desc->qk_norm == QK_NORM_FULL &&
            (bindf(b, &L->q_norm, 0, nq, true, a, l, "q_norm.weight") || bindf(b, &L->k_norm, 0, nkv, true, a, l, "k_norm.weight")))
            return -1;
        if (L->moe) {
            if (bindf(b, &L->router, c->n_experts, H, true, "model.layers.%d.%s.gate.weight", l, pfx)) return -1;
            if (c->desc->shared_expert && c->shared_inter > 0) {
                int S = c->shared_inter;
                const char *s = "model.layers.%d.mlp.shared_expert.%s";
                if (bindf(b, &L->sh_gate, S, H, true, s, l, "gate_proj.weight") ||
                    bindf(b, &L->sh_up, S, H, true, s, l, "up_proj.weight") ||
                    bindf(b, &L->sh_down, H, S, true, s, l, "down_proj.weight") ||
                    bindf(b, &L->sh_expert_gate, 1, H, true, "model.layers.%d.mlp.shared_expert_gate.weight", l))
                    return -1;
            }
        } else {
            int D = c->dense_inter;
            const char *s = "model.layers.%d.mlp.%s";
            if (bindf(b, &L->mlp_gate, D, H, true, s, l, "gate_proj.weight") ||
                bindf(b, &L->mlp_up, D, H, true, s, l, "up_proj.weight") ||
                bindf(b, &L->mlp_down, H, D, true, s, l, "down_proj.weight"))
                return -1;
        }
    }
    if ((what & JANUS_LOAD_EXPERTS) && L->moe) return bind_experts(b, l, pfx, mask);
    return 0;
}

int janus_model_load(const char *dir, janus_model *m, int what, const uint8_t *expert_mask, janus_err *e) {
    memset(m, 0, sizeof *m);
    e->msg[0] = 0;
    if (janus_config_load(dir, &m->cfg, e)) return -1;
    if (what == 0) { // config only (synthetic weights are made on the device)
        m->layers = xcalloc(m->cfg.n_layers, sizeof(janus_layer));
        for (int l = 0; l < m->cfg.n_layers; l++) m->layers[l].moe = m->cfg.layer_moe[l];
        return 0;
    }
    if (janus_st_open(dir, &m->st, e)) return -1;
    janus_config *c = &m->cfg;
    binder b = {m, e};
    m->layers = xcalloc(c->n_layers, sizeof(janus_layer));
    if (what & JANUS_LOAD_ATTN) {
        if (bind(&b, &m->embed, "model.embed_tokens.weight", c->vocab, c->hidden, true) ||
            bind(&b, &m->final_norm, "model.norm.weight", 0, c->hidden, true))
            return -1;
        if (c->tie_embed) {
            m->lm_head = m->embed;
        } else if (bind(&b, &m->lm_head, "lm_head.weight", c->vocab, c->hidden, true)) {
            return -1;
        }
    }
    for (int l = 0; l < c->n_layers; l++)
        if (bind_layer(&b, l, what, expert_mask)) return -1;
    return 0;
}

void janus_model_free(janus_model *m) {
    if (m->layers)
        for (int l = 0; l < m->cfg.n_layers; l++) {
            free(m->layers[l].gate);
            free(m->layers[l].up);
            free(m->layers[l].down);
        }
    free(m->layers);
    janus_st_close(&m->st);
    memset(m, 0, sizeof *m);
}
