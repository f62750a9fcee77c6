// cuda_kernels/fused.h: fused kernels of the decode step (fewer launches, no
// host round trip). Each is the composition of kernels of layers.h, whose C
// twins in src/cpu/kernels.h are the reference (tests/test_cuda_fused.c).
// Every function returns 0 or a cudaError_t as int; `stream` is a cudaStream_t.
#ifndef JANUS_CUDA_FUSED_H
#define JANUS_CUDA_FUSED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// RMSNorm of wide rows (one block per row): y [R, n] = x / rms(x) * w (y may be
// x, or NULL) and, when yb is not NULL, the same rounded to bf16 (the input of
// the next cuBLAS projection). n % 4 == 0.          (twin: cpu_rmsnorm)
int jk_rmsnorm_rows(float *y, uint16_t *yb, const float *x, const uint16_t *w, int R, int n, float eps, void *stream);

// After the fused q|k|v projection qkv [T, nh*hd + 2*nkv*hd] (f32): optional
// biases (bq, bk, bv), optional per-head RMSNorm of q and k (q_norm, k_norm:
// [hd], NULL for none), RoPE of q and k at pos[t], then q to q_out [T, nh, hd]
// and k, v into the paged bf16 cache of the layer (as jk_kv_store). hd % 64 == 0
// and hd <= 256, else cudaErrorInvalidValue (the caller takes the unfused path).
//                        (twins: cpu_rmsnorm per head, cpu_rope, cpu_kv_store)
int jk_qkv_rope_store(float *q_out, uint16_t *kc, uint16_t *vc, const float *qkv, const uint16_t *bq,
                      const uint16_t *bk, const uint16_t *bv, const uint16_t *q_norm, const uint16_t *k_norm,
                      const float *inv_freq, const int32_t *pos, const int32_t *bt, int max_blocks, int T, int nh,
                      int nkv, int hd, int bs, float eps, void *stream);

// x [T, H] += the weighted sum of each token's k expert outputs (y rows
// slot[t*k + j], weights w, ascending expert id ids as jk_combine). H % 4 == 0.
// lead [T, k] (NULL: every pair): only pairs with lead != 0 are summed, with
// weight 1 (w may then be NULL): rows that already hold the weighted sum of a
// token's pairs on one MoE rank (comm/ipc.c's decode path), one per MoE rank.
// Products and sums round one by one (no fused multiply-add, dev_common.cuh).
int jk_combine_add(float *x, const float *y, const int32_t *slot, const int32_t *ids, const float *w,
                   const int32_t *lead, int T, int k, int H, void *stream);

// The P = T*k pairs grouped by expert on the device (a stable counting sort):
// seg [E+1] (expert e's grouped positions seg[e] .. seg[e+1]), order [P] (pair
// at each grouped position), slot [P] (grouped position of each pair); counts
// [E] (may be NULL) += pairs per expert. E <= JK_GROUP_MAX_E.
#define JK_GROUP_MAX_E 4096
int jk_group_pairs(const int32_t *topi, int P, int E, int32_t *seg, int32_t *order, int32_t *slot,
                   unsigned long long *counts, void *stream);
// The same for prompt-sized P (tens of thousands of pairs): chunks of 1024
// pairs over many blocks, three launches, ws of jk_group_pairs_ws_bytes(P, E)
// bytes (device). Same results as jk_group_pairs. E <= JK_GROUP_MAX_E.
size_t jk_group_pairs_ws_bytes(int P, int E);
int jk_group_pairs_large(const int32_t *topi, int P, int E, int32_t *seg, int32_t *order, int32_t *slot,
                         unsigned long long *counts, void *ws, size_t ws_bytes, void *stream);

// jk_combine_add, then the RMSNorm of the new x with weight norm_w [H] into
// its bf16 copy yb [T, H] (as jk_rmsnorm_rows(NULL, yb, x, norm_w, ...): the
// next layer's input), in one kernel; same bits as the two. H % 4 == 0,
// H <= 4096.
int jk_combine_add_norm(float *x, uint16_t *yb, const float *y, const int32_t *slot, const int32_t *ids,
                        const float *w, const int32_t *lead, int T, int k, int H, const uint16_t *norm_w, float eps,
                        void *stream);
// The greedy token of each row of logits [R, V] (first maximum; a row of -inf
// gives token 0) and its log-probability, as jk_argmax_logprob, in one pass
// with a block of 1024 threads per row.         (twin: cpu argmax + log-softmax)
int jk_argmax_rows(int32_t *tok, float *lp, const float *logits, int R, int V, void *stream);

#ifdef __cplusplus
}
#endif

#endif
