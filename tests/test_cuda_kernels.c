// tests/test_cuda_kernels.c: CUDA kernels against their C reference twins, on
// fresh random inputs each case, with poisoned outputs (every element must be
// written): relative L2 error ||gpu - cpu|| / ||cpu|| under 1e-4 (f32
// accumulation in another order; bf16 weights are exact in both), 1e-3 for
// attention, 1e-2 where a kernel rounds activations to bf16. Exits 77
// (meson: skipped) when no GPU is present.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu/kernels.h"
#include "layers.h"
#include "moe/experts.h"
#include "moe_ffn.h"
#include "moe_prefill.h"
#include "util.h"

#define CK(x)                                                                                  \
    do {                                                                                       \
        int rc_ = (int)(x);                                                                    \
        if (rc_) { printf("FAIL: %s: CUDA error %d (%s)\n", #x, rc_, cudaGetErrorString((cudaError_t)rc_)); exit(1); } \
    } while (0)

static uint64_t rng = 0x1234567;
static int rnd(int n) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (int)(rng % (uint64_t)n); }
static float frnd(void) { return (float)rnd(1 << 24) / (1 << 23) - 1.0f; }

static int passed, failed;

static int pass_active; // pass the exact number of active experts (max_active), as the engine does

static void moe_case(int E, int H, int I, int max_rows) {
    int32_t *seg = malloc(sizeof(int32_t) * (E + 1));
    seg[0] = 0;
    for (int e = 0; e < E; e++) seg[e + 1] = seg[e] + (rnd(3) ? rnd(max_rows + 1) : 0);
    int R = seg[E] ? seg[E] : 1;
    size_t ngu = (size_t)E * 2 * I * H, nd = (size_t)E * H * I;
    float *x = malloc(sizeof(float) * R * H), *y = malloc(sizeof(float) * R * H), *ref = malloc(sizeof(float) * R * H);
    uint16_t *wgu = malloc(2 * ngu), *wd = malloc(2 * nd);
    for (size_t i = 0; i < (size_t)R * H; i++) x[i] = frnd();
    for (size_t i = 0; i < ngu; i++) wgu[i] = f32_to_bf16(frnd() / sqrtf((float)H));
    for (size_t i = 0; i < nd; i++) wd[i] = f32_to_bf16(frnd() / sqrtf((float)I));
    janus_moe_ffn_grouped_ref(x, seg, wgu, wd, ref, E, H, I);
    float *dx, *dact, *dy;
    int32_t *dseg;
    uint16_t *dwgu, *dwd;
    CK(cudaMalloc((void **)&dx, sizeof(float) * R * H));
    CK(cudaMalloc((void **)&dact, sizeof(float) * R * I));
    CK(cudaMalloc((void **)&dy, sizeof(float) * R * H));
    CK(cudaMalloc((void **)&dseg, sizeof(int32_t) * (E + 9)));
    CK(cudaMalloc((void **)&dwgu, 2 * ngu));
    CK(cudaMalloc((void **)&dwd, 2 * nd));
    CK(cudaMemcpy(dx, x, sizeof(float) * R * H, cudaMemcpyHostToDevice));
    // seg, then 8 poisoned entries: a kernel reading past seg[E] would run an
    // expert that does not exist over rows that do not exist.
    int32_t *seg_p = malloc(sizeof(int32_t) * (E + 9));
    memcpy(seg_p, seg, sizeof(int32_t) * (E + 1));
    for (int i = E + 1; i < E + 9; i++) seg_p[i] = seg[E] + 1000000;
    CK(cudaMemcpy(dseg, seg_p, sizeof(int32_t) * (E + 9), cudaMemcpyHostToDevice));
    free(seg_p);
    CK(cudaMemcpy(dwgu, wgu, 2 * ngu, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dwd, wd, 2 * nd, cudaMemcpyHostToDevice));
    CK(cudaMemset(dy, 0xff, sizeof(float) * R * H)); // NaN poison
    int maxr = 0;
    for (int e = 0; e < E; e++) maxr = seg[e + 1] - seg[e] > maxr ? seg[e + 1] - seg[e] : maxr;
    int active = 0;
    for (int e = 0; e < E; e++) active += seg[e + 1] > seg[e];
    jk_moe_ffn_args a = {dx, dseg, dwgu, dwd, dact, dy, E, H, I, maxr, NULL, 0, pass_active ? active : 0};
    CK(jk_moe_ffn_decode(&a, NULL));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(y, dy, sizeof(float) * R * H, cudaMemcpyDeviceToHost));
    double num = 0, den = 0;
    int nan = 0;
    for (int i = 0; i < seg[E] * H; i++) {
        if (isnan(y[i])) nan++;
        num += (double)(y[i] - ref[i]) * (y[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    // Over 4 rows per expert the tensor-core path rounds x to bf16: tolerance 1e-2
    // (bf16 operands); the FMA path keeps f32 x: 1e-4.
    // The staged kernel (K a multiple of 64; forced by JANUS_FFN_STAGED=1, off with
    // 0, else picked by shape) rounds x to bf16 at any row count.
    const char *sv = getenv("JANUS_FFN_STAGED");
    const int staged = !(sv && atoi(sv) == 0) && (H % 64 == 0 || I % 64 == 0);
    const double tol = (maxr > 4 || staged) ? 1e-2 : 1e-4;
    int ok = !nan && rel < tol;
    printf("%s moe_ffn_decode%s E=%d H=%d I=%d rows=%d (max %d per expert): rel err %.2e (tolerance %.0e), unwritten %d\n",
           ok ? "ok  " : "FAIL", !sv ? " (auto)" : staged ? (pass_active ? " (staged, active given)" : " (staged)") : "", E, H,
           I, seg[E], maxr, rel, tol, nan);
    ok ? passed++ : failed++;
    cudaFree(dx), cudaFree(dact), cudaFree(dy), cudaFree(dseg), cudaFree(dwgu), cudaFree(dwd);
    free(seg), free(x), free(y), free(ref), free(wgu), free(wd);
}

// Relative L2 error of got against ref over n values, the NaN count (poison
// left unwritten), and the first element off by more than eltol * (|ref| +
// rms(ref)) (-1 when none), so that a failure names where it starts.
typedef struct {
    double rel;
    long nan, first;
} cmp_t;
static cmp_t compare(const float *got, const float *ref, long n, double eltol) {
    cmp_t c = {0, 0, -1};
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) den += (double)ref[i] * ref[i];
    const double rms = n ? sqrt(den / n) : 0;
    for (long i = 0; i < n; i++) {
        if (isnan(got[i])) c.nan++;
        const double d = (double)got[i] - ref[i];
        num += d * d;
        if (c.first < 0 && (isnan(got[i]) || fabs(d) > eltol * (fabs(ref[i]) + rms))) c.first = i;
    }
    c.rel = den > 0 ? sqrt(num / den) : sqrt(num);
    if (c.nan) c.rel = NAN;
    return c;
}

// Random bf16 K (in [-2, 2)) and V (in [-1, 1)) cache contents, and their f32 values.
static void random_kv(uint16_t *kb, uint16_t *vb, float *kf, float *vf, size_t n) {
    for (size_t i = 0; i < n; i++) {
        kb[i] = f32_to_bf16(2.0f * frnd()), kf[i] = bf16_to_f32(kb[i]);
        vb[i] = f32_to_bf16(frnd()), vf[i] = bf16_to_f32(vb[i]);
    }
}

// Attention over a paged bf16 KV cache against cpu_attention: jk_attention_splitk
// (ws as jk_attention_ws_bytes says, or none: the fallback), each of its kernels
// forced through jk_attention_splitk_with (the FP32 one, the tensor-core one;
// all_cfgs: every tensor-core launch configuration), and jk_attention. Token t
// sees ctx[t] positions (pos = ctx - 1); same_seq: all tokens share token 0's
// block table (prefill of one sequence), else every token has its own blocks,
// drawn at random from the pool. Unused table entries point far outside the
// pool, and ws starts as NaN.
static void attn_case_cfgs(const char *what, int T, int nh, int nkv, int hd, int bs, const int *ctx, int same_seq, int no_ws,
                           int all_cfgs) {
    const int kv_dim = nkv * hd;
    int maxb = 1, nb = 0;
    for (int t = 0; t < T; t++) {
        const int b = (ctx[t] + bs - 1) / bs;
        maxb = b > maxb ? b : maxb;
        nb += same_seq ? 0 : b;
    }
    if (same_seq) nb = maxb;
    nb += 3; // spare blocks nobody uses
    int32_t *perm = malloc(sizeof(int32_t) * nb), *bt = malloc(sizeof(int32_t) * T * maxb), *pos = malloc(sizeof(int32_t) * T);
    for (int i = 0; i < nb; i++) perm[i] = i;
    for (int i = nb - 1; i > 0; i--) { int j = rnd(i + 1), tmp = perm[i]; perm[i] = perm[j]; perm[j] = tmp; }
    int next = 0;
    for (int t = 0; t < T; t++) {
        pos[t] = ctx[t] - 1;
        const int b = (ctx[t] + bs - 1) / bs;
        for (int k = 0; k < maxb; k++) {
            if (k >= b) bt[(size_t)t * maxb + k] = 1 << 30; // never read
            else if (same_seq) bt[(size_t)t * maxb + k] = perm[k];
            else bt[(size_t)t * maxb + k] = perm[next++];
        }
    }
    const size_t ncache = (size_t)nb * bs * kv_dim, nq = (size_t)T * nh * hd;
    uint16_t *kb = malloc(2 * ncache), *vb = malloc(2 * ncache);
    float *kf = malloc(sizeof(float) * ncache), *vf = malloc(sizeof(float) * ncache);
    float *q = malloc(sizeof(float) * nq), *ref = malloc(sizeof(float) * nq), *got = malloc(sizeof(float) * nq);
    random_kv(kb, vb, kf, vf, ncache);
    for (size_t i = 0; i < nq; i++) q[i] = 2.0f * frnd();
    const int32_t **btp = malloc(sizeof(int32_t *) * T);
    for (int t = 0; t < T; t++) btp[t] = bt + (size_t)t * maxb;
    janus_kv kv = {kf, vf, 1, nb, bs, kv_dim};
    cpu_attention(ref, q, &kv, 0, btp, pos, T, nh, nkv, hd);

    uint16_t *dk, *dv;
    float *dq, *dout, *dws = NULL;
    uint16_t *dout_b; // the bf16 copy each split-K variant also writes: the rounding of its f32 out, to the bit
    int32_t *dbt, *dpos;
    const size_t ws_bytes = no_ws ? 0 : jk_attention_ws_bytes(T, nh, nkv, hd, maxb * bs);
    uint16_t *got_b = malloc(2 * nq);
    CK(cudaMalloc((void **)&dout_b, 2 * nq));
    CK(cudaMalloc((void **)&dk, 2 * ncache));
    CK(cudaMalloc((void **)&dv, 2 * ncache));
    CK(cudaMalloc((void **)&dq, sizeof(float) * nq));
    CK(cudaMalloc((void **)&dout, sizeof(float) * nq));
    CK(cudaMalloc((void **)&dbt, sizeof(int32_t) * T * maxb));
    CK(cudaMalloc((void **)&dpos, sizeof(int32_t) * T));
    if (ws_bytes) CK(cudaMalloc((void **)&dws, ws_bytes));
    CK(cudaMemcpy(dk, kb, 2 * ncache, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dv, vb, 2 * ncache, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dq, q, sizeof(float) * nq, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dbt, bt, sizeof(int32_t) * T * maxb, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dpos, pos, sizeof(int32_t) * T, cudaMemcpyHostToDevice));
    // variants: 0 jk_attention_splitk, 1 FP32 split-K, 2 .. tensor-core split-K configurations, last jk_attention
    const int nvar = all_cfgs ? 3 + JK_ATTN_MMA_CONFIGS : 4;
    for (int variant = 0; variant < nvar; variant++) {
        const int gqa = variant == nvar - 1, kernel = variant == 0 ? JK_ATTN_AUTO : JK_ATTN_FMA + variant - 1;
        char vname[32];
        if (gqa) snprintf(vname, sizeof vname, "gqa");
        else if (variant == 0) snprintf(vname, sizeof vname, "splitk");
        else if (variant == 1) snprintf(vname, sizeof vname, "splitk_fma");
        else snprintf(vname, sizeof vname, "splitk_mma%d", variant - 2);
        CK(cudaMemset(dout, 0xff, sizeof(float) * nq)); // NaN poison
        if (ws_bytes) CK(cudaMemset(dws, 0xff, ws_bytes));
        CK(cudaMemset(dout_b, 0xff, 2 * nq));
        if (!gqa)
            CK(jk_attention_splitk_with(kernel, dout, dout_b, dq, dk, dv, dbt, maxb, dpos, T, nh, nkv, hd, bs, dws, ws_bytes, NULL));
        else CK(jk_attention(dout, dq, dk, dv, dbt, maxb, dpos, T, nh, nkv, hd, bs, NULL));
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(got, dout, sizeof(float) * nq, cudaMemcpyDeviceToHost));
        long bad_b = 0;
        if (!gqa) {
            CK(cudaMemcpy(got_b, dout_b, 2 * nq, cudaMemcpyDeviceToHost));
            for (size_t i = 0; i < nq; i++) bad_b += got_b[i] != f32_to_bf16(got[i]);
        }
        const cmp_t c = compare(got, ref, (long)nq, 1e-3);
        const double tol = 1e-3;
        const int ok = c.nan == 0 && c.rel < tol && bad_b == 0;
        if (bad_b) printf("     bf16 copy: %ld of %zu elements are not the rounding of the f32 output\n", bad_b, nq);
        int cmin = ctx[0], cmax = ctx[0];
        for (int t = 1; t < T; t++) cmin = ctx[t] < cmin ? ctx[t] : cmin, cmax = ctx[t] > cmax ? ctx[t] : cmax;
        printf("%s attention_%s %s: T=%d nh=%d nkv=%d hd=%d bs=%d ctx %d..%d%s: rel err %.2e (tolerance %.0e), unwritten %ld\n",
               ok ? "ok  " : "FAIL", vname, what, T, nh, nkv, hd, bs, cmin, cmax,
               no_ws ? " (no ws: fallback)" : "", c.rel, tol, c.nan);
        if (c.first >= 0) {
            const long i = c.first;
            printf("     first mismatch: token %ld head %ld dim %ld (ctx %d): gpu %.6g cpu %.6g\n", i / ((long)nh * hd),
                   i / hd % nh, i % hd, ctx[i / ((long)nh * hd)], got[i], ref[i]);
        }
        ok ? passed++ : failed++;
    }
    cudaFree(dk), cudaFree(dv), cudaFree(dq), cudaFree(dout), cudaFree(dout_b), cudaFree(dbt), cudaFree(dpos);
    if (dws) cudaFree(dws);
    free(got_b), free(perm), free(bt), free(pos), free(kb), free(vb), free(kf), free(vf), free(q), free(ref), free(got), free(btp);
}

// Prompt-chunk attention (jk_attn_prefill_plan + jk_attention_prefill, the
// per-token kernels on the range the plan leaves, as the engine runs them)
// against cpu_attention. The step: n_dec decode tokens (own sequences,
// contexts 1..1500), then runs of run_len[i] consecutive prompt tokens of one
// sequence starting at position run_p0[i] (each token's block-table row holds
// the blocks up to its own position only, as the engine's, the rest far
// outside the pool); a decode token after the runs too
// when dec_last (the range the plan leaves then covers the runs). All block
// tables are drawn from one shuffled pool; outputs start as NaN; tolerance
// 1e-2 (Q and P in bf16) and per element; the bf16 copy must be the rounding
// of the f32 output; the plan must make tiles exactly when want_tiles, and
// under its range cap leave no tile token to the per-token kernels.
static void attn_prefill_case(const char *what, int nh, int nkv, int hd, int bs, int n_dec, int n_runs, const int *run_len,
                              const int *run_p0, int min_run, int dec_last, int want_tiles) {
    const int kv_dim = nkv * hd;
    const int n_seq = n_dec + n_runs + (dec_last ? 1 : 0);
    int *slen = malloc(sizeof(int) * n_seq), T = 0; // each sequence's context after this step
    for (int s = 0; s < n_seq; s++) {
        const int run = s >= n_dec && s < n_dec + n_runs;
        slen[s] = run ? run_p0[s - n_dec] + run_len[s - n_dec] : 1 + rnd(1500);
        T += run ? run_len[s - n_dec] : 1;
    }
    int maxb = 1, nb = 3;
    for (int s = 0; s < n_seq; s++) {
        const int b = (slen[s] + bs - 1) / bs;
        maxb = b > maxb ? b : maxb, nb += b;
    }
    int32_t *perm = malloc(sizeof(int32_t) * nb), *stab = malloc(sizeof(int32_t) * (size_t)n_seq * maxb);
    for (int i = 0; i < nb; i++) perm[i] = i;
    for (int i = nb - 1; i > 0; i--) { int j = rnd(i + 1), tmp = perm[i]; perm[i] = perm[j]; perm[j] = tmp; }
    for (int s = 0, next = 0; s < n_seq; s++)
        for (int k = 0; k < maxb; k++) stab[(size_t)s * maxb + k] = k < (slen[s] + bs - 1) / bs ? perm[next++] : 1 << 30;
    int32_t *pos = malloc(sizeof(int32_t) * T), *bt = malloc(sizeof(int32_t) * (size_t)T * maxb);
    const int32_t **btp = malloc(sizeof(int32_t *) * T);
    for (int s = 0, t = 0; s < n_seq; s++) {
        const int run = s >= n_dec && s < n_dec + n_runs, n = run ? run_len[s - n_dec] : 1;
        for (int j = 0; j < n; j++, t++) {
            pos[t] = run ? run_p0[s - n_dec] + j : slen[s] - 1;
            btp[t] = stab + (size_t)s * maxb;
            // as the engine: a token's row holds the blocks up to its own position, then poison
            for (int k = 0; k < maxb; k++) bt[(size_t)t * maxb + k] = k <= pos[t] / bs ? btp[t][k] : 1 << 30;
        }
    }
    const size_t ncache = (size_t)nb * bs * kv_dim, nq = (size_t)T * nh * hd;
    uint16_t *kb = malloc(2 * ncache), *vb = malloc(2 * ncache), *got_b = malloc(2 * nq);
    float *kf = malloc(sizeof(float) * ncache), *vf = malloc(sizeof(float) * ncache);
    float *q = malloc(sizeof(float) * nq), *ref = malloc(sizeof(float) * nq), *got = malloc(sizeof(float) * nq);
    random_kv(kb, vb, kf, vf, ncache);
    for (size_t i = 0; i < nq; i++) q[i] = 2.0f * frnd();
    janus_kv kv = {kf, vf, 1, nb, bs, kv_dim};
    cpu_attention(ref, q, &kv, 0, btp, pos, T, nh, nkv, hd);

    int32_t *tiles = malloc(16 * (size_t)T), ranges[2 * JK_ATTN_PREFILL_MAX_RANGES];
    int n_ranges = -1;
    const int n_tiles = jk_attn_prefill_plan(tiles, ranges, &n_ranges, pos, btp, T, nh, nkv, min_run);
    // The plan on its own: every token once in a tile or in a range (under the
    // range cap, not both), tiles within one run.
    int plan_bad = n_ranges < 0 || n_ranges > JK_ATTN_PREFILL_MAX_RANGES, *cover = calloc((size_t)T, sizeof(int));
    int *in_range = calloc((size_t)T, sizeof(int)), overlap = 0;
    for (int r = 0; r < n_ranges && !plan_bad; r++) {
        plan_bad += ranges[2 * r] < 0 || ranges[2 * r + 1] > T || ranges[2 * r] >= ranges[2 * r + 1] ||
                    (r && ranges[2 * r] < ranges[2 * r - 1]);
        for (int t = ranges[2 * r]; t < ranges[2 * r + 1] && t < T && t >= 0; t++) in_range[t] = 1;
    }
    const int tpb = jk_attn_prefill_tokens_per_tile(nh, nkv);
    for (int i = 0; i < n_tiles; i++) {
        const int t0 = tiles[4 * i], n = tiles[4 * i + 1];
        plan_bad += n < 1 || n > tpb || t0 < 0 || t0 + n > T || tiles[4 * i + 2] != pos[t0];
        for (int t = t0; t < t0 + n && t < T; t++) cover[t]++, plan_bad += btp[t] != btp[t0] || pos[t] != pos[t0] + (t - t0);
        if (i) plan_bad += tiles[4 * i - 2] + tiles[4 * i - 3] < tiles[4 * i + 2] + tiles[4 * i + 1]; // longest first
    }
    for (int t = 0; t < T; t++) plan_bad += cover[t] > 1 || (!cover[t] && !in_range[t]), overlap += cover[t] && in_range[t];
    if (n_ranges < JK_ATTN_PREFILL_MAX_RANGES && n_tiles) plan_bad += overlap;
    uint16_t *dk, *dv, *dout_b;
    float *dq, *dout, *dws = NULL;
    int32_t *dbt, *dpos, *dtiles;
    const size_t ws_bytes = jk_attention_ws_bytes(T, nh, nkv, hd, maxb * bs);
    CK(cudaMalloc((void **)&dk, 2 * ncache));
    CK(cudaMalloc((void **)&dv, 2 * ncache));
    CK(cudaMalloc((void **)&dq, sizeof(float) * nq));
    CK(cudaMalloc((void **)&dout, sizeof(float) * nq));
    CK(cudaMalloc((void **)&dout_b, 2 * nq));
    CK(cudaMalloc((void **)&dbt, sizeof(int32_t) * (size_t)T * maxb));
    CK(cudaMalloc((void **)&dpos, sizeof(int32_t) * T));
    CK(cudaMalloc((void **)&dtiles, 16 * (size_t)T));
    if (ws_bytes) CK(cudaMalloc((void **)&dws, ws_bytes));
    CK(cudaMemcpy(dk, kb, 2 * ncache, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dv, vb, 2 * ncache, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dq, q, sizeof(float) * nq, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dbt, bt, sizeof(int32_t) * (size_t)T * maxb, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dpos, pos, sizeof(int32_t) * T, cudaMemcpyHostToDevice));
    if (n_tiles) CK(cudaMemcpy(dtiles, tiles, 16 * (size_t)n_tiles, cudaMemcpyHostToDevice));
    CK(cudaMemset(dout, 0xff, sizeof(float) * nq));
    CK(cudaMemset(dout_b, 0xff, 2 * nq));
    for (int r = 0; r < n_ranges; r++) {
        const int d0 = ranges[2 * r], d1 = ranges[2 * r + 1];
        const size_t o = (size_t)d0 * nh * hd;
        CK(jk_attention_splitk_with(JK_ATTN_AUTO, dout + o, dout_b + o, dq + o, dk, dv, dbt + (size_t)d0 * maxb, maxb,
                                    dpos + d0, d1 - d0, nh, nkv, hd, bs, dws, ws_bytes, NULL));
    }
    // Tile tokens that a merged range also covered: poisoned again, so the prompt kernel must write them.
    for (int i = 0; i < n_tiles; i++) {
        const size_t o = (size_t)tiles[4 * i] * nh * hd, len = (size_t)tiles[4 * i + 1] * nh * hd;
        CK(cudaMemset(dout + o, 0xff, sizeof(float) * len));
        CK(cudaMemset(dout_b + o, 0xff, 2 * len));
    }
    CK(jk_attention_prefill(dout, dout_b, dq, dk, dv, dbt, maxb, dtiles, n_tiles, nh, nkv, hd, bs, NULL));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(got, dout, sizeof(float) * nq, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(got_b, dout_b, 2 * nq, cudaMemcpyDeviceToHost));
    long bad_b = 0;
    for (size_t i = 0; i < nq; i++) bad_b += got_b[i] != f32_to_bf16(got[i]);
    // Relative L2 error under 1e-2 over all, and no element off by more than
    // 6e-2 (|ref| + rms(ref)) (bf16 Q and P: ~2e-3 typical), so that one wrong
    // row cannot hide in the average.
    const cmp_t c = compare(got, ref, (long)nq, 6e-2);
    const double tol = 1e-2;
    const int ok = c.nan == 0 && c.rel < tol && c.first < 0 && bad_b == 0 && plan_bad == 0 && (n_tiles > 0) == want_tiles;
    printf("%s attention_prefill %s: T=%d nh=%d nkv=%d hd=%d bs=%d, %d tiles of <= %d tokens, %d per-token ranges "
           "(%d tile tokens in them): rel err %.2e (tolerance %.0e), unwritten %ld, bf16 copy off %ld, plan errors %d\n",
           ok ? "ok  " : "FAIL", what, T, nh, nkv, hd, bs, n_tiles, tpb, n_ranges, overlap, c.rel, tol, c.nan, bad_b, plan_bad);
    if (c.first >= 0) {
        const long i = c.first, t = i / ((long)nh * hd);
        printf("     first mismatch: token %ld (pos %d) head %ld dim %ld: gpu %.6g cpu %.6g\n", t, pos[t], i / hd % nh, i % hd,
               got[i], ref[i]);
    }
    ok ? passed++ : failed++;
    cudaFree(dk), cudaFree(dv), cudaFree(dq), cudaFree(dout), cudaFree(dout_b), cudaFree(dbt), cudaFree(dpos), cudaFree(dtiles);
    if (dws) cudaFree(dws);
    free(slen), free(perm), free(stab), free(pos), free(bt), free(btp), free(kb), free(vb), free(got_b), free(kf), free(vf);
    free(q), free(ref), free(got), free(tiles), free(cover), free(in_range);
}

static void attn_case(const char *what, int T, int nh, int nkv, int hd, int bs, const int *ctx, int same_seq, int no_ws) {
    attn_case_cfgs(what, T, nh, nkv, hd, bs, ctx, same_seq, no_ws, 0);
}

static void attn_random_case(const char *what, int T, int nh, int nkv, int hd, int max_ctx) {
    int *ctx = malloc(sizeof(int) * T);
    for (int t = 0; t < T; t++) ctx[t] = 1 + rnd(max_ctx);
    attn_case(what, T, nh, nkv, hd, 16, ctx, 0, 0);
    free(ctx);
}

static float rb(float v) { return bf16_to_f32(f32_to_bf16(v)); }

// The fused kernels' FFN at their own rounding points, sums in double: x rounded
// to bf16, gate and up in f32, act = bf16(silu(gate) * up), y in f32. Besides y
// it gives, per element, how far the kernel may stand from it: its f32 sums
// (4e-5 of sum |act w|), and for every act whose exact value lies so close to a
// bf16 rounding boundary that the kernel's f32 gate/up (error ~2^-24 sqrt(H)
// times the terms' L2 norm, taken 16 times over) may round it the other way,
// one ulp of act times |w|.
static void prefill_fused_strict(const float *x, const int32_t *seg, const uint16_t *wgu, const uint16_t *wd, float *y,
                                 float *bound, int E, int H, int I, int *n_amb) {
    float *xb = malloc(sizeof(float) * H), *act = malloc(sizeof(float) * I), *amb = malloc(sizeof(float) * I);
    for (int e = 0; e < E; e++)
        for (int r = seg[e]; r < seg[e + 1]; r++) {
            for (int k = 0; k < H; k++) xb[k] = rb(x[(size_t)r * H + k]);
            for (int n = 0; n < I; n++) {
                const uint16_t *wg = wgu + ((size_t)e * 2 * I + n) * H, *wu = wgu + ((size_t)e * 2 * I + I + n) * H;
                double g = 0, u = 0, g2 = 0, u2 = 0;
                for (int k = 0; k < H; k++) {
                    const double pg = (double)xb[k] * bf16_to_f32(wg[k]), pu = (double)xb[k] * bf16_to_f32(wu[k]);
                    g += pg, u += pu, g2 += pg * pg, u2 += pu * pu;
                }
                // f32 sums of H terms: ~2^-24 sqrt(H) |terms|_2, taken 16 times over
                const double eg = 16 * 0x1p-24 * sqrt((double)H * g2), eu = 16 * 0x1p-24 * sqrt((double)H * u2);
                const double sg = 1.0 / (1.0 + exp(-g)), a = g * sg * u;
                const double da = fabs(u * sg * (1 + g * (1 - sg))) * eg + fabs(g * sg) * eu + 1e-6 * fabs(a);
                act[n] = rb((float)a);
                // one ulp of bf16 at act's binade; the boundary is half an ulp from the rounded value
                const double ulp = a != 0 ? ldexp(1.0, ilogb(fmax(fabs(a), fabs(act[n]))) - 7) : 0;
                amb[n] = ulp / 2 - fabs(a - act[n]) <= da ? (float)ulp : 0.0f;
                *n_amb += amb[n] != 0;
            }
            for (int h = 0; h < H; h++) {
                const uint16_t *w = wd + ((size_t)e * H + h) * I;
                double acc = 0, mag = 0, fl = 0;
                for (int n = 0; n < I; n++) {
                    const double wn = bf16_to_f32(w[n]);
                    acc += act[n] * wn, mag += fabs(act[n] * wn), fl += amb[n] * fabs(wn);
                }
                y[(size_t)r * H + h] = (float)acc;
                bound[(size_t)r * H + h] = (float)(4e-5 * mag + 1.01 * fl + 1e-30);
            }
        }
    free(xb), free(act), free(amb);
}

// Prefill expert FFN (bf16 operands) against janus_moe_ffn_grouped_ref: x,
// silu(gate) * up (and on the cuBLAS paths gate/up; y too on the grouped path)
// are rounded to bf16: tolerance 1e-2. ws starts as NaN, y too. xb_in: the rows
// are given in bf16 (xb) and the f32 x handed beside them is all NaN, so a path
// that read it instead would fail. Where the fused kernels run
// (jk_moe_prefill_path), also prefill_fused_strict, element by element.
static void prefill_case_in(int E, int H, int I, int max_rows, int mode, int xb_in) {
    int32_t *seg = malloc(sizeof(int32_t) * (E + 1));
    seg[0] = 0;
    for (int e = 0; e < E; e++) seg[e + 1] = seg[e] + (rnd(4) ? rnd(max_rows + 1) : 0);
    const int R = seg[E], Ra = R ? R : 1;
    size_t ngu = (size_t)E * 2 * I * H, nd = (size_t)E * H * I;
    float *x = malloc(sizeof(float) * Ra * H), *y = malloc(sizeof(float) * Ra * H), *ref = malloc(sizeof(float) * Ra * H);
    uint16_t *wgu = malloc(2 * ngu), *wd = malloc(2 * nd);
    for (size_t i = 0; i < (size_t)R * H; i++) x[i] = frnd();
    for (size_t i = 0; i < ngu; i++) wgu[i] = f32_to_bf16(frnd() / sqrtf((float)H) * 2.0f);
    for (size_t i = 0; i < nd; i++) wd[i] = f32_to_bf16(frnd() / sqrtf((float)I));
    janus_moe_ffn_grouped_ref(x, seg, wgu, wd, ref, E, H, I);
    float *dx, *dy;
    uint16_t *dwgu, *dwd;
    void *dws;
    const size_t ws_bytes = jk_moe_prefill_ws_bytes(R, H, I);
    CK(cudaMalloc((void **)&dx, sizeof(float) * Ra * H));
    CK(cudaMalloc((void **)&dy, sizeof(float) * (Ra + 1) * H)); // + one poisoned row past R
    CK(cudaMalloc((void **)&dwgu, 2 * ngu));
    CK(cudaMalloc((void **)&dwd, 2 * nd));
    CK(cudaMalloc(&dws, ws_bytes));
    uint16_t *dxb = NULL;
    if (xb_in) {
        uint16_t *xbh = malloc(2 * (size_t)Ra * H);
        for (size_t i = 0; i < (size_t)R * H; i++) xbh[i] = f32_to_bf16(x[i]);
        CK(cudaMalloc((void **)&dxb, 2 * (size_t)Ra * H));
        CK(cudaMemcpy(dxb, xbh, 2 * (size_t)R * H, cudaMemcpyHostToDevice));
        CK(cudaMemset(dx, 0xff, sizeof(float) * Ra * H));
        free(xbh);
    } else
        CK(cudaMemcpy(dx, x, sizeof(float) * R * H, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dwgu, wgu, 2 * ngu, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dwd, wd, 2 * nd, cudaMemcpyHostToDevice));
    CK(cudaMemset(dy, 0xff, sizeof(float) * (Ra + 1) * H));
    CK(cudaMemset(dws, 0xff, ws_bytes));
    cublasHandle_t hb;
    if (cublasCreate(&hb) != CUBLAS_STATUS_SUCCESS) { printf("FAIL: cublasCreate\n"); exit(1); }
    jk_moe_prefill_args a = {dx, seg, dwgu, dwd, dy, E, H, I, dws, ws_bytes, mode, dxb};
    CK(jk_moe_ffn_prefill(&a, hb, NULL));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(y, dy, sizeof(float) * Ra * H, cudaMemcpyDeviceToHost));
    float tail0;
    CK(cudaMemcpy(&tail0, dy + (size_t)R * H, sizeof(float), cudaMemcpyDeviceToHost));
    const cmp_t c = compare(y, ref, (long)R * H, 5e-2);
    const double tol = 1e-2;
    int active = 0, maxr = 0;
    for (int e = 0; e < E; e++) active += seg[e + 1] > seg[e], maxr = seg[e + 1] - seg[e] > maxr ? seg[e + 1] - seg[e] : maxr;
    // The fused kernels against their own rounding points: within summation
    // order and one-ulp flips of act (prefill_fused_strict), element by element.
    const int path = jk_moe_prefill_path(&a);
    static const char *names[] = {"auto", "grouped", "loop", "fused"};
    char strict[160] = "";
    int strict_ok = 1;
    if (path == JK_PREFILL_FUSED && R > 0) {
        float *sref = malloc(sizeof(float) * R * H), *bnd = malloc(sizeof(float) * R * H);
        int n_amb = 0;
        long off = 0, worst = 0;
        double wr = 0;
        prefill_fused_strict(x, seg, wgu, wd, sref, bnd, E, H, I, &n_amb);
        for (long i = 0; i < (long)R * H; i++) {
            const double d = fabs((double)y[i] - sref[i]), q = d / bnd[i];
            off += !(d <= bnd[i]);
            if (!(q <= wr)) wr = q, worst = i;
        }
        strict_ok = off == 0;
        snprintf(strict, sizeof strict, ", own rounding: %ld elements off, worst %.2f of its bound (%d of %ld act near a rounding boundary)",
                 off, wr, n_amb, (long)R * I);
        if (off)
            printf("     worst element: row %ld col %ld: gpu %.8g strict %.8g bound %.3g\n", worst / H, worst % H, y[worst],
                   sref[worst], bnd[worst]);
        free(sref), free(bnd);
    }
    const int ok = c.nan == 0 && (R == 0 || c.rel < tol) && strict_ok && isnan(tail0);
    printf("%s moe_ffn_prefill %s (%s)%s E=%d H=%d I=%d rows=%d (%d experts, max %d): rel err %.2e (tolerance %.0e)%s, "
           "unwritten %ld%s\n",
           ok ? "ok  " : "FAIL", names[mode], names[path], xb_in ? " bf16-in" : "", E, H, I, R, active, maxr, c.rel, tol,
           strict, c.nan, isnan(tail0) ? "" : ", wrote past row R");
    if (c.first >= 0) {
        const long i = c.first;
        int e = 0;
        while (e < E && seg[e + 1] <= i / H) e++;
        printf("     first mismatch: row %ld (expert %d) col %ld: gpu %.6g cpu %.6g\n", i / H, e, i % H, y[i], ref[i]);
    }
    ok ? passed++ : failed++;
    cublasDestroy(hb);
    cudaFree(dx), cudaFree(dy), cudaFree(dwgu), cudaFree(dwd), cudaFree(dws);
    if (dxb) cudaFree(dxb);
    free(seg), free(x), free(y), free(ref), free(wgu), free(wd);
}

