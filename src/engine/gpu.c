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

#include "layers.h"
#include "moe_ffn.h"
#include "util.h"
#include <math.h>

#define CK(x)                                                                                         \
    do {                                                                                              \
        int rc_ = (int)(x);                                                                           \
        if (rc_) janus_die(NULL, "CUDA: %s: error %d (%s)", #x, rc_, cudaGetErrorString((cudaError_t)rc_)); \
    } while (0)

typedef struct {
    uint16_t *attn_norm, *ffn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *q_norm, *k_norm;
    uint16_t *router, *w_gu, *w_down;   // routed experts [E, 2I, H], [E, H, I]
    uint16_t *sh_gu, *sh_down, *sh_gw;  // shared expert [2Is, H], [H, Is], gate [1, H]
    uint16_t *mlp_gu, *mlp_down;        // dense layer [2Id, H], [H, Id]
    uint16_t *router_bias;              // synthetic router skew [E], or NULL
} gpu_layer;

struct janus_gpu {
    const janus_model *m;
    cudaStream_t st;
    uint16_t *embed, *final_norm, *lm_head;
    gpu_layer *L;
    float *inv_freq;
    uint16_t *kc, *vc;
    int kv_blocks, bs, max_tokens, max_bt;
    size_t layer_kv; // elements of one layer's K (or V) cache
    float *x, *h, *q, *k, *v, *att, *rlog, *topw, *xs, *ys, *act, *moe, *sh, *shg, *logits;
    int32_t *topi, *tok, *pos, *bt, *order, *slot, *seg, *seg1, *rows;
    int32_t *h_topi, *h_order, *h_slot, *h_seg, *h_bt;
    int *fill;
    int seg_T;       // the step's token count, as uploaded in seg1
    bool synth;      // synthetic weights
    uint64_t seed;
    size_t dense_bytes;
    int32_t *gtok;
    float *glp;
    cublasHandle_t blas;     // dense projections (bf16 x bf16 -> f32)
    uint16_t *xb;            // [max_tokens, max K] activations in bf16 for cuBLAS
    float *gu;               // [max_tokens, 2 * max inter] gate/up before SwiGLU
    bool profile;            // JANUS_GPU_PROFILE=1: synchronise after each phase and time it
    double phase_s[8];
    int32_t h_seg1[4];
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

static void *dalloc(size_t bytes) {
    void *p;
    CK(cudaMalloc(&p, bytes ? bytes : 4));
    return p;
}

// A [rows, cols] weight: uploaded from the checkpoint, or synthetic (uniform,
// variance scale^2, deterministic in the seed). rows == 0: absent.
static uint16_t *weight(janus_gpu *g, const janus_w *w, int64_t rows, int64_t cols, float scale) {
    if (!g->synth) return upload(w);
    if (rows <= 0) return NULL;
    uint16_t *d = dalloc((size_t)rows * cols * 2);
    CK(jk_fill_bf16(d, (size_t)rows * cols, g->seed++, scale, g->st));
    return d;
}
static uint16_t *weight_cat(janus_gpu *g, const janus_w *a, const janus_w *b, int64_t rows, int64_t cols, float scale) {
    if (!g->synth) return upload_cat(a, b);
    return weight(g, NULL, 2 * rows, cols, scale);
}

janus_gpu *janus_gpu_init(const janus_model *m, int device, int max_tokens, int kv_blocks, int block_size,
                          uint64_t seed, double zipf) {
    const janus_config *c = &m->cfg;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) janus_die(NULL, "--backend cuda: no CUDA device visible");
    CK(cudaSetDevice(device % ndev));
    janus_gpu *g = xcalloc(1, sizeof *g);
    g->m = m;
    g->synth = m->embed.p == NULL;
    g->seed = seed;
    CK(cudaStreamCreate(&g->st));
    if (c->hidden % 8 || c->moe_inter % 8 || (c->dense_inter && c->dense_inter % 8) || (c->shared_inter % 8))
        janus_die(c->dir, "--backend cuda needs hidden and intermediate sizes that are multiples of 8");
    if (c->n_experts > 256 || c->top_k > 16 || c->head_dim > 256)
        janus_die(c->dir, "--backend cuda supports up to 256 experts, top-16 and head_dim 256");
    const int E = c->n_experts, H = c->hidden, I = c->moe_inter, hd = c->head_dim;
    const int nq = c->n_heads * hd, nkv = c->n_kv_heads * hd;
    const float sH = 1.0f / sqrtf((float)H);
    g->embed = weight(g, &m->embed, c->vocab, H, 1.0f);
    g->final_norm = weight(g, &m->final_norm, 1, H, 1.0f);
    g->lm_head = c->tie_embed ? g->embed : weight(g, &m->lm_head, c->vocab, H, sH);
    g->dense_bytes = (c->tie_embed ? 0 : (size_t)c->vocab * H * 2) + (size_t)H * 2;
    g->L = xcalloc(c->n_layers, sizeof(gpu_layer));
    for (int l = 0; l < c->n_layers; l++) {
        const janus_layer *L = &m->layers[l];
        gpu_layer *G = &g->L[l];
        G->attn_norm = weight(g, &L->attn_norm, 1, H, 1.0f), G->ffn_norm = weight(g, &L->ffn_norm, 1, H, 1.0f);
        G->wq = weight(g, &L->wq, nq, H, sH), G->wk = weight(g, &L->wk, nkv, H, sH);
        G->wv = weight(g, &L->wv, nkv, H, sH), G->wo = weight(g, &L->wo, H, nq, 1.0f / sqrtf((float)nq));
        if (!g->synth) G->bq = upload(&L->bq), G->bk = upload(&L->bk), G->bv = upload(&L->bv);
        if (c->desc->qk_norm != QK_NORM_NONE) {
            int qn = c->desc->qk_norm == QK_NORM_HEAD ? hd : nq, kn = c->desc->qk_norm == QK_NORM_HEAD ? hd : nkv;
            G->q_norm = weight(g, &L->q_norm, 1, qn, 1.0f), G->k_norm = weight(g, &L->k_norm, 1, kn, 1.0f);
        }
        g->dense_bytes += ((size_t)2 * nq * H + (size_t)2 * nkv * H + 2 * (size_t)H) * 2;
        if (c->layer_moe[l]) {
            G->router = weight(g, &L->router, E, H, sH);
            g->dense_bytes += (size_t)E * H * 2;
            if (g->synth) {
                G->w_gu = weight(g, NULL, (int64_t)E * 2 * I, H, sH);
                G->w_down = weight(g, NULL, (int64_t)E * H, I, 1.0f / sqrtf((float)I));
                if (zipf > 0) { // popularity rank of expert e: (e * 37) mod E
                    uint16_t *hb = xmalloc(2 * E);
                    for (int e = 0; e < E; e++) hb[e] = f32_to_bf16((float)(-zipf * log(1.0 + (double)((e * 37) % E))));
                    G->router_bias = dalloc(2 * E);
                    CK(cudaMemcpy(G->router_bias, hb, 2 * E, cudaMemcpyHostToDevice));
                    free(hb);
                }
            } else {
                G->w_gu = dalloc((size_t)E * 2 * I * H * 2);
                G->w_down = dalloc((size_t)E * H * I * 2);
                for (int e = 0; e < E; e++) {
                    uint16_t *gu = upload_cat(&L->gate[e], &L->up[e]), *dn = upload(&L->down[e]);
                    CK(cudaMemcpy(G->w_gu + (size_t)e * 2 * I * H, gu, (size_t)2 * I * H * 2, cudaMemcpyDeviceToDevice));
                    CK(cudaMemcpy(G->w_down + (size_t)e * H * I, dn, (size_t)H * I * 2, cudaMemcpyDeviceToDevice));
                    cudaFree(gu);
                    cudaFree(dn);
                }
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
    float *inv = xmalloc(sizeof(float) * c->head_dim / 2);
    cpu_rope_inv_freq(inv, c->head_dim, c->rope_theta);
    g->inv_freq = dalloc(sizeof(float) * c->head_dim / 2);
    CK(cudaMemcpy(g->inv_freq, inv, sizeof(float) * c->head_dim / 2, cudaMemcpyHostToDevice));
    free(inv);
    const size_t kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    g->kv_blocks = kv_blocks, g->bs = block_size, g->max_tokens = max_tokens;
    g->layer_kv = (size_t)kv_blocks * block_size * kv_dim;
    g->kc = dalloc(2 * g->layer_kv * c->n_layers);
    g->vc = dalloc(2 * g->layer_kv * c->n_layers);
    const size_t T = max_tokens, K = c->top_k;
    int inter = c->moe_inter;
    if (c->dense_inter > inter) inter = c->dense_inter;
    if (c->shared_inter > inter) inter = c->shared_inter;
    g->x = dalloc(4 * T * H), g->h = dalloc(4 * T * H), g->q = dalloc(4 * T * nq), g->k = dalloc(4 * T * kv_dim);
    g->v = dalloc(4 * T * kv_dim), g->att = dalloc(4 * T * nq), g->rlog = dalloc(4 * T * E), g->topw = dalloc(4 * T * K);
    g->xs = dalloc(4 * T * K * H), g->ys = dalloc(4 * T * K * H), g->act = dalloc(4 * T * K * inter);
    g->moe = dalloc(4 * T * H), g->sh = dalloc(4 * T * H), g->shg = dalloc(4 * T);
    g->logits = dalloc(4 * T * (size_t)c->vocab);
    g->topi = dalloc(4 * T * K), g->tok = dalloc(4 * T), g->pos = dalloc(4 * T), g->order = dalloc(4 * T * K);
    g->slot = dalloc(4 * T * K), g->seg = dalloc(4 * (E + 1)), g->seg1 = dalloc(16), g->rows = dalloc(4 * T);
    g->max_bt = 0;
    g->h_topi = xmalloc(4 * T * K), g->h_order = xmalloc(4 * T * K), g->h_slot = xmalloc(4 * T * K);
    g->h_seg = xmalloc(4 * (E + 1));
    g->fill = xmalloc(sizeof(int) * (E + 1));
    g->gtok = dalloc(4 * T), g->glp = dalloc(4 * T);
    int maxk = H > (int)nq ? H : (int)nq;
    if (inter > maxk) maxk = inter;
    g->xb = dalloc(2 * T * (size_t)maxk);
    g->gu = dalloc(4 * T * 2 * (size_t)inter);
    if (cublasCreate(&g->blas) != CUBLAS_STATUS_SUCCESS) janus_die(NULL, "cuBLAS: cannot create a handle");
    cublasSetStream(g->blas, g->st);
    g->profile = getenv("JANUS_GPU_PROFILE") && atoi(getenv("JANUS_GPU_PROFILE")) > 0;
    CK(cudaStreamSynchronize(g->st));
    return g;
}

static const char *PHASES[8] = {"attn-proj", "attention", "router+sync", "experts", "combine+shared", "dense-ffn",
                                "lm_head", "other"};

// Profiling: phase p took the time since the last mark (only when profiling).
static void mark(janus_gpu *g, int p, double *t) {
    if (!g->profile) return;
    cudaStreamSynchronize(g->st);
    double now = janus_now_s();
    g->phase_s[p] += now - *t;
    *t = now;
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
    free(g->h_topi), free(g->h_order), free(g->h_slot), free(g->h_seg), free(g->h_bt), free(g->fill), free(g->L);
    cublasDestroy(g->blas);
    cudaStreamDestroy(g->st);
    free(g);
}

// y [T, N] = x [T, K] W^T (W: [N, K] bf16), through the grouped GEMV with one
// group of T rows; gated: W is [2N, K] and y = silu(gate) * up.
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

size_t janus_gpu_dense_bytes(const janus_gpu *g) { return g->dense_bytes; }

void janus_gpu_forward(janus_gpu *g, const janus_batch *b, float *logits, int32_t *greedy_tok, float *greedy_lp,
                       int64_t *expert_counts, janus_fwd_times *tm) {
    const janus_model *m = g->m;
    const janus_config *c = &m->cfg;
    const int T = b->T, H = c->hidden, hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads, E = c->n_experts,
              K = c->top_k, I = c->moe_inter;
    const int nq = nh * hd, kvd = nkv * hd;
    if (T > g->max_tokens) janus_die(NULL, "internal: %d tokens exceed the GPU engine's %d", T, g->max_tokens);
    if (T == 0) return;
    cudaStream_t st = g->st;
    double t0 = janus_now_s();
    // Block tables as one dense [T, max_blocks] array.
    int maxb = 1;
    for (int t = 0; t < T; t++) {
        int need = b->pos[t] / g->bs + 1;
        maxb = need > maxb ? need : maxb;
    }
    if ((size_t)T * maxb > (size_t)g->max_bt) {
        g->max_bt = T * maxb;
        free(g->h_bt);
        g->h_bt = xmalloc(4 * (size_t)g->max_bt);
        if (g->bt) cudaFree(g->bt);
        g->bt = dalloc(4 * (size_t)g->max_bt);
    }
    for (int t = 0; t < T; t++) memcpy(g->h_bt + (size_t)t * maxb, b->bt[t], sizeof(int32_t) * (b->pos[t] / g->bs + 1));
    CK(cudaMemcpyAsync(g->bt, g->h_bt, 4 * (size_t)T * maxb, cudaMemcpyHostToDevice, st));
    CK(cudaMemcpyAsync(g->tok, b->tok, 4 * T, cudaMemcpyHostToDevice, st));
    CK(cudaMemcpyAsync(g->pos, b->pos, 4 * T, cudaMemcpyHostToDevice, st));
    g->seg_T = T;
    g->h_seg1[0] = 0, g->h_seg1[1] = T, g->h_seg1[2] = 0, g->h_seg1[3] = b->n_out;
    CK(cudaMemcpyAsync(g->seg1, g->h_seg1, sizeof g->h_seg1, cudaMemcpyHostToDevice, st));
    CK(jk_embed(g->x, g->embed, g->tok, T, H, st));
    double tp = janus_now_s();
    mark(g, 7, &tp);
    for (int l = 0; l < c->n_layers; l++) {
        const gpu_layer *G = &g->L[l];
        CK(jk_rmsnorm(g->h, g->x, G->attn_norm, T, H, c->rms_eps, st));
        linear(g, g->q, g->h, G->wq, G->bq, T, nq, H, 0);
        linear(g, g->k, g->h, G->wk, G->bk, T, kvd, H, 0);
        linear(g, g->v, g->h, G->wv, G->bv, T, kvd, H, 0);
        if (c->desc->qk_norm == QK_NORM_HEAD) {
            CK(jk_rmsnorm(g->q, g->q, G->q_norm, T * nh, hd, c->rms_eps, st));
            CK(jk_rmsnorm(g->k, g->k, G->k_norm, T * nkv, hd, c->rms_eps, st));
        } else if (c->desc->qk_norm == QK_NORM_FULL) {
            CK(jk_rmsnorm(g->q, g->q, G->q_norm, T, nq, c->rms_eps, st));
            CK(jk_rmsnorm(g->k, g->k, G->k_norm, T, kvd, c->rms_eps, st));
        }
        mark(g, 0, &tp);
        CK(jk_rope(g->q, g->pos, g->inv_freq, T, nh, hd, st));
        CK(jk_rope(g->k, g->pos, g->inv_freq, T, nkv, hd, st));
        uint16_t *kc = g->kc + (size_t)l * g->layer_kv, *vc = g->vc + (size_t)l * g->layer_kv;
        CK(jk_kv_store(kc, vc, g->k, g->v, g->bt, maxb, g->pos, T, kvd, g->bs, st));
        CK(jk_attention(g->att, g->q, kc, vc, g->bt, maxb, g->pos, T, nh, nkv, hd, g->bs, st));
        mark(g, 1, &tp);
        linear(g, g->h, g->att, G->wo, NULL, T, H, nq, 0);
        CK(jk_add(g->x, g->h, (size_t)T * H, st));
        CK(jk_rmsnorm(g->h, g->x, G->ffn_norm, T, H, c->rms_eps, st));
        if (!c->layer_moe[l]) {
            linear(g, g->act, g->h, G->mlp_gu, NULL, T, c->dense_inter, H, 1);
            linear(g, g->moe, g->act, G->mlp_down, NULL, T, H, c->dense_inter, 0);
            CK(jk_add(g->x, g->moe, (size_t)T * H, st));
            mark(g, 5, &tp);
            continue;
        }
        mark(g, 0, &tp);
        linear(g, g->rlog, g->h, G->router, NULL, T, E, H, 0);
        if (G->router_bias) CK(jk_add_bias(g->rlog, G->router_bias, T, E, st));
        CK(jk_router_topk(g->topi, g->topw, g->rlog, T, E, K, c->norm_topk, st));
        // Group pairs by expert on the host (as the exchange does across ranks).
        CK(cudaMemcpyAsync(g->h_topi, g->topi, 4 * (size_t)T * K, cudaMemcpyDeviceToHost, st));
        CK(cudaStreamSynchronize(st));
        const int P = T * K;
        memset(g->h_seg, 0, 4 * (E + 1));
        for (int p = 0; p < P; p++) g->h_seg[g->h_topi[p] + 1]++;
        int maxr = 0;
        for (int e = 0; e < E; e++) {
            maxr = g->h_seg[e + 1] > maxr ? g->h_seg[e + 1] : maxr;
            expert_counts[(size_t)l * E + e] += g->h_seg[e + 1];
            g->h_seg[e + 1] += g->h_seg[e];
        }
        memcpy(g->fill, g->h_seg, sizeof(int) * (E + 1));
        for (int p = 0; p < P; p++) {
            int at = g->fill[g->h_topi[p]]++;
            g->h_order[at] = p;
            g->h_slot[p] = at;
        }
        CK(cudaMemcpyAsync(g->seg, g->h_seg, 4 * (E + 1), cudaMemcpyHostToDevice, st));
        CK(cudaMemcpyAsync(g->order, g->h_order, 4 * (size_t)P, cudaMemcpyHostToDevice, st));
        CK(cudaMemcpyAsync(g->slot, g->h_slot, 4 * (size_t)P, cudaMemcpyHostToDevice, st));
        mark(g, 2, &tp);
        CK(jk_gather_rows(g->xs, g->h, g->order, K, P, H, st));
        jk_moe_ffn_args a = {g->xs, g->seg, G->w_gu, G->w_down, g->act, g->ys, E, H, I, maxr};
        CK(jk_moe_ffn_decode(&a, st));
        mark(g, 3, &tp);
        CK(jk_combine(g->moe, g->ys, g->slot, g->topi, g->topw, T, K, H, st));
        if (G->sh_gu) {
            linear(g, g->act, g->h, G->sh_gu, NULL, T, c->shared_inter, H, 1);
            linear(g, g->sh, g->act, G->sh_down, NULL, T, H, c->shared_inter, 0);
            linear(g, g->shg, g->h, G->sh_gw, NULL, T, 1, H, 0);
            CK(jk_sigmoid_scale_add(g->moe, g->sh, g->shg, T, H, st));
        }
        CK(jk_add(g->x, g->moe, (size_t)T * H, st));
        mark(g, 4, &tp);
    }
    if (b->n_out > 0) {
        CK(cudaMemcpyAsync(g->rows, b->out_rows, 4 * (size_t)b->n_out, cudaMemcpyHostToDevice, st));
        CK(jk_gather_rows(g->h, g->x, g->rows, 1, b->n_out, H, st));
        CK(jk_rmsnorm(g->h, g->h, g->final_norm, b->n_out, H, c->rms_eps, st));
        g->seg_T = -1; // rows below are the n_out rows (seg1 + 2)
        linear(g, g->logits, g->h, g->lm_head, NULL, b->n_out, c->vocab, H, 0);
        if (logits) {
            CK(cudaMemcpyAsync(logits, g->logits, 4 * (size_t)b->n_out * c->vocab, cudaMemcpyDeviceToHost, st));
        } else {
            CK(jk_argmax_logprob(g->gtok, g->glp, g->logits, b->n_out, c->vocab, st));
            CK(cudaMemcpyAsync(greedy_tok, g->gtok, 4 * (size_t)b->n_out, cudaMemcpyDeviceToHost, st));
            CK(cudaMemcpyAsync(greedy_lp, g->glp, 4 * (size_t)b->n_out, cudaMemcpyDeviceToHost, st));
        }
    }
    CK(cudaStreamSynchronize(st));
    mark(g, 6, &tp);
    if (tm) tm->attn_s += janus_now_s() - t0; // one figure for the whole GPU step
}
