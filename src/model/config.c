// model/config.c: parses config.json / generation_config.json with jansson into
// janus_config, and holds the architecture table.
#include "model/config.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

static const janus_arch_desc ARCHS[] = {
    // model_type   arch            qk norm        shared  norm_topk dense  expert size key
    {"mixtral",     ARCH_MIXTRAL,   QK_NORM_NONE,  false,  true,     false, "intermediate_size"},
    {"qwen2_moe",   ARCH_QWEN2_MOE, QK_NORM_NONE,  true,   false,    true,  "moe_intermediate_size"},
    {"qwen3_moe",   ARCH_QWEN3_MOE, QK_NORM_HEAD,  false,  false,    true,  "moe_intermediate_size"},
    {"olmoe",       ARCH_OLMOE,     QK_NORM_FULL,  false,  false,    false, "intermediate_size"},
};

const janus_arch_desc *janus_arch_find(const char *model_type) {
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (strcmp(ARCHS[i].model_type, model_type) == 0) return &ARCHS[i];
    return NULL;
}

int janus_n_moe_layers(const janus_config *c) {
    int n = 0;
    for (int l = 0; l < c->n_layers; l++) n += c->layer_moe[l];
    return n;
}

bool janus_is_eos(const janus_config *c, int32_t tok) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos[i] == tok) return true;
    return false;
}

// ---- field readers: each names the file and key on error ---------------------

typedef struct {
    const char *path;
    json_t *root;
    janus_err *e;
} cfg_ctx;

static int get_int(cfg_ctx *x, const char *key, int *out, bool required, int def) {
    json_t *v = json_object_get(x->root, key);
    if (!v || json_is_null(v)) {
        if (required) return janus_errf(x->e, "%s: %s: missing", x->path, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v)) return janus_errf(x->e, "%s: %s: not an integer", x->path, key);
    json_int_t i = json_integer_value(v);
    if (i < 0 || i > (1 << 30)) return janus_errf(x->e, "%s: %s: %lld is out of range", x->path, key, (long long)i);
    *out = (int)i;
    return 0;
}

static int get_num(cfg_ctx *x, json_t *obj, const char *key, double *out, bool required, double def) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required) return janus_errf(x->e, "%s: %s: missing", x->path, key);
        *out = def;
        return 0;
    }
    if (!json_is_number(v)) return janus_errf(x->e, "%s: %s: not a number", x->path, key);
    *out = json_number_value(v);
    return 0;
}

static int get_bool(cfg_ctx *x, const char *key, bool *out, bool def) {
    json_t *v = json_object_get(x->root, key);
    if (!v || json_is_null(v)) { *out = def; return 0; }
    if (!json_is_boolean(v)) return janus_errf(x->e, "%s: %s: not a boolean", x->path, key);
    *out = json_is_true(v);
    return 0;
}

// eos_token_id: an int or a list of ints; absent leaves c untouched.
static int get_eos(cfg_ctx *x, janus_config *c) {
    json_t *v = json_object_get(x->root, "eos_token_id");
    if (!v || json_is_null(v)) return 0;
    if (json_is_integer(v)) {
        json_int_t t = json_integer_value(v);
        if (t < 0 || t > INT32_MAX)
            return janus_errf(x->e, "%s: eos_token_id: %lld is outside the vocabulary", x->path, (long long)t);
        c->n_eos = 1;
        c->eos[0] = (int32_t)t;
    } else if (json_is_array(v)) {
        size_t n = json_array_size(v);
        if (n > JANUS_MAX_EOS) return janus_errf(x->e, "%s: eos_token_id: more than %d ids", x->path, JANUS_MAX_EOS);
        c->n_eos = 0;
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(v, i);
            if (!json_is_integer(t)) return janus_errf(x->e, "%s: eos_token_id[%zu]: not an integer", x->path, i);
            if (json_integer_value(t) < 0 || json_integer_value(t) > INT32_MAX)
                return janus_errf(x->e, "%s: eos_token_id[%zu]: %lld is outside the vocabulary", x->path, i,
                                  (long long)json_integer_value(t));
            c->eos[c->n_eos++] = (int32_t)json_integer_value(t);
        }
    } else {
        return janus_errf(x->e, "%s: eos_token_id: neither an integer nor a list of integers", x->path);
    }
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos[i] < 0 || (c->vocab > 0 && c->eos[i] >= c->vocab))
            return janus_errf(x->e, "%s: eos_token_id: %d is outside the vocabulary [0, %d)", x->path, c->eos[i], c->vocab);
    return 0;
}

static json_t *load_json(const char *path, janus_err *e, bool must_exist) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (must_exist) janus_errf(e, "%s: cannot open (missing or unreadable)", path);
        return NULL;
    }
    fclose(f);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        janus_errf(e, "%s: line %d: invalid JSON: %s", path, je.line, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        janus_errf(e, "%s: not a JSON object", path);
        return NULL;
    }
    return root;
}

