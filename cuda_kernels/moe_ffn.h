// cuda_kernels/moe_ffn.h: C launch API of the grouped expert FFN for decode
// (weight streaming: a handful of rows per expert, every weight byte read once
// from HBM). Its C reference twin is janus_moe_ffn_grouped_ref in
// src/moe/experts.h; tests/test_cuda_kernels.c compares the two.
#ifndef JANUS_CUDA_MOE_FFN_H
#define JANUS_CUDA_MOE_FFN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// One MoE layer's routed experts on this GPU, rows grouped by expert.
//   x:       [R, H] f32 rows, expert e's rows are seg[e] .. seg[e+1]
//   seg:     [E+1] int32 (device)
//   w_gu:    [E, 2I, H] bf16: gate rows [0, I), up rows [I, 2I) of each expert
//   w_down:  [E, H, I] bf16
//   act:     [R, I] f32 scratch (silu(gate) * up)
//   y:       [R, H] f32 out
typedef struct {
    const float *x;
    const int32_t *seg;
    const uint16_t *w_gu, *w_down;
    float *act, *y;
    int E, H, I;
    int max_rows;       // the largest seg[e+1] - seg[e] (picks the kernel variant)
    // Optional: grouped row r is row x_rows[r] / x_div of x (the gather done
    // on the fly; NULL: x is already grouped). x_div 0 means 1.
    const int32_t *x_rows;
    int x_div;
    // Optional: no more than this many experts have rows (0: unknown, up to
    // E), e.g. tokens x top-k. Must hold: blocks past it are not launched.
    int max_active;
} jk_moe_ffn_args;

// Returns 0, or a CUDA error code (cudaError_t as int). Requires H % 8 == 0 and I % 8 == 0.
int jk_moe_ffn_decode(const jk_moe_ffn_args *a, void *stream);

// Y[r, :] = X[r, :] W_e^T for the rows of every expert e (no activation):
// one half of the FFN, exposed for tests and benchmarks.
//   w: [E, N, K] bf16; x: [R, K]; y: [R, N]; gated: w is [E, 2N, K] and
//   y = silu(x Wg^T) * (x Wu^T).
int jk_grouped_gemv(const float *x, const int32_t *seg, const uint16_t *w, float *y, int E, int N, int K, int gated,
                    int max_rows, void *stream);

#ifdef __cplusplus
}
#endif

#endif
