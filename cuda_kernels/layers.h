// cuda_kernels/layers.h: C launch API of the per-layer CUDA kernels of the
// forward pass. Each has a C reference twin in src/cpu/kernels.h (named in its
// comment); activations are f32, weights bf16 (uint16_t here), the KV cache
// bf16. Every function returns 0 or a cudaError_t as int; `stream` is a
// cudaStream_t.
#ifndef JANUS_CUDA_LAYERS_H
#define JANUS_CUDA_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// x: [T, H] = emb[tok[t]]                                    (twin: cpu_embed)
int jk_embed(float *x, const uint16_t *emb, const int32_t *tok, int T, int H, void *stream);
// y: [R, n] = x / rms(x) * w, w: [n]; y may be x             (twin: cpu_rmsnorm)
int jk_rmsnorm(float *y, const float *x, const uint16_t *w, int R, int n, float eps, void *stream);
// x: [n] += d
int jk_add(float *x, const float *d, size_t n, void *stream);
// y: [T, N] += b[N]
int jk_add_bias(float *y, const uint16_t *b, int T, int N, void *stream);
// x: [T, nh, hd] rotated in place at pos[T]                  (twin: cpu_rope)
int jk_rope(float *x, const int32_t *pos, const float *inv_freq, int T, int nh, int hd, void *stream);
// Paged bf16 cache of one layer: kc, vc: [n_blocks, bs, kv_dim]. Token t goes to
// block bt[t * max_blocks + pos[t] / bs], slot pos[t] % bs.  (twin: cpu_kv_store)
int jk_kv_store(uint16_t *kc, uint16_t *vc, const float *k, const float *v, const int32_t *bt, int max_blocks,
                const int32_t *pos, int T, int kv_dim, int bs, void *stream);
// out, q: [T, nh, hd]; causal over positions 0..pos[t] of t's sequence (GQA).
//                                                            (twin: cpu_attention)
int jk_attention(float *out, const float *q, const uint16_t *kc, const uint16_t *vc, const int32_t *bt, int max_blocks,
                 const int32_t *pos, int T, int nh, int nkv, int hd, int bs, void *stream);
// Split-K (flash-decoding) variant of jk_attention, same arguments and result:
// the context of each (token, kv head) is cut into chunks of whole tiles, one
// block per (token, kv head, chunk) scores it for the query heads of that kv
// head (each K/V row read once) and leaves a partial (max, sum, unnormalised
// output) in ws; a second kernel combines the partials. Many blocks in flight
// at small batch and long context, where jk_attention has only T * nkv blocks.
//   ws: [T, nh, splits, hd + 2] f32 scratch, ws_bytes its size; when the
//       launch needs one chunk only (short contexts), ws is not touched.
// The number of chunks depends on T, nkv and the longest possible context,
// max_blocks * bs. Head sizes 64 and 128 run on tensor cores (attn_decode.cu:
// the chunks of a token are sized from its own context, so every chunk of a
// short sequence has work), 256 on FP32 FMA; others, or ws too small, run
// jk_attention instead: same result, no error. nh % nkv == 0; q, kc, vc
// 16-byte aligned; out must not overlap q. Decode (few tokens, long contexts)
// gets many chunks; large T (prefill chunks) gets one, then it is one block
// per (token, kv head) as jk_attention, without the combine kernel.
int jk_attention_splitk(float *out, const float *q, const uint16_t *kc, const uint16_t *vc, const int32_t *bt,
                        int max_blocks, const int32_t *pos, int T, int nh, int nkv, int hd, int bs, float *ws,
                        size_t ws_bytes, void *stream);
// jk_attention_splitk with the kernel named (tests and benchmarks): JK_ATTN_AUTO
// (what jk_attention_splitk does: tensor cores for head sizes 64 and 128),
// JK_ATTN_FMA (the FP32 kernel), JK_ATTN_MMA + i (tensor cores, launch
// configuration i < JK_ATTN_MMA_CONFIGS of attn_decode.cu; 0 is the default).
// A kernel that does not take the shape leaves it to the next one down.
// out_b (may be NULL): also out rounded to bf16, [T, nh, hd] (the input of the
// o-projection), written by the kernel where it can, else by a conversion.
#define JK_ATTN_AUTO 0
#define JK_ATTN_FMA 1
#define JK_ATTN_MMA 2
#define JK_ATTN_MMA_CONFIGS 5
int jk_attention_splitk_with(int kernel, float *out, uint16_t *out_b, const float *q, const uint16_t *kc, const uint16_t *vc,
                             const int32_t *bt, int max_blocks, const int32_t *pos, int T, int nh, int nkv, int hd, int bs,
                             float *ws, size_t ws_bytes, void *stream);
