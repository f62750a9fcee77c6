// cuda_kernels/attn_decode.h: the tensor-core split-K decode attention that
// jk_attention_splitk (layers.cu) dispatches to; internal to cuda_kernels/.
#ifndef JANUS_ATTN_DECODE_H
#define JANUS_ATTN_DECODE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "layers.h" // JK_ATTN_MMA_CONFIGS: launch configurations (warps per block,
                    // pipeline stages, target waves); 0 is jk_attention_splitk's

// 1 when the mma kernel takes this head size (64, 128) and head layout.
int jk_attn_mma_supported(int nh, int nkv, int hd);
// Number of K splits (chunks of each token's context) that configuration cfg
// launches for T tokens whose contexts are at most max_ctx positions.
int jk_attn_mma_splits(int cfg, int T, int nh, int nkv, int hd, int max_ctx);
// The configuration jk_attention_splitk takes for this call.
int jk_attn_mma_auto_cfg(int T, int nh, int nkv, int hd, int max_ctx);
// One block per (token, kv head, group of 8 query heads, split). splits == 1:
// out [T, nh, hd] directly (and its bf16 rounding into out_b, when not NULL); else the partials o_part [T * nh, splits, hd]
// (unnormalised) and ml_part [T * nh, splits, 2] (max in natural-log units,
// sum), which the combine kernel of layers.cu turns into out.
int jk_attn_mma_run(int cfg, float *out, uint16_t *out_b, float *o_part, float *ml_part, const float *q, const uint16_t *kc,
                    const uint16_t *vc, const int32_t *bt, int max_blocks, const int32_t *pos, int T, int nh, int nkv,
                    int hd, int bs, int splits, void *stream);

#ifdef __cplusplus
}
#endif

#endif
