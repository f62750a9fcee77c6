// engine/forward.c: the decoder forward pass (CPU, f32), one architecture table
// away from each family: qk-norm placement, qkv bias, shared expert, dense
// layers and top-k renormalisation are read from the config, not coded per model.
#include "engine/forward.h"

#include <math.h>
#include <stdlib.h>

size_t janus_kv_block_bytes(const janus_config *c, int block_size) {
    return (size_t)c->n_layers * 2 * block_size * (size_t)c->n_kv_heads * c->head_dim * sizeof(float);
}

void janus_engine_init(janus_engine *en, const janus_model *m, int max_tokens, int kv_blocks, int block_size) {
    memset(en, 0, sizeof *en);
    const janus_config *c = &m->cfg;
    en->m = m;
    en->max_tokens = max_tokens;
    const size_t T = max_tokens, H = c->hidden, nq = (size_t)c->n_heads * c->head_dim,
                 nkv = (size_t)c->n_kv_heads * c->head_dim, E = c->n_experts, K = c->top_k;
    en->kv = (janus_kv){NULL, NULL, c->n_layers, kv_blocks, block_size, (int)nkv};
    size_t kv_elems = (size_t)c->n_layers * kv_blocks * block_size * nkv;
    en->kv.k = xmalloc(sizeof(float) * kv_elems);
    en->kv.v = xmalloc(sizeof(float) * kv_elems);
    en->inv_freq = xmalloc(sizeof(float) * c->head_dim / 2);
    cpu_rope_inv_freq(en->inv_freq, c->head_dim, c->rope_theta);
    en->x = xmalloc(sizeof(float) * T * H);
    en->h = xmalloc(sizeof(float) * T * H);
    en->q = xmalloc(sizeof(float) * T * nq);
    en->k = xmalloc(sizeof(float) * T * nkv);
    en->v = xmalloc(sizeof(float) * T * nkv);
    en->att = xmalloc(sizeof(float) * T * (nq > H ? nq : H));
    en->rlogits = xmalloc(sizeof(float) * T * E);
    en->topw = xmalloc(sizeof(float) * T * K);
    en->topi = xmalloc(sizeof(int32_t) * T * K);
    en->order = xmalloc(sizeof(int32_t) * T * K);
    en->y = xmalloc(sizeof(float) * T * K * H);
    en->xs = xmalloc(sizeof(float) * T * K * H);
    en->ys = xmalloc(sizeof(float) * T * K * H);
    en->moe = xmalloc(sizeof(float) * T * H);
    en->sh = xmalloc(sizeof(float) * T * H);
    en->shg = xmalloc(sizeof(float) * T);
    int inter = c->moe_inter;
    if (c->dense_inter > inter) inter = c->dense_inter;
    if (c->shared_inter > inter) inter = c->shared_inter;
    janus_ffn_scratch_init(&en->ffn, max_tokens < 256 ? max_tokens : 256, inter);
    en->expert_counts = xcalloc((size_t)c->n_layers * E, sizeof(int64_t));
}

void janus_engine_free(janus_engine *en) {
    float *bufs[] = {en->kv.k, en->kv.v, en->inv_freq, en->x, en->h, en->q, en->k, en->v, en->att, en->rlogits,
                     en->topw, en->y, en->xs, en->ys, en->moe, en->sh, en->shg};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(en->topi);
    free(en->order);
    free(en->expert_counts);
    janus_ffn_scratch_free(&en->ffn);
    memset(en, 0, sizeof *en);
}

static void add_into(float *x, const float *d, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += d[i];
}

