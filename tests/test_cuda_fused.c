// tests/test_cuda_fused.c: the fused decode kernels (cuda_kernels/fused.h)
// against their references, on fresh random inputs with poisoned outputs:
//   - jk_rmsnorm_rows: cpu_rmsnorm (relative L2 under 1e-5), its bf16 copy the
//     rounding of its f32 output (exact);
//   - jk_qkv_rope_store: q against cpu_rmsnorm per head + cpu_rope (1e-5), and
//     q, the K and V cache against the unfused GPU kernels (jk_add_bias,
//     jk_rmsnorm, jk_rope, jk_kv_store), which do the same arithmetic: equal to
//     the bit;
//   - jk_combine_add: janus_combine + add on the CPU (1e-6);
//   - jk_group_pairs, jk_group_pairs_large: a stable counting sort on the CPU
//     (exact), counts summed;
//   - jk_combine_add_norm: equal to the bit to the kernels it fuses
//     (jk_combine_add + jk_rmsnorm_rows), themselves checked against the CPU
//     above.
// Exits 77 (meson: skipped) when no GPU is present.
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu/kernels.h"
#include "fused.h"
#include "layers.h"
#include "moe/experts.h"
#include "moe_ffn.h"

#define CK(x)                                                                                                      \
    do {                                                                                                           \
        int rc_ = (int)(x);                                                                                        \
        if (rc_) {                                                                                                 \
            printf("FAIL: %s: CUDA error %d (%s)\n", #x, rc_, cudaGetErrorString((cudaError_t)rc_));               \
            exit(1);                                                                                               \
        }                                                                                                          \
    } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static int rnd(int n) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (int)(rng % (uint64_t)n);
}
static float frnd(void) { return (float)rnd(1 << 24) / (1 << 23) - 1.0f; }
static int passed, failed;

static void *dev(const void *h, size_t bytes) {
    void *d;
    CK(cudaMalloc(&d, bytes ? bytes : 1));
    if (h) CK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    else CK(cudaMemset(d, 0xff, bytes)); // poison: NaN as f32
    return d;
}
static void *host(const void *d, size_t bytes) {
    void *h = malloc(bytes ? bytes : 1);
    CK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
    return h;
}
static double rel_l2(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i])) return INFINITY;
        num += (double)(a[i] - ref[i]) * (a[i] - ref[i]), den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static void report(const char *what, int ok, const char *fmt, double v) {
    printf("%s %s: ", ok ? "ok  " : "FAIL", what);
    printf(fmt, v);
    printf("\n");
    ok ? passed++ : failed++;
}

static void rmsnorm_case(int R, int n) {
    float *x = malloc(sizeof(float) * R * n), *ref = malloc(sizeof(float) * R * n);
    uint16_t *w = malloc(2 * n);
    for (int i = 0; i < R * n; i++) x[i] = 3 * frnd();
    for (int i = 0; i < n; i++) w[i] = f32_to_bf16(1 + frnd());
    janus_w W = {.p = w, .dt = JANUS_BF16, .rows = 1, .cols = n};
    cpu_rmsnorm(ref, x, &W, R, n, 1e-6f);
    float *dx = dev(x, sizeof(float) * R * n), *dy = dev(NULL, sizeof(float) * R * n);
    uint16_t *dw = dev(w, 2 * n), *db = dev(NULL, 2 * (size_t)R * n);
    CK(jk_rmsnorm_rows(dy, db, dx, dw, R, n, 1e-6f, NULL));
    float *y = host(dy, sizeof(float) * R * n);
    uint16_t *yb = host(db, 2 * (size_t)R * n);
    int bad = 0;
    for (int i = 0; i < R * n; i++) bad += yb[i] != f32_to_bf16(y[i]);
    char what[96];
    snprintf(what, sizeof what, "rmsnorm_rows R=%d n=%d (bf16 copy: %d differ)", R, n, bad);
    double e = rel_l2(y, ref, (size_t)R * n);
    report(what, e < 1e-5 && !bad, "rel err %.2e (tolerance 1e-05)", e);
    // in place, f32 only
    CK(jk_rmsnorm_rows(dx, NULL, dx, dw, R, n, 1e-6f, NULL));
    float *y2 = host(dx, sizeof(float) * R * n);
    snprintf(what, sizeof what, "rmsnorm_rows in place R=%d n=%d", R, n);
    report(what, !memcmp(y, y2, sizeof(float) * R * n), "bitwise equal to the out-of-place result (%.0f)", 1), free(y2);
    free(x), free(ref), free(w), free(y), free(yb);
    cudaFree(dx), cudaFree(dy), cudaFree(dw), cudaFree(db);
}

