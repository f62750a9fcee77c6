// moe/experts.h: routed-expert compute on the CPU: a SwiGLU FFN per expert over
// the rows routed to it, and the combine step (weighted sum in ascending expert
// order, as transformers does) that turns per-(token, slot) expert outputs back
// into one row per token. Split so that the expert compute can run on another
// rank (the MoE pool) while the combine stays on the attention rank.
#ifndef JANUS_MOE_EXPERTS_H
#define JANUS_MOE_EXPERTS_H

#include <math.h>

#include "model/model.h"

// Scratch of one expert FFN over up to max_rows rows.
typedef struct {
    int max_rows, max_inter;
    float *g, *u; // [max_rows, max_inter]
} janus_ffn_scratch;
void janus_ffn_scratch_init(janus_ffn_scratch *s, int max_rows, int max_inter);
void janus_ffn_scratch_free(janus_ffn_scratch *s);

// Y: [n, H] = down( silu(X gate^T) * (X up^T) ), X: [n, H].
void janus_swiglu_ffn(float *Y, const float *X, int n, const janus_w *gate, const janus_w *up, const janus_w *down,
                      janus_ffn_scratch *s);

// Run every (token, slot) pair of one layer locally.
// x: [T, H]; ids: [T, k]; y: [T*k, H] output of expert ids[t*k+j] on row t.
// Pairs are grouped by expert (ascending); gather/scatter buffers: xs, ys [T*k, H].
void janus_experts_local(const janus_layer *L, int H, const float *x, const int32_t *ids, int T, int k, float *y,
                         float *xs, float *ys, int32_t *order, janus_ffn_scratch *s);

// C reference twin of the CUDA grouped expert FFN (cuda_kernels/moe_ffn.h):
// x: [R, H] rows grouped by expert (seg: [E+1]); w_gu: [E, 2I, H] bf16 (gate
// rows, then up rows); w_down: [E, H, I] bf16; y: [R, H].
void janus_moe_ffn_grouped_ref(const float *x, const int32_t *seg, const uint16_t *w_gu, const uint16_t *w_down,
                               float *y, int E, int H, int I);

// out: [T, H] = sum_j w[t, j] * y[t*k + j], in ascending order of ids[t, j].
// The rows-per-expert figure that picks the GPU expert kernels (decode
// variant, or the cuBLAS prefill path) for one layer of one micro-batch, from
// `pairs` (tokens x top-k, job-wide), `tokens` and the most rows any expert has
// (`exact_max`, -1 when unknown). Decode-sized steps (at most 16 pairs per
// expert on average) take a bound from the counts alone, so a GPU that groups
// the rows on the device (maximum unknown on the host) and the exchange (which
// knows it from the handshake) pick the same kernels; larger steps take the
// exact maximum. Returns -1 when the exact maximum is needed but unknown.
static inline int janus_ffn_variant_rows(int64_t pairs, int64_t tokens, int E, int64_t exact_max) {
    if (pairs <= 0) return 0;
    if (pairs <= 16 * (int64_t)E) {
        const double avg = (double)pairs / E;
        double b = avg + 3.0 * sqrt(avg) + 1.0;
        int64_t r = (int64_t)b + 1;
        return (int)(r < tokens ? r : tokens);
    }
    return (int)exact_max;
}

void janus_combine(float *out, const float *y, const int32_t *ids, const float *w, int T, int k, int H);
// The combine of outputs summed on the MoE ranks (comm/exchange.h,
// janus_xchg_sums): out[t] = the rows y[slot[q]] of token t's pairs q with
// lead[q] = 1 (one per MoE rank, each already its pairs' weighted sum), added
// in ascending expert id of those pairs. With one MoE rank it is that rank's
// sum, bit for bit.
void janus_combine_sums(float *out, const float *y, const int32_t *slot, const int32_t *lead, const int32_t *ids, int T,
                        int k, int H);

#endif
