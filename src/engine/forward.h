// engine/forward.h: one forward step of a batch of tokens through the whole
// model on the CPU (the attention side), with the routed-expert compute behind
// a hook so that it can run locally (monolithic) or on the MoE pool.
#ifndef JANUS_ENGINE_FORWARD_H
#define JANUS_ENGINE_FORWARD_H

#include "cpu/kernels.h"
#include "model/model.h"
#include "moe/experts.h"

// One step's tokens: any mix of prefill chunks and decode tokens.
typedef struct {
    int T;                     // tokens
    const int32_t *tok;        // [T] token ids
    const int32_t *pos;        // [T] positions in their sequences
    const int32_t *const *bt;  // [T] each token's sequence block table
    int n_out;                 // rows whose logits are wanted
    const int32_t *out_rows;   // [n_out] indices into the T tokens
} janus_batch;

// Routed experts of one layer: fill y [T*k, H] with the output of expert
// ids[t*k+j] on row x[t] (unweighted). The hook owns the transport.
typedef void (*janus_moe_fn)(void *ctx, int layer, const float *x, const int32_t *ids, int T, float *y);

// Seconds spent per phase, summed over steps (the planner calibrates on these).
typedef struct {
    double attn_s, router_s, experts_s, combine_s, dense_s, lm_head_s, steps;
} janus_fwd_times;

typedef struct {
    const janus_model *m;
    janus_kv kv;
    int max_tokens;            // T capacity of the scratch
    float *inv_freq;           // [hd/2]
    // scratch, [max_tokens, ...]
    float *x, *h, *q, *k, *v, *att, *rlogits, *topw, *y, *xs, *ys, *moe, *sh, *shg;
    int32_t *topi, *order;
    janus_ffn_scratch ffn;
    int64_t *expert_counts;    // [n_layers, n_experts], routed tokens seen
    janus_moe_fn moe_fn;       // NULL: local experts
    void *moe_ctx;
    janus_fwd_times times;
} janus_engine;

// kv_blocks blocks of block_size positions each, for every layer.
void janus_engine_init(janus_engine *en, const janus_model *m, int max_tokens, int kv_blocks, int block_size);
void janus_engine_free(janus_engine *en);
// Bytes of KV cache one block takes (all layers, K and V).
size_t janus_kv_block_bytes(const janus_config *c, int block_size);

// Runs the batch; logits: [n_out, vocab].
void janus_forward(janus_engine *en, const janus_batch *b, float *logits);

#endif
