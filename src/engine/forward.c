// engine/forward.c: the decoder forward pass (CPU, f32), one architecture table
// away from each family: qk-norm placement, qkv bias, shared expert, dense
// layers and top-k renormalisation are read from the config, not coded per
// model. Micro-batches are pipelined through each MoE layer (see forward.h).
#include "engine/forward.h"
#ifdef JANUS_CUDA
#include "engine/gpu.h"
#endif

#include <math.h>
#include <signal.h>
#include <stdlib.h>

size_t janus_kv_block_bytes(const janus_config *c, int block_size) {
    return (size_t)c->n_layers * 2 * block_size * (size_t)c->n_kv_heads * c->head_dim * sizeof(float);
}

void janus_engine_init(janus_engine *en, const janus_model *m, bool attn, int max_tokens, int n_mb, int kv_blocks,
                       int block_size, janus_xchg *xc) {
    memset(en, 0, sizeof *en);
    const janus_config *c = &m->cfg;
    en->m = m;
    en->fault_step = -1;
    en->attn = attn;
    en->xc = xc;
    en->n_mb = n_mb;
    en->max_tokens = max_tokens;
    en->expert_counts = xcalloc((size_t)c->n_layers * c->n_experts, sizeof(int64_t));
    en->layer_attn_s = xcalloc(c->n_layers, sizeof(double));
    en->layer_ffn_s = xcalloc(c->n_layers, sizeof(double));
    if (!attn) return; // a MoE-only rank computes through its exchange alone
    const size_t T = max_tokens, H = c->hidden, nq = (size_t)c->n_heads * c->head_dim,
                 nkv = (size_t)c->n_kv_heads * c->head_dim, E = c->n_experts, K = c->top_k;
    en->kv = (janus_kv){NULL, NULL, c->n_layers, kv_blocks, block_size, (int)nkv};
    size_t kv_elems = (size_t)c->n_layers * kv_blocks * block_size * nkv;
    en->kv.k = xmalloc(sizeof(float) * kv_elems);
    en->kv.v = xmalloc(sizeof(float) * kv_elems);
    en->inv_freq = xmalloc(sizeof(float) * c->head_dim / 2);
    cpu_rope_inv_freq(en->inv_freq, c->head_dim, c->rope_theta);
    en->q = xmalloc(sizeof(float) * T * nq);
    en->k = xmalloc(sizeof(float) * T * nkv);
    en->v = xmalloc(sizeof(float) * T * nkv);
    en->att = xmalloc(sizeof(float) * T * nq);
    en->xs = xmalloc(sizeof(float) * T * K * H);
    en->ys = xmalloc(sizeof(float) * T * K * H);
    en->order = xmalloc(sizeof(int32_t) * T * K);
    en->mb = xcalloc(n_mb, sizeof(janus_mb_bufs));
    for (int i = 0; i < n_mb; i++) {
        janus_mb_bufs *b = &en->mb[i];
        b->x = xmalloc(sizeof(float) * T * H);
        b->h = xmalloc(sizeof(float) * T * H);
        b->rlogits = xmalloc(sizeof(float) * T * E);
        b->topw = xmalloc(sizeof(float) * T * K);
        b->topi = xmalloc(sizeof(int32_t) * T * K);
        b->y = xmalloc(sizeof(float) * T * K * H);
        b->moe = xmalloc(sizeof(float) * T * H);
        b->sh = xmalloc(sizeof(float) * T * H);
        b->shg = xmalloc(sizeof(float) * T);
    }
    int inter = c->moe_inter;
    if (c->dense_inter > inter) inter = c->dense_inter;
    if (c->shared_inter > inter) inter = c->shared_inter;
    janus_ffn_scratch_init(&en->ffn, max_tokens < 256 ? max_tokens : 256, inter);
}

void janus_engine_free(janus_engine *en) {
    if (en->attn) {
        float *bufs[] = {en->kv.k, en->kv.v, en->inv_freq, en->q, en->k, en->v, en->att, en->xs, en->ys};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
        for (int i = 0; i < en->n_mb; i++) {
            janus_mb_bufs *b = &en->mb[i];
            free(b->x), free(b->h), free(b->rlogits), free(b->topw), free(b->topi), free(b->y), free(b->moe);
            free(b->sh), free(b->shg);
        }
        free(en->mb);
        free(en->order);
        janus_ffn_scratch_free(&en->ffn);
    }
    free(en->expert_counts);
    free(en->layer_attn_s);
    free(en->layer_ffn_s);
    memset(en, 0, sizeof *en);
}