// The features janus does not implement, refused by name.
static int refuse_unsupported(cfg_ctx *x) {
    json_t *r = x->root;
    json_t *actv = json_object_get(r, "hidden_act");
    if (actv && !json_is_null(actv) && !json_is_string(actv))
        return janus_errf(x->e, "%s: hidden_act: not a string", x->path);
    const char *act = json_string_value(actv);
    if (act && strcmp(act, "silu") != 0)
        return janus_errf(x->e, "%s: hidden_act: \"%s\" is not supported (only silu)", x->path, act);
    // Sliding-window attention: active when sliding_window is a positive number
    // and, where the family has the switch, use_sliding_window is true.
    json_t *sw = json_object_get(r, "sliding_window");
    json_t *use = json_object_get(r, "use_sliding_window");
    bool sw_set = sw && json_is_integer(sw) && json_integer_value(sw) > 0;
    bool sw_on = sw_set && (!use || json_is_true(use));
    if (sw_on)
        return janus_errf(x->e, "%s: sliding_window: %lld (sliding-window attention is not supported)", x->path,
                          sw && json_is_integer(sw) ? (long long)json_integer_value(sw) : -1LL);
    json_t *lt = json_object_get(r, "layer_types");
    if (lt && json_is_array(lt))
        for (size_t i = 0; i < json_array_size(lt); i++) {
            const char *s = json_string_value(json_array_get(lt, i));
            if (s && strcmp(s, "full_attention") != 0)
                return janus_errf(x->e, "%s: layer_types[%zu]: \"%s\" is not supported (only full_attention)", x->path, i, s);
        }
    json_t *clip = json_object_get(r, "clip_qkv");
    if (clip && !json_is_null(clip))
        return janus_errf(x->e, "%s: clip_qkv: set, which is not supported", x->path);
    // RoPE scaling: old key rope_scaling, new key rope_parameters.rope_type.
    const char *keys[2] = {"rope_scaling", "rope_parameters"};
    for (int k = 0; k < 2; k++) {
        json_t *rs = json_object_get(r, keys[k]);
        if (!rs || json_is_null(rs)) continue;
        if (!json_is_object(rs)) return janus_errf(x->e, "%s: %s: not an object", x->path, keys[k]);
        json_t *t = json_object_get(rs, "rope_type");
        if (!t) t = json_object_get(rs, "type");
        if (t && (!json_is_string(t) || strcmp(json_string_value(t), "default") != 0))
            return janus_errf(x->e, "%s: %s.rope_type: \"%s\" is not supported (only default RoPE)", x->path, keys[k],
                              json_is_string(t) ? json_string_value(t) : "?");
        if (!t && k == 0)
            return janus_errf(x->e, "%s: rope_scaling: set without a type, which is not supported", x->path);
    }
    bool tie = false;
    if (get_bool(x, "attention_bias", &tie, false)) return -1; // only a type check here
    return 0;
}

