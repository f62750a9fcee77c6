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
// tokens. device: the CUDA device to use.
janus_gpu *janus_gpu_init(const janus_model *m, int device, int max_tokens, int kv_blocks, int block_size);
void janus_gpu_free(janus_gpu *g);
// Bytes of one KV block on the GPU (bf16, all layers, K and V).
size_t janus_gpu_kv_block_bytes(const janus_config *c, int block_size);
// One micro-batch: logits [b->n_out, vocab] copied back to the host;
// expert_counts [n_layers, n_experts] accumulated.
void janus_gpu_forward(janus_gpu *g, const janus_batch *b, float *logits, int64_t *expert_counts, janus_fwd_times *tm);

#endif
