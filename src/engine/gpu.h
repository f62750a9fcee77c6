// engine/gpu.h: the forward pass on one GPU (CUDA build): bf16 weights and KV
// cache on the device, f32 activations, kernels from cuda_kernels/. Same
// contract as the CPU forward (one micro-batch in, logits of the wanted rows
// out), so the continuous-batching loop drives either.
#ifndef JANUS_ENGINE_GPU_H
#define JANUS_ENGINE_GPU_H

#include "engine/forward.h"

typedef struct janus_gpu janus_gpu;

// Uploads every weight of m (all experts local) and allocates a bf16 KV cache
// of kv_blocks blocks of block_size positions and activations for max_tokens
// tokens. device: the CUDA device to use. A model loaded without tensors
// (config only) gets synthetic weights made on the device from `seed`, with
// router logits skewed by -zipf * ln(1 + popularity rank) when zipf > 0.
janus_gpu *janus_gpu_init(const janus_model *m, int device, int max_tokens, int kv_blocks, int block_size,
                          uint64_t seed, double zipf);
void janus_gpu_free(janus_gpu *g);
// Bytes of one KV block on the GPU (bf16, all layers, K and V).
size_t janus_gpu_kv_block_bytes(const janus_config *c, int block_size);
// One micro-batch: logits [b->n_out, vocab] copied back to the host; or, when
// logits is NULL, the greedy token and its logprob per wanted row (greedy_tok,
// greedy_lp: [n_out]); expert_counts [n_layers, n_experts] accumulated.
void janus_gpu_forward(janus_gpu *g, const janus_batch *b, float *logits, int32_t *greedy_tok, float *greedy_lp,
                       int64_t *expert_counts, janus_fwd_times *tm);
// Bytes of weights one decode step reads at most: everything but the
// embedding table and the routed experts, which count per activated expert.
size_t janus_gpu_dense_bytes(const janus_gpu *g);
// With JANUS_GPU_PROFILE=1 every phase is synchronised and timed; janus_gpu_free
// prints the table. Reset drops what was measured so far (e.g. the prefill).
void janus_gpu_profile_reset(janus_gpu *g);

#endif
