// engine/gpu.c: one GPU's forward pass (see gpu.h). Layout of device memory:
// weights uploaded once at start (bf16; f32/f16 checkpoints converted on the
// way), routed experts of a layer fused into [E, 2I, H] gate/up and [E, H, I]
// down arrays for the grouped GEMV; the paged KV cache [layers][blocks][bs]
// [kv_dim] bf16; activations sized once for max_tokens. Per step the host
// sends token ids, positions and block tables; per MoE layer it reads the
// routing back (to group rows by expert, as the exchange does across ranks).
#include "engine/gpu.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

#include "fused.h"
#include "layers.h"
#include "moe_ffn.h"
#include "moe_prefill.h"
#include "sample_gpu.h"
#include "xchg.h"
#include <stddef.h>

_Static_assert(sizeof(janus_row_sampling) == sizeof(jk_sample_params) &&
                   offsetof(janus_row_sampling, top_k) == offsetof(jk_sample_params, top_k) &&
                   offsetof(janus_row_sampling, seed) == offsetof(jk_sample_params, seed) &&
                   offsetof(janus_row_sampling, id) == offsetof(jk_sample_params, id),
               "janus_row_sampling and jk_sample_params must share their layout");
#include "util.h"
#include <math.h>

#include "cuda_check.h"
#include "moe/experts.h"
#define CK(x) JANUS_CUDA_CK("CUDA", x)


typedef struct {
    uint16_t *attn_norm, *ffn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *q_norm, *k_norm;
    uint16_t *router, *w_gu, *w_down;   // routed experts held here [n_loc, 2I, H], [n_loc, H, I]
    uint16_t *sh_gu, *sh_down, *sh_gw;  // shared expert [2Is, H], [H, Is], gate [1, H]
    uint16_t *mlp_gu, *mlp_down;        // dense layer [2Id, H], [H, Id]
    uint16_t *router_bias;              // synthetic router skew [E], or NULL
    int n_loc;                          // routed experts held on this GPU
    int32_t *loc;                       // [E] (host) local index of each expert, -1: not held
} gpu_layer;

// One micro-batch's device state: lives from its embedding to its logits.
typedef struct {
    float *x, *h, *topw;                // [T, H], [T, H], [T, K]
    int32_t *topi, *tok, *pos, *rows;   // [T, K], [T], [T], [n_out]
    int32_t *bt, *h_bt;                 // [T, maxb] block tables (device, host staging)
    int bt_cap, maxb, T;
    int32_t *pft, *h_pft;               // [T, 4] prompt-chunk attention tiles (device, pinned host)
    int pf_n, n_dec;                    // tiles this step; ranges of tokens for the per-token kernels
    int32_t dec[2 * JK_ATTN_PREFILL_MAX_RANGES]; // [dec[2i], dec[2i+1])
} gpu_mb;

// A captured decode step (the layers of one micro-batch), by its shape.
#define GPU_GRAPHS 4
typedef struct {
    int T, maxb;
    cudaGraphExec_t ex;
    int64_t used;
} gpu_graph;

struct janus_gpu {
    const janus_model *m;
    janus_gpu_opts o;
    cudaStream_t st;
    uint16_t *embed, *final_norm, *lm_head;
    gpu_layer *L;
    float *inv_freq;
    uint16_t *kc, *vc;
    int kv_blocks, bs, max_tokens;
    size_t layer_kv; // elements of one layer's K (or V) cache
    gpu_mb *mb;      // [n_mb]
    float *q, *k, *v, *att, *rlog, *xs, *ys, *act, *moe, *sh, *shg, *logits;
    int32_t *order, *slot, *seg, *ident;
    int32_t *d_srow, *d_soff, *d_sgi; // [xs_rows (+1)]: the host payload's sums on this MoE GPU
    float *d_sw;
    float *qkv;                         // [max_tokens, nq + 2 kv_dim] the fused projection's output
    bool fused_qkv;                     // bias, q/k norm, RoPE and the KV store in one kernel
    unsigned long long *d_counts, *h_counts; // [n_layers, E] pairs per expert grouped on the device this step
    bool counts_pending;
    bool graphs;                        // decode steps as CUDA graphs (JANUS_GPU_GRAPH=0: never)
    gpu_graph gr[GPU_GRAPHS];
    int64_t gr_clock;
    int last_T, last_maxb, n_captures;
    void *blas_ws;                      // cuBLAS workspace (no allocation inside a graph capture)
    int32_t *h_topi, *h_order, *h_slot, *h_seg;
    float *h_topw;                      // the router's weights, host (host-staged payload summed on the MoE ranks)
    int32_t *d_hslot, *d_hlead;         // [max_tokens * K] its sums' slots and leads on the device
    int *fill;
    int32_t *lseg;   // [E+1] local segment offsets
    int xs_rows;     // rows xs/ys/act hold
    int max_out;     // rows logits holds
    float *h_rows, *h_y;                // pinned staging of the exchange: [max_tokens, H], [max_tokens * K, H]
    float *att_ws;                      // split-K attention partials
    size_t att_ws_bytes;
    void *pf_ws;                        // prefill expert GEMM scratch
    size_t pf_ws_bytes;
    void *grp_ws;                       // prompt-sized steps: the device grouping's per-chunk counts
    size_t grp_ws_bytes;
    int prefill_rows;                   // an expert with this many rows or more: tensor-core GEMMs (0: never)
    int prefill_mode;                   // JK_PREFILL_AUTO, or the path JANUS_GPU_PREFILL_MODE forces
    bool splitk;                        // split-K decode attention (JANUS_GPU_ATTN=plain: the one-block kernel)
    int pf_attn_min;                    // runs of this many prompt tokens or more: the prefill attention kernel (0: never)
    // One micro-batch, every expert local (forward_layers): the combine writes
    // the next layer's normed bf16 input (xb_ready: the layer xb holds it for,
    // -1: none; JANUS_GPU_FUSE=0: never).
    bool fuse_layers;
    int xb_ready;
    bool synth;      // synthetic weights
    uint64_t seed;
    size_t dense_bytes, weight_bytes;
    int32_t *gtok;
    float *glp;
    jk_sample_params *d_samp;   // [max_tokens] wanted rows' sampling settings
    cublasHandle_t blas;     // dense projections (bf16 x bf16 -> f32)
    uint16_t *xb;            // [max_tokens, max K] activations in bf16 for cuBLAS
    float *gu;               // [max_tokens, 2 * max inter] gate/up before SwiGLU
    bool profile;            // JANUS_GPU_PROFILE=1: synchronise after each phase and time it
    double phase_s[8], tp;
};

size_t janus_gpu_kv_block_bytes(const janus_config *c, int block_size) {
    return (size_t)c->n_layers * 2 * block_size * (size_t)c->n_kv_heads * c->head_dim * 2;
}

// A weight to the device as bf16 (NULL when absent).
static uint16_t *upload(const janus_w *w) {
    if (!w->p) return NULL;
    size_t n = (size_t)w->rows * w->cols;
    uint16_t *d;
    CK(cudaMalloc((void **)&d, n * 2));
    if (w->dt == JANUS_BF16) {
        CK(cudaMemcpy(d, w->p, n * 2, cudaMemcpyHostToDevice));
        return d;
    }
    const size_t chunk = (size_t)1 << 20;
    float *f = xmalloc(sizeof(float) * chunk);
    uint16_t *b = xmalloc(2 * chunk);
    const size_t es = janus_dtype_size(w->dt);
    for (size_t i = 0; i < n; i += chunk) {
        size_t c = n - i < chunk ? n - i : chunk;
        janus_to_f32(f, (const uint8_t *)w->p + i * es, w->dt, c);
        for (size_t j = 0; j < c; j++) b[j] = f32_to_bf16(f[j]);
        CK(cudaMemcpy(d + i, b, c * 2, cudaMemcpyHostToDevice));
    }
    free(f);
    free(b);
    return d;
}

// Concatenate weights row-wise into one device array: [a.rows + b.rows, cols].
static uint16_t *upload_cat(const janus_w *a, const janus_w *b) {
    uint16_t *da = upload(a), *db = upload(b), *d;
    size_t na = (size_t)a->rows * a->cols, nb = (size_t)b->rows * b->cols;
    CK(cudaMalloc((void **)&d, (na + nb) * 2));
    CK(cudaMemcpy(d, da, na * 2, cudaMemcpyDeviceToDevice));
    CK(cudaMemcpy(d + na, db, nb * 2, cudaMemcpyDeviceToDevice));
    cudaFree(da);
    cudaFree(db);
    return d;
}