static void attention_block(janus_engine *en, const janus_layer *L, int l, const janus_batch *b) {
    const janus_config *c = &en->m->cfg;
    const int T = b->T, H = c->hidden, hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads;
    cpu_rmsnorm(en->h, en->x, &L->attn_norm, T, H, c->rms_eps);
    cpu_linear(en->q, en->h, &L->wq, &L->bq, T);
    cpu_linear(en->k, en->h, &L->wk, &L->bk, T);
    cpu_linear(en->v, en->h, &L->wv, &L->bv, T);
    if (c->desc->qk_norm == QK_NORM_HEAD) { // per head, over head_dim
        cpu_rmsnorm(en->q, en->q, &L->q_norm, T * nh, hd, c->rms_eps);
        cpu_rmsnorm(en->k, en->k, &L->k_norm, T * nkv, hd, c->rms_eps);
    } else if (c->desc->qk_norm == QK_NORM_FULL) { // over the whole projection
        cpu_rmsnorm(en->q, en->q, &L->q_norm, T, nh * hd, c->rms_eps);
        cpu_rmsnorm(en->k, en->k, &L->k_norm, T, nkv * hd, c->rms_eps);
    }
    cpu_rope(en->q, T, nh, hd, b->pos, en->inv_freq);
    cpu_rope(en->k, T, nkv, hd, b->pos, en->inv_freq);
    cpu_kv_store(&en->kv, l, en->k, en->v, b->bt, b->pos, T);
    cpu_attention(en->att, en->q, &en->kv, l, b->bt, b->pos, T, nh, nkv, hd);
    cpu_linear(en->h, en->att, &L->wo, NULL, T);
    add_into(en->x, en->h, (size_t)T * H);
}

static void moe_block(janus_engine *en, const janus_layer *L, int l, int T) {
    const janus_config *c = &en->m->cfg;
    const int H = c->hidden, E = c->n_experts, K = c->top_k;
    double t0 = janus_now_s();
    cpu_linear(en->rlogits, en->h, &L->router, NULL, T);
    cpu_router_topk(en->topi, en->topw, en->rlogits, T, E, K, c->norm_topk);
    int64_t *cnt = en->expert_counts + (size_t)l * E;
    for (int i = 0; i < T * K; i++) cnt[en->topi[i]]++;
    double t1 = janus_now_s();
    if (en->moe_fn)
        en->moe_fn(en->moe_ctx, l, en->h, en->topi, T, en->y);
    else
        janus_experts_local(L, H, en->h, en->topi, T, K, en->y, en->xs, en->ys, en->order, &en->ffn);
    double t2 = janus_now_s();
    janus_combine(en->moe, en->y, en->topi, en->topw, T, K, H);
    if (L->sh_gate.p) { // shared expert, scaled by sigmoid(x . g)
        janus_swiglu_ffn(en->sh, en->h, T, &L->sh_gate, &L->sh_up, &L->sh_down, &en->ffn);
        cpu_linear(en->shg, en->h, &L->sh_expert_gate, NULL, T);
        for (int t = 0; t < T; t++) {
            const float s = 1.0f / (1.0f + expf(-en->shg[t]));
            for (int d = 0; d < H; d++) en->moe[(size_t)t * H + d] += s * en->sh[(size_t)t * H + d];
        }
    }
    add_into(en->x, en->moe, (size_t)T * H);
    double t3 = janus_now_s();
    en->times.router_s += t1 - t0;
    en->times.experts_s += t2 - t1;
    en->times.combine_s += t3 - t2;
}

void janus_forward(janus_engine *en, const janus_batch *b, float *logits) {
    const janus_model *m = en->m;
    const janus_config *c = &m->cfg;
    const int T = b->T, H = c->hidden;
    if (T > en->max_tokens) janus_die(NULL, "internal: batch of %d tokens exceeds the engine's %d", T, en->max_tokens);
    cpu_embed(en->x, &m->embed, b->tok, T);
    for (int l = 0; l < c->n_layers; l++) {
        const janus_layer *L = &m->layers[l];
        double t0 = janus_now_s();
        attention_block(en, L, l, b);
        double t1 = janus_now_s();
        en->times.attn_s += t1 - t0;
        cpu_rmsnorm(en->h, en->x, &L->ffn_norm, T, H, c->rms_eps);
        if (L->moe) {
            moe_block(en, L, l, T);
        } else {
            janus_swiglu_ffn(en->moe, en->h, T, &L->mlp_gate, &L->mlp_up, &L->mlp_down, &en->ffn);
            add_into(en->x, en->moe, (size_t)T * H);
            en->times.dense_s += janus_now_s() - t1;
        }
    }
    double t0 = janus_now_s();
    // Final norm and lm_head only on the rows that need logits.
    for (int i = 0; i < b->n_out; i++)
        memcpy(en->h + (size_t)i * H, en->x + (size_t)b->out_rows[i] * H, sizeof(float) * H);
    cpu_rmsnorm(en->h, en->h, &m->final_norm, b->n_out, H, c->rms_eps);
    cpu_linear(logits, en->h, &m->lm_head, NULL, b->n_out);
    en->times.lm_head_s += janus_now_s() - t0;
    en->times.steps += 1;
}
