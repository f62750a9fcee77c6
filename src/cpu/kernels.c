// cpu/kernels.c: C reference kernels declared in cpu/kernels.h.
#include "cpu/kernels.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>

// Work below this many multiply-adds runs on one thread: thread start-up costs
// more than it saves on the tiny matrices of test models.
#define PAR_MIN_FLOPS 32768

static inline float dot(const float *a, const float *b, int64_t n) {
    // 8 partial sums: vectorises, and the order is fixed for a given n.
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

void cpu_linear(float *y, const float *x, const janus_w *W, const janus_w *bias, int T) {
    const int64_t N = W->rows, K = W->cols;
    const bool conv = W->dt != JANUS_F32;
    float *bvec = NULL;
    if (bias && bias->p) {
        bvec = xmalloc(sizeof(float) * N);
        janus_to_f32(bvec, bias->p, bias->dt, N);
    }
    const size_t esz = janus_dtype_size(W->dt);
    // Parallel over output rows: each weight row is read once for all T tokens.
#pragma omp parallel if ((double)N * K * T > PAR_MIN_FLOPS)
    {
        float *wrow = conv ? xmalloc(sizeof(float) * K) : NULL;
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            const float *w;
            if (conv) {
                janus_to_f32(wrow, (const uint8_t *)W->p + (size_t)n * K * esz, W->dt, K);
                w = wrow;
            } else {
                w = (const float *)W->p + (size_t)n * K;
            }
            const float b = bvec ? bvec[n] : 0.f;
            for (int t = 0; t < T; t++) y[(size_t)t * N + n] = dot(x + (size_t)t * K, w, K) + b;
        }
        free(wrow);
    }
    free(bvec);
}

void cpu_rmsnorm(float *y, const float *x, const janus_w *w, int R, int n, float eps) {
    float *wf = xmalloc(sizeof(float) * n);
    janus_to_f32(wf, w->p, w->dt, n);
    for (int r = 0; r < R; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
        float ss = 0.f;
        for (int i = 0; i < n; i++) ss += xr[i] * xr[i];
        const float inv = 1.0f / sqrtf(ss / (float)n + eps);
        for (int i = 0; i < n; i++) yr[i] = wf[i] * (xr[i] * inv);
    }
    free(wf);
}

void cpu_rope_inv_freq(float *inv_freq, int hd, double theta) {
    // As transformers: 1 / theta ** (arange(0, hd, 2) / hd), in float32.
    for (int i = 0; i < hd / 2; i++) {
        float ex = (float)(2 * i) / (float)hd;
        inv_freq[i] = 1.0f / (float)pow(theta, (double)ex);
    }
}

void cpu_rope(float *x, int T, int n_heads, int hd, const int32_t *pos, const float *inv_freq) {
    const int half = hd / 2;
    float *c = xmalloc(sizeof(float) * half), *s = xmalloc(sizeof(float) * half);
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            float f = (float)pos[t] * inv_freq[i];
            c[i] = cosf(f);
            s[i] = sinf(f);
        }
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * hd;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
    free(c);
    free(s);
}

void cpu_embed(float *x, const janus_w *emb, const int32_t *tok, int T) {
    const size_t esz = janus_dtype_size(emb->dt);
    for (int t = 0; t < T; t++)
        janus_to_f32(x + (size_t)t * emb->cols, (const uint8_t *)emb->p + (size_t)tok[t] * emb->cols * esz, emb->dt,
                     emb->cols);
}

void cpu_silu_mul(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void cpu_router_topk(int32_t *ids, float *w, const float *logits, int T, int E, int k, bool renorm) {
    float *p = xmalloc(sizeof(float) * E);
    for (int t = 0; t < T; t++) {
        const float *l = logits + (size_t)t * E;
        float mx = -FLT_MAX;
        for (int e = 0; e < E; e++) mx = fmaxf(mx, l[e]);
        float sum = 0.f;
        for (int e = 0; e < E; e++) sum += (p[e] = expf(l[e] - mx));
        for (int e = 0; e < E; e++) p[e] /= sum;
        int32_t *id = ids + (size_t)t * k;
        float *wt = w + (size_t)t * k;
        for (int j = 0; j < k; j++) { // selection: k is small
            int best = -1;
            for (int e = 0; e < E; e++) {
                bool taken = false;
                for (int q = 0; q < j; q++) taken |= id[q] == e;
                if (!taken && (best < 0 || p[e] > p[best])) best = e;
            }
            id[j] = best;
            wt[j] = p[best];
        }
        if (renorm) {
            float s = 0.f;
            for (int j = 0; j < k; j++) s += wt[j];
            for (int j = 0; j < k; j++) wt[j] /= s;
        }
    }
    free(p);
}

void cpu_kv_store(janus_kv *kv, int layer, const float *k, const float *v, const int32_t *const *bt,
                  const int32_t *pos, int T) {
    for (int t = 0; t < T; t++) {
        int blk = bt[t][pos[t] / kv->block_size], slot = pos[t] % kv->block_size;
        size_t off = janus_kv_off(kv, layer, blk, slot);
        memcpy(kv->k + off, k + (size_t)t * kv->kv_dim, sizeof(float) * kv->kv_dim);
        memcpy(kv->v + off, v + (size_t)t * kv->kv_dim, sizeof(float) * kv->kv_dim);
    }
}

void cpu_attention(float *out, const float *q, const janus_kv *kv, int layer, const int32_t *const *bt,
                   const int32_t *pos, int T, int nh, int nkv, int hd) {
    const int group = nh / nkv;
    const float scale = 1.0f / sqrtf((float)hd);
    int max_ctx = 0;
    for (int t = 0; t < T; t++) max_ctx = pos[t] + 1 > max_ctx ? pos[t] + 1 : max_ctx;
    double work = 0;
    for (int t = 0; t < T; t++) work += (double)(pos[t] + 1) * nh * hd;
#pragma omp parallel if (work > PAR_MIN_FLOPS)
    {
        float *sc = xmalloc(sizeof(float) * max_ctx);
#pragma omp for collapse(2) schedule(dynamic, 4)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                const float *qh = q + ((size_t)t * nh + h) * hd;
                const int kvh = h / group, n = pos[t] + 1;
                float mx = -FLT_MAX;
                for (int j = 0; j < n; j++) {
                    const float *kj = kv->k + janus_kv_off(kv, layer, bt[t][j / kv->block_size], j % kv->block_size) + (size_t)kvh * hd;
                    sc[j] = dot(qh, kj, hd) * scale;
                    mx = fmaxf(mx, sc[j]);
                }
                float sum = 0.f;
                for (int j = 0; j < n; j++) sum += (sc[j] = expf(sc[j] - mx));
                const float inv = 1.0f / sum;
                float *o = out + ((size_t)t * nh + h) * hd;
                for (int d = 0; d < hd; d++) o[d] = 0.f;
                for (int j = 0; j < n; j++) {
                    const float *vj = kv->v + janus_kv_off(kv, layer, bt[t][j / kv->block_size], j % kv->block_size) + (size_t)kvh * hd;
                    const float p = sc[j] * inv;
                    for (int d = 0; d < hd; d++) o[d] += p * vj[d];
                }
            }
        free(sc);
    }
}

float cpu_logprob(const float *logits, int n, int tok) {
    float mx = -FLT_MAX;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, logits[i]);
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)logits[i] - mx);
    return (float)((double)logits[tok] - mx - log(s));
}