// A [rows, cols] weight: uploaded from the checkpoint, or synthetic (uniform,
// variance scale^2, deterministic in the seed). rows == 0: absent.
static uint16_t *weight(janus_gpu *g, const janus_w *w, int64_t rows, int64_t cols, float scale) {
    if (!g->synth) {
        if (w && w->p) g->weight_bytes += (size_t)w->rows * w->cols * 2;
        return upload(w);
    }
    if (rows <= 0) return NULL;
    uint16_t *d = janus_cuda_alloc((size_t)rows * cols * 2);
    CK(jk_fill_bf16(d, (size_t)rows * cols, g->seed++, scale, g->st));
    g->weight_bytes += (size_t)rows * cols * 2;
    return d;
}
static uint16_t *weight_cat(janus_gpu *g, const janus_w *a, const janus_w *b, int64_t rows, int64_t cols, float scale) {
    if (!g->synth) {
        if (a->p) g->weight_bytes += ((size_t)a->rows * a->cols + (size_t)b->rows * b->cols) * 2;
        return upload_cat(a, b);
    }
    return weight(g, NULL, 2 * rows, cols, scale);
}

// The routed experts of layer l that this GPU holds, compacted in ascending
// expert order. Synthetic experts are filled per (layer, expert) from the
// seed, so every layout holds the same weights for the same expert.
static void upload_experts(janus_gpu *g, int l, uint64_t seed0) {
    const janus_model *m = g->m;
    const janus_config *c = &m->cfg;
    const janus_layer *L = &m->layers[l];
    gpu_layer *G = &g->L[l];
    const int E = c->n_experts, H = c->hidden, I = c->moe_inter;
    G->loc = xmalloc(sizeof(int32_t) * E);
    G->n_loc = 0;
    for (int e = 0; e < E; e++) {
        bool held = g->o.experts && (!g->o.expert_mask || g->o.expert_mask[(size_t)l * E + e]);
        if (held && !g->synth && !L->gate[e].p)
            janus_die(c->dir, "internal: expert %d of layer %d is to be on this GPU but was not loaded", e, l);
        G->loc[e] = held ? G->n_loc++ : -1;
    }
    if (!G->n_loc) return;
    const size_t gu_n = (size_t)2 * I * H, dn_n = (size_t)H * I;
    G->w_gu = janus_cuda_alloc(G->n_loc * gu_n * 2);
    G->w_down = janus_cuda_alloc(G->n_loc * dn_n * 2);
    g->weight_bytes += G->n_loc * (gu_n + dn_n) * 2;
    for (int e = 0; e < E; e++) {
        const int j = G->loc[e];
        if (j < 0) continue;
        if (g->synth) {
            const uint64_t s = seed0 * 0x9E3779B97F4A7C15ull + ((uint64_t)l << 20) + 2 * (uint64_t)e;
            CK(jk_fill_bf16(G->w_gu + j * gu_n, gu_n, s, 1.0f / sqrtf((float)H), g->st));
            CK(jk_fill_bf16(G->w_down + j * dn_n, dn_n, s + 1, 1.0f / sqrtf((float)I), g->st));
            continue;
        }
        uint16_t *gu = upload_cat(&L->gate[e], &L->up[e]), *dn = upload(&L->down[e]);
        CK(cudaMemcpy(G->w_gu + j * gu_n, gu, gu_n * 2, cudaMemcpyDeviceToDevice));
        CK(cudaMemcpy(G->w_down + j * dn_n, dn, dn_n * 2, cudaMemcpyDeviceToDevice));
        cudaFree(gu);
        cudaFree(dn);
    }
}

janus_gpu *janus_gpu_init(const janus_model *m, int device, int max_tokens, int kv_blocks, int block_size,
                          uint64_t seed, double zipf) {
    janus_gpu_opts o = {.device = device, .attn = true, .experts = true, .max_tokens = max_tokens, .n_mb = 1,
                        .kv_blocks = kv_blocks, .block_size = block_size, .seed = seed, .zipf = zipf};
    return janus_gpu_init_opts(m, &o);
}

// Bytes of bf16 weights a GPU with these options will hold (a lower bound on
// what it needs: the KV cache and buffers come on top).
static size_t weights_held(const janus_config *c, const janus_gpu_opts *o) {
    const size_t H = c->hidden, E = c->n_experts, nq = (size_t)c->n_heads * c->head_dim, nkv = (size_t)c->n_kv_heads * c->head_dim;
    size_t b = 0;
    if (o->attn) b += (size_t)c->vocab * H * (c->tie_embed ? 1 : 2);
    for (int l = 0; l < c->n_layers; l++) {
        if (o->attn) b += (nq + 2 * nkv) * H + nq * H + 2 * H;
        if (!c->layer_moe[l]) {
            if (o->attn) b += 3 * (size_t)c->dense_inter * H;
            continue;
        }
        if (o->attn) b += E * H + (c->desc->shared_expert ? 3 * (size_t)c->shared_inter * H + H : 0);
        if (!o->experts) continue;
        size_t held = 0;
        for (size_t e = 0; e < E; e++) held += !o->expert_mask || o->expert_mask[(size_t)l * E + e];
        b += held * 3 * (size_t)c->moe_inter * H;
    }
    return 2 * b;
}