// Bytes of ws that jk_attention_splitk(_with) needs for any call with T <= max_T tokens
// and max_blocks * bs <= max_ctx (0 when no shape up to there needs any).
size_t jk_attention_ws_bytes(int max_T, int nh, int nkv, int hd, int max_ctx);
// Prompt-chunk (prefill) attention on tensor cores (attn_prefill.cu): the
// result of jk_attention for tokens that come in runs of consecutive positions
// of one sequence, each K/V tile read once per tile of 96 query rows (tokens
// x the query heads of one kv head) instead of once per token. Q and P are
// rounded to bf16 (~2e-3 relative).
//   jk_attn_prefill_plan: from the step's positions pos [T] and each token's
//   block-table pointer bt [T] (tokens of one sequence share it), the runs of
//   at least min_run tokens cut into tiles (tiles [T][4] = {t0, n, p0, 0},
//   returns their number, longest contexts first; none when those runs hold
//   fewer than 2 min_run tokens in all); the tokens outside them lie in the
//   *n_ranges <= JK_ATTN_PREFILL_MAX_RANGES ranges [ranges[2i], ranges[2i+1])
//   for jk_attention(_splitk) (past that many, the two closest are merged: a
//   range may then also cover tokens of tiles, which both write alike).
//   jk_attention_prefill: out [T, nh, hd] (and out_b, its bf16 rounding, when
//   not NULL) for the tiles' tokens; tiles in device memory; bt as
//   jk_attention's dense [T, max_blocks] (each token's row read up to its own
//   position). Head sizes 16, 32, 64 and 128 (jk_attn_prefill_supported);
//   nh % nkv == 0.
#define JK_ATTN_PREFILL_MAX_RANGES 4
int jk_attn_prefill_supported(int nh, int nkv, int hd);
int jk_attn_prefill_tokens_per_tile(int nh, int nkv);
int jk_attn_prefill_plan(int32_t *tiles, int32_t *ranges, int *n_ranges, const int32_t *pos, const int32_t *const *bt,
                         int T, int nh, int nkv, int min_run);
int jk_attention_prefill(float *out, uint16_t *out_b, const float *q, const uint16_t *kc, const uint16_t *vc,
                         const int32_t *bt, int max_blocks, const int32_t *tiles, int n_tiles, int nh, int nkv, int hd,
                         int bs, void *stream);
// logits: [T, E] -> ids, w: [T, k] (softmax, top-k, optional renorm) (twin: cpu_router_topk)
int jk_router_topk(int32_t *ids, float *w, const float *logits, int T, int E, int k, int renorm, void *stream);
// dst: [n, H] = src[idx[i] / div]  (gather rows; div = k to go from pair to token)
int jk_gather_rows(float *dst, const float *src, const int32_t *idx, int div, int n, int H, void *stream);
// dst: [n, H] bf16 = bf16(src[idx[i] / div])  (the same gather, rounded: the prefill expert GEMM's input; H even)
int jk_gather_rows_bf16(uint16_t *dst, const float *src, const int32_t *idx, int div, int n, int H, void *stream);
// out: [T, H] = sum_j w[t, j] * y[slot[t*k+j]] in ascending ids[t, j] (twin: janus_combine);
// lead: as jk_combine_add's (fused.h).
int jk_combine(float *out, const float *y, const int32_t *slot, const int32_t *ids, const float *w, const int32_t *lead,
               int T, int k, int H, void *stream);
// x: [T, H] += sigmoid(g[t]) * s[t]  (shared expert with its gate)
int jk_sigmoid_scale_add(float *x, const float *s, const float *g, int T, int H, void *stream);

// dst: [n] bf16 = src f32 (round to nearest even)
int jk_f32_to_bf16(uint16_t *dst, const float *src, size_t n, void *stream);
// y: [T, N] = silu(gu[t, n]) * gu[t, N + n], gu: [T, 2N]
int jk_silu_mul_split(float *y, const float *gu, int T, int N, void *stream);

// Greedy choice on the device: tok[r] = argmax (lowest index on ties) and
// lp[r] = its log-softmax, for logits [R, V]   (twins: argmax in janus_sample, cpu_logprob)
int jk_argmax_logprob(int32_t *tok, float *lp, const float *logits, int R, int V, void *stream);

#ifdef __cplusplus
}
#endif

#endif