static void add_into(float *x, const float *d, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += d[i];
}

// x += attention(rmsnorm(x)); then h = rmsnorm(x) for the FFN.
static void attention_block(janus_engine *en, const janus_layer *L, int l, const janus_batch *b, janus_mb_bufs *mb) {
    const janus_config *c = &en->m->cfg;
    const int T = b->T, H = c->hidden, hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads;
    cpu_rmsnorm(mb->h, mb->x, &L->attn_norm, T, H, c->rms_eps);
    cpu_linear(en->q, mb->h, &L->wq, &L->bq, T);
    cpu_linear(en->k, mb->h, &L->wk, &L->bk, T);
    cpu_linear(en->v, mb->h, &L->wv, &L->bv, T);
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
    cpu_linear(mb->h, en->att, &L->wo, NULL, T);
    add_into(mb->x, mb->h, (size_t)T * H);
    cpu_rmsnorm(mb->h, mb->x, &L->ffn_norm, T, H, c->rms_eps);
}

static void route_tokens(janus_engine *en, const janus_layer *L, int l, int T, janus_mb_bufs *mb) {
    const janus_config *c = &en->m->cfg;
    const int E = c->n_experts, K = c->top_k;
    cpu_linear(mb->rlogits, mb->h, &L->router, NULL, T);
    cpu_router_topk(mb->topi, mb->topw, mb->rlogits, T, E, K, c->norm_topk);
    int64_t *cnt = en->expert_counts + (size_t)l * E;
    for (int i = 0; i < T * K; i++) cnt[mb->topi[i]]++;
}

// x += combine(y) (+ sigmoid-gated shared expert).
static void combine_block(janus_engine *en, const janus_layer *L, int T, janus_mb_bufs *mb, int i) {
    const janus_config *c = &en->m->cfg;
    const int H = c->hidden, K = c->top_k;
    const float *ys;
    const int32_t *slot, *lead;
    if (en->xc && janus_xchg_sums(en->xc, i, &ys, &slot, &lead)) // outputs summed per (token, MoE rank)
        janus_combine_sums(mb->moe, ys, slot, lead, mb->topi, T, K, H);
    else
        janus_combine(mb->moe, mb->y, mb->topi, mb->topw, T, K, H);
    if (L->sh_gate.p) {
        janus_swiglu_ffn(mb->sh, mb->h, T, &L->sh_gate, &L->sh_up, &L->sh_down, &en->ffn);
        cpu_linear(mb->shg, mb->h, &L->sh_expert_gate, NULL, T);
        for (int t = 0; t < T; t++) {
            const float s = 1.0f / (1.0f + expf(-mb->shg[t]));
            for (int d = 0; d < H; d++) mb->moe[(size_t)t * H + d] += s * mb->sh[(size_t)t * H + d];
        }
    }
    add_into(mb->x, mb->moe, (size_t)T * H);
}