int janus_config_load(const char *dir, janus_config *c, janus_err *e) {
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return janus_errf(e, "%s: cannot open the model directory: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return janus_errf(e, "%s: cannot open the model directory: not a directory", dir);
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *root = load_json(path, e, true);
    if (!root) return -1;
    cfg_ctx x = {path, root, e};
    int rc = -1;

    const char *mt = json_string_value(json_object_get(root, "model_type"));
    if (!mt) { janus_errf(e, "%s: model_type: missing", path); goto out; }
    c->desc = janus_arch_find(mt);
    if (!c->desc) {
        janus_errf(e, "%s: model_type: \"%s\" is not supported (supported: mixtral, qwen2_moe, qwen3_moe, olmoe)", path, mt);
        goto out;
    }
    snprintf(c->model_type, sizeof c->model_type, "%s", mt);
    if (refuse_unsupported(&x)) goto out;

    if (get_int(&x, "vocab_size", &c->vocab, true, 0) || get_int(&x, "hidden_size", &c->hidden, true, 0) ||
        get_int(&x, "num_hidden_layers", &c->n_layers, true, 0) ||
        get_int(&x, "num_attention_heads", &c->n_heads, true, 0) ||
        get_int(&x, "num_key_value_heads", &c->n_kv_heads, false, 0) ||
        get_int(&x, "max_position_embeddings", &c->max_ctx, true, 0) ||
        get_int(&x, "num_experts_per_tok", &c->top_k, true, 0))
        goto out;
    if (c->n_kv_heads == 0) c->n_kv_heads = c->n_heads;
    // Experts: num_experts or num_local_experts, whichever the file has.
    const char *ekey = "num_experts";
    if (json_object_get(root, "num_local_experts") && !json_is_null(json_object_get(root, "num_local_experts"))) {
        ekey = "num_local_experts";
        if (get_int(&x, "num_local_experts", &c->n_experts, true, 0)) goto out;
    } else if (get_int(&x, "num_experts", &c->n_experts, true, 0)) goto out;
    if (c->vocab < 1 || c->hidden < 1 || c->n_layers < 1 || c->n_heads < 1 || c->max_ctx < 1) {
        janus_errf(e, "%s: vocab_size, hidden_size, num_hidden_layers, num_attention_heads and max_position_embeddings must be positive", path);
        goto out;
    }
    if (c->n_layers > JANUS_MAX_LAYERS) { janus_errf(e, "%s: num_hidden_layers: %d exceeds %d", path, c->n_layers, JANUS_MAX_LAYERS); goto out; }
    if (c->n_heads % c->n_kv_heads) {
        janus_errf(e, "%s: num_key_value_heads: %d does not divide num_attention_heads %d", path, c->n_kv_heads, c->n_heads);
        goto out;
    }
    if (c->n_experts < 1) { janus_errf(e, "%s: %s: must be positive for an MoE model", path, ekey); goto out; }
    if (c->top_k < 1 || c->top_k > c->n_experts) {
        janus_errf(e, "%s: num_experts_per_tok: %d is not in [1, %d]", path, c->top_k, c->n_experts);
        goto out;
    }
    if (get_int(&x, "head_dim", &c->head_dim, false, 0)) goto out;
    if (c->head_dim == 0) {
        if (c->hidden % c->n_heads) { janus_errf(e, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->hidden, c->n_heads); goto out; }
        c->head_dim = c->hidden / c->n_heads;
    }
    if (c->head_dim % 2) { janus_errf(e, "%s: head_dim: %d is odd (RoPE needs an even head_dim)", path, c->head_dim); goto out; }
    if (c->desc->qk_norm == QK_NORM_FULL && c->head_dim * c->n_heads != c->hidden) {
        janus_errf(e, "%s: head_dim: %d x %d heads != hidden_size %d, which %s does not allow", path, c->head_dim,
                   c->n_heads, c->hidden, mt);
        goto out;
    }
    if (get_int(&x, c->desc->moe_inter_key, &c->moe_inter, true, 0)) goto out;
    if (get_int(&x, "intermediate_size", &c->dense_inter, false, 0)) goto out;
    if (c->desc->shared_expert && get_int(&x, "shared_expert_intermediate_size", &c->shared_inter, false, 0)) goto out;
    double eps, theta;
    if (get_num(&x, root, "rms_norm_eps", &eps, false, 1e-6)) goto out;
    c->rms_eps = (float)eps;
    json_t *rp = json_object_get(root, "rope_parameters");
    if (rp && json_is_object(rp) && json_object_get(rp, "rope_theta")) {
        if (get_num(&x, rp, "rope_theta", &theta, true, 0)) goto out;
    } else if (get_num(&x, root, "rope_theta", &theta, false, 10000.0)) goto out;
    if (!(theta > 0)) { janus_errf(e, "%s: rope_theta: must be positive", path); goto out; }
    c->rope_theta = theta;
    if (get_bool(&x, "tie_word_embeddings", &c->tie_embed, false)) goto out;
    bool ntp = false;
    if (get_bool(&x, "norm_topk_prob", &ntp, false)) goto out;
    c->norm_topk = c->desc->always_norm_topk || ntp;

    // Which layers are MoE: Qwen's mlp_only_layers and decoder_sparse_step.
    for (int l = 0; l < c->n_layers; l++) c->layer_moe[l] = 1;
    if (c->desc->dense_layers) {
        int step = 1;
        if (get_int(&x, "decoder_sparse_step", &step, false, 1)) goto out;
        if (step < 1) { janus_errf(e, "%s: decoder_sparse_step: must be >= 1", path); goto out; }
        for (int l = 0; l < c->n_layers; l++) c->layer_moe[l] = ((l + 1) % step == 0);
        json_t *mol = json_object_get(root, "mlp_only_layers");
        if (mol && !json_is_null(mol)) {
            if (!json_is_array(mol)) { janus_errf(e, "%s: mlp_only_layers: not a list", path); goto out; }
            for (size_t i = 0; i < json_array_size(mol); i++) {
                json_t *v = json_array_get(mol, i);
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= c->n_layers) {
                    janus_errf(e, "%s: mlp_only_layers[%zu]: not a layer index in [0, %d)", path, i, c->n_layers);
                    goto out;
                }
                c->layer_moe[json_integer_value(v)] = 0;
            }
        }
        for (int l = 0; l < c->n_layers; l++)
            if (!c->layer_moe[l] && c->dense_inter < 1) {
                janus_errf(e, "%s: intermediate_size: missing, and layer %d is a dense layer", path, l);
                goto out;
            }
    }
    if (get_eos(&x, c)) goto out;
    rc = 0;
out:
    json_decref(root);
    if (rc) return rc;

    // generation_config.json overrides eos_token_id when it has one.
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    janus_err ge;
    json_t *groot = load_json(path, &ge, false);
    if (!groot) {
        FILE *f = fopen(path, "rb");
        if (f) { fclose(f); *e = ge; return -1; } // exists but broken
        return 0;
    }
    cfg_ctx gx = {path, groot, e};
    rc = get_eos(&gx, c);
    json_decref(groot);
    return rc;
}