// The expert FFN reading rows through x_rows / x_div equals the FFN over the
// same rows gathered first, to the bit (the same kernel, the same rows).
static void ffn_xmap_case(int E, int H, int I, int T, int k, int max_rows_hint) {
    const int P = T * k;
    int32_t *topi = malloc(4 * P);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) topi[t * k + j] = (t * 7 + j * 3 + rnd(2)) % E;
    float *h = malloc(sizeof(float) * T * H);
    for (int i = 0; i < T * H; i++) h[i] = frnd();
    uint16_t *wgu = malloc(2 * (size_t)E * 2 * I * H), *wd = malloc(2 * (size_t)E * H * I);
    for (size_t i = 0; i < (size_t)E * 2 * I * H; i++) wgu[i] = f32_to_bf16(frnd() / sqrtf((float)H));
    for (size_t i = 0; i < (size_t)E * H * I; i++) wd[i] = f32_to_bf16(frnd() / sqrtf((float)I));
    float *dh = dev(h, sizeof(float) * T * H), *dxs = dev(NULL, sizeof(float) * P * H), *dact = dev(NULL, sizeof(float) * P * I);
    float *dy1 = dev(NULL, sizeof(float) * P * H), *dy2 = dev(NULL, sizeof(float) * P * H);
    int32_t *dt = dev(topi, 4 * P), *dseg = dev(NULL, 4 * (E + 1)), *dor = dev(NULL, 4 * P), *dsl = dev(NULL, 4 * P);
    uint16_t *dwgu = dev(wgu, 2 * (size_t)E * 2 * I * H), *dwd = dev(wd, 2 * (size_t)E * H * I);
    CK(jk_group_pairs(dt, P, E, dseg, dor, dsl, NULL, NULL));
    CK(jk_gather_rows(dxs, dh, dor, k, P, H, NULL));
    jk_moe_ffn_args a = {dxs, dseg, dwgu, dwd, dact, dy1, E, H, I, max_rows_hint, NULL, 0, 0};
    CK(jk_moe_ffn_decode(&a, NULL));
    jk_moe_ffn_args b = {dh, dseg, dwgu, dwd, dact, dy2, E, H, I, max_rows_hint, dor, k, 0};
    CK(jk_moe_ffn_decode(&b, NULL));
    float *y1 = host(dy1, sizeof(float) * P * H), *y2 = host(dy2, sizeof(float) * P * H);
    int nan = 0;
    for (int i = 0; i < P * H; i++) nan += isnan(y1[i]);
    char what[112];
    snprintf(what, sizeof what, "expert FFN rows read through x_rows E=%d H=%d I=%d T=%d k=%d variant rows %d", E, H, I, T, k,
             max_rows_hint);
    report(what, !nan && !memcmp(y1, y2, sizeof(float) * P * H), "bitwise equal to gather + FFN: %.0f", 1);
    free(topi), free(h), free(wgu), free(wd), free(y1), free(y2);
    cudaFree(dh), cudaFree(dxs), cudaFree(dact), cudaFree(dy1), cudaFree(dy2), cudaFree(dt), cudaFree(dseg), cudaFree(dor);
    cudaFree(dsl), cudaFree(dwgu), cudaFree(dwd);
}