janus_gpu *janus_gpu_init_opts(const janus_model *m, const janus_gpu_opts *o) {
    const janus_config *c = &m->cfg;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) janus_die(NULL, "--backend cuda: no CUDA device visible");
    CK(cudaSetDevice(o->device % ndev));
    { // a model (or KV cache) larger than the GPU: say so before the first allocation fails
        size_t free_b = 0, total_b = 0;
        const size_t need = weights_held(c, o);
        const size_t kv = o->attn ? (size_t)o->kv_blocks * janus_gpu_kv_block_bytes(c, o->block_size) : 0;
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) free_b = SIZE_MAX, (void)cudaGetLastError(); // unknown: the allocations will say
        if (need > free_b)
            janus_die(c->dir,
                      "the weights this rank's GPU %d is to hold (%.1f GB of bf16: %s%s) exceed its free memory "
                      "(%.1f of %.1f GB); spread the model over more GPUs (more MoE ranks: --moe-ranks, or a plan "
                      "from `janus plan`)",
                      o->device % ndev, need / 1e9, o->attn ? "attention side" : "",
                      o->experts ? (o->attn ? " and experts" : "experts") : "", free_b / 1e9, total_b / 1e9);
        if (need + kv > free_b)
            janus_die(NULL,
                      "the KV cache (%.1f GB: %d blocks of %d positions, %d layers) and the weights "
                      "(%.1f GB) exceed GPU %d's free memory (%.1f of %.1f GB); lower the KV cache budget "
                      "(janus generate: --kv-cache-mb) below %.0f MiB, less the step buffers (which grow with "
                      "--max-step-tokens)",
                      kv / 1e9, o->kv_blocks, o->block_size, c->n_layers, need / 1e9, o->device % ndev, free_b / 1e9,
                      total_b / 1e9, free_b > need ? (free_b - need) / 1048576.0 : 0.0);
    }
    janus_gpu *g = xcalloc(1, sizeof *g);
    g->m = m;
    g->o = *o; // o->expert_mask is read during init only
    g->synth = m->st.n_files == 0; // loaded from config.json alone
    g->seed = o->seed;
    CK(cudaStreamCreate(&g->st));
    if (c->hidden % 8 || c->moe_inter % 8 || (c->dense_inter && c->dense_inter % 8) || (c->shared_inter % 8))
        janus_die(c->dir, "--backend cuda needs hidden and intermediate sizes that are multiples of 8");
    if (c->n_experts > 256 || c->top_k > 16 || c->head_dim > 256)
        janus_die(c->dir, "--backend cuda supports up to 256 experts, top-16 and head_dim 256");
    const int E = c->n_experts, H = c->hidden, hd = c->head_dim;
    const int nq = c->n_heads * hd, nkv = c->n_kv_heads * hd;
    const float sH = 1.0f / sqrtf((float)H);
    const bool A = o->attn;
    g->L = xcalloc(c->n_layers, sizeof(gpu_layer));
    if (A) {
        g->embed = weight(g, &m->embed, c->vocab, H, 1.0f);
        g->final_norm = weight(g, &m->final_norm, 1, H, 1.0f);
        g->lm_head = c->tie_embed ? g->embed : weight(g, &m->lm_head, c->vocab, H, sH);
        g->dense_bytes = (c->tie_embed ? 0 : (size_t)c->vocab * H * 2) + (size_t)H * 2;
    }
    const uint64_t seed0 = o->seed;
    for (int l = 0; l < c->n_layers; l++) {
        const janus_layer *L = &m->layers[l];
        gpu_layer *G = &g->L[l];
        if (c->layer_moe[l]) upload_experts(g, l, seed0);
        if (!A) continue;
        G->attn_norm = weight(g, &L->attn_norm, 1, H, 1.0f), G->ffn_norm = weight(g, &L->ffn_norm, 1, H, 1.0f);
        { // q | k | v rows in one array: one projection GEMM (wq, wk, wv point into it)
            uint16_t *wq = weight(g, &L->wq, nq, H, sH), *wk = weight(g, &L->wk, nkv, H, sH), *wv = weight(g, &L->wv, nkv, H, sH);
            G->wq = janus_cuda_alloc((size_t)(nq + 2 * nkv) * H * 2);
            G->wk = G->wq + (size_t)nq * H, G->wv = G->wk + (size_t)nkv * H;
            CK(cudaMemcpy(G->wq, wq, (size_t)nq * H * 2, cudaMemcpyDeviceToDevice));
            CK(cudaMemcpy(G->wk, wk, (size_t)nkv * H * 2, cudaMemcpyDeviceToDevice));
            CK(cudaMemcpy(G->wv, wv, (size_t)nkv * H * 2, cudaMemcpyDeviceToDevice));
            cudaFree(wq), cudaFree(wk), cudaFree(wv);
        }
        G->wo = weight(g, &L->wo, H, nq, 1.0f / sqrtf((float)nq));
        if (!g->synth) G->bq = upload(&L->bq), G->bk = upload(&L->bk), G->bv = upload(&L->bv);
        if (c->desc->qk_norm != QK_NORM_NONE) {
            int qn = c->desc->qk_norm == QK_NORM_HEAD ? hd : nq, kn = c->desc->qk_norm == QK_NORM_HEAD ? hd : nkv;
            G->q_norm = weight(g, &L->q_norm, 1, qn, 1.0f), G->k_norm = weight(g, &L->k_norm, 1, kn, 1.0f);
        }
        g->dense_bytes += ((size_t)2 * nq * H + (size_t)2 * nkv * H + 2 * (size_t)H) * 2;
        if (c->layer_moe[l]) {
            G->router = weight(g, &L->router, E, H, sH);
            g->dense_bytes += (size_t)E * H * 2;
            if (g->synth && o->zipf > 0) { // popularity rank of expert e: (e * 37) mod E
                uint16_t *hb = xmalloc(2 * E);
                for (int e = 0; e < E; e++) hb[e] = f32_to_bf16((float)(-o->zipf * log(1.0 + (double)((e * 37) % E))));
                G->router_bias = janus_cuda_alloc(2 * E);
                CK(cudaMemcpy(G->router_bias, hb, 2 * E, cudaMemcpyHostToDevice));
                free(hb);
            }
            if (c->desc->shared_expert && c->shared_inter > 0) {
                const int S = c->shared_inter;
                G->sh_gu = weight_cat(g, &L->sh_gate, &L->sh_up, S, H, sH);
                G->sh_down = weight(g, &L->sh_down, H, S, 1.0f / sqrtf((float)S));
                G->sh_gw = weight(g, &L->sh_expert_gate, 1, H, sH);
                g->dense_bytes += ((size_t)3 * S * H + H) * 2;
            }
        } else {
            const int D = c->dense_inter;
            G->mlp_gu = weight_cat(g, &L->mlp_gate, &L->mlp_up, D, H, sH);
            G->mlp_down = weight(g, &L->mlp_down, H, D, 1.0f / sqrtf((float)D));
            g->dense_bytes += (size_t)3 * D * H * 2;
        }
    }
    const size_t K = c->top_k, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    int inter = c->moe_inter;
    if (c->dense_inter > inter) inter = c->dense_inter;
    if (c->shared_inter > inter) inter = c->shared_inter;
    const size_t T = A ? o->max_tokens : 0;
    g->max_tokens = (int)T;
    // From here on: the KV cache and the step buffers (activations of up to T
    // tokens, their expert rows and the GEMMs' scratch).
    static char hint[320];
    snprintf(hint, sizeof hint,
             "allocating the KV cache (%.1f GB) and the step buffers for %zu tokens per step after %.1f GB of weights: "
             "lower --kv-cache-mb or --max-step-tokens (janus generate)",
             A ? (double)o->kv_blocks * janus_gpu_kv_block_bytes(c, o->block_size) / 1e9 : 0.0, T,
             (double)weights_held(c, o) / 1e9);
    janus_cuda_alloc_hint = hint;
    g->seg = janus_cuda_alloc(4 * (E + 1));
    g->h_seg = xmalloc(4 * (E + 1));
    g->fill = xmalloc(sizeof(int) * (E + 1));
    g->lseg = xmalloc(sizeof(int32_t) * (E + 1));
    // Expert rows: a local step's T*K pairs, or what the exchange brings.
    size_t xr = T * K;
    if (o->experts && (size_t)o->max_expert_rows > xr) xr = o->max_expert_rows;
    g->xs_rows = (int)xr;
    g->xs = janus_cuda_alloc(4 * xr * H), g->ys = janus_cuda_alloc(4 * xr * H);
    if (o->experts && o->max_expert_rows > 0) { // a MoE rank: janus_gpu_serve_experts_sums's tables
        g->d_srow = janus_cuda_alloc(4 * xr), g->d_soff = janus_cuda_alloc(4 * (xr + 1));
        g->d_sgi = janus_cuda_alloc(4 * xr), g->d_sw = janus_cuda_alloc(4 * xr);
    }
    g->act = janus_cuda_alloc(4 * (xr > T ? xr : T) * inter);
    if (A) {
        float *inv = xmalloc(sizeof(float) * c->head_dim / 2);
        cpu_rope_inv_freq(inv, c->head_dim, c->rope_theta);
        g->inv_freq = janus_cuda_alloc(sizeof(float) * c->head_dim / 2);
        CK(cudaMemcpy(g->inv_freq, inv, sizeof(float) * c->head_dim / 2, cudaMemcpyHostToDevice));
        free(inv);
        g->kv_blocks = o->kv_blocks, g->bs = o->block_size;
        g->layer_kv = (size_t)o->kv_blocks * o->block_size * kv_dim;
        g->kc = janus_cuda_alloc(2 * g->layer_kv * c->n_layers);
        g->vc = janus_cuda_alloc(2 * g->layer_kv * c->n_layers);
        g->mb = xcalloc(o->n_mb, sizeof(gpu_mb));
        for (int i = 0; i < o->n_mb; i++) {
            gpu_mb *b = &g->mb[i];
            b->x = janus_cuda_alloc(4 * T * H), b->h = janus_cuda_alloc(4 * T * H), b->topw = janus_cuda_alloc(4 * T * K);
            b->topi = janus_cuda_alloc(4 * T * K), b->tok = janus_cuda_alloc(4 * T), b->pos = janus_cuda_alloc(4 * T), b->rows = janus_cuda_alloc(4 * T);
            if (jk_attn_prefill_supported(c->n_heads, c->n_kv_heads, hd)) {
                b->pft = janus_cuda_alloc(16 * T);
                CK(cudaMallocHost((void **)&b->h_pft, 16 * (T ? T : 1)));
            }
        }
        g->q = janus_cuda_alloc(4 * T * nq), g->k = janus_cuda_alloc(4 * T * kv_dim), g->v = janus_cuda_alloc(4 * T * kv_dim), g->att = janus_cuda_alloc(4 * T * nq);
        g->qkv = janus_cuda_alloc(4 * T * (nq + 2 * kv_dim));
        if (o->experts && !(getenv("JANUS_GPU_GROUP") && !strcmp(getenv("JANUS_GPU_GROUP"), "host"))) {
            const size_t LE = (size_t)c->n_layers * E;
            g->d_counts = janus_cuda_alloc(sizeof(unsigned long long) * LE);
            CK(cudaMemset(g->d_counts, 0, sizeof(unsigned long long) * LE));
            CK(cudaMallocHost((void **)&g->h_counts, sizeof(unsigned long long) * LE));
            if (E <= JK_GROUP_MAX_E) {
                g->grp_ws_bytes = jk_group_pairs_ws_bytes((int)(T * K), E);
                g->grp_ws = janus_cuda_alloc(g->grp_ws_bytes);
            }
        }
        g->fused_qkv = c->head_dim % 64 == 0 && c->head_dim <= 256 && c->desc->qk_norm != QK_NORM_FULL &&
                       !(getenv("JANUS_GPU_FUSED") && !strcmp(getenv("JANUS_GPU_FUSED"), "0"));
        g->rlog = janus_cuda_alloc(4 * T * E);
        g->moe = janus_cuda_alloc(4 * T * H), g->sh = janus_cuda_alloc(4 * T * H), g->shg = janus_cuda_alloc(4 * T);
        // logits for the rows that emit a token (one per sequence), not for every prompt token
        g->max_out = o->max_out > 0 && (size_t)o->max_out < T ? o->max_out : (int)T;
        g->logits = janus_cuda_alloc(4 * (size_t)g->max_out * c->vocab);
        g->order = janus_cuda_alloc(4 * T * K), g->slot = janus_cuda_alloc(4 * T * K);
        g->h_topi = xmalloc(4 * T * K), g->h_order = xmalloc(4 * T * K), g->h_slot = xmalloc(4 * T * K);
        g->gtok = janus_cuda_alloc(4 * T), g->glp = janus_cuda_alloc(4 * T);
        g->d_samp = janus_cuda_alloc(sizeof(jk_sample_params) * T);
        // identity slots: the exchange returns outputs in pair order
        for (size_t p = 0; p < T * K; p++) g->h_slot[p] = (int32_t)p;
        g->ident = janus_cuda_alloc(4 * T * K);
        g->h_topw = xmalloc(4 * T * K);
        g->d_hslot = janus_cuda_alloc(4 * T * K), g->d_hlead = janus_cuda_alloc(4 * T * K);
        CK(cudaMemcpy(g->ident, g->h_slot, 4 * T * K, cudaMemcpyHostToDevice));
        CK(cudaMallocHost((void **)&g->h_rows, 4 * (T ? T : 1) * H));
        CK(cudaMallocHost((void **)&g->h_y, 4 * (T ? T : 1) * K * H));
        int maxk = H > (int)nq ? H : (int)nq;
        if (inter > maxk) maxk = inter;
        g->xb = janus_cuda_alloc(2 * T * (size_t)maxk);
        g->gu = janus_cuda_alloc(4 * T * 2 * (size_t)inter);
    }
    // Dense projections (attention side) and the prefill expert GEMMs (expert side).
    if (cublasCreate(&g->blas) != CUBLAS_STATUS_SUCCESS) janus_die(NULL, "cuBLAS: cannot create a handle");
    cublasSetStream(g->blas, g->st);
    {
        const size_t wsb = (size_t)32 << 20;
        g->blas_ws = janus_cuda_alloc(wsb);
        if (cublasSetWorkspace(g->blas, g->blas_ws, wsb) != CUBLAS_STATUS_SUCCESS) janus_die(NULL, "cuBLAS: cannot set the workspace");
    }
    g->graphs = !(getenv("JANUS_GPU_GRAPH") && !strcmp(getenv("JANUS_GPU_GRAPH"), "0"));
    // Experts with many rows (prefill chunks) go through tensor-core GEMMs
    // (moe_prefill.h); the decode kernel streams weights for a handful of rows.
    // JANUS_GPU_PREFILL_ROWS (rows that take the GEMMs) and _MODE (auto, fused,
    // grouped, loop) are for tests and measurements.
    g->prefill_rows = getenv("JANUS_GPU_PREFILL_ROWS") ? atoi(getenv("JANUS_GPU_PREFILL_ROWS")) : 64;
    g->prefill_mode = JK_PREFILL_AUTO;
    if (getenv("JANUS_GPU_PREFILL_MODE")) {
        static const char *const modes[] = {"auto", "grouped", "loop", "fused"};
        int k = 0;
        while (k < 4 && strcmp(getenv("JANUS_GPU_PREFILL_MODE"), modes[k])) k++;
        if (k == 4) janus_die(NULL, "JANUS_GPU_PREFILL_MODE: \"%s\" is not auto, fused, grouped or loop", getenv("JANUS_GPU_PREFILL_MODE"));
        g->prefill_mode = k; // the JK_PREFILL_* values, in that order
    }
    if (g->prefill_rows > 0 && xr > 0) {
        g->pf_ws_bytes = jk_moe_prefill_ws_bytes((int)xr, H, c->moe_inter);
        g->pf_ws = janus_cuda_alloc(g->pf_ws_bytes);
    }
    const char *attn_kind = getenv("JANUS_GPU_ATTN");
    g->splitk = A && !(attn_kind && !strcmp(attn_kind, "plain"));
    // Prompt runs of 64 tokens or more: the prefill attention kernel (shorter
    // ones, and decode tokens: the per-token kernels). JANUS_GPU_ATTN_PREFILL_MIN
    // (0: never) is for tests and measurements.
    g->pf_attn_min = A && jk_attn_prefill_supported(c->n_heads, c->n_kv_heads, hd) ? 64 : 0;
    if (g->pf_attn_min && getenv("JANUS_GPU_ATTN_PREFILL_MIN")) g->pf_attn_min = atoi(getenv("JANUS_GPU_ATTN_PREFILL_MIN"));
    g->fuse_layers = !(getenv("JANUS_GPU_FUSE") && !strcmp(getenv("JANUS_GPU_FUSE"), "0"));
    g->xb_ready = -1;
    if (g->splitk) {
        int max_ctx = c->max_ctx;
        if ((int64_t)o->kv_blocks * o->block_size < max_ctx) max_ctx = o->kv_blocks * o->block_size;
        g->att_ws_bytes = jk_attention_ws_bytes((int)T, c->n_heads, c->n_kv_heads, hd, max_ctx);
        if (g->att_ws_bytes) g->att_ws = janus_cuda_alloc(g->att_ws_bytes);
    }
    g->profile = getenv("JANUS_GPU_PROFILE") && atoi(getenv("JANUS_GPU_PROFILE")) > 0;
    CK(cudaStreamSynchronize(g->st));
    g->o.expert_mask = NULL; // the caller's; not kept
    janus_cuda_alloc_hint = NULL;
    return g;
}