// Every case both ways: f32 rows (x), bf16 rows (xb).
static void prefill_case(int E, int H, int I, int max_rows, int mode) {
    prefill_case_in(E, H, I, max_rows, mode, 0);
    prefill_case_in(E, H, I, max_rows, mode, 1);
}

int main(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    // Four times: the register-ring kernels (JANUS_FFN_STAGED=0), the staged
    // kernel wherever K is a multiple of 64 (1), the default pick, the staged
    // kernel told how many experts are active (its grid holds only theirs: a
    // wrong bound leaves experts' rows unwritten).
    for (int pass = 0; pass < 4; pass++) {
        if (pass == 2) unsetenv("JANUS_FFN_STAGED");
        else setenv("JANUS_FFN_STAGED", pass ? "1" : "0", 1);
        pass_active = pass == 3;
        moe_case(8, 64, 32, 3);
        moe_case(6, 96, 40, 20);      // more rows than one register pass
        moe_case(16, 2048, 768, 16);  // Qwen3-30B-A3B expert shape
        moe_case(8, 2048, 768, 1);    // ... one token's worth
        moe_case(128, 512, 256, 1);   // many experts, few of them active
        moe_case(4, 4096, 1024, 9);
        moe_case(3, 264, 136, 1);     // odd multiples of 8
        moe_case(32, 512, 256, 1);    // every kernel variant: 1, 2, 4, 8, 16+ rows
        moe_case(32, 512, 256, 2);
        moe_case(32, 512, 256, 4);
        moe_case(32, 512, 256, 8);
        moe_case(32, 512, 256, 40);
        moe_case(32, 512, 256, 90);   // staged: more rows than one pass of 64
        moe_case(1, 96, 40, 12);      // one group, task count not a multiple of the warps per block
        moe_case(5, 160, 96, 30);
        moe_case(7, 320, 200, 13);    // staged gate/up (H 320), the down projection (I 200) not
        moe_case(9, 192, 448, 5);     // staged: a partial gate/up task (448 = 7 x 64) and down task (192)
    }

    // Attention: contexts 1..4096, GQA 1/4/8, block size 16, batch 1..33.
    static const int one[1] = {1}, long1[1] = {4096}, mid1[1] = {777};
    static const int edges[7] = {63, 64, 65, 127, 128, 129, 2};
    for (int G = 1; G <= 8; G *= 2) {
        if (G == 2) continue;
        attn_case("one position", 1, 2 * G, 2, 128, 16, one, 0, 0);
        attn_case("long context", 1, 2 * G, 2, 128, 16, long1, 0, 0);
        attn_case("odd context", 1, 2 * G, 2, 128, 16, mid1, 0, 0);
        attn_case("tile edges", 7, 2 * G, 2, 128, 16, edges, 0, 0);
        attn_random_case("batch 33", 33, 2 * G, 2, 128, 4096);
    }
    attn_random_case("Qwen3 heads", 9, 32, 4, 128, 3000);
    attn_random_case("Mixtral heads", 9, 32, 8, 128, 3000);
    attn_random_case("hd 64", 5, 16, 4, 64, 3000);
    attn_random_case("hd 256", 5, 16, 2, 256, 2000);
    attn_random_case("6 heads per kv head", 6, 12, 2, 128, 2500);
    attn_random_case("16 heads per kv head (2 head groups)", 4, 32, 2, 128, 2500);
    attn_random_case("many tokens, few chunks", 200, 8, 2, 128, 600);
    attn_random_case("many tokens, one chunk", 600, 8, 2, 128, 300);
    attn_random_case("hd 96 (jk_attention fallback)", 3, 8, 2, 96, 500);
    // Prompt-chunk attention: Qwen3 heads (8 per kv head: 8 tokens per tile),
    // Mixtral (4), 6 (2 heads per tile), 1, 16 and 32; head sizes 128, 64, 32, 16;
    // chunks at position 0 and continuing a prompt, lengths off the tile and
    // the 64-position K/V tile, block sizes 16 and 24; runs under min_run go
    // to the per-token kernels.
    {
        static const int l1[1] = {1024}, z1[1] = {0};
        static const int l3[3] = {200, 77, 64}, p3[3] = {0, 1000, 63};
        static const int l4[4] = {130, 5, 64, 300}, p4[4] = {70, 9, 0, 2000};
        attn_prefill_case("Qwen3 heads, one prompt", 32, 4, 128, 16, 0, 1, l1, z1, 64, 0, 1);
        attn_prefill_case("Qwen3 heads, decode + chunks", 32, 4, 128, 16, 23, 3, l3, p3, 64, 0, 1);
        attn_prefill_case("Qwen3 heads, a short run and a decode token last", 32, 4, 128, 24, 5, 4, l4, p4, 64, 1, 1);
        attn_prefill_case("Mixtral heads", 32, 8, 128, 16, 7, 3, l3, p3, 64, 0, 1);
        attn_prefill_case("6 heads per kv head", 12, 2, 128, 16, 3, 4, l4, p4, 64, 0, 1);
        attn_prefill_case("one head per kv head", 4, 4, 128, 16, 3, 3, l3, p3, 64, 0, 1);
        attn_prefill_case("16 heads per kv head", 32, 2, 128, 16, 3, 3, l3, p3, 64, 0, 1);
        attn_prefill_case("32 heads per kv head", 32, 1, 128, 16, 2, 3, l3, p3, 64, 0, 1);
        attn_prefill_case("hd 64", 32, 4, 64, 16, 4, 4, l4, p4, 64, 0, 1);
        attn_prefill_case("hd 32 (the fixtures' sizes)", 4, 1, 32, 16, 4, 4, l4, p4, 64, 0, 1);
        attn_prefill_case("hd 16, 2 heads per kv head", 4, 2, 16, 16, 4, 3, l3, p3, 2, 0, 1);
        attn_prefill_case("min run 2: every run a tile", 32, 4, 128, 16, 6, 4, l4, p4, 2, 0, 1);
        static const int l64[1] = {64}, p64[1] = {3000};
        attn_prefill_case("one run of 64 (under 2 x min run: per token)", 32, 4, 128, 16, 5, 1, l64, p64, 64, 0, 0);
        // short runs between long ones: more per-token ranges than the cap (merged)
        static const int l9[9] = {100, 3, 100, 3, 100, 3, 100, 3, 100}, p9[9] = {0, 50, 200, 7, 64, 1000, 0, 33, 500};
        attn_prefill_case("short runs between long ones (ranges merged)", 32, 4, 128, 16, 4, 9, l9, p9, 64, 1, 1);
        // a step as generate builds it: decode tokens, a long chunk, a short one last
        static const int l2[2] = {488, 21}, p2[2] = {300, 0};
        attn_prefill_case("decode, a long chunk, a short chunk last", 32, 4, 128, 16, 3, 2, l2, p2, 64, 0, 1);
    }
    attn_case("no workspace", 1, 8, 2, 128, 16, long1, 0, 1);
    // Qwen3-30B-A3B heads (32/4/128: 8 query heads per kv head, the tensor-core
    // kernel's full tile) at the decode shapes of janus bench kernels, every
    // launch configuration; then odd, single-position and mixed contexts.
    {
        static int c64[64];
        const int lens[3] = {512, 2048, 8192}, batch[3] = {64, 64, 4};
        for (int i = 0; i < 3; i++) {
            for (int t = 0; t < batch[i]; t++) c64[t] = lens[i];
            attn_case_cfgs("Qwen3 decode", batch[i], 32, 4, 128, 16, c64, 0, 0, 1);
        }
        for (int t = 0; t < 64; t++) c64[t] = 1 + 2 * rnd(1500); // odd lengths up to 2999
        attn_case_cfgs("Qwen3 odd contexts", 64, 32, 4, 128, 16, c64, 0, 0, 1);
        static const int ones[3] = {1, 1, 1};
        attn_case_cfgs("Qwen3 context 1", 3, 32, 4, 128, 16, ones, 0, 0, 1);
        // One batch, very different lengths: chunks of the short ones are empty or
        // partial while the long ones fill theirs.
        static const int mixed[16] = {1, 8192, 2, 15, 16, 17, 31, 33, 255, 257, 511, 513, 4097, 3, 1000, 7777};
        attn_case_cfgs("Qwen3 mixed lengths", 16, 32, 4, 128, 16, mixed, 0, 0, 1);
        for (int t = 0; t < 64; t++) c64[t] = 512;
        attn_case_cfgs("Mixtral decode", 64, 32, 8, 128, 16, c64, 0, 0, 1);
        for (int t = 0; t < 64; t++) c64[t] = 1 + rnd(700);
        attn_case_cfgs("Qwen3 heads, block size 24", 64, 32, 4, 128, 24, c64, 0, 0, 1);
        attn_case_cfgs("Qwen3 heads, block size 8", 64, 32, 4, 128, 8, c64, 0, 0, 0);
        attn_case_cfgs("hd 64, 8 heads per kv head", 16, 32, 4, 64, 16, c64, 0, 0, 1);
        attn_case_cfgs("12 heads per kv head (a full and a half head group)", 8, 24, 2, 128, 16, c64, 0, 0, 1);
        for (int t = 0; t < 64; t++) c64[t] = 1000 + t; // a prefill chunk of one sequence
        attn_case_cfgs("Qwen3 heads, prefill chunk", 64, 32, 4, 128, 16, c64, 1, 0, 0);
    }
    {
        int pre[100];
        for (int t = 0; t < 100; t++) pre[t] = 1900 + t; // a prefill chunk of one sequence
        attn_case("prefill chunk", 100, 16, 2, 128, 16, pre, 1, 0);
    }

    // Prefill expert FFN, every path: cuBLAS (grouped, loop) and the fused wgmma
    // kernels (auto and fused where they run; else both are cuBLAS again).
    printf("prefill fused wgmma kernels %s\n", jk_moe_prefill_fused_available() ? "available" : "unavailable: cuBLAS");
    for (int mode = 0; mode < 4; mode++) {
        prefill_case(8, 256, 128, 40, mode);
        prefill_case(32, 512, 256, 100, mode);  // > JK_PREFILL_GROUPED_MIN active experts: auto = fused (or grouped)
        prefill_case(16, 2048, 768, 64, mode);  // Qwen3-30B-A3B expert shape
        prefill_case(3, 264, 136, 50, mode);    // odd multiples of 8: partial K blocks and column tiles
        prefill_case(1, 128, 64, 300, mode);    // one expert, 3 row tiles, the last one partial
    }
    // Fused: full 64-row halves of a tile stored through the TMA, the rest from
    // registers; partial column tiles (H, I not multiples of the tile widths)
    prefill_case(2, 264, 136, 300, JK_PREFILL_FUSED);
    // More tiles than SMs in both fused kernels (each CTA loops over several,
    // reusing its staging buffers): ~18 experts x ~2.5 row tiles x 4 column tiles
    prefill_case(24, 1024, 512, 600, JK_PREFILL_FUSED);
    // The fixtures' small shapes on the fused kernels: hidden and expert widths
    // under one K block / column tile (H 48-96, I 24-48), a handful of rows
    {
        static const int shp[][4] = {{6, 96, 40, 30}, {12, 48, 24, 20}, {8, 64, 48, 40}, {6, 80, 40, 200}, {10, 72, 24, 70}};
        for (int i = 0; i < 5; i++) prefill_case(shp[i][0], shp[i][1], shp[i][2], shp[i][3], JK_PREFILL_FUSED);
    }
    prefill_case(600, 64, 32, 3, JK_PREFILL_GROUPED); // more active experts than one grouped call takes: loop
    prefill_case(600, 64, 32, 3, JK_PREFILL_FUSED);   // more than one fused call takes: cuBLAS loop
    prefill_case(4, 64, 32, 0, JK_PREFILL_AUTO);      // no rows at all
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