static void qkv_case(int T, int nh, int nkv, int hd, int bias, int norm) {
    const int bs = 16, nq = nh * hd, kvd = nkv * hd, W = nq + 2 * kvd, maxb = 4, nblk = T * maxb;
    float *qkv = malloc(sizeof(float) * T * W), *inv = malloc(sizeof(float) * hd / 2);
    uint16_t *b = malloc(2 * (size_t)W), *qn = malloc(2 * hd), *kn = malloc(2 * hd);
    int32_t *pos = malloc(4 * T), *bt = malloc(4 * (size_t)T * maxb);
    for (int i = 0; i < T * W; i++) qkv[i] = 2 * frnd();
    for (int i = 0; i < W; i++) b[i] = f32_to_bf16(frnd());
    for (int i = 0; i < hd; i++) qn[i] = f32_to_bf16(1 + frnd()), kn[i] = f32_to_bf16(1 + frnd());
    cpu_rope_inv_freq(inv, hd, 1000000.0);
    for (int t = 0; t < T; t++) {
        pos[t] = rnd(bs * maxb);
        for (int j = 0; j < maxb; j++) bt[t * maxb + j] = t * maxb + (j * 7 + t) % maxb; // distinct blocks per token
    }
    // CPU reference of q: bias, per-head norm, RoPE
    float *qref = malloc(sizeof(float) * T * nq);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < nq; i++) qref[t * nq + i] = qkv[(size_t)t * W + i] + (bias ? bf16_to_f32(b[i]) : 0.f);
    janus_w QN = {.p = qn, .dt = JANUS_BF16, .rows = 1, .cols = hd};
    if (norm) cpu_rmsnorm(qref, qref, &QN, T * nh, hd, 1e-6f);
    cpu_rope(qref, T, nh, hd, pos, inv);
    // fused
    float *dqkv = dev(qkv, sizeof(float) * T * W), *dinv = dev(inv, sizeof(float) * hd / 2);
    uint16_t *db = dev(b, 2 * (size_t)W), *dqn = dev(qn, 2 * hd), *dkn = dev(kn, 2 * hd);
    int32_t *dpos = dev(pos, 4 * T), *dbt = dev(bt, 4 * (size_t)T * maxb);
    const size_t cache = (size_t)nblk * bs * kvd;
    uint16_t *kc1 = dev(NULL, 2 * cache), *vc1 = dev(NULL, 2 * cache), *kc2 = dev(NULL, 2 * cache), *vc2 = dev(NULL, 2 * cache);
    float *dq1 = dev(NULL, sizeof(float) * T * nq);
    CK(jk_qkv_rope_store(dq1, kc1, vc1, dqkv, bias ? db : NULL, bias ? db + nq : NULL, bias ? db + nq + kvd : NULL,
                         norm ? dqn : NULL, norm ? dkn : NULL, dinv, dpos, dbt, maxb, T, nh, nkv, hd, bs, 1e-6f, NULL));
    // unfused GPU composition
    float *q = malloc(sizeof(float) * T * nq), *k = malloc(sizeof(float) * T * kvd), *v = malloc(sizeof(float) * T * kvd);
    for (int t = 0; t < T; t++) {
        memcpy(q + (size_t)t * nq, qkv + (size_t)t * W, sizeof(float) * nq);
        memcpy(k + (size_t)t * kvd, qkv + (size_t)t * W + nq, sizeof(float) * kvd);
        memcpy(v + (size_t)t * kvd, qkv + (size_t)t * W + nq + kvd, sizeof(float) * kvd);
    }
    float *dq2 = dev(q, sizeof(float) * T * nq), *dk = dev(k, sizeof(float) * T * kvd), *dv = dev(v, sizeof(float) * T * kvd);
    if (bias) {
        CK(jk_add_bias(dq2, db, T, nq, NULL));
        CK(jk_add_bias(dk, db + nq, T, kvd, NULL));
        CK(jk_add_bias(dv, db + nq + kvd, T, kvd, NULL));
    }
    if (norm) {
        CK(jk_rmsnorm(dq2, dq2, dqn, T * nh, hd, 1e-6f, NULL));
        CK(jk_rmsnorm(dk, dk, dkn, T * nkv, hd, 1e-6f, NULL));
    }
    CK(jk_rope(dq2, dpos, dinv, T, nh, hd, NULL));
    CK(jk_rope(dk, dpos, dinv, T, nkv, hd, NULL));
    // untouched slots stay poisoned in both caches
    CK(jk_kv_store(kc2, vc2, dk, dv, dbt, maxb, dpos, T, kvd, bs, NULL));
    float *q1 = host(dq1, sizeof(float) * T * nq), *q2 = host(dq2, sizeof(float) * T * nq);
    uint16_t *k1 = host(kc1, 2 * cache), *k2 = host(kc2, 2 * cache), *v1 = host(vc1, 2 * cache), *v2 = host(vc2, 2 * cache);
    char what[128];
    snprintf(what, sizeof what, "qkv_rope_store T=%d nh=%d nkv=%d hd=%d bias %d norm %d: q vs CPU", T, nh, nkv, hd, bias, norm);
    double e = rel_l2(q1, qref, (size_t)T * nq);
    report(what, e < 1e-5, "rel err %.2e (tolerance 1e-05)", e);
    snprintf(what, sizeof what, "qkv_rope_store T=%d nh=%d nkv=%d hd=%d bias %d norm %d: q, K, V vs unfused", T, nh, nkv, hd, bias, norm);
    const int same = !memcmp(q1, q2, sizeof(float) * T * nq) && !memcmp(k1, k2, 2 * cache) && !memcmp(v1, v2, 2 * cache);
    report(what, same, "bitwise equal: %.0f", same);
    free(qkv), free(inv), free(b), free(qn), free(kn), free(pos), free(bt), free(qref), free(q), free(k), free(v);
    free(q1), free(q2), free(k1), free(k2), free(v1), free(v2);
    cudaFree(dqkv), cudaFree(dinv), cudaFree(db), cudaFree(dqn), cudaFree(dkn), cudaFree(dpos), cudaFree(dbt);
    cudaFree(kc1), cudaFree(vc1), cudaFree(kc2), cudaFree(vc2), cudaFree(dq1), cudaFree(dq2), cudaFree(dk), cudaFree(dv);
}

