// model/model.h: a checkpoint bound to the engine: the config plus a view of
// every weight the forward pass uses, found under the tensor names of each
// family (per-expert or fused expert tensors) and checked against the config's
// shapes. Weights stay in the memory mapping, in their stored dtype.
#ifndef JANUS_MODEL_MODEL_H
#define JANUS_MODEL_MODEL_H

#include "model/config.h"
#include "model/safetensors.h"

// A weight view: row-major [rows, cols] (a vector has rows == 1); p == NULL: absent.
typedef struct {
    const void *p;
    janus_dtype dt;
    int64_t rows, cols;
} janus_w;

typedef struct {
    janus_w attn_norm, ffn_norm;          // [H]
    janus_w wq, wk, wv, wo;               // [nh*hd, H], [nkv*hd, H], [nkv*hd, H], [H, nh*hd]
    janus_w bq, bk, bv;                   // optional biases
    janus_w q_norm, k_norm;               // [hd] (per head) or [nh*hd] / [nkv*hd] (full)
    bool moe;
    janus_w router;                       // [E, H]
    janus_w *gate, *up, *down;            // [E] views: gate/up [I, H], down [H, I]; p NULL if not loaded
    janus_w sh_gate, sh_up, sh_down;      // shared expert: [Is, H], [Is, H], [H, Is]
    janus_w sh_expert_gate;               // [1, H] sigmoid gate of the shared expert
    janus_w mlp_gate, mlp_up, mlp_down;   // dense FFN layer: [Id, H], [Id, H], [H, Id]
} janus_layer;

// What a rank binds: attention-side weights (embedding, attention, norms,
// router, shared and dense FFNs, lm_head) and/or routed experts.
enum { JANUS_LOAD_ATTN = 1, JANUS_LOAD_EXPERTS = 2, JANUS_LOAD_ALL = 3 };

typedef struct {
    janus_config cfg;
    janus_st st;
    janus_w embed;       // [V, H]
    janus_w final_norm;  // [H]
    janus_w lm_head;     // [V, H] (the embedding when tied)
    janus_layer *layers; // [n_layers]
    size_t weight_bytes; // bytes bound on this rank
} janus_model;

// what == 0 reads config.json alone (no tensors: --synthetic).
// expert_mask: NULL binds every expert (when JANUS_LOAD_EXPERTS); else
// expert_mask[l * n_experts + e] != 0 selects the experts to bind.
int janus_model_load(const char *dir, janus_model *m, int what, const uint8_t *expert_mask, janus_err *e);
void janus_model_free(janus_model *m);

#endif
