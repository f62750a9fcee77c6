// cpu/kernels.h: the C reference kernels (f32 compute, OpenMP). Each has a
// CUDA twin with the same signature in cuda_kernels/ once the GPU backend
// exists; tests compare the two. Every kernel computes each output row from
// its own input row alone, in a fixed order, so a token's result does not
// depend on which other tokens share its batch.
#ifndef JANUS_CPU_KERNELS_H
#define JANUS_CPU_KERNELS_H

#include "model/model.h"

// y: [T, W.rows] = x: [T, W.cols] @ W^T (+ bias: [W.rows]). W in its stored dtype.
void cpu_linear(float *y, const float *x, const janus_w *W, const janus_w *bias, int T);

// y: [R, n] = x / rms(x) * w, row by row (R rows of n; w: [n]). y may be x.
void cpu_rmsnorm(float *y, const float *x, const janus_w *w, int R, int n, float eps);

// x: [T, n_heads, hd] rotated in place (HF rotate_half layout) at positions pos: [T].
// inv_freq: [hd/2] from cpu_rope_inv_freq.
void cpu_rope(float *x, int T, int n_heads, int hd, const int32_t *pos, const float *inv_freq);
void cpu_rope_inv_freq(float *inv_freq, int hd, double theta);

// x: [T, H] = emb[tok[t], :]
void cpu_embed(float *x, const janus_w *emb, const int32_t *tok, int T);

// g: [n] = silu(g) * u
void cpu_silu_mul(float *g, const float *u, size_t n);

// Router: logits [T, E] -> ids [T, k] (descending probability, ties to the
// lower expert index) and weights [T, k] (softmax probabilities, renormalised
// over the k when renorm).
void cpu_router_topk(int32_t *ids, float *w, const float *logits, int T, int E, int k, bool renorm);

// Paged KV cache: k, v: [n_layers][n_blocks][block_size][kv_dim] f32.
typedef struct {
    float *k, *v;
    int n_layers, n_blocks, block_size, kv_dim;
} janus_kv;

static inline size_t janus_kv_off(const janus_kv *kv, int layer, int block, int slot) {
    return (((size_t)layer * kv->n_blocks + block) * kv->block_size + slot) * kv->kv_dim;
}

// Store k, v: [T, kv_dim] of layer at each token's position (block tables bt[t]).
void cpu_kv_store(janus_kv *kv, int layer, const float *k, const float *v, const int32_t *const *bt,
                  const int32_t *pos, int T);

// Causal attention over the cache: token t attends to positions 0..pos[t] of
// its sequence. q: [T, nh, hd], out: [T, nh, hd]; GQA: head h reads kv head
// h / (nh / nkv).
void cpu_attention(float *out, const float *q, const janus_kv *kv, int layer, const int32_t *const *bt,
                   const int32_t *pos, int T, int nh, int nkv, int hd);

// log-softmax value of logits[tok] over n logits (double accumulation).
float cpu_logprob(const float *logits, int n, int tok);

#endif