static void combine_case(int T, int k, int E, int H) {
    const int P = T * k;
    int32_t *ids = malloc(4 * P), *slot = malloc(4 * P);
    float *w = malloc(sizeof(float) * P), *y = malloc(sizeof(float) * P * H), *ys = malloc(sizeof(float) * P * H);
    float *x = malloc(sizeof(float) * T * H), *ref = malloc(sizeof(float) * T * H);
    for (int t = 0; t < T; t++) // k distinct experts per token
        for (int j = 0; j < k; j++) {
            int e;
            for (;;) {
                e = rnd(E);
                int dup = 0;
                for (int i = 0; i < j; i++) dup |= ids[t * k + i] == e;
                if (!dup) break;
            }
            ids[t * k + j] = e, w[t * k + j] = frnd();
        }
    for (int p = 0; p < P; p++) slot[p] = p;
    for (int p = P - 1; p > 0; p--) { // a random permutation of the output rows
        int r = rnd(p + 1), tmp = slot[p];
        slot[p] = slot[r], slot[r] = tmp;
    }
    for (int i = 0; i < P * H; i++) ys[i] = frnd();
    for (int p = 0; p < P; p++) memcpy(y + (size_t)p * H, ys + (size_t)slot[p] * H, sizeof(float) * H);
    for (int i = 0; i < T * H; i++) x[i] = frnd();
    janus_combine(ref, y, ids, w, T, k, H);
    for (int i = 0; i < T * H; i++) ref[i] += x[i];
    float *dx = dev(x, sizeof(float) * T * H), *dys = dev(ys, sizeof(float) * P * H), *dw = dev(w, sizeof(float) * P);
    int32_t *dids = dev(ids, 4 * P), *dslot = dev(slot, 4 * P);
    CK(jk_combine_add(dx, dys, dslot, dids, dw, NULL, T, k, H, NULL));
    float *out = host(dx, sizeof(float) * T * H);
    char what[96];
    snprintf(what, sizeof what, "combine_add T=%d k=%d E=%d H=%d", T, k, E, H);
    double e = rel_l2(out, ref, (size_t)T * H);
    report(what, e < 1e-6, "rel err %.2e (tolerance 1e-06)", e);
    free(ids), free(slot), free(w), free(y), free(ys), free(x), free(ref), free(out);
    cudaFree(dx), cudaFree(dys), cudaFree(dw), cudaFree(dids), cudaFree(dslot);
}