size_t janus_gpu_weight_bytes(const janus_gpu *g) { return g->weight_bytes; }

static const char *PHASES[8] = {"attn-proj", "attention", "router+sync", "experts", "combine+shared", "dense-ffn",
                                "lm_head", "other"};

// Profiling: phase p took the time since the last mark (only when profiling).
static void mark(janus_gpu *g, int p) {
    if (!g->profile) return;
    cudaStreamSynchronize(g->st);
    double now = janus_now_s();
    g->phase_s[p] += now - g->tp;
    g->tp = now;
}

void janus_gpu_profile_reset(janus_gpu *g) { memset(g->phase_s, 0, sizeof g->phase_s); }

void janus_gpu_free(janus_gpu *g) {
    if (!g) return;
    if (g->profile) {
        double tot = 0;
        for (int p = 0; p < 8; p++) tot += g->phase_s[p];
        for (int p = 0; p < 8; p++)
            fprintf(stderr, "janus: gpu profile: %-15s %9.3f s %5.1f%%\n", PHASES[p], g->phase_s[p], 100 * g->phase_s[p] / (tot > 0 ? tot : 1));
    }
    cudaStreamSynchronize(g->st);
    // Device memory goes with the context at exit; host staging here.
    if (g->mb)
        for (int i = 0; i < g->o.n_mb; i++) {
            free(g->mb[i].h_bt);
            if (g->mb[i].h_pft) cudaFreeHost(g->mb[i].h_pft);
        }
    free(g->mb);
    for (int l = 0; l < g->m->cfg.n_layers; l++) free(g->L[l].loc);
    free(g->h_topi), free(g->h_order), free(g->h_slot), free(g->h_seg), free(g->fill), free(g->lseg), free(g->L);
    free(g->h_topw);
    if (g->h_rows) cudaFreeHost(g->h_rows);
    if (g->h_y) cudaFreeHost(g->h_y);
    if (g->h_counts) cudaFreeHost(g->h_counts);
    for (int j = 0; j < GPU_GRAPHS; j++)
        if (g->gr[j].ex) cudaGraphExecDestroy(g->gr[j].ex);
    if (janus_verbosity >= 2 && g->n_captures) fprintf(stderr, "janus: gpu: %d decode-step graphs captured\n", g->n_captures);
    if (g->blas) cublasDestroy(g->blas);
    cudaStreamDestroy(g->st);
    free(g);
}

// y [T, N] = x [T, K] W^T (W: [N, K] bf16) through cuBLAS (x rounded to bf16,
// f32 accumulation); gated: W is [2N, K] (gate rows, then up rows) and
// y = silu(x Wg^T) * (x Wu^T). Row-major y [T, N] is column-major y^T [N, T]
// = W x^T, so: C (N x T) = op_T(W: K x N col-major) * (x: K x T col-major).
static void linear(janus_gpu *g, float *y, const float *x, const uint16_t *W, const uint16_t *b, int T, int N, int K,
                   int gated) {
    if (T <= 0) return;
    CK(jk_f32_to_bf16(g->xb, x, (size_t)T * K, g->st));
    const int rows = gated ? 2 * N : N;
    float *out = gated ? g->gu : y;
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, T, K, &one, W, CUDA_R_16BF, K, g->xb,
                                     CUDA_R_16BF, K, &zero, out, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS) janus_die(NULL, "cuBLAS: GemmEx failed (status %d) for [%d x %d] x [%d x %d]", (int)st, T, K, rows, K);
    if (gated) CK(jk_silu_mul_split(y, g->gu, T, N, g->st));
    if (b) CK(jk_add_bias(y, b, T, N, g->st));
}

