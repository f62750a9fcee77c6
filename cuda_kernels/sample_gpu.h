// cuda_kernels/sample_gpu.h: C launch API of token choice on the device, the twin
// of janus_sample (src/engine/sample.c) plus cpu_logprob: greedy, or
// temperature / top-k / top-p sampling with the same counter-based RNG keyed on
// (seed, request id, step), so the logits never leave the GPU. Returns 0 or a
// cudaError_t as int; `stream` is a cudaStream_t.
#ifndef JANUS_CUDA_SAMPLE_H
#define JANUS_CUDA_SAMPLE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Sampling settings of one row (32 bytes, the same layout in C and CUDA): the
// fields of janus_sampling plus the request id and the step (the number of
// tokens the request has generated so far, janus_sample's `step`).
typedef struct {
    float temperature; // 0 (or not > 0): greedy
    float top_p;       // >= 1: off
    int32_t top_k;     // 0 or >= V: off
    int32_t step;
    int64_t seed;
    int64_t id;
} jk_sample_params;

// tok[r], lp[r] for logits [R, V] f32 and params [R], all on the device:
// tok[r] = janus_sample(logits[r], V, params[r], id, step) and
// lp[r] = cpu_logprob(logits[r], V, tok[r]) (log-softmax of the raw logits,
// before temperature). One block per row; no scratch memory. Greedy rows are
// exact (lowest index on ties); sampled rows give the CPU's token except where
// the draw falls within float rounding (~1e-7 of the mass) of a boundary of the
// cumulative distribution or of the top-p cut.
int jk_sample(int32_t *tok, float *lp, const float *logits, const jk_sample_params *params, int R, int V, void *stream);

#ifdef __cplusplus
}
#endif

#endif
