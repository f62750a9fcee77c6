// tests/test_cuda_sample.c: jk_sample (GPU) against its CPU twin, janus_sample
// + cpu_logprob, on thousands of random rows: V from 2 to 160000, temperature
// 0 / 0.5 / 1 / 1.5, top_k 0 / 1 / 5 / 50, top_p 1 / 0.9 / 0.5 / 0.01, random
// seeds, ids and steps; logits Gaussian, quantised (ties, -0 and +0), with
// -inf, -1e30 or -FLT_MAX entries, a tied maximum, one dominant logit, all
// equal, all -inf.
//   - greedy rows: the CPU's token exactly, and jk_argmax_logprob's (where
//     some logit is finite);
//   - sampled rows: the CPU's token, except where the CPU's own draw lies
//     within 1e-5 (of the kept mass) of a boundary of the GPU token's interval
//     of the cumulative distribution, or its top-p cut within 1e-5 of top_p
//     (the GPU's sums differ in the last bits; equal logits with top_p 0.5 put
//     the cut exactly on the threshold); such rows must be < 0.5%;
//   - logprob: cpu_logprob of the GPU's token within 1e-5 relative (+1e-8 absolute);
//   - a pure function of (row, params): the same results with the rows of a
//     batch in reverse order.
// Exits 77 (meson: skipped) when no GPU is present.
#include <cuda_runtime_api.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu/kernels.h"
#include "engine/sample.h"
#include "layers.h"
#include "sample_gpu.h"