// y [T, N] (= or +=, by beta 0 or 1) xb [T, K] W^T with xb already bf16 in g->xb.
static void linear_xb(janus_gpu *g, float *y, const uint16_t *W, int T, int N, int K, float beta) {
    if (T <= 0) return;
    const float one = 1.0f;
    cublasStatus_t st = cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &one, W, CUDA_R_16BF, K, g->xb,
                                     CUDA_R_16BF, K, &beta, y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS) janus_die(NULL, "cuBLAS: GemmEx failed (status %d) for [%d x %d] x [%d x %d]", (int)st, T, K, N, K);
}

size_t janus_gpu_dense_bytes(const janus_gpu *g) { return g->dense_bytes; }

// ---- the phases of one micro-batch ---------------------------------------------
// Token ids, positions and block tables up; embedding.
static void mb_begin(janus_gpu *g, int i, const janus_batch *b) {
    const janus_config *c = &g->m->cfg;
    gpu_mb *M = &g->mb[i];
    const int T = b->T;
    M->T = T;
    if (T > g->max_tokens) janus_die(NULL, "internal: %d tokens exceed the GPU engine's %d", T, g->max_tokens);
    if (T == 0) return;
    cudaStream_t st = g->st;
    // Block tables as one dense [T, max_blocks] array.
    int maxb = 1;
    for (int t = 0; t < T; t++) {
        int need = b->pos[t] / g->bs + 1;
        maxb = need > maxb ? need : maxb;
    }
    M->maxb = maxb;
    if ((size_t)T * maxb > (size_t)M->bt_cap) { // grows to the longest context seen, then stays
        M->bt_cap = T * maxb;
        free(M->h_bt);
        CK(cudaStreamSynchronize(st));
        if (M->bt) cudaFree(M->bt);
        for (int j = 0; j < GPU_GRAPHS; j++) // captured steps read the old block tables
            if (g->gr[j].ex) cudaGraphExecDestroy(g->gr[j].ex), g->gr[j].ex = NULL;
        M->h_bt = xmalloc(4 * (size_t)M->bt_cap);
        M->bt = janus_cuda_alloc(4 * (size_t)M->bt_cap);
    }
    for (int t = 0; t < T; t++) memcpy(M->h_bt + (size_t)t * maxb, b->bt[t], sizeof(int32_t) * (b->pos[t] / g->bs + 1));
    CK(cudaMemcpyAsync(M->bt, M->h_bt, 4 * (size_t)T * maxb, cudaMemcpyHostToDevice, st));
    CK(cudaMemcpyAsync(M->tok, b->tok, 4 * T, cudaMemcpyHostToDevice, st));
    CK(cudaMemcpyAsync(M->pos, b->pos, 4 * T, cudaMemcpyHostToDevice, st));
    // Prompt runs long enough for the prefill attention kernel, as tiles.
    M->pf_n = 0, M->n_dec = 1, M->dec[0] = 0, M->dec[1] = T;
    if (g->pf_attn_min > 0 && M->pft && T >= g->pf_attn_min) {
        M->pf_n = jk_attn_prefill_plan(M->h_pft, M->dec, &M->n_dec, b->pos, b->bt, T, c->n_heads, c->n_kv_heads,
                                       g->pf_attn_min);
        if (M->pf_n) CK(cudaMemcpyAsync(M->pft, M->h_pft, 16 * (size_t)M->pf_n, cudaMemcpyHostToDevice, st));
    }
    CK(jk_embed(M->x, g->embed, M->tok, T, c->hidden, st));
    mark(g, 7);
}

// x += attention(rmsnorm(x)); h = rmsnorm(x); then the dense FFN (dense
// layers) or the router's top-k (MoE layers).
static void mb_attention(janus_gpu *g, int l, int i) {
    const janus_config *c = &g->m->cfg;
    gpu_mb *M = &g->mb[i];
    const int T = M->T, H = c->hidden, hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads, E = c->n_experts,
              K = c->top_k;
    const int nq = nh * hd, kvd = nkv * hd;
    if (T == 0) return;
    cudaStream_t st = g->st;
    const gpu_layer *G = &g->L[l];
    uint16_t *kc = g->kc + (size_t)l * g->layer_kv, *vc = g->vc + (size_t)l * g->layer_kv;
    if (g->fused_qkv && H % 4 == 0) {
        // norm, one q|k|v projection, then bias, q/k norm, RoPE and the KV store in one kernel
        if (g->xb_ready != l) CK(jk_rmsnorm_rows(NULL, g->xb, M->x, G->attn_norm, T, H, c->rms_eps, st));
        g->xb_ready = -1;
        linear_xb(g, g->qkv, G->wq, T, nq + 2 * kvd, H, 0.0f);
        mark(g, 0);
        CK(jk_qkv_rope_store(g->q, kc, vc, g->qkv, G->bq, G->bk, G->bv,
                             c->desc->qk_norm == QK_NORM_HEAD ? G->q_norm : NULL,
                             c->desc->qk_norm == QK_NORM_HEAD ? G->k_norm : NULL, g->inv_freq, M->pos, M->bt, M->maxb,
                             T, nh, nkv, hd, g->bs, c->rms_eps, st));
    } else {
        CK(jk_rmsnorm(M->h, M->x, G->attn_norm, T, H, c->rms_eps, st));
        linear(g, g->q, M->h, G->wq, G->bq, T, nq, H, 0);
        linear(g, g->k, M->h, G->wk, G->bk, T, kvd, H, 0);
        linear(g, g->v, M->h, G->wv, G->bv, T, kvd, H, 0);
        if (c->desc->qk_norm == QK_NORM_HEAD) {
            CK(jk_rmsnorm(g->q, g->q, G->q_norm, T * nh, hd, c->rms_eps, st));
            CK(jk_rmsnorm(g->k, g->k, G->k_norm, T * nkv, hd, c->rms_eps, st));
        } else if (c->desc->qk_norm == QK_NORM_FULL) {
            CK(jk_rmsnorm(g->q, g->q, G->q_norm, T, nq, c->rms_eps, st));
            CK(jk_rmsnorm(g->k, g->k, G->k_norm, T, kvd, c->rms_eps, st));
        }
        mark(g, 0);
        CK(jk_rope(g->q, M->pos, g->inv_freq, T, nh, hd, st));
        CK(jk_rope(g->k, M->pos, g->inv_freq, T, nkv, hd, st));
        CK(jk_kv_store(kc, vc, g->k, g->v, M->bt, M->maxb, M->pos, T, kvd, g->bs, st));
    }
    // Split-K pays from a few hundred positions on (docs/gpu.md: at 64-128
    // its combine kernel costs more than it saves).
    // The split-K kernels write att's bf16 copy (the o-projection's input) too.
    // Prompt runs (tiles) take the prefill kernel, the other tokens (the plan's
    // ranges) the per-token ones; both write the bf16 copy where att_b says.
    const bool att_b = g->splitk && M->maxb * g->bs >= 256;
    for (int r = 0; r < M->n_dec; r++) {
        const int d0 = M->dec[2 * r], dn = M->dec[2 * r + 1] - d0;
        const size_t qo = (size_t)d0 * nq;
        if (dn > 0 && att_b)
            CK(jk_attention_splitk_with(JK_ATTN_AUTO, g->att + qo, g->xb + qo, g->q + qo, kc, vc, M->bt + (size_t)d0 * M->maxb,
                                        M->maxb, M->pos + d0, dn, nh, nkv, hd, g->bs, g->att_ws, g->att_ws_bytes, st));
        else if (dn > 0)
            CK(jk_attention(g->att + qo, g->q + qo, kc, vc, M->bt + (size_t)d0 * M->maxb, M->maxb, M->pos + d0, dn, nh,
                            nkv, hd, g->bs, st));
    }
    if (M->pf_n)
        CK(jk_attention_prefill(g->att, att_b ? g->xb : NULL, g->q, kc, vc, M->bt, M->maxb, M->pft, M->pf_n, nh, nkv, hd,
                                g->bs, st));
    mark(g, 1);
    // x += att Wo^T straight from cuBLAS (beta 1); then the FFN norm, in f32 for
    // the experts and in bf16 for the router / dense FFN projections
    if (H % 4 == 0) {
        if (!att_b) CK(jk_f32_to_bf16(g->xb, g->att, (size_t)T * nq, st));
        linear_xb(g, M->x, G->wo, T, H, nq, 1.0f);
        CK(jk_rmsnorm_rows(M->h, g->xb, M->x, G->ffn_norm, T, H, c->rms_eps, st));
    } else {
        CK(jk_f32_to_bf16(g->xb, g->att, (size_t)T * nq, st));
        linear_xb(g, M->x, G->wo, T, H, nq, 1.0f);
        CK(jk_rmsnorm(M->h, M->x, G->ffn_norm, T, H, c->rms_eps, st));
        CK(jk_f32_to_bf16(g->xb, M->h, (size_t)T * H, st));
    }
    if (!c->layer_moe[l]) {
        linear(g, g->act, M->h, G->mlp_gu, NULL, T, c->dense_inter, H, 1);
        linear(g, g->moe, g->act, G->mlp_down, NULL, T, H, c->dense_inter, 0);
        CK(jk_add(M->x, g->moe, (size_t)T * H, st));
        mark(g, 5);
        return;
    }
    mark(g, 0);
    linear_xb(g, g->rlog, G->router, T, E, H, 0.0f);
    if (G->router_bias) CK(jk_add_bias(g->rlog, G->router_bias, T, E, st));
    CK(jk_router_topk(M->topi, M->topw, g->rlog, T, E, K, c->norm_topk, st));
}

