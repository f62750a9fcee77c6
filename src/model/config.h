// model/config.h: a Hugging Face config.json (+ generation_config.json) read
// into the hyper-parameters the engine needs, and the architecture table: what
// differs between the MoE families janus implements.
#ifndef JANUS_MODEL_CONFIG_H
#define JANUS_MODEL_CONFIG_H

#include "common.h"

#define JANUS_MAX_LAYERS 512
#define JANUS_MAX_EOS 16

typedef enum { ARCH_MIXTRAL, ARCH_QWEN2_MOE, ARCH_QWEN3_MOE, ARCH_OLMOE } janus_arch;

// Where q/k RMSNorm applies: none, per head over head_dim (Qwen3), or over the
// whole q / k projection before the split into heads (OLMoE).
typedef enum { QK_NORM_NONE, QK_NORM_HEAD, QK_NORM_FULL } janus_qk_norm;

// One row per family: the differences, not a forward pass.
typedef struct {
    const char *model_type;     // config.json "model_type"
    janus_arch arch;
    janus_qk_norm qk_norm;
    bool shared_expert;         // shared expert with a sigmoid gate (Qwen2-MoE)
    bool always_norm_topk;      // renormalise top-k weights regardless of config (Mixtral)
    bool dense_layers;          // honours mlp_only_layers / decoder_sparse_step
    const char *moe_inter_key;  // config key of one expert's intermediate size
} janus_arch_desc;

const janus_arch_desc *janus_arch_find(const char *model_type);

typedef struct {
    char dir[1024];
    char model_type[32];
    const janus_arch_desc *desc;
    int vocab, hidden, n_layers, n_heads, n_kv_heads, head_dim, max_ctx;
    int n_experts, top_k;       // routed experts, experts per token
    int moe_inter;              // one expert's intermediate size
    int dense_inter;            // intermediate size of dense (non-MoE) layers
    int shared_inter;           // shared expert's intermediate size (0: none)
    bool norm_topk;             // renormalise the top-k routing weights
    bool tie_embed;             // lm_head shares the embedding matrix
    float rms_eps;
    double rope_theta;
    uint8_t layer_moe[JANUS_MAX_LAYERS]; // 1: MoE layer, 0: dense FFN layer
    int n_eos;
    int32_t eos[JANUS_MAX_EOS];
} janus_config;

// Reads DIR/config.json and, if present, DIR/generation_config.json (whose
// eos_token_id wins). Refuses what the engine does not implement, naming the
// field: "DIR/config.json: sliding_window: 4096 (sliding-window attention is
// not supported)".
int janus_config_load(const char *dir, janus_config *c, janus_err *e);

// Bytes of one routed expert's weights at dtype size dsize (gate, up, down).
static inline size_t janus_expert_bytes(const janus_config *c, size_t dsize) {
    return 3 * (size_t)c->hidden * (size_t)c->moe_inter * dsize;
}
int janus_n_moe_layers(const janus_config *c);
bool janus_is_eos(const janus_config *c, int32_t tok);

#endif
