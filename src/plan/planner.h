// plan/planner.h: the performance model and the SLO planner (DESIGN section 6).
//
// The model predicts the decode step time (TPOT) of a layout from the model's
// shapes, the workload (mean prompt and output lengths) and the hardware
// (bandwidths, FLOP/s, memory, link alpha/beta). The planner enumerates
// layouts (attention GPUs, MoE GPUs, batch per attention GPU, micro-batches,
// and the monolithic layouts), keeps those that meet the TPOT SLO and fit in
// memory, and picks the one with the most output tokens/s per GPU.
#ifndef JANUS_PLAN_PLANNER_H
#define JANUS_PLAN_PLANNER_H

#include "model/config.h"

typedef struct {
    const char *name;
    double hbm_Bps;       // device memory bandwidth
    double eff;           // fraction of it the kernels reach (calibration)
    double flops;         // dense bf16 FLOP/s
    double mem_bytes;     // device memory
    double intra_Bps, intra_alpha_s; // within a node (NVLink)
    double inter_Bps, inter_alpha_s; // between nodes (network, per GPU)
    double layer_overhead_s;         // launches and syncs per layer
    int gpus_per_node;               // CPU calibration: ranks per node (cores / threads)
    double act_bytes;                // an activation or KV cache element (2: bf16 on GPUs; 4: f32 on CPUs)
    // Largest message to the other pool that moves while its sender computes:
    // host MPI without a progress thread moves a larger one (rendezvous) only
    // when the sender next calls MPI, so micro-batches then run one after
    // another instead of overlapping. 0: no limit (a progress engine, NCCL).
    double overlap_max_bytes;
    // Every rank of the layout on ONE GPU (ranks_share_gpu = 1): the driver
    // time-slices the processes, so their work adds up instead of overlapping,
    // the payload is a device-to-device copy, and each context hand-off costs
    // time. Per MoE layer and micro-batch, the hand-offs are:
    //   - the pool crossing: to the first MoE process and back to the attention
    //     process (2), plus one for every further MoE process, which the GPU
    //     takes in turn: shared_handoff_s x (M + 1) with one attention process;
    //   - with A >= 2 attention-side processes, each of them gives the GPU away
    //     at its synchronisations (router read-back, rows out, outputs back):
    //     shared_attn_handoff_s per attention process (A of them) instead of the
    //     one hand-off back to a lone attention process;
    //   - monolithic ranks (G >= 2) are an attention process and a MoE process
    //     each: G x (shared_attn_handoff_s + shared_handoff_s).
    // A calibration file sets the three numbers from measured layouts
    // (tools/gpu-plan-check, docs/plan.md).
    double ranks_share_gpu, shared_handoff_s, shared_attn_handoff_s;
    // Bytes per element of the exchange payload: janus moves f32 rows on every
    // transport (4); act_bytes stays the KV cache's and the activations'
    // element inside a GPU.
    double payload_bytes;
    // 1 (every preset): within a node the exchange moves a token's row once
    // per MoE rank holding one of its experts and one weighted sum back (CUDA
    // IPC, host MPI; janus_rows_per_token); 0: a row per (token, expert) pair
    // each way (--transport nccl, JANUS_XCHG_DEDUP=0 or JANUS_XCHG_SUMS=0).
    // inter_sums: the same across nodes (1, every preset: host-staged MPI or
    // --transport cuda-mpi; 0: NCCL).
    double intra_sums, inter_sums;
    // Share of peak FLOP/s (flops) prompt steps reach: prefill is priced by
    // its FLOPs (0.35: one H200 prefilling Qwen3-30B-A3B's 512-token prompts
    // in 16384-token steps, docs/plan.md).
    double prefill_eff;
} janus_hw;

// Data-sheet profiles ("h100", "h200", "cpu"); NULL if unknown.
const janus_hw *janus_hw_preset(const char *name);
// A calibration file: JSON with any of the janus_hw fields by name (hbm_Bps,
// eff, flops, mem_bytes, intra_Bps, intra_alpha_s, inter_Bps, inter_alpha_s,
// layer_overhead_s, gpus_per_node, act_bytes, overlap_max_bytes, ranks_share_gpu,
// shared_handoff_s, shared_attn_handoff_s, payload_bytes, intra_sums, inter_sums, prefill_eff) over the
// preset named by "base" (default h100); other keys are ignored. `janus bench
// decode --calibration FILE` writes one for CPUs (plan/calib.h).
int janus_hw_load(const char *path, janus_hw *hw, janus_err *e);
// A preset by name, else a calibration file by path (--hardware H).
int janus_hw_get(const char *name_or_path, janus_hw *hw, janus_err *e);

typedef struct {
    double prompt_len, output_len; // means over the requests
    double zipf;                   // router skew assumed (0: uniform)
    int job;                       // the search's objective: 0 decode tokens/s per GPU, 1 the whole job's (prefill too)
} janus_workload;

typedef struct {
    int attn, moe;      // GPUs; moe == 0: monolithic (every GPU both roles)
    int batch;          // sequences per attention GPU
    int micro;          // micro-batches
    // predictions
    // attn_mem, moe_mem: bytes one attention / MoE GPU holds (ranks_share_gpu:
    // both the one GPU's total over every rank)
    double tpot_s, tokens_per_s, per_gpu, attn_mem, moe_mem, act_per_moe_gpu;
    double t_attn_s, t_moe_s, t_xchg_s; // one layer, one micro-batch
    // The whole job of one batch per attention GPU: the prompts' prefill
    // (seconds) and output tokens/s per GPU over prefill + decode.
    double prefill_s, job_per_gpu;
    bool fits;
} janus_plan;

// Expected distinct experts activated when `pairs` routed (token, slot) pairs
// fall on E experts with per-pair probabilities p (NULL: uniform):
// sum_e 1 - (1 - p_e)^pairs.
double janus_expected_active(int E, double pairs, const double *p);
// Rows the exchange moves per token on one node (CUDA IPC: a token's row once
// to each of M MoE ranks holding E / M experts each that hold one of its K
// distinct experts, picked uniformly; one summed row back from each):
// M (1 - C(E - E/M, K) / C(E, K)); 1 when M == 1.
double janus_rows_per_token(int E, int K, int M);

// What the search maximises: per_gpu, or job_per_gpu where w->job.
double janus_plan_score(const janus_plan *pl, const janus_workload *w);

// Fills the predictions of pl (attn, moe, batch, micro set).
void janus_plan_eval(const janus_config *c, const janus_hw *hw, const janus_workload *w, janus_plan *pl);

// Best plan within `gpus` GPUs under the SLO (max_batch caps the batch per
// attention GPU); top: the ntop best candidates, best first. Returns the
// number of feasible candidates (0: none meets the SLO in memory).
// exhaustive: scan every batch instead of the binary search (tests).
int janus_plan_search(const janus_config *c, const janus_hw *hw, const janus_workload *w, int gpus, double slo_tpot_s,
                      int max_batch, bool exhaustive, janus_plan *top, int ntop);

// JSON of a plan (the plan attribute of result files, --plan FILE input).
void janus_plan_json(const janus_plan *pl, const char *hw, double slo_s, char *buf, size_t n);
// Reads attn, moe, batch, micro from a plan JSON file.
int janus_plan_read(const char *path, janus_plan *pl, janus_err *e);

#endif