// Whether run_experts takes the prefill (tensor-core GEMM) path for an expert
// with max_rows rows.
static bool prefill_path(const janus_gpu *g, int max_rows) {
    return g->prefill_rows > 0 && max_rows >= g->prefill_rows && g->pf_ws;
}

// The experts this GPU holds over rows xs [R, H] (device) grouped by global
// expert (h_seg [E+1], host), into ys. xbs (or NULL): the rows in bf16 instead,
// for the prefill path only (prefill_path true).
static void run_experts(janus_gpu *g, int l, const int32_t *h_seg, int max_rows, const float *xs, const uint16_t *xbs,
                        float *ys) {
    const janus_config *c = &g->m->cfg;
    const gpu_layer *G = &g->L[l];
    const int E = c->n_experts;
    // Local segment offsets: rows of expert e lie in its global range, and the
    // held experts are in ascending order, so the ranges line up.
    int32_t *ls = g->lseg; // [n_loc + 1]
    ls[0] = 0;
    for (int e = 0; e < E; e++) {
        const int n = h_seg[e + 1] - h_seg[e];
        if (G->loc[e] < 0) {
            if (n) janus_die(NULL, "internal: %d rows for expert %d of layer %d, which this GPU does not hold", n, e, l);
            continue;
        }
        ls[G->loc[e] + 1] = h_seg[e + 1];
    }
    if (prefill_path(g, max_rows)) {
        jk_moe_prefill_args a = {xs, ls, G->w_gu, G->w_down, ys, G->n_loc, c->hidden, c->moe_inter,
                                 g->pf_ws, g->pf_ws_bytes, g->prefill_mode, xbs};
        int rc = jk_moe_ffn_prefill(&a, g->blas, g->st);
        if (rc >= JK_PREFILL_CUBLAS_ERR) janus_die(NULL, "cuBLAS: prefill expert GEMM failed (status %d)", rc - JK_PREFILL_CUBLAS_ERR);
        CK(rc);
        return;
    }
    if (!xs) janus_die(NULL, "internal: bf16 expert rows outside the prefill path");
    CK(cudaMemcpyAsync(g->seg, ls, 4 * (size_t)(G->n_loc + 1), cudaMemcpyHostToDevice, g->st));
    int active = 0;
    for (int e = 0; e < G->n_loc; e++) active += ls[e + 1] > ls[e];
    jk_moe_ffn_args a = {xs, g->seg, G->w_gu, G->w_down, g->act, ys, G->n_loc, c->hidden, c->moe_inter, max_rows, NULL, 0,
                         active};
    CK(jk_moe_ffn_decode(&a, g->st)); // no sync: a pageable H2D copy has read ls when it returns
}

// All experts local: group the pairs by expert on the device (decode-sized
// steps: no host round trip at all; larger ones: only the segment offsets come
// back; JANUS_GPU_GROUP=host: on the host, as the exchange does across ranks),
// run them, leave outputs in ys with slot[pair] its row.
static void mb_experts_local(janus_gpu *g, int l, int i, int64_t *expert_counts) {
    const janus_config *c = &g->m->cfg;
    gpu_mb *M = &g->mb[i];
    const int T = M->T, E = c->n_experts, K = c->top_k, P = T * K;
    cudaStream_t st = g->st;
    const int vrows = janus_ffn_variant_rows(P, T, E, -1);
    if (vrows >= 0 && g->L[l].n_loc == E && g->d_counts) {
        // Decode-sized: grouped on the device, no host round trip (the pair
        // counts land in d_counts, read back once per step).
        CK(jk_group_pairs(M->topi, P, E, g->seg, g->order, g->slot, g->d_counts + (size_t)l * E, st));
        g->counts_pending = true;
        mark(g, 2);
        // the FFN reads each grouped row straight from h (row order[r] / K): no gather
        const gpu_layer *G = &g->L[l];
        jk_moe_ffn_args a = {M->h, g->seg, G->w_gu, G->w_down, g->act, g->ys, E, c->hidden, c->moe_inter, vrows,
                             g->order, K, P};
        CK(jk_moe_ffn_decode(&a, st));
        mark(g, 3);
        return;
    }
    int maxr = 0;
    if (g->grp_ws && g->L[l].n_loc == E) {
        // Prompt-sized: grouped on the device too; only the segment offsets
        // come back (E + 1 ints), for the GEMMs' shapes and the statistics.
        CK(jk_group_pairs_large(M->topi, P, E, g->seg, g->order, g->slot, NULL, g->grp_ws, g->grp_ws_bytes, st));
        CK(cudaMemcpyAsync(g->h_seg, g->seg, 4 * (size_t)(E + 1), cudaMemcpyDeviceToHost, st));
        CK(cudaStreamSynchronize(st));
        for (int e = 0; e < E; e++) {
            const int n = g->h_seg[e + 1] - g->h_seg[e];
            maxr = n > maxr ? n : maxr;
            expert_counts[(size_t)l * E + e] += n;
        }
    } else {
        CK(cudaMemcpyAsync(g->h_topi, M->topi, 4 * (size_t)P, cudaMemcpyDeviceToHost, st));
        CK(cudaStreamSynchronize(st));
        memset(g->h_seg, 0, 4 * (E + 1));
        for (int p = 0; p < P; p++) g->h_seg[g->h_topi[p] + 1]++;
        for (int e = 0; e < E; e++) {
            maxr = g->h_seg[e + 1] > maxr ? g->h_seg[e + 1] : maxr;
            expert_counts[(size_t)l * E + e] += g->h_seg[e + 1];
            g->h_seg[e + 1] += g->h_seg[e];
        }
        int *fill = g->fill;
        memcpy(fill, g->h_seg, sizeof(int) * (E + 1));
        for (int p = 0; p < P; p++) {
            int at = fill[g->h_topi[p]]++;
            g->h_order[at] = p;
            g->h_slot[p] = at;
        }
        CK(cudaMemcpyAsync(g->order, g->h_order, 4 * (size_t)P, cudaMemcpyHostToDevice, st));
        CK(cudaMemcpyAsync(g->slot, g->h_slot, 4 * (size_t)P, cudaMemcpyHostToDevice, st));
    }
    mark(g, 2);
    const int vr = janus_ffn_variant_rows(P, T, E, maxr);
    if (prefill_path(g, vr)) { // the GEMMs read bf16: round in the gather (half the bytes written and read)
        CK(jk_gather_rows_bf16((uint16_t *)g->xs, M->h, g->order, K, P, c->hidden, st));
        run_experts(g, l, g->h_seg, vr, NULL, (const uint16_t *)g->xs, g->ys);
    } else {
        CK(jk_gather_rows(g->xs, M->h, g->order, K, P, c->hidden, st));
        run_experts(g, l, g->h_seg, vr, g->xs, NULL, g->ys);
    }
    mark(g, 3);
}