void janus_step(janus_engine *en, const janus_batch *b, float *const *logits) {
    const janus_model *m = en->m;
    const janus_config *c = &m->cfg;
    const int H = c->hidden, K = c->top_k, n_mb = en->n_mb;
    if (en->fault_step >= 0 && (int64_t)en->times.steps == en->fault_step) raise(en->fault_signal ? en->fault_signal : SIGKILL);
#ifdef JANUS_CUDA
    if (en->gpu) {
        if (en->xc) // several ranks: layer by layer through the exchange
            janus_gpu_step(en->gpu, en, b, logits);
        else // one GPU, all experts local: the micro-batches run one after another
            for (int i = 0; i < n_mb; i++)
                janus_gpu_forward(en->gpu, &b[i], logits[i], NULL, NULL, en->expert_counts, &en->times);
        en->times.steps += 1;
        return;
    }
#endif
    if (en->attn)
        for (int i = 0; i < n_mb; i++) {
            if (b[i].T > en->max_tokens)
                janus_die(NULL, "internal: micro-batch of %d tokens exceeds the engine's %d", b[i].T, en->max_tokens);
            cpu_embed(en->mb[i].x, &m->embed, b[i].tok, b[i].T);
        }
    for (int l = 0; l < c->n_layers; l++) {
        const janus_layer *L = &m->layers[l];
        if (!c->layer_moe[l]) { // dense layer: attention side only
            if (!en->attn) continue;
            for (int i = 0; i < n_mb; i++) {
                double t0 = janus_now_s();
                attention_block(en, L, l, &b[i], &en->mb[i]);
                double t1 = janus_now_s();
                janus_swiglu_ffn(en->mb[i].moe, en->mb[i].h, b[i].T, &L->mlp_gate, &L->mlp_up, &L->mlp_down, &en->ffn);
                add_into(en->mb[i].x, en->mb[i].moe, (size_t)b[i].T * H);
                double t2 = janus_now_s();
                en->times.attn_s += t1 - t0;
                en->times.dense_s += t2 - t1;
                en->layer_attn_s[l] += t1 - t0;
                en->layer_ffn_s[l] += t2 - t1;
            }
            continue;
        }
        // MoE layer: attention + routing of micro-batch i, then its exchange;
        // the next micro-batch's attention runs while the MoE pool works on i.
        for (int i = 0; i < n_mb; i++) {
            janus_mb_bufs *mb = en->attn ? &en->mb[i] : NULL;
            int T = en->attn ? b[i].T : 0;
            double t0 = janus_now_s();
            if (en->attn) {
                attention_block(en, L, l, &b[i], mb);
                double t1 = janus_now_s();
                route_tokens(en, L, l, T, mb);
                en->times.attn_s += t1 - t0;
                en->times.router_s += janus_now_s() - t1;
                en->layer_attn_s[l] += t1 - t0;
                en->layer_ffn_s[l] -= t1; // the MoE part runs from here to the end of the combine
            }
            double t2 = janus_now_s();
            if (en->xc) {
                janus_xchg_dispatch(en->xc, l, i, mb ? mb->h : NULL, mb ? mb->topi : NULL, mb ? mb->topw : NULL, T);
                janus_xchg_serve(en->xc, l, i);
            } else {
                janus_experts_local(L, H, mb->h, mb->topi, T, K, mb->y, en->xs, en->ys, en->order, &en->ffn);
            }
            en->times.experts_s += janus_now_s() - t2;
        }
        if (en->xc)
            for (int i = 0; i < n_mb; i++) janus_xchg_relay_back(en->xc, l, i);
        for (int i = 0; i < n_mb && en->attn; i++) {
            double t0 = janus_now_s();
            if (en->xc) janus_xchg_collect(en->xc, i, en->mb[i].y);
            double t1 = janus_now_s();
            combine_block(en, L, b[i].T, &en->mb[i], i);
            en->times.experts_s += t1 - t0;
            en->times.combine_s += janus_now_s() - t1;
        }
        if (en->attn) en->layer_ffn_s[l] += n_mb * janus_now_s();
        if (en->xc) janus_xchg_finish_layer(en->xc);
    }
    if (en->attn) {
        double t0 = janus_now_s();
        // Final norm and lm_head only on the rows that need logits.
        for (int i = 0; i < n_mb; i++) {
            janus_mb_bufs *mb = &en->mb[i];
            for (int r = 0; r < b[i].n_out; r++)
                memcpy(mb->h + (size_t)r * H, mb->x + (size_t)b[i].out_rows[r] * H, sizeof(float) * H);
            cpu_rmsnorm(mb->h, mb->h, &m->final_norm, b[i].n_out, H, c->rms_eps);
            cpu_linear(logits[i], mb->h, &m->lm_head, NULL, b[i].n_out);
        }
        en->times.lm_head_s += janus_now_s() - t0;
    }
    en->times.steps += 1;
}

void janus_forward(janus_engine *en, const janus_batch *b, float *logits) {
    if (en->n_mb != 1) janus_die(NULL, "internal: janus_forward needs an engine of one micro-batch");
    float *lg[1] = {logits};
    janus_step(en, b, lg);
}
