// cuda_kernels/moe_prefill.h: C launch API of the grouped expert FFN for
// prefill (many rows per expert): tensor-core GEMMs, bf16 operands, f32
// accumulation, in two fused wgmma kernels on Hopper (sm_90a) or through
// cuBLAS. Its C reference twin is janus_moe_ffn_grouped_ref in
// src/moe/experts.h (as for the decode kernel in moe_ffn.h); differences come
// from rounding x and silu(gate) * up to bf16 (cuBLAS: gate/up too).
#ifndef JANUS_CUDA_MOE_PREFILL_H
#define JANUS_CUDA_MOE_PREFILL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    JK_PREFILL_AUTO = 0,    // more than JK_PREFILL_GROUPED_MIN experts with rows: fused where it runs,
                            // else grouped; fewer: loop
    JK_PREFILL_GROUPED = 1, // one cublasGemmGroupedBatchedEx per GEMM (bf16 out; y through a bf16 copy)
    JK_PREFILL_LOOP = 2,    // one cublasGemmEx per expert and GEMM (down GEMM writes f32 y directly)
    JK_PREFILL_FUSED = 3,   // two persistent wgmma kernels: x read in the gate/up GEMM (bf16 xb by TMA,
                            // or f32 x rounded in registers), SwiGLU in its epilogue, f32 y stored by
                            // the down GEMM; where unavailable, as AUTO without it
};
#define JK_PREFILL_GROUPED_MIN 16
#define JK_PREFILL_MAX_GROUPS 256 // more active experts than this: loop

// One MoE layer's routed experts on this GPU, rows grouped by expert.
//   x:       [R, H] f32 rows (device); expert e's rows are h_seg[e] .. h_seg[e+1]
//   xb:      or NULL: the same rows already in bf16 (x is then not read, may be NULL);
//            what the GEMMs read: the fused path takes both operands by TMA (kernel 1b)
//   h_seg:   [E+1] int32 on the host; R = h_seg[E]
//   w_gu:    [E, 2I, H] bf16: gate rows [0, I), up rows [I, 2I) of each expert
//   w_down:  [E, H, I] bf16
//   y:       [R, H] f32 out
//   ws:      device scratch of ws_bytes >= jk_moe_prefill_ws_bytes(R, H, I)
//            (bf16 x and y [R, H], gate/up [R, 2I], silu(gate) * up [R, I], pointer arrays;
//            the fused path uses only silu(gate) * up)
//   mode:    JK_PREFILL_AUTO, _GROUPED, _LOOP or _FUSED
typedef struct {
    const float *x;
    const int32_t *h_seg;
    const uint16_t *w_gu, *w_down;
    float *y;
    int E, H, I;
    void *ws;
    size_t ws_bytes;
    int mode;
    const uint16_t *xb; // last: initializers that stop before it leave it NULL
} jk_moe_prefill_args;

size_t jk_moe_prefill_ws_bytes(int R, int H, int I);

// Returns 0, a cudaError_t, or 1000 + a cublasStatus_t (JK_PREFILL_CUBLAS_ERR).
// Requires H % 8 == 0, I % 8 == 0, a 16-byte aligned x, y and ws. Runs on
// `stream` (a cudaStream_t), which it sets on the cuBLAS handle (a cublasHandle_t).
#define JK_PREFILL_CUBLAS_ERR 1000
int jk_moe_ffn_prefill(const jk_moe_prefill_args *a, void *cublas_handle, void *stream);

// The implementation jk_moe_ffn_prefill runs for a (its mode, the experts with
// rows, alignment and what this GPU has): JK_PREFILL_GROUPED, _LOOP or _FUSED.
int jk_moe_prefill_path(const jk_moe_prefill_args *a);

// 1 when JK_PREFILL_FUSED runs the wgmma kernels here (a build with sm_90a code
// and a compute capability 9.0 device), else 0 (it falls back to cuBLAS).
int jk_moe_prefill_fused_available(void);

#ifdef __cplusplus
}
#endif

#endif