static void group_case_in(int P, int E, int skew, int large) {
    int32_t *topi = malloc(4 * (P ? P : 1));
    for (int p = 0; p < P; p++) topi[p] = skew ? (rnd(4) ? rnd(1 + E / 16) : rnd(E)) : rnd(E);
    // CPU: stable counting sort
    int32_t *seg = calloc(E + 1, 4), *order = malloc(4 * (P ? P : 1)), *slot = malloc(4 * (P ? P : 1)), *fill = malloc(4 * (E + 1));
    for (int p = 0; p < P; p++) seg[topi[p] + 1]++;
    for (int e = 0; e < E; e++) seg[e + 1] += seg[e];
    memcpy(fill, seg, 4 * (E + 1));
    for (int p = 0; p < P; p++) order[fill[topi[p]]] = p, slot[p] = fill[topi[p]]++;
    unsigned long long *cnt0 = malloc(8 * E);
    for (int e = 0; e < E; e++) cnt0[e] = (unsigned long long)rnd(1000);
    int32_t *dt = dev(topi, 4 * (P ? P : 1)), *ds = dev(NULL, 4 * (E + 1)), *dor = dev(NULL, 4 * (P ? P : 1)), *dsl = dev(NULL, 4 * (P ? P : 1));
    unsigned long long *dc = dev(cnt0, 8 * E);
    if (large) { // chunked over many blocks; a workspace poisoned first
        const size_t wb = jk_group_pairs_ws_bytes(P, E);
        void *ws = NULL;
        if (wb) {
            CK(cudaMalloc(&ws, wb));
            CK(cudaMemset(ws, 0xff, wb));
        }
        CK(cudaMemset(ds, 0xff, 4 * (E + 1)));
        CK(jk_group_pairs_large(dt, P, E, ds, dor, dsl, dc, ws, wb, NULL));
        CK(jk_group_pairs_large(dt, P, E, ds, dor, dsl, dc, ws, wb, NULL)); // twice: counts add up, the rest is rewritten
        if (P > 0 && jk_group_pairs_large(dt, P, E, ds, dor, dsl, dc, ws, wb - 4, NULL) == 0)
            report("group_pairs_large: a workspace 4 bytes short", 0, "accepted (%.0f)", 0);
        cudaFree(ws);
    } else {
        CK(jk_group_pairs(dt, P, E, ds, dor, dsl, dc, NULL));
        CK(jk_group_pairs(dt, P, E, ds, dor, dsl, dc, NULL)); // twice: counts add up, the rest is rewritten
    }
    int32_t *gs = host(ds, 4 * (E + 1)), *go = host(dor, 4 * (P ? P : 1)), *gl = host(dsl, 4 * (P ? P : 1));
    unsigned long long *gc = host(dc, 8 * E);
    int ok = !memcmp(gs, seg, 4 * (E + 1)) && !memcmp(go, order, 4 * P) && !memcmp(gl, slot, 4 * P);
    for (int e = 0; e < E; e++) ok &= gc[e] == cnt0[e] + 2ull * (unsigned long long)(seg[e + 1] - seg[e]);
    char what[96];
    snprintf(what, sizeof what, "group_pairs%s P=%d E=%d%s", large ? "_large" : "", P, E, skew ? " skewed" : "");
    report(what, ok, "exact: %.0f", ok);
    free(topi), free(seg), free(order), free(slot), free(fill), free(cnt0), free(gs), free(go), free(gl), free(gc);
    cudaFree(dt), cudaFree(ds), cudaFree(dor), cudaFree(dsl), cudaFree(dc);
}