#define CK(x)                                                                                  \
    do {                                                                                       \
        int rc_ = (int)(x);                                                                    \
        if (rc_) { printf("FAIL: %s: CUDA error %d (%s)\n", #x, rc_, cudaGetErrorString((cudaError_t)rc_)); exit(1); } \
    } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd64(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static int rnd(int n) { return (int)(rnd64() % (uint64_t)n); }
static double urnd(void) { return (double)(rnd64() >> 11) * (1.0 / 9007199254740992.0); }
static float gauss(void) { return (float)(sqrt(-2.0 * log(1.0 - urnd())) * cos(6.283185307179586 * urnd())); }

static int passed, failed, printed;
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) passed++;                                                     \
        else {                                                                  \
            failed++;                                                           \
            if (printed++ < 30) { printf("FAIL: " __VA_ARGS__); printf("\n"); } \
        }                                                                       \
    } while (0)

enum { K_GAUSS, K_QUANT, K_NEGINF, K_VERYNEG, K_TIEDMAX, K_DOMINANT, K_EQUAL, K_ALLNEGINF, N_KINDS };
static const char *kind_name[N_KINDS] = {"gaussian", "quantised", "-inf entries", "-1e30/-FLT_MAX entries",
                                         "tied maximum", "dominant", "all equal", "all -inf"};

static void make_row(float *l, int V, int kind) {
    static const float sigmas[4] = {0.3f, 1.0f, 3.0f, 8.0f};
    const float sg = sigmas[rnd(4)];
    for (int i = 0; i < V; i++) l[i] = sg * gauss();
    switch (kind) {
    case K_QUANT: // multiples of 1/4: many ties (and -0 beside +0)
        for (int i = 0; i < V; i++) l[i] = roundf(l[i] * 4.0f / sg) / 4.0f;
        break;
    case K_NEGINF:
        for (int i = 0; i < V; i++)
            if (rnd(5) == 0) l[i] = -INFINITY;
        if (rnd(8) == 0) l[0] = -INFINITY;
        break;
    case K_VERYNEG:
        for (int i = 0; i < V; i++) {
            const int r = rnd(10);
            if (r == 0) l[i] = -1e30f;
            else if (r == 1) l[i] = -FLT_MAX;
        }
        break;
    case K_TIEDMAX: {
        float mx = l[0];
        for (int i = 1; i < V; i++) mx = fmaxf(mx, l[i]);
        const int n = 1 + rnd(V < 8 ? V : 8);
        for (int j = 0; j < n; j++) l[rnd(V)] = mx;
        break;
    }
    case K_DOMINANT:
        l[rnd(V)] = 20.0f + 20.0f * (float)urnd();
        break;
    case K_EQUAL: {
        const float c = gauss();
        for (int i = 0; i < V; i++) l[i] = c;
        break;
    }
    case K_ALLNEGINF:
        for (int i = 0; i < V; i++) l[i] = -INFINITY;
        break;
    }
}

// ---- the CPU's walk, with slack -------------------------------------------------
typedef struct {
    float v;
    int32_t i;
} cand;
static int cmp_desc(const void *a, const void *b) { // sample.c's order
    const cand *x = a, *y = b;
    if (x->v > y->v) return -1;
    if (x->v < y->v) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

// janus_sample's sampled path redone step by step (the same float and double
// operations, so the same token: checked), then: is `tok` the token that the
// walk gives when the draw, or the top-p threshold, moves by at most eps of
// the mass? -1: the redone walk disagrees with janus_sample; 0: no; 1: yes.
static int within_slack(const float *l, int V, const janus_sampling *s, int64_t id, int step, int cpu_tok, int tok,
                        double eps) {
    cand *c = malloc(sizeof(cand) * V);
    double *A = malloc(sizeof(double) * (V + 1)), *cum = malloc(sizeof(double) * V);
    for (int i = 0; i < V; i++) c[i] = (cand){l[i], i};
    int n = V;
    if (s->top_k > 0 && s->top_k < V) n = s->top_k;
    if (n < V || s->top_p < 1.f) qsort(c, V, sizeof(cand), cmp_desc);
    const float inv_t = 1.0f / s->temperature;
    float mx = -FLT_MAX;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, c[i].v * inv_t);
    A[0] = 0;
    for (int i = 0; i < n; i++) A[i + 1] = A[i] + expf(c[i].v * inv_t - mx); // A[k]: mass of the first k
    int keep = n;
    if (s->top_p < 1.f) {
        double cc = 0;
        for (int i = 0; i < n; i++) {
            cc += (double)expf(c[i].v * inv_t - mx) / A[n];
            cum[i] = cc;
        }
        for (int i = 0; i < n; i++)
            if (cum[i] >= s->top_p) { keep = i + 1; break; }
    }
    const double uf = (double)janus_rng_uniform((uint64_t)s->seed, (uint64_t)id, (uint64_t)step);
    int mine = c[keep - 1].i;
    for (int i = 0; i < keep; i++)
        if (uf * A[keep] < A[i + 1]) { mine = c[i].i; break; }
    int ok = mine == cpu_tok ? 0 : -1;
    int pos = -1;
    for (int i = 0; i < n; i++)
        if (c[i].i == tok) pos = i;
    for (int k = keep - 3; ok == 0 && k <= keep + 3; k++) { // cuts that eps allows
        if (k < 1 || k > n || pos < 0 || pos >= k) continue;
        if (k != keep && !(s->top_p < 1.f)) continue;
        if (k < keep && !(cum[k - 1] >= s->top_p - eps)) continue;
        if (k > keep && !(cum[k - 2] < s->top_p + eps)) continue;
        const double S = A[k], u = uf * S;
        if (S == 0) ok = pos == k - 1;
        else ok = u >= A[pos] - eps * S && u < A[pos + 1] + eps * S;
    }
    free(c), free(A), free(cum);
    return ok;
}

static int same_lp(float g, float c) {
    if (isnan(c) || isinf(c)) return isnan(c) ? isnan(g) : g == c;
    // + an absolute 1e-8: a logprob near 0 is log(sum) of a sum near 1, where
    // the float result carries ~1e-9 of the summation order (measured on an
    // H100: -9.9357e-10 vs the CPU's -9.9229e-10)
    return fabsf(g - c) <= 1e-5f * fabsf(c) + 1e-8f;
}

static int rows_total, rows_sampled, rows_boundary;

// One batch of R rows of V logits through jk_sample (and jk_argmax_logprob),
// against the CPU.
static void batch(int V, int R) {
    float *l = malloc(sizeof(float) * (size_t)R * V), *scratch = malloc(sizeof(float) * 3 * (size_t)V);
    jk_sample_params *p = malloc(sizeof(jk_sample_params) * R);
    int *kind = malloc(sizeof(int) * R);
    static const float temps[4] = {0.f, 0.5f, 1.0f, 1.5f}, tops_p[4] = {1.f, 0.9f, 0.5f, 0.01f};
    static const int tops_k[4] = {0, 1, 5, 50};
    for (int r = 0; r < R; r++) {
        kind[r] = rnd(20) == 0 ? (V <= 4096 ? K_ALLNEGINF : K_EQUAL) : rnd(N_KINDS - 1);
        make_row(l + (size_t)r * V, V, kind[r]);
        p[r] = (jk_sample_params){temps[rnd(4)], tops_p[rnd(4)], tops_k[rnd(4)], rnd(10000), (int64_t)rnd64(),
                                  (int64_t)rnd64()};
        if (rnd(10) == 0) p[r].step = rnd(2) ? 0 : -1 - rnd(5); // negative steps wrap as on the CPU
    }
    float *dl, *dlp, *dlp2, *dlpa;
    int32_t *dtok, *dtok2, *dtoka;
    jk_sample_params *dp;
    CK(cudaMalloc((void **)&dl, sizeof(float) * (size_t)R * V));
    CK(cudaMalloc((void **)&dp, sizeof(jk_sample_params) * R));
    CK(cudaMalloc((void **)&dtok, 4 * R)); CK(cudaMalloc((void **)&dlp, 4 * R));
    CK(cudaMalloc((void **)&dtok2, 4 * R)); CK(cudaMalloc((void **)&dlp2, 4 * R));
    CK(cudaMalloc((void **)&dtoka, 4 * R)); CK(cudaMalloc((void **)&dlpa, 4 * R));
    CK(cudaMemset(dtok, 0xff, 4 * R)); CK(cudaMemset(dlp, 0xff, 4 * R)); // poisoned: -1 and NaN
    CK(cudaMemcpy(dl, l, sizeof(float) * (size_t)R * V, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dp, p, sizeof(jk_sample_params) * R, cudaMemcpyHostToDevice));
    CK(jk_sample(dtok, dlp, dl, dp, R, V, NULL));
    CK(jk_argmax_logprob(dtoka, dlpa, dl, R, V, NULL));
    int32_t *tok = malloc(4 * R), *toka = malloc(4 * R), *tok2 = malloc(4 * R);
    float *lp = malloc(4 * R), *lp2 = malloc(4 * R);
    CK(cudaMemcpy(tok, dtok, 4 * R, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(lp, dlp, 4 * R, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(toka, dtoka, 4 * R, cudaMemcpyDeviceToHost));

    // The same rows in reverse order: the same results, bit for bit.
    float *lr = malloc(sizeof(float) * (size_t)R * V);
    jk_sample_params *pr = malloc(sizeof(jk_sample_params) * R);
    for (int r = 0; r < R; r++) {
        memcpy(lr + (size_t)(R - 1 - r) * V, l + (size_t)r * V, sizeof(float) * V);
        pr[R - 1 - r] = p[r];
    }
    CK(cudaMemcpy(dl, lr, sizeof(float) * (size_t)R * V, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dp, pr, sizeof(jk_sample_params) * R, cudaMemcpyHostToDevice));
    CK(jk_sample(dtok2, dlp2, dl, dp, R, V, NULL));
    CK(cudaMemcpy(tok2, dtok2, 4 * R, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(lp2, dlp2, 4 * R, cudaMemcpyDeviceToHost));
    int same = 1;
    for (int r = 0; r < R; r++) same &= tok2[R - 1 - r] == tok[r] && !memcmp(&lp2[R - 1 - r], &lp[r], 4);
    CHECK(same, "V %d, %d rows: other results with the rows in reverse order", V, R);

    for (int r = 0; r < R; r++) {
        const float *lg = l + (size_t)r * V;
        const janus_sampling s = {p[r].temperature, p[r].top_k, p[r].top_p, p[r].seed};
        const int32_t want = janus_sample(lg, V, &s, p[r].id, p[r].step, scratch);
        const int32_t got = tok[r];
        const int greedy = !(s.temperature > 0.f);
        rows_total++;
        rows_sampled += !greedy;
        char what[200];
        snprintf(what, sizeof what, "V %d row %d (%s; T %.1f top_k %d top_p %.2f seed %lld id %lld step %d)", V, r,
                 kind_name[kind[r]], s.temperature, s.top_k, s.top_p, (long long)s.seed, (long long)p[r].id,
                 p[r].step);
        if (got < 0 || got >= V) {
            CHECK(0, "%s: token %d out of range", what, got);
            continue;
        }
        if (greedy) {
            CHECK(got == want, "%s: greedy token %d, the CPU's %d", what, got, want);
            int finite = 0; // jk_argmax_logprob keeps no index (INT_MAX) when every logit is -inf
            for (int i = 0; i < V && !finite; i++) finite = lg[i] > -INFINITY;
            if (finite)
                CHECK(got == toka[r], "%s: greedy token %d, jk_argmax_logprob's %d", what, got, toka[r]);
        } else if (got != want) {
            const int ok = within_slack(lg, V, &s, p[r].id, p[r].step, want, got, 1e-5);
            CHECK(ok >= 0, "%s: the test's copy of the CPU walk disagrees with janus_sample", what);
            CHECK(ok == 1, "%s: token %d, the CPU's %d, and the draw is not near a boundary", what, got, want);
            rows_boundary++;
        }
        const float want_lp = cpu_logprob(lg, V, got);
        CHECK(same_lp(lp[r], want_lp), "%s: token %d logprob %.9g, cpu_logprob %.9g", what, got, lp[r], want_lp);
    }
    cudaFree(dl), cudaFree(dp), cudaFree(dtok), cudaFree(dlp), cudaFree(dtok2), cudaFree(dlp2), cudaFree(dtoka),
        cudaFree(dlpa);
    free(l), free(lr), free(scratch), free(p), free(pr), free(kind), free(tok), free(toka), free(tok2), free(lp),
        free(lp2);
}

// Napkin math for the engine: microseconds per call for a decode batch.
static void timing(int R, int V, float top_p, int top_k) {
    float *l = malloc(sizeof(float) * (size_t)R * V);
    jk_sample_params *p = malloc(sizeof(jk_sample_params) * R);
    for (int r = 0; r < R; r++) {
        make_row(l + (size_t)r * V, V, K_GAUSS);
        p[r] = (jk_sample_params){1.0f, top_p, top_k, 0, 7, r};
    }
    float *dl, *dlp;
    int32_t *dtok;
    jk_sample_params *dp;
    CK(cudaMalloc((void **)&dl, sizeof(float) * (size_t)R * V)); CK(cudaMalloc((void **)&dp, sizeof(*p) * R));
    CK(cudaMalloc((void **)&dtok, 4 * R)); CK(cudaMalloc((void **)&dlp, 4 * R));
    CK(cudaMemcpy(dl, l, sizeof(float) * (size_t)R * V, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dp, p, sizeof(*p) * R, cudaMemcpyHostToDevice));
    cudaEvent_t a, b;
    cudaEventCreate(&a), cudaEventCreate(&b);
    CK(jk_sample(dtok, dlp, dl, dp, R, V, NULL));
    cudaEventRecord(a, NULL);
    for (int it = 0; it < 10; it++) CK(jk_sample(dtok, dlp, dl, dp, R, V, NULL));
    cudaEventRecord(b, NULL);
    CK(cudaEventSynchronize(b));
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    printf("  timing: %d rows x V %d, top_k %d top_p %.2f: %.1f us per call (%.1f GB/s of logits read once)\n", R, V,
           top_k, top_p, ms * 100, (double)R * V * 4 / (ms * 1e-4) / 1e9);
    cudaEventDestroy(a), cudaEventDestroy(b);
    cudaFree(dl), cudaFree(dp), cudaFree(dtok), cudaFree(dlp);
    free(l), free(p);
}

int main(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    static const int fixed_v[] = {2, 3, 7, 50, 51, 1023, 1024, 1025, 151936, 160000};
    for (size_t i = 0; i < sizeof fixed_v / sizeof fixed_v[0]; i++) batch(fixed_v[i], fixed_v[i] > 100000 ? 8 : 48);
    while (rows_total < 5000) {
        const int c = rnd(10);
        if (c < 4) batch(2 + rnd(63), 64);
        else if (c < 7) batch(65 + rnd(4032), 24);
        else if (c < 9) batch(4097 + rnd(28672), 8);
        else batch(32769 + rnd(160000 - 32769 + 1), 4);
    }
    printf("%d rows (%d sampled): %d sampled tokens differ from the CPU's at a boundary within 1e-5\n", rows_total,
           rows_sampled, rows_boundary);
    CHECK(rows_boundary * 200 < rows_sampled, "%d of %d sampled rows differ from the CPU (at most 0.5%% may)",
          rows_boundary, rows_sampled);
    timing(64, 151936, 1.0f, 0);
    timing(64, 151936, 0.9f, 0);
    timing(64, 151936, 1.0f, 50);
    timing(64, 151936, 0.9f, 50);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