// x += combine(y rows by slot) (+ sigmoid-gated shared expert). lead (NULL:
// every pair, weighted): only the rows of pairs with lead != 0, unweighted
// (the exchange's sums per MoE rank). norm_next (layer l + 1's input norm, or
// NULL): also write its bf16 output into xb where the fused kernel can (then
// xb_ready says so).
static void mb_combine(janus_gpu *g, int l, int i, const float *y, const int32_t *slot, const int32_t *lead,
                       const uint16_t *norm_next) {
    const janus_config *c = &g->m->cfg;
    gpu_mb *M = &g->mb[i];
    const gpu_layer *G = &g->L[l];
    const int T = M->T, H = c->hidden, K = c->top_k;
    if (T == 0) return;
    cudaStream_t st = g->st;
    if (!G->sh_gu && H % 4 == 0 && norm_next && H <= 4096) { // x += combine, then the next layer's norm, one kernel
        CK(jk_combine_add_norm(M->x, g->xb, y, slot, M->topi, M->topw, lead, T, K, H, norm_next, c->rms_eps, st));
        g->xb_ready = l + 1;
        mark(g, 4);
        return;
    }
    if (!G->sh_gu && H % 4 == 0) { // x += combine, one kernel
        CK(jk_combine_add(M->x, y, slot, M->topi, M->topw, lead, T, K, H, st));
        mark(g, 4);
        return;
    }
    CK(jk_combine(g->moe, y, slot, M->topi, M->topw, lead, T, K, H, st));
    if (G->sh_gu) {
        linear(g, g->act, M->h, G->sh_gu, NULL, T, c->shared_inter, H, 1);
        linear(g, g->sh, g->act, G->sh_down, NULL, T, H, c->shared_inter, 0);
        linear(g, g->shg, M->h, G->sh_gw, NULL, T, 1, H, 0);
        CK(jk_sigmoid_scale_add(g->moe, g->sh, g->shg, T, H, st));
    }
    CK(jk_add(M->x, g->moe, (size_t)T * H, st));
    mark(g, 4);
}

// Final norm and lm_head on the wanted rows; logits or the greedy choice back.
static void mb_end(janus_gpu *g, int i, const janus_batch *b, float *logits, int32_t *greedy_tok, float *greedy_lp) {
    const janus_config *c = &g->m->cfg;
    gpu_mb *M = &g->mb[i];
    const int H = c->hidden;
    cudaStream_t st = g->st;
    if (M->T > 0 && b->n_out > 0) {
        if (b->n_out > g->max_out) janus_die(NULL, "internal: %d output rows in a step, the GPU holds logits for %d", b->n_out, g->max_out);
        CK(cudaMemcpyAsync(M->rows, b->out_rows, 4 * (size_t)b->n_out, cudaMemcpyHostToDevice, st));
        CK(jk_gather_rows(M->h, M->x, M->rows, 1, b->n_out, H, st));
        CK(jk_rmsnorm(M->h, M->h, g->final_norm, b->n_out, H, c->rms_eps, st));
        linear(g, g->logits, M->h, g->lm_head, NULL, b->n_out, c->vocab, H, 0);
        if (b->samp) { // sampled on the device: the logits stay here
            CK(cudaMemcpyAsync(g->d_samp, b->samp, sizeof(jk_sample_params) * b->n_out, cudaMemcpyHostToDevice, st));
            CK(jk_sample(g->gtok, g->glp, g->logits, g->d_samp, b->n_out, c->vocab, st));
            CK(cudaMemcpyAsync(b->chosen, g->gtok, 4 * (size_t)b->n_out, cudaMemcpyDeviceToHost, st));
            CK(cudaMemcpyAsync(b->chosen_lp, g->glp, 4 * (size_t)b->n_out, cudaMemcpyDeviceToHost, st));
        } else if (logits) {
            CK(cudaMemcpyAsync(logits, g->logits, 4 * (size_t)b->n_out * c->vocab, cudaMemcpyDeviceToHost, st));
        } else {
            CK(jk_argmax_rows(g->gtok, g->glp, g->logits, b->n_out, c->vocab, st));
            CK(cudaMemcpyAsync(greedy_tok, g->gtok, 4 * (size_t)b->n_out, cudaMemcpyDeviceToHost, st));
            CK(cudaMemcpyAsync(greedy_lp, g->glp, 4 * (size_t)b->n_out, cudaMemcpyDeviceToHost, st));
        }
    }
    CK(cudaStreamSynchronize(st));
    mark(g, 6);
}

// Every layer of micro-batch 0 with all experts local.
static void forward_layers(janus_gpu *g, int64_t *expert_counts) {
    const janus_config *c = &g->m->cfg;
    const int H = c->hidden;
    g->xb_ready = -1;
    for (int l = 0; l < c->n_layers; l++) {
        mb_attention(g, l, 0);
        if (!c->layer_moe[l]) continue;
        mb_experts_local(g, l, 0, expert_counts);
        const bool next_fused = l + 1 < c->n_layers && g->fused_qkv && H % 4 == 0;
        mb_combine(g, l, 0, g->ys, g->slot, NULL, g->fuse_layers && next_fused ? g->L[l + 1].attn_norm : NULL);
    }
    g->xb_ready = -1;
}

void janus_gpu_forward(janus_gpu *g, const janus_batch *b, float *logits, int32_t *greedy_tok, float *greedy_lp,
                       int64_t *expert_counts, janus_fwd_times *tm) {
    const janus_config *c = &g->m->cfg;
    if (b->T == 0) return;
    double t0 = janus_now_s();
    g->tp = t0;
    mb_begin(g, 0, b);
    // Decode steps grouped on the device have no host work between the
    // layers: they run as a CUDA graph, captured the second time a (tokens,
    // block-table width) pair comes in a row and replayed while it lasts.
    const gpu_mb *M = &g->mb[0];
    const bool graphable = g->graphs && !g->profile && g->d_counts && M->pf_n == 0 && // (tiles: a launch shape per step)
                           janus_ffn_variant_rows((int64_t)M->T * c->top_k, M->T, c->n_experts, -1) >= 0;
    cudaGraphExec_t ex = NULL;
    if (graphable) {
        for (int j = 0; j < GPU_GRAPHS; j++)
            if (g->gr[j].ex && g->gr[j].T == M->T && g->gr[j].maxb == M->maxb) ex = g->gr[j].ex, g->gr[j].used = ++g->gr_clock;
        if (!ex && g->last_T == M->T && g->last_maxb == M->maxb) {
            int j = 0; // the least recently used slot
            for (int i = 1; i < GPU_GRAPHS; i++)
                if (g->gr[i].used < g->gr[j].used) j = i;
            if (g->gr[j].ex) cudaGraphExecDestroy(g->gr[j].ex), g->gr[j].ex = NULL;
            cudaGraph_t gr;
            CK(cudaStreamBeginCapture(g->st, cudaStreamCaptureModeThreadLocal));
            forward_layers(g, expert_counts);
            CK(cudaStreamEndCapture(g->st, &gr));
            CK(cudaGraphInstantiate(&ex, gr, 0));
            cudaGraphDestroy(gr);
            g->gr[j] = (gpu_graph){.T = M->T, .maxb = M->maxb, .ex = ex, .used = ++g->gr_clock};
            g->n_captures++;
        }
        g->last_T = M->T, g->last_maxb = M->maxb;
    }
    if (ex) {
        CK(cudaGraphLaunch(ex, g->st));
        g->counts_pending = janus_n_moe_layers(c) > 0;
    } else {
        forward_layers(g, expert_counts);
    }
    const size_t LE = (size_t)c->n_layers * c->n_experts;
    if (g->counts_pending) { // the device-grouped layers' pair counts, read back with the step's result
        CK(cudaMemcpyAsync(g->h_counts, g->d_counts, sizeof(unsigned long long) * LE, cudaMemcpyDeviceToHost, g->st));
        CK(cudaMemsetAsync(g->d_counts, 0, sizeof(unsigned long long) * LE, g->st));
    }
    mb_end(g, 0, b, logits, greedy_tok, greedy_lp); // ends with a stream synchronisation
    if (g->counts_pending) {
        for (size_t j = 0; j < LE; j++) expert_counts[j] += (int64_t)g->h_counts[j];
        g->counts_pending = false;
    }
    if (tm) tm->attn_s += janus_now_s() - t0; // one figure for the whole GPU step
}

void janus_gpu_serve_experts(void *gpu, int l, const int32_t *seg, int max_rows, const float *xs, float *ys, int R) {
    janus_gpu *g = gpu;
    const int H = g->m->cfg.hidden;
    if (R <= 0) return;
    if (R > g->xs_rows)
        janus_die(NULL, "internal: %d expert rows exceed the GPU's %d (max_expert_rows)", R, g->xs_rows);
    CK(cudaMemcpyAsync(g->xs, xs, 4 * (size_t)R * H, cudaMemcpyHostToDevice, g->st));
    run_experts(g, l, seg, max_rows, g->xs, NULL, g->ys);
    CK(cudaMemcpyAsync(ys, g->ys, 4 * (size_t)R * H, cudaMemcpyDeviceToHost, g->st));
    CK(cudaStreamSynchronize(g->st));
}