// Both kernels against the CPU's stable counting sort.
static void group_case(int P, int E, int skew) {
    group_case_in(P, E, skew, 0);
    group_case_in(P, E, skew, 1);
}

// jk_combine_add_norm against jk_combine_add + jk_rmsnorm_rows (the bf16 copy
// only), both on the GPU: x and the bf16 copy equal to the bit.
static void combine_norm_case(int T, int k, int E, int H) {
    const int P = T * k;
    int32_t *ids = malloc(4 * P), *slot = malloc(4 * P);
    float *w = malloc(sizeof(float) * P), *ys = malloc(sizeof(float) * P * H), *x = malloc(sizeof(float) * T * H);
    uint16_t *nw = malloc(2 * H);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            int e, dup;
            do {
                e = rnd(E), dup = 0;
                for (int i = 0; i < j; i++) dup |= ids[t * k + i] == e;
            } while (dup);
            ids[t * k + j] = e, w[t * k + j] = frnd();
        }
    for (int p = 0; p < P; p++) slot[p] = p;
    for (int p = P - 1; p > 0; p--) {
        int r = rnd(p + 1), tmp = slot[p];
        slot[p] = slot[r], slot[r] = tmp;
    }
    for (int i = 0; i < P * H; i++) ys[i] = frnd();
    for (int i = 0; i < T * H; i++) x[i] = frnd();
    for (int i = 0; i < H; i++) nw[i] = f32_to_bf16(1.0f + 0.5f * frnd());
    float *dx1 = dev(x, sizeof(float) * T * H), *dx2 = dev(x, sizeof(float) * T * H), *dys = dev(ys, sizeof(float) * P * H),
          *dw = dev(w, sizeof(float) * P);
    int32_t *dids = dev(ids, 4 * P), *dslot = dev(slot, 4 * P);
    uint16_t *dnw = dev(nw, 2 * H), *db1 = dev(NULL, 2 * (size_t)T * H), *db2 = dev(NULL, 2 * (size_t)T * H);
    CK(jk_combine_add(dx1, dys, dslot, dids, dw, NULL, T, k, H, NULL));
    CK(jk_rmsnorm_rows(NULL, db1, dx1, dnw, T, H, 1e-6f, NULL));
    CK(jk_combine_add_norm(dx2, db2, dys, dslot, dids, dw, NULL, T, k, H, dnw, 1e-6f, NULL));
    float *x1 = host(dx1, sizeof(float) * T * H), *x2 = host(dx2, sizeof(float) * T * H);
    uint16_t *b1 = host(db1, 2 * (size_t)T * H), *b2 = host(db2, 2 * (size_t)T * H);
    const int ok = !memcmp(x1, x2, sizeof(float) * T * H) && !memcmp(b1, b2, 2 * (size_t)T * H);
    char what[120];
    snprintf(what, sizeof what, "combine_add_norm T=%d k=%d E=%d H=%d: x and bf16 norm vs combine_add + rmsnorm_rows", T, k, E, H);
    report(what, ok, "bitwise equal: %.0f", ok);
    free(ids), free(slot), free(w), free(ys), free(x), free(nw), free(x1), free(x2), free(b1), free(b2);
    cudaFree(dx1), cudaFree(dx2), cudaFree(dys), cudaFree(dw), cudaFree(dids), cudaFree(dslot), cudaFree(dnw), cudaFree(db1),
        cudaFree(db2);
}

