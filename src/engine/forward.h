// engine/forward.h: one forward step of the model on the CPU, split into m
// micro-batches that are pipelined layer by layer: while micro-batch i's rows
// are at the MoE pool (exchange + expert compute), the attention rank runs
// attention for micro-batch i+1 (ping-pong). The routed experts run locally
// (one rank, all experts) or through the exchange (comm/), chosen by whether
// an exchange is attached. Every rank of a disaggregated job calls
// janus_step in lockstep; MoE-only ranks pass empty batches.
#ifndef JANUS_ENGINE_FORWARD_H
#define JANUS_ENGINE_FORWARD_H

#include "comm/exchange.h"
#include "cpu/kernels.h"
#include "model/model.h"
#include "moe/experts.h"

// Token choice of one wanted row when it is made on the device (GPU backend):
// the request's sampling settings, its id and step (tokens generated so far).
// Same layout as cuda_kernels/sample.h's jk_sample_params.
typedef struct {
    float temperature, top_p;
    int32_t top_k, step;
    int64_t seed, id;
} janus_row_sampling;

// One micro-batch's tokens: any mix of prefill chunks and decode tokens.
typedef struct {
    int T;                     // tokens
    const int32_t *tok;        // [T] token ids
    const int32_t *pos;        // [T] positions in their sequences
    const int32_t *const *bt;  // [T] each token's sequence block table
    int n_out;                 // rows whose logits are wanted
    const int32_t *out_rows;   // [n_out] indices into the T tokens
    // GPU backend only (NULL: logits come back): the wanted rows' token is
    // chosen on the device; chosen [n_out] and its logprob [n_out] come back.
    const janus_row_sampling *samp;
    int32_t *chosen;
    float *chosen_lp;
} janus_batch;

// Seconds per phase, summed over steps (the planner calibrates on these).
typedef struct {
    double attn_s, router_s, experts_s, combine_s, dense_s, lm_head_s, steps;
} janus_fwd_times;

// Per micro-batch activations, [max_tokens, ...].
typedef struct {
    float *x, *h, *rlogits, *topw, *y, *moe, *sh, *shg;
    int32_t *topi;
} janus_mb_bufs;

typedef struct {
    const janus_model *m;
    bool attn;                 // this rank runs attention (holds KV, requests)
    janus_kv kv;
    int max_tokens;            // tokens per micro-batch
    int n_mb;
    float *inv_freq;           // [hd/2]
    float *q, *k, *v, *att, *xs, *ys;  // shared attention / local-expert scratch
    int32_t *order;
    janus_mb_bufs *mb;         // [n_mb]
    janus_ffn_scratch ffn;
    int64_t *expert_counts;    // [n_layers, n_experts], routed tokens seen here
    janus_xchg *xc;            // NULL: all experts local
    struct janus_gpu *gpu;     // non-NULL: the step runs on this GPU (engine/gpu.c)
    janus_fwd_times times;
    double *layer_attn_s, *layer_ffn_s; // [n_layers] attention / FFN-or-MoE seconds (attention ranks)
    int64_t fault_step;        // testing hook: this rank gets fault_signal at this step (-1: never)
    int fault_signal;
} janus_engine;

// attn ranks: kv_blocks blocks of block_size positions for every layer.
void janus_engine_init(janus_engine *en, const janus_model *m, bool attn, int max_tokens, int n_mb, int kv_blocks,
                       int block_size, janus_xchg *xc);
void janus_engine_free(janus_engine *en);
size_t janus_kv_block_bytes(const janus_config *c, int block_size);

// Runs n_mb micro-batches b[0..n_mb) (T may be 0); logits[i]: [b[i].n_out, vocab].
void janus_step(janus_engine *en, const janus_batch *b, float *const *logits);

// One batch, one micro-batch (tests, benchmarks).
void janus_forward(janus_engine *en, const janus_batch *b, float *logits);

#endif