void janus_gpu_serve_experts_sums(void *gpu, int l, const int32_t *seg, int max_rows, const float *in, const int32_t *tok0,
                                  const int32_t *n_tok, int n_reg, const int32_t *src_row, int R, const int32_t *off,
                                  const int32_t *gi, const float *w, int n_out, float *out) {
    janus_gpu *g = gpu;
    const int H = g->m->cfg.hidden;
    if (R <= 0) return;
    if (!g->d_srow) janus_die(NULL, "internal: the host payload's sums on a GPU without an expert role");
    if (R > g->xs_rows) janus_die(NULL, "internal: %d expert rows exceed the GPU's %d (max_expert_rows)", R, g->xs_rows);
    size_t packed = 0;
    for (int r = 0; r < n_reg; r++) packed += (size_t)n_tok[r];
    if (packed > (size_t)R || n_out > R) janus_die(NULL, "internal: %zu token rows, %d sums for %d pairs", packed, n_out, R);
    // The token rows up (ys is free until the experts run), each grouped
    // row gathered from them into xs, the experts, their sums into xs, down.
    size_t at = 0;
    for (int r = 0; r < n_reg; r++) {
        if (n_tok[r])
            CK(cudaMemcpyAsync(g->ys + at * H, in + (size_t)tok0[r] * H, 4 * (size_t)n_tok[r] * H, cudaMemcpyHostToDevice,
                               g->st));
        at += (size_t)n_tok[r];
    }
    CK(cudaMemcpyAsync(g->d_srow, src_row, 4 * (size_t)R, cudaMemcpyHostToDevice, g->st));
    CK(cudaMemcpyAsync(g->d_soff, off, 4 * (size_t)(n_out + 1), cudaMemcpyHostToDevice, g->st));
    CK(cudaMemcpyAsync(g->d_sgi, gi, 4 * (size_t)R, cudaMemcpyHostToDevice, g->st));
    CK(cudaMemcpyAsync(g->d_sw, w, 4 * (size_t)R, cudaMemcpyHostToDevice, g->st));
    CK(jk_xchg_gather_rows_via(g->xs, g->ys, NULL, g->d_srow, NULL, R, H, g->st));
    run_experts(g, l, seg, max_rows, g->xs, NULL, g->ys);
    CK(jk_xchg_sum_rows(g->xs, g->ys, g->d_soff, g->d_sgi, g->d_sw, n_out, H, g->st));
    CK(cudaMemcpyAsync(out, g->xs, 4 * (size_t)n_out * H, cudaMemcpyDeviceToHost, g->st));
    CK(cudaStreamSynchronize(g->st));
}

void janus_gpu_serve_experts_dev(void *gpu, int l, const int32_t *seg, int max_rows, const float *d_xs, float *d_ys,
                                 int R) {
    janus_gpu *g = gpu;
    if (R <= 0) return;
    if (R > g->xs_rows) janus_die(NULL, "internal: %d expert rows exceed the GPU's %d (max_expert_rows)", R, g->xs_rows);
    run_experts(g, l, seg, max_rows, d_xs, NULL, d_ys);
}

void janus_gpu_serve_experts_devseg(void *gpu, int l, const int32_t *d_lseg, int max_rows, const float *d_xs,
                                    float *d_ys) {
    janus_gpu *g = gpu;
    const janus_config *c = &g->m->cfg;
    const gpu_layer *G = &g->L[l];
    if (max_rows <= 0 || G->n_loc <= 0) return;
    jk_moe_ffn_args a = {d_xs, d_lseg, G->w_gu, G->w_down, g->act, d_ys, G->n_loc, c->hidden, c->moe_inter, max_rows, NULL, 0,
                         0};
    CK(jk_moe_ffn_decode(&a, g->st));
}

const int32_t *janus_gpu_local_experts(const janus_gpu *g, int l, int *n_loc) {
    *n_loc = g->L[l].n_loc;
    return g->L[l].loc;
}

void *janus_gpu_stream(janus_gpu *g) { return g->st; }

void janus_gpu_step(janus_gpu *g, janus_engine *en, const janus_batch *b, float *const *logits) {
    const janus_config *c = &g->m->cfg;
    const int n_mb = en->n_mb, H = c->hidden, K = c->top_k, E = c->n_experts;
    janus_xchg *xc = en->xc;
    cudaStream_t st = g->st;
    double t0 = janus_now_s();
    g->tp = t0;
    for (int i = 0; i < n_mb; i++) mb_begin(g, i, &b[i]);
    for (int l = 0; l < c->n_layers; l++) {
        double tl = janus_now_s();
        if (!c->layer_moe[l]) {
            for (int i = 0; i < n_mb; i++) mb_attention(g, l, i);
            if (janus_verbosity >= 2) CK(cudaStreamSynchronize(st)); // the per-layer breakdown of --verbose
            en->layer_attn_s[l] += janus_now_s() - tl;
            continue;
        }
        // Micro-batch i's rows leave for the MoE pool as soon as its router
        // has run; the GPU goes on with micro-batch i+1's attention meanwhile.
        for (int i = 0; i < n_mb; i++) {
            gpu_mb *M = &g->mb[i];
            const int T = M->T;
            double ta = janus_now_s();
            if (T) {
                mb_attention(g, l, i);
                if (!janus_xchg_on_device(xc)) { // host-staged payload: the rows (and weights) go through host memory
                    CK(cudaMemcpyAsync(g->h_rows, M->h, 4 * (size_t)T * H, cudaMemcpyDeviceToHost, st));
                    CK(cudaMemcpyAsync(g->h_topw, M->topw, 4 * (size_t)T * K, cudaMemcpyDeviceToHost, st));
                }
                CK(cudaMemcpyAsync(g->h_topi, M->topi, 4 * (size_t)T * K, cudaMemcpyDeviceToHost, st));
                CK(cudaStreamSynchronize(st));
                int64_t *cnt = en->expert_counts + (size_t)l * E;
                for (int p = 0; p < T * K; p++) cnt[g->h_topi[p]]++;
            }
            double tb = janus_now_s();
            en->times.attn_s += tb - ta;
            janus_xchg_dispatch(xc, l, i, janus_xchg_on_device(xc) ? M->h : g->h_rows, g->h_topi,
                                janus_xchg_on_device(xc) ? M->topw : g->h_topw, T);
            janus_xchg_serve(xc, l, i); // monolithic ranks serve their experts too
            en->times.experts_s += janus_now_s() - tb;
        }
        for (int i = 0; i < n_mb; i++) janus_xchg_relay_back(xc, l, i);
        for (int i = 0; i < n_mb; i++) {
            gpu_mb *M = &g->mb[i];
            double ta = janus_now_s();
            janus_xchg_collect(xc, i, janus_xchg_on_device(xc) ? g->ys : g->h_y);
            double tb = janus_now_s();
            if (M->T) {
                const float *y = g->ys;
                const int32_t *slot = g->ident, *lead = NULL;
                if (janus_xchg_on_device(xc)) {
                    janus_xchg_sums(xc, i, &y, &slot, &lead); // outputs summed per (token, MoE rank): read in place
                } else {
                    const float *hy;
                    const int32_t *hs, *hl;
                    if (janus_xchg_sums(xc, i, &hy, &hs, &hl)) { // host payload summed on the MoE ranks
                        const size_t B = (size_t)janus_xchg_host_rows_back(xc, i), P = (size_t)M->T * K;
                        CK(cudaMemcpyAsync(g->ys, hy, 4 * B * H, cudaMemcpyHostToDevice, st));
                        CK(cudaMemcpyAsync(g->d_hslot, hs, 4 * P, cudaMemcpyHostToDevice, st));
                        CK(cudaMemcpyAsync(g->d_hlead, hl, 4 * P, cudaMemcpyHostToDevice, st));
                        slot = g->d_hslot, lead = g->d_hlead;
                    } else {
                        CK(cudaMemcpyAsync(g->ys, g->h_y, 4 * (size_t)M->T * K * H, cudaMemcpyHostToDevice, st));
                    }
                }
                mb_combine(g, l, i, y, slot, lead, NULL);
                if (!janus_xchg_on_device(xc)) CK(cudaStreamSynchronize(st)); // h_y is reused by the next micro-batch
            }
            en->times.experts_s += tb - ta;
            en->times.combine_s += janus_now_s() - tb;
        }
        janus_xchg_finish_layer(xc);
        en->layer_ffn_s[l] += janus_now_s() - tl;
    }
    double te = janus_now_s();
    for (int i = 0; i < n_mb; i++) mb_end(g, i, &b[i], logits ? logits[i] : NULL, NULL, NULL);
    en->times.lm_head_s += janus_now_s() - te;
}
