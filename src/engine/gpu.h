// engine/gpu.h: the forward pass on a GPU (CUDA build): bf16 weights and KV
// cache on the device, f32 activations, kernels from cuda_kernels/. Same
// contract as the CPU forward (micro-batches in, logits of the wanted rows
// out), so the continuous-batching loop drives either.
//
// A rank's GPU holds what its role needs (DESIGN section 1): an attention rank
// the embedding, attention, router, shared/dense FFNs, lm_head and the KV
// cache; a MoE rank only its experts (compacted: [local experts, 2I, H]); a
// monolithic rank both. With an exchange attached (several ranks), every MoE
// layer's rows leave through it and the MoE ranks' GPUs serve them
// (janus_gpu_serve_experts is the exchange's expert hook).
#ifndef JANUS_ENGINE_GPU_H
#define JANUS_ENGINE_GPU_H

#include "engine/forward.h"

typedef struct janus_gpu janus_gpu;

typedef struct {
    int device;                 // CUDA device ordinal (taken modulo the visible count)
    bool attn;                  // attention-side weights + KV cache
    bool experts;               // routed experts (expert_mask selects which)
    const uint8_t *expert_mask; // [n_layers, n_experts]; NULL: every expert
    int max_tokens;             // tokens per micro-batch (attention side)
    int max_out;                // rows of logits one micro-batch may ask for (one per sequence; 0: max_tokens)
    int n_mb;                   // micro-batches per step
    int kv_blocks, block_size;
    int max_expert_rows;        // rows one MoE layer may bring this rank (expert side)
    uint64_t seed;              // synthetic weights (model loaded without tensors)
    double zipf;                // synthetic router skew
} janus_gpu_opts;

janus_gpu *janus_gpu_init_opts(const janus_model *m, const janus_gpu_opts *o);
// One rank, all experts local, one micro-batch (benchmarks, single-GPU runs).
janus_gpu *janus_gpu_init(const janus_model *m, int device, int max_tokens, int kv_blocks, int block_size,
                          uint64_t seed, double zipf);
void janus_gpu_free(janus_gpu *g);
// Bytes of one KV block on the GPU (bf16, all layers, K and V).
size_t janus_gpu_kv_block_bytes(const janus_config *c, int block_size);
// Device bytes this rank's weights take.
size_t janus_gpu_weight_bytes(const janus_gpu *g);
// One micro-batch with all experts local: logits [b->n_out, vocab] copied
// back to the host; or, when logits is NULL, the greedy token and its logprob
// per wanted row (greedy_tok, greedy_lp: [n_out]); expert_counts [n_layers,
// n_experts] accumulated.
void janus_gpu_forward(janus_gpu *g, const janus_batch *b, float *logits, int32_t *greedy_tok, float *greedy_lp,
                       int64_t *expert_counts, janus_fwd_times *tm);
// One step of en->n_mb micro-batches through en->xc, layer by layer (every
// rank of the job in lockstep, as janus_step): attention of micro-batch i+1
// runs on the GPU while micro-batch i is at the MoE pool.
void janus_gpu_step(janus_gpu *g, janus_engine *en, const janus_batch *b, float *const *logits);
// The exchange's expert hook (comm/exchange.h): R rows [R, H] grouped by
// expert, expert e's rows seg[e] .. seg[e+1] (host arrays, global expert ids;
// only experts this GPU holds may have rows); max_rows: the most rows any
// expert has this layer job-wide (picks the kernel variant, so results do not
// depend on how rows were split among ranks). ys [R, H] out.
void janus_gpu_serve_experts(void *gpu, int l, const int32_t *seg, int max_rows, const float *xs, float *ys, int R);
// The host payload summed on the MoE ranks (comm/exchange.h,
// experts_sums_fn): the token rows of n_reg regions of in (host; region r:
// rows tok0[r] .. tok0[r] + n_tok[r]) go up packed in region order, grouped
// row g is packed token row src_row[g] (R pairs, grouped by expert as seg
// says), and out (host [n_out, H]) gets out[o] = the sum over j in off[o] ..
// off[o+1] of the outputs of grouped rows gi[j] times w[j], in j order, as
// the host's sums would (bit for bit).
void janus_gpu_serve_experts_sums(void *gpu, int l, const int32_t *seg, int max_rows, const float *in, const int32_t *tok0,
                                  const int32_t *n_tok, int n_reg, const int32_t *src_row, int R, const int32_t *off,
                                  const int32_t *gi, const float *w, int n_out, float *out);
// The same with rows and outputs on the device (CUDA IPC transport).
void janus_gpu_serve_experts_dev(void *gpu, int l, const int32_t *seg, int max_rows, const float *d_xs, float *d_ys,
                                 int R);
// The decode expert kernels over rows grouped by LOCAL expert with the segment
// table on the device: d_lseg [n_loc + 1] (janus_gpu_local_experts), rows of
// local expert j at d_lseg[j] .. d_lseg[j+1] of d_xs [.., H]; outputs in d_ys
// at the same rows. max_rows picks the kernel variant (janus_ffn_variant_rows:
// any expert may have more rows; they are still all computed). Queued on the
// GPU's stream, nothing waits. For decode-sized steps only (no cuBLAS path).
void janus_gpu_serve_experts_devseg(void *gpu, int l, const int32_t *d_lseg, int max_rows, const float *d_xs,
                                    float *d_ys);
// Layer l's routed experts on this GPU: loc[e] = local index of global expert
// e or -1 (ascending in e), *n_loc of them.
const int32_t *janus_gpu_local_experts(const janus_gpu *g, int l, int *n_loc);
// This GPU's stream (cudaStream_t): the exchange's device copies go on it.
void *janus_gpu_stream(janus_gpu *g);
// Bytes of weights one decode step reads at most: everything but the
// embedding table and the routed experts, which count per activated expert.
size_t janus_gpu_dense_bytes(const janus_gpu *g);
// With JANUS_GPU_PROFILE=1 every phase is synchronised and timed; janus_gpu_free
// prints the table. Reset drops what was measured so far (e.g. the prefill).
void janus_gpu_profile_reset(janus_gpu *g);

#endif