static void argmax_case(int R, int V) {
    float *l = malloc(sizeof(float) * R * V);
    for (int i = 0; i < R * V; i++) l[i] = 8 * frnd();
    if (R > 1) l[(size_t)1 * V + V / 3] = l[(size_t)1 * V + V - 1] = 100.f; // a tie: the lower index wins
    if (R > 2)
        for (int i = 0; i < V; i++) l[(size_t)2 * V + i] = -INFINITY; // all -inf: token 0
    float *dl = dev(l, sizeof(float) * R * V), *dlp = dev(NULL, sizeof(float) * R);
    int32_t *dt = dev(NULL, 4 * R);
    CK(jk_argmax_rows(dt, dlp, dl, R, V, NULL));
    int32_t *t = host(dt, 4 * R);
    float *lp = host(dlp, sizeof(float) * R);
    int bad = 0;
    double worst = 0;
    for (int r = 0; r < R; r++) {
        const float *x = l + (size_t)r * V;
        int best = 0;
        for (int i = 1; i < V; i++)
            if (x[i] > x[best]) best = i;
        if (t[r] != best) bad++;
        if (x[best] == -INFINITY) continue;
        double sum = 0;
        for (int i = 0; i < V; i++) sum += exp((double)x[i] - x[best]);
        const double d = fabs(lp[r] - (-log(sum)));
        worst = d > worst ? d : worst;
    }
    char what[96];
    snprintf(what, sizeof what, "argmax_rows R=%d V=%d (%d tokens differ)", R, V, bad);
    report(what, !bad && worst < 1e-4, "logprob max abs err %.2e (tolerance 1e-04)", worst);
    free(l), free(t), free(lp);
    cudaFree(dl), cudaFree(dlp), cudaFree(dt);
}

int main(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    rmsnorm_case(64, 2048);
    rmsnorm_case(3, 4096);
    rmsnorm_case(1, 260);
    rmsnorm_case(17, 7168);
    ffn_xmap_case(16, 256, 128, 8, 2, 2);   // FMA variant
    ffn_xmap_case(16, 256, 128, 40, 4, 20); // tensor-core variant, two row tiles
    ffn_xmap_case(128, 2048, 768, 64, 8, 12); // Qwen3-30B-A3B decode
    qkv_case(64, 32, 4, 128, 0, 1); // Qwen3-30B-A3B
    qkv_case(5, 32, 8, 128, 0, 0);  // Mixtral
    qkv_case(7, 4, 2, 64, 1, 0);    // biases (Qwen2-MoE style), hd 64
    qkv_case(3, 8, 1, 256, 1, 1);   // hd 256
    qkv_case(1, 2, 2, 128, 1, 1);
    combine_case(64, 8, 128, 2048);
    combine_case(3, 2, 8, 64);
    combine_case(9, 16, 64, 260);
    group_case(512, 128, 0);
    group_case(512, 128, 1);
    group_case(1, 8, 0);
    group_case(0, 8, 0);
    group_case(2048, 128, 1);
    group_case(777, 256, 0);
    group_case(4096, 4096, 0);
    group_case(1024, 256, 1); // the one-pass kernel's limits
    group_case(1025, 256, 0); // just past them
    group_case(1000, 257, 1);
    group_case(33, 1, 0);
    // prompt-sized steps (the chunked kernel): 16384 tokens x top-8 of 128,
    // a partial last chunk, DeepSeek-sized expert counts, all pairs on one expert
    group_case_in(131072, 128, 0, 1);
    group_case_in(131072, 128, 1, 1);
    group_case_in(100003, 256, 1, 1);
    group_case_in(50000, 4096, 0, 1);
    group_case_in(3000, 1, 0, 1);
    combine_norm_case(64, 8, 128, 2048); // Qwen3-30B-A3B
    combine_norm_case(5, 2, 8, 4096);    // Mixtral
    combine_norm_case(3, 4, 16, 260);    // a row that does not fill the block's float4s
    argmax_case(64, 151936);
    argmax_case(5, 1001);
    argmax_case(3, 32000);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
