// cli/bench_kernels.c: `janus bench kernels` (CUDA build): the kernels of the
// forward pass on the shapes of real models, in one fixed table (nccl-tests
// style) and optionally JSON:
//   kernel | shape | us | rate | unit | % of the limit measured now | % of the
//   data sheet | #wrong | rel err
// Memory-bound kernels report GB/s against the device copy bandwidth measured
// in the same run (jk_copy_bandwidth, read + write) and the data-sheet HBM
// peak; matrix kernels report TFLOP/s against a large cuBLAS bf16 GEMM measured
// now and the data-sheet dense bf16 peak. Every row is checked against the
// kernel's C twin (src/cpu/kernels.c, src/moe/experts.c) on the benchmarked
// data (attention: the first and last token; expert FFNs: a few experts'
// rows): #wrong counts elements off by more than tol * (|ref| + rms(ref)).
// Each timed call starts with L2 evicted (a 2 x L2 read), median of --iters.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "cpu/kernels.h"
#include "layers.h"
#include "moe/experts.h"
#include "moe_ffn.h"
#include "moe_prefill.h"
#include "util.h"

#define CK(x)                                                                                              \
    do {                                                                                                   \
        int rc_ = (int)(x);                                                                                \
        if (rc_) janus_die(NULL, "bench kernels: %s: CUDA error %d (%s)", #x, rc_, cudaGetErrorString((cudaError_t)rc_)); \
    } while (0)

typedef struct {
    int iters, quick, attn_configs;
    const char *only;              // run the kernels whose name contains this (NULL: all)
    cudaEvent_t e0, e1;
    float *flush, *flush_lp;       // L2 eviction: argmax over [FLUSH_ROWS, flush_cols] f32
    int32_t *flush_tok;
    int flush_cols;
    cublasHandle_t blas;
    double copy_bw, gemm_flops;    // measured now: bytes/s (read + write), FLOP/s
    double sheet_bw, sheet_flops;  // data sheet, 0 when unknown
    FILE *jf;
    int rows, bad_rows;
    void *probe;                   // read roofline: jk_read_probe over up to probe_bytes
    size_t probe_bytes;
    unsigned *sink;
    double last_read_bytes, last_read_us;
} bk;

#define FLUSH_ROWS 1024

typedef int (*bk_fn)(void *arg);

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// Median device time of fn(arg) in microseconds, each call after an L2 eviction.
static double bk_time_us(bk *b, bk_fn fn, void *arg) {
    float *ms = xmalloc(sizeof(float) * b->iters);
    for (int it = -2; it < b->iters; it++) { // 2 warm-up calls
        CK(jk_argmax_logprob(b->flush_tok, b->flush_lp, b->flush, FLUSH_ROWS, b->flush_cols, NULL));
        CK(cudaEventRecord(b->e0, 0));
        CK(fn(arg));
        CK(cudaEventRecord(b->e1, 0));
        CK(cudaEventSynchronize(b->e1));
        if (it >= 0) CK(cudaEventElapsedTime(&ms[it], b->e0, b->e1));
    }
    qsort(ms, b->iters, sizeof(float), cmp_float);
    const double us = 1e3 * ms[b->iters / 2];
    free(ms);
    return us;
}

// Elements of got off by more than tol * (|ref| + rms(ref)) (NaN included); rel:
// ||got - ref|| / ||ref||.
static long bk_wrong(const float *got, const float *ref, long n, double tol, double *rel) {
    double den = 0, num = 0;
    for (long i = 0; i < n; i++) den += (double)ref[i] * ref[i];
    const double rms = n ? sqrt(den / n) : 0;
    long wrong = 0;
    for (long i = 0; i < n; i++) {
        const double d = (double)got[i] - ref[i];
        num += d * d;
        if (isnan(got[i]) || fabs(d) > tol * (fabs(ref[i]) + rms)) wrong++;
    }
    *rel = den > 0 ? sqrt(num / den) : sqrt(num);
    return wrong;
}

typedef struct {
    const void *p;
    size_t bytes;
    int bps;
    unsigned *sink;
} probe_arg;
static int run_probe(void *p) {
    const probe_arg *a = p;
    return jk_read_probe(a->p, a->bytes, a->bps, a->sink, NULL);
}

// Device time of a plain read kernel over the same bytes (best of 2, 4, 8
// blocks per SM; above probe_bytes, where the rate no longer grows with size,
// that much is read and the time scaled up): the roofline of a streaming
// launch of that size, ramp-up and drain included.
static double bk_read_us(bk *b, double bytes) {
    if (bytes == b->last_read_bytes) return b->last_read_us;
    const size_t rb = (size_t)(bytes < (double)b->probe_bytes ? bytes : (double)b->probe_bytes) & ~(size_t)15;
    if (!rb) return 0;
    double best = 1e30;
    for (int bps = 2; bps <= 8; bps *= 2) {
        probe_arg a = {b->probe, rb, bps, b->sink};
        const double us = bk_time_us(b, run_probe, &a) * bytes / (double)rb;
        if (us < best) best = us;
    }
    b->last_read_bytes = bytes, b->last_read_us = best;
    return best;
}

// One table row: amount = bytes (flops = 0) or FLOPs (flops = 1) of one call;
// read_roof: also the read roofline of those bytes (kernels that only read).
static void bk_row(bk *b, const char *kernel, const char *shape, double us, double amount, int flops, long wrong,
                   long checked, double rel, int read_roof) {
    const double rate = amount / (us * 1e-6);
    const double meas = flops ? b->gemm_flops : b->copy_bw, sheet = flops ? b->sheet_flops : b->sheet_bw;
    const double pm = 100 * rate / meas, ps = sheet ? 100 * rate / sheet : 0;
    const double read_us = read_roof && !flops ? bk_read_us(b, amount) : 0;
    char psheet[16], pread[16];
    if (sheet) snprintf(psheet, sizeof psheet, "%6.1f%%", ps);
    else snprintf(psheet, sizeof psheet, "%7s", "-");
    if (read_us > 0) snprintf(pread, sizeof pread, "%6.1f%%", 100 * read_us / us);
    else snprintf(pread, sizeof pread, "%7s", "-");
    printf("%-16s %-46s %10.1f %9.1f %-7s %6.1f%% %s %s %7ld %9.2e\n", kernel, shape, us, rate / (flops ? 1e12 : 1e9),
           flops ? "TFLOP/s" : "GB/s", pm, psheet, pread, wrong, rel);
    fflush(stdout);
    if (b->jf)
        fprintf(b->jf,
                "%s\n    {\"kernel\": \"%s\", \"shape\": \"%s\", \"us\": %.3f, \"%s\": %.3f, \"pct_measured\": %.2f, "
                "\"pct_sheet\": %.2f, \"read_us\": %.3f, \"pct_read\": %.2f, \"wrong\": %ld, \"checked\": %ld, \"rel_err\": %.3e}",
                b->rows ? "," : "", kernel, shape, us, flops ? "TFLOPs" : "GBps", rate / (flops ? 1e12 : 1e9), pm,
                sheet ? ps : 0.0, read_us, read_us > 0 ? 100 * read_us / us : 0.0, wrong, checked, rel);
    b->rows++;
    b->bad_rows += wrong != 0 || isnan(rel);
}

static int bk_want(const bk *b, const char *kernel) { return !b->only || strstr(kernel, b->only); }

// Uniform top-k routing of T tokens over E experts (k distinct experts each):
// cnt[e] rows per expert, seg[E+1]; returns the largest count.
static int route(int T, int E, int k, uint64_t *rng, int32_t *seg) {
    int32_t *cnt = xcalloc(E, sizeof(int32_t));
    for (int t = 0; t < T; t++) {
        int chosen[16], nch = 0;
        while (nch < k) {
            *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
            const int e = (int)((*rng >> 33) % (uint64_t)E);
            int dup = 0;
            for (int q = 0; q < nch; q++) dup |= chosen[q] == e;
            if (!dup) chosen[nch++] = e, cnt[e]++;
        }
    }
    int maxr = 0;
    seg[0] = 0;
    for (int e = 0; e < E; e++) seg[e + 1] = seg[e] + cnt[e], maxr = cnt[e] > maxr ? cnt[e] : maxr;
    free(cnt);
    return maxr;
}

// Check the expert FFN output y (device, [R, H]) for up to 3 active experts
// (first, middle, last) and up to rows_per rows each against
// janus_moe_ffn_grouped_ref on the same (downloaded) weights and rows.
static long check_experts(const int32_t *seg, int E, int H, int I, const float *dx, const float *dy, const uint16_t *dwgu,
                          const uint16_t *dwd, int rows_per, double tol, double *rel, long *checked) {
    int act[3], na = 0, first = -1, last = -1, nact = 0;
    for (int e = 0; e < E; e++)
        if (seg[e + 1] > seg[e]) { if (first < 0) first = e; last = e; nact++; }
    if (first < 0) { *rel = 0; *checked = 0; return 0; }
    act[na++] = first;
    int mid = -1, seen = 0;
    for (int e = 0; e < E && mid < 0; e++)
        if (seg[e + 1] > seg[e] && seen++ == nact / 2) mid = e;
    if (mid != first && mid != last && mid >= 0) act[na++] = mid;
    if (last != first) act[na++] = last;
    int32_t cseg[4] = {0};
    for (int i = 0; i < na; i++) {
        const int n = seg[act[i] + 1] - seg[act[i]];
        cseg[i + 1] = cseg[i] + (n < rows_per ? n : rows_per);
    }
    const int R = cseg[na];
    const size_t gu1 = (size_t)2 * I * H, d1 = (size_t)H * I;
    uint16_t *wgu = xmalloc(2 * gu1 * na), *wd = xmalloc(2 * d1 * na);
    float *x = xmalloc(sizeof(float) * R * H), *y = xmalloc(sizeof(float) * R * H), *ref = xmalloc(sizeof(float) * R * H);
    for (int i = 0; i < na; i++) {
        const int e = act[i], n = cseg[i + 1] - cseg[i];
        CK(cudaMemcpy(wgu + gu1 * i, dwgu + gu1 * e, 2 * gu1, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(wd + d1 * i, dwd + d1 * e, 2 * d1, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(x + (size_t)cseg[i] * H, dx + (size_t)seg[e] * H, sizeof(float) * n * H, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(y + (size_t)cseg[i] * H, dy + (size_t)seg[e] * H, sizeof(float) * n * H, cudaMemcpyDeviceToHost));
    }
    janus_moe_ffn_grouped_ref(x, cseg, wgu, wd, ref, na, H, I);
    const long wrong = bk_wrong(y, ref, (long)R * H, tol, rel);
    *checked = (long)R * H;
    free(wgu), free(wd), free(x), free(y), free(ref);
    return wrong;
}

// ---- decode attention ---------------------------------------------------------------
typedef struct {
    float *out, *q, *ws;
    const uint16_t *kc, *vc;
    const int32_t *bt, *pos;
    int T, nh, nkv, hd, bs, maxb;
    size_t ws_bytes;
    int ctx, shared; // shared: one sequence (blocks 0 .., token t at ctx - T + t), else token t owns its blocks, at ctx - 1
    int kernel;      // JK_ATTN_*: which split-K kernel (JK_ATTN_AUTO: jk_attention_splitk's own choice)
} attn_arg;

static int run_attn_splitk(void *p) {
    attn_arg *a = p;
    return jk_attention_splitk_with(a->kernel, a->out, NULL, a->q, a->kc, a->vc, a->bt, a->maxb, a->pos, a->T, a->nh, a->nkv,
                                    a->hd, a->bs, a->ws, a->ws_bytes, NULL);
}
static int run_attn_gqa(void *p) {
    attn_arg *a = p;
    return jk_attention(a->out, a->q, a->kc, a->vc, a->bt, a->maxb, a->pos, a->T, a->nh, a->nkv, a->hd, a->bs, NULL);
}

// Output rows of tokens 0 and T-1 against cpu_attention (their blocks downloaded).
static long check_attn(const attn_arg *a, double *rel, long *checked) {
    const int kv_dim = a->nkv * a->hd, nrow = a->nh * a->hd;
    const size_t per_tok = (size_t)a->maxb * a->bs * kv_dim; // K (or V) elements of one token's blocks
    uint16_t *kb = xmalloc(2 * per_tok), *vb = xmalloc(2 * per_tok);
    float *kf = xmalloc(sizeof(float) * per_tok), *vf = xmalloc(sizeof(float) * per_tok);
    float *q = xmalloc(sizeof(float) * nrow), *ref = xmalloc(sizeof(float) * nrow * 2), *got = xmalloc(sizeof(float) * nrow * 2);
    int32_t *tbl = xmalloc(sizeof(int32_t) * a->maxb), pos;
    for (int k = 0; k < a->maxb; k++) tbl[k] = k;
    const int32_t *btp[1] = {tbl};
    const int toks[2] = {0, a->T - 1}, nt = a->T > 1 ? 2 : 1;
    for (int i = 0; i < nt; i++) {
        const int t = toks[i], owner = a->shared ? 0 : t;
        pos = a->shared ? a->ctx - a->T + t : a->ctx - 1;
        // blocks owner * maxb .. owner * maxb + maxb - 1 (see bench_attention)
        CK(cudaMemcpy(kb, a->kc + (size_t)owner * per_tok, 2 * per_tok, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(vb, a->vc + (size_t)owner * per_tok, 2 * per_tok, cudaMemcpyDeviceToHost));
        for (size_t j = 0; j < per_tok; j++) kf[j] = bf16_to_f32(kb[j]), vf[j] = bf16_to_f32(vb[j]);
        CK(cudaMemcpy(q, a->q + (size_t)t * nrow, sizeof(float) * nrow, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(got + (size_t)i * nrow, a->out + (size_t)t * nrow, sizeof(float) * nrow, cudaMemcpyDeviceToHost));
        janus_kv kv = {kf, vf, 1, a->maxb, a->bs, kv_dim};
        cpu_attention(ref + (size_t)i * nrow, q, &kv, 0, btp, &pos, 1, a->nh, a->nkv, a->hd);
    }
    const long wrong = bk_wrong(got, ref, (long)nt * nrow, 1e-3, rel);
    *checked = (long)nt * nrow;
    free(kb), free(vb), free(kf), free(vf), free(q), free(ref), free(got), free(tbl);
    return wrong;
}

static void bench_attention(bk *b) {
    if (!bk_want(b, "attn-splitk") && !bk_want(b, "attn-gqa")) return;
    struct { const char *name; int nh, nkv, hd; } models[] = {{"qwen3-30b-a3b", 32, 4, 128}, {"mixtral", 32, 8, 128}};
    const int batches[] = {1, 8, 32, 64}, ctxs[] = {512, 2048, 8192}, bs = 16;
    const int maxB = 64, maxC = 8192;
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        const int nh = models[mi].nh, nkv = models[mi].nkv, hd = models[mi].hd, kv_dim = nkv * hd;
        const size_t pool = (size_t)maxB * maxC * kv_dim; // bf16 elements of K (and of V)
        uint16_t *kc, *vc;
        float *q, *out, *ws;
        int32_t *bt, *pos;
        const int maxT = 256;                               // the prefill chunk
        const size_t ws_bytes = jk_attention_ws_bytes(maxT, nh, nkv, hd, maxC);
        CK(cudaMalloc((void **)&kc, 2 * pool));
        CK(cudaMalloc((void **)&vc, 2 * pool));
        CK(cudaMalloc((void **)&q, sizeof(float) * maxT * nh * hd));
        CK(cudaMalloc((void **)&out, sizeof(float) * maxT * nh * hd));
        CK(cudaMalloc((void **)&ws, ws_bytes ? ws_bytes : 16));
        CK(cudaMalloc((void **)&bt, sizeof(int32_t) * maxT * (maxC / bs)));
        CK(cudaMalloc((void **)&pos, sizeof(int32_t) * maxT));
        CK(jk_fill_bf16(kc, pool, 11 + mi, 1.0f, NULL));
        CK(jk_fill_bf16(vc, pool, 21 + mi, 1.0f, NULL));
        CK(jk_fill_f32(q, (size_t)maxT * nh * hd, 31 + mi, 1.0f, NULL));
        // Decode: B sequences at ctx positions each; then one prefill chunk of 256
        // tokens at the end of one 8192-position sequence (bytes: its K + V once;
        // the queries re-read them through L2, so % can pass 100).
        const int ncase = (int)(sizeof batches / sizeof batches[0] * (sizeof ctxs / sizeof ctxs[0])) + 1;
        for (int ci = 0; ci < ncase; ci++) {
            const int prefill = ci == ncase - 1;
            const int nctx = (int)(sizeof ctxs / sizeof ctxs[0]);
            const int T = prefill ? 256 : batches[ci / nctx], ctx = prefill ? maxC : ctxs[ci % nctx], maxb = ctx / bs;
            if (b->quick && !prefill && (T == 8 || T == 32 || ctx == 2048)) continue;
            // decode token t: blocks t * maxb .. t * maxb + maxb - 1, position ctx - 1;
            // prefill: every token on blocks 0 .. maxb - 1, token t at ctx - T + t
            int32_t *hbt = xmalloc(sizeof(int32_t) * T * maxb), *hpos = xmalloc(sizeof(int32_t) * T);
            for (int t = 0; t < T; t++) {
                hpos[t] = prefill ? ctx - T + t : ctx - 1;
                for (int k = 0; k < maxb; k++) hbt[(size_t)t * maxb + k] = (prefill ? 0 : t * maxb) + k;
            }
            CK(cudaMemcpy(bt, hbt, sizeof(int32_t) * T * maxb, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(pos, hpos, sizeof(int32_t) * T, cudaMemcpyHostToDevice));
            free(hbt), free(hpos);
            attn_arg a = {out, q, ws, kc, vc, bt, pos, T, nh, nkv, hd, bs, maxb, ws_bytes, ctx, prefill, JK_ATTN_AUTO};
            const double bytes = 2.0 * (prefill ? 1 : T) * ctx * kv_dim * 2; // K + V, bf16
            char shape[96];
            snprintf(shape, sizeof shape, "%s %d/%d/%d %s=%d ctx=%d", models[mi].name, nh, nkv, hd, prefill ? "prefill T" : "B",
                     T, ctx);
            // rows: jk_attention_splitk, its FP32 kernel forced (the one before the
            // tensor-core kernel), with --attn-configs every tensor-core launch
            // configuration forced, then jk_attention
            const int nsplit = 2 + (b->attn_configs ? JK_ATTN_MMA_CONFIGS : 0);
            for (int v = 0; v <= nsplit; v++) {
                char kname[32];
                if (v == nsplit) snprintf(kname, sizeof kname, "attn-gqa");
                else if (v == 0) snprintf(kname, sizeof kname, "attn-splitk");
                else if (v == 1) snprintf(kname, sizeof kname, "attn-splitk-fma");
                else snprintf(kname, sizeof kname, "attn-splitk-mma%d", v - 2);
                if (!bk_want(b, kname)) continue;
                a.kernel = v == 0 || v == nsplit ? JK_ATTN_AUTO : JK_ATTN_FMA + v - 1;
                bk_fn fn = v == nsplit ? run_attn_gqa : run_attn_splitk;
                const double us = bk_time_us(b, fn, &a);
                CK(cudaMemset(out, 0xff, sizeof(float) * T * nh * hd)); // poison, one more call, check
                CK(fn(&a));
                CK(cudaDeviceSynchronize());
                double rel;
                long checked;
                const long wrong = check_attn(&a, &rel, &checked);
                bk_row(b, kname, shape, us, bytes, 0, wrong, checked, rel, !prefill); // prefill re-reads K/V through L2: no read roofline
            }
        }
        cudaFree(kc), cudaFree(vc), cudaFree(q), cudaFree(out), cudaFree(ws), cudaFree(bt), cudaFree(pos);
    }
}

// ---- prompt-chunk (prefill) attention ---------------------------------------------
// S sequences of n prompt tokens each, the chunk at positions p0 .. p0 + n - 1:
// what the engine runs for them (attn-prefill: jk_attention_prefill over the
// plan's tiles, the per-token kernels over what the plan leaves, as for a lone
// run of 64 tokens), and the per-token split-K path over all of them
// (attn-prefill-pertoken: what the engine ran for prompts before). FLOPs: 4 hd nh (pos + 1) per token (Q K^T and
// P V, causal).
typedef struct {
    attn_arg a;
    const int32_t *tiles;
    int n_tiles, n_ranges; // the plan: tiles, and the token ranges it leaves to the per-token kernels
    int32_t ranges[2 * JK_ATTN_PREFILL_MAX_RANGES];
} pattn_arg;
static int run_attn_prefill(void *p) { // what the engine runs for these tokens
    pattn_arg *x = p;
    const attn_arg *a = &x->a;
    for (int r = 0; r < x->n_ranges; r++) {
        const int d0 = x->ranges[2 * r], dn = x->ranges[2 * r + 1] - d0;
        const size_t o = (size_t)d0 * a->nh * a->hd;
        const int rc = jk_attention_splitk_with(JK_ATTN_AUTO, a->out + o, NULL, a->q + o, a->kc, a->vc,
                                                a->bt + (size_t)d0 * a->maxb, a->maxb, a->pos + d0, dn, a->nh, a->nkv,
                                                a->hd, a->bs, a->ws, a->ws_bytes, NULL);
        if (rc) return rc;
    }
    return jk_attention_prefill(a->out, NULL, a->q, a->kc, a->vc, a->bt, a->maxb, x->tiles, x->n_tiles, a->nh, a->nkv,
                                a->hd, a->bs, NULL);
}

static void bench_attn_prefill(bk *b) {
    if (!bk_want(b, "attn-prefill")) return;
    struct { const char *name; int nh, nkv, hd; } models[] = {{"qwen3-30b-a3b", 32, 4, 128}, {"mixtral", 32, 8, 128}};
    // whole prompts; chunks continuing long prompts; one short chunk late in a
    // long prompt (few blocks: where the per-token kernels can win)
    struct { int S, n, p0; } cases[] = {{16, 1024, 0}, {2, 8192, 0}, {4, 512, 7680}, {1, 512, 7680}, {1, 256, 7936},
                                        {1, 128, 8064}, {1, 64, 8128}, {8, 64, 8128}};
    const int bs = 16, maxT = 16384, maxC = 8192, maxb = maxC / bs;
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        const int nh = models[mi].nh, nkv = models[mi].nkv, hd = models[mi].hd, kv_dim = nkv * hd;
        size_t pool = 0; // bf16 elements of K (and of V): every case's sequences, whole blocks
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            const size_t need = (size_t)cases[ci].S * ((cases[ci].p0 + cases[ci].n + bs - 1) / bs) * bs * kv_dim;
            pool = need > pool ? need : pool;
        }
        uint16_t *kc, *vc;
        float *q, *out, *ws;
        int32_t *bt, *pos, *tiles;
        const size_t ws_bytes = jk_attention_ws_bytes(maxT, nh, nkv, hd, maxC);
        CK(cudaMalloc((void **)&kc, 2 * pool));
        CK(cudaMalloc((void **)&vc, 2 * pool));
        CK(cudaMalloc((void **)&q, sizeof(float) * maxT * nh * hd));
        CK(cudaMalloc((void **)&out, sizeof(float) * maxT * nh * hd));
        CK(cudaMalloc((void **)&ws, ws_bytes ? ws_bytes : 16));
        CK(cudaMalloc((void **)&bt, sizeof(int32_t) * maxT * maxb));
        CK(cudaMalloc((void **)&pos, sizeof(int32_t) * maxT));
        CK(cudaMalloc((void **)&tiles, 16 * (size_t)maxT));
        CK(jk_fill_bf16(kc, pool, 41 + mi, 1.0f, NULL));
        CK(jk_fill_bf16(vc, pool, 51 + mi, 1.0f, NULL));
        CK(jk_fill_f32(q, (size_t)maxT * nh * hd, 61 + mi, 1.0f, NULL));
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            const int S = cases[ci].S, n = cases[ci].n, p0 = cases[ci].p0, T = S * n, ctx = p0 + n;
            const int sb = (ctx + bs - 1) / bs; // blocks of one sequence: s * sb .. s * sb + sb - 1
            if (b->quick && ci != 0 && ci != 2) continue;
            int32_t *hbt = xcalloc((size_t)T * maxb, sizeof(int32_t)), *hpos = xmalloc(sizeof(int32_t) * T);
            int32_t *stab = xmalloc(sizeof(int32_t) * (size_t)S * maxb), *htiles = xmalloc(16 * (size_t)T);
            const int32_t **btp = xmalloc(sizeof(int32_t *) * T);
            double flops = 0;
            for (int sq = 0; sq < S; sq++)
                for (int k = 0; k < maxb; k++) stab[(size_t)sq * maxb + k] = k < sb ? sq * sb + k : 0;
            for (int t = 0; t < T; t++) {
                hpos[t] = p0 + t % n, btp[t] = stab + (size_t)(t / n) * maxb;
                memcpy(hbt + (size_t)t * maxb, btp[t], sizeof(int32_t) * maxb);
                flops += 4.0 * hd * nh * (hpos[t] + 1);
            }
            pattn_arg x = {{out, q, ws, kc, vc, bt, pos, T, nh, nkv, hd, bs, maxb, ws_bytes, ctx, 1, JK_ATTN_AUTO}, tiles, 0, 0,
                           {0}};
            x.n_tiles = jk_attn_prefill_plan(htiles, x.ranges, &x.n_ranges, hpos, btp, T, nh, nkv, 64);
            CK(cudaMemcpy(bt, hbt, sizeof(int32_t) * T * maxb, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(pos, hpos, sizeof(int32_t) * T, cudaMemcpyHostToDevice));
            if (x.n_tiles) CK(cudaMemcpy(tiles, htiles, 16 * (size_t)x.n_tiles, cudaMemcpyHostToDevice));
            char shape[96];
            snprintf(shape, sizeof shape, "%s %d/%d/%d %dx%d at %d", models[mi].name, nh, nkv, hd, S, n, p0);
            for (int v = 0; v < 2; v++) {
                const char *kname = v ? "attn-prefill-pertoken" : "attn-prefill";
                if (!bk_want(b, kname)) continue;
                bk_fn fn = v ? run_attn_splitk : run_attn_prefill;
                void *arg = v ? (void *)&x.a : (void *)&x;
                const double us = bk_time_us(b, fn, arg);
                CK(cudaMemset(out, 0xff, sizeof(float) * T * nh * hd));
                CK(fn(arg));
                CK(cudaDeviceSynchronize());
                // check the first, a middle and the last token of the last sequence against cpu_attention
                const int nrow = nh * hd, toks[3] = {T - n, T - n / 2, T - 1};
                const size_t per_seq = (size_t)sb * bs * kv_dim;
                uint16_t *kb = xmalloc(2 * per_seq), *vb = xmalloc(2 * per_seq);
                float *kf = xmalloc(sizeof(float) * per_seq), *vf = xmalloc(sizeof(float) * per_seq);
                float *hq = xmalloc(sizeof(float) * nrow), *ref = xmalloc(sizeof(float) * 3 * nrow), *got = xmalloc(sizeof(float) * 3 * nrow);
                int32_t *ltbl = xmalloc(sizeof(int32_t) * sb);
                for (int k = 0; k < sb; k++) ltbl[k] = k;
                const int32_t *lbtp[1] = {ltbl};
                CK(cudaMemcpy(kb, kc + (size_t)(S - 1) * per_seq, 2 * per_seq, cudaMemcpyDeviceToHost));
                CK(cudaMemcpy(vb, vc + (size_t)(S - 1) * per_seq, 2 * per_seq, cudaMemcpyDeviceToHost));
                for (size_t j = 0; j < per_seq; j++) kf[j] = bf16_to_f32(kb[j]), vf[j] = bf16_to_f32(vb[j]);
                janus_kv kv = {kf, vf, 1, sb, bs, kv_dim};
                for (int i = 0; i < 3; i++) {
                    CK(cudaMemcpy(hq, q + (size_t)toks[i] * nrow, sizeof(float) * nrow, cudaMemcpyDeviceToHost));
                    CK(cudaMemcpy(got + (size_t)i * nrow, out + (size_t)toks[i] * nrow, sizeof(float) * nrow,
                                  cudaMemcpyDeviceToHost));
                    cpu_attention(ref + (size_t)i * nrow, hq, &kv, 0, lbtp, &hpos[toks[i]], 1, nh, nkv, hd);
                }
                double rel;
                const long wrong = bk_wrong(got, ref, 3L * nrow, v ? 1e-3 : 2e-2, &rel);
                bk_row(b, kname, shape, us, flops, 1, wrong, 3L * nrow, rel, 0);
                free(kb), free(vb), free(kf), free(vf), free(hq), free(ref), free(got), free(ltbl);
            }
            free(hbt), free(hpos), free(stab), free(htiles), free(btp);
        }
        cudaFree(kc), cudaFree(vc), cudaFree(q), cudaFree(out), cudaFree(ws), cudaFree(bt), cudaFree(pos), cudaFree(tiles);
    }
}

// ---- grouped expert FFN, decode (the moe-layer path) and prefill (cuBLAS, fused wgmma) --
typedef struct {
    jk_moe_ffn_args d;
    jk_moe_prefill_args p;
    cublasHandle_t blas;
} ffn_arg;

static int run_ffn_decode(void *p) { return jk_moe_ffn_decode(&((ffn_arg *)p)->d, NULL); }
static int run_ffn_prefill(void *p) { return jk_moe_ffn_prefill(&((ffn_arg *)p)->p, ((ffn_arg *)p)->blas, NULL); }

// NaN elements of the device array d[n] (read back through host[nh]).
static long count_nan(const float *d, size_t n, float *host, size_t nh) {
    long bad = 0;
    for (size_t i = 0; i < n; i += nh) {
        const size_t m = n - i < nh ? n - i : nh;
        CK(cudaMemcpy(host, d + i, sizeof(float) * m, cudaMemcpyDeviceToHost));
        for (size_t j = 0; j < m; j++) bad += isnan(host[j]);
    }
    return bad;
}

static void bench_experts(bk *b) {
    const int want_dec = bk_want(b, "moe-decode"), want_pre = bk_want(b, "moe-prefill");
    if (!want_dec && !want_pre) return;
    // prefill token counts: 0 ends the list; Qwen3 at 16384 tokens (~1024 rows per
    // expert) is its compute-bound point (f32 x and y alone are 2 GB of traffic)
    struct { const char *name; int E, k, H, I; int dec[3], pre[4]; } models[] = {
        {"qwen3-30b-a3b", 128, 8, 2048, 768, {1, 8, 64}, {512, 2048, 8192, 16384}},
        {"mixtral", 8, 2, 4096, 14336, {1, 8, 32}, {512, 2048, 8192, 0}},
    };
    const int fused = jk_moe_prefill_fused_available();
    const size_t host_y_n = (size_t)1 << 22;
    float *host_y = xmalloc(sizeof(float) * host_y_n);
    uint64_t rng = 7;
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        const int E = models[mi].E, K = models[mi].k, H = models[mi].H, I = models[mi].I;
        const size_t ngu = (size_t)E * 2 * I * H, nd = (size_t)E * H * I;
        int maxT = models[mi].dec[2];
        for (int si = 0; want_pre && si < 4; si++) maxT = models[mi].pre[si] > maxT ? models[mi].pre[si] : maxT;
        const int maxR = maxT * K;
        uint16_t *wgu, *wd, *xb;
        float *x, *y, *act;
        int32_t *dseg;
        void *ws;
        const size_t ws_bytes = jk_moe_prefill_ws_bytes(maxR, H, I);
        CK(cudaMalloc((void **)&wgu, 2 * ngu));
        CK(cudaMalloc((void **)&wd, 2 * nd));
        CK(cudaMalloc((void **)&x, sizeof(float) * maxR * H));
        CK(cudaMalloc((void **)&xb, 2 * (size_t)maxR * H));
        CK(cudaMalloc((void **)&y, sizeof(float) * maxR * H));
        CK(cudaMalloc((void **)&act, sizeof(float) * (size_t)models[mi].dec[2] * K * I));
        CK(cudaMalloc((void **)&dseg, sizeof(int32_t) * (E + 1)));
        CK(cudaMalloc(&ws, want_pre ? ws_bytes : 16));
        CK(jk_fill_bf16(wgu, ngu, 100 + mi, 1.0f / sqrtf((float)H), NULL));
        CK(jk_fill_bf16(wd, nd, 200 + mi, 1.0f / sqrtf((float)I), NULL));
        CK(jk_fill_f32(x, (size_t)maxR * H, 5 + mi, 1.0f, NULL));
        int32_t *seg = xmalloc(sizeof(int32_t) * (E + 1));
        for (int phase = 0; phase < 2; phase++) {
            if (phase == 0 ? !want_dec : !want_pre) continue;
            for (int si = 0; si < (phase == 0 ? 3 : 4); si++) {
                const int T = phase == 0 ? models[mi].dec[si] : models[mi].pre[si];
                if (T == 0 || (b->quick && (si == 1 || si == 3))) continue;
                const int maxr = route(T, E, K, &rng, seg), R = seg[E];
                int active = 0;
                for (int e = 0; e < E; e++) active += seg[e + 1] > seg[e];
                CK(cudaMemcpy(dseg, seg, sizeof(int32_t) * (E + 1), cudaMemcpyHostToDevice));
                ffn_arg a;
                a.d = (jk_moe_ffn_args){x, dseg, wgu, wd, act, y, E, H, I, maxr, NULL, 0, T * K};
                a.blas = b->blas;
                char shape[96];
                snprintf(shape, sizeof shape, "%s T=%d R=%d E=%d max=%d", models[mi].name, T, R, active, maxr);
                if (phase == 0) {
                    const double us = bk_time_us(b, run_ffn_decode, &a);
                    CK(cudaMemset(y, 0xff, sizeof(float) * R * H));
                    CK(run_ffn_decode(&a));
                    CK(cudaDeviceSynchronize());
                    double rel;
                    long checked;
                    // over 4 rows per expert the tensor-core variant rounds x to bf16
                    const long wrong = check_experts(seg, E, H, I, x, y, wgu, wd, 64, 3e-2, &rel, &checked); // x in bf16 on tensor cores
                    bk_row(b, "moe-decode", shape, us, (double)active * 3.0 * H * I * 2, 0, wrong, checked, rel, 1);
                    continue;
                }
                // the engine hands the GEMMs bf16 rows (its gather rounds them); the
                // last row: the fused path on f32 rows (experts served for other ranks)
                static const char *const kname[] = {NULL, "moe-prefill", "moe-prefill-loop", "moe-prefill-fused",
                                                    "moe-prefill-fused-f32x"};
                CK(jk_f32_to_bf16(xb, x, (size_t)R * H, NULL));
                for (int mode = JK_PREFILL_GROUPED; mode <= JK_PREFILL_FUSED + 1; mode++) {
                    if (mode >= JK_PREFILL_FUSED && !fused) continue; // it would time a cuBLAS path again
                    const int m = mode > JK_PREFILL_FUSED ? JK_PREFILL_FUSED : mode;
                    a.p = (jk_moe_prefill_args){x, seg, wgu, wd, y, E, H, I, ws, ws_bytes, m, mode > JK_PREFILL_FUSED ? NULL : xb};
                    const double us = bk_time_us(b, run_ffn_prefill, &a);
                    CK(cudaMemset(y, 0xff, sizeof(float) * R * H));
                    CK(run_ffn_prefill(&a));
                    CK(cudaDeviceSynchronize());
                    double rel;
                    long checked;
                    // values: a few rows of three experts; every row written: no NaN left of the poison
                    const long wrong = check_experts(seg, E, H, I, x, y, wgu, wd, 4, 3e-2, &rel, &checked) +
                                       count_nan(y, (size_t)R * H, host_y, host_y_n);
                    bk_row(b, kname[mode], shape, us, 6.0 * R * H * I, 1, wrong, checked, rel, 0);
                }
            }
        }
        free(seg);
        cudaFree(wgu), cudaFree(wd), cudaFree(x), cudaFree(xb), cudaFree(y), cudaFree(act), cudaFree(dseg), cudaFree(ws);
    }
    free(host_y);
}

// ---- RMSNorm and RoPE -----------------------------------------------------------------
typedef struct {
    float *y, *x;
    const uint16_t *w;
    const int32_t *pos;
    const float *inv_freq;
    int R, n, nh, hd;
} elem_arg;

static int run_rmsnorm(void *p) {
    elem_arg *a = p;
    return jk_rmsnorm(a->y, a->x, a->w, a->R, a->n, 1e-6f, NULL);
}
static int run_rope(void *p) {
    elem_arg *a = p;
    return jk_rope(a->x, a->pos, a->inv_freq, a->R, a->nh, a->hd, NULL);
}

static void bench_elementwise(bk *b) {
    uint64_t rng = 3;
    if (bk_want(b, "rmsnorm")) {
        const int shapes[][2] = {{64, 4096}, {4096, 4096}, {2048, 128}};
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int R = shapes[si][0], n = shapes[si][1];
            const size_t N = (size_t)R * n;
            float *x, *y;
            uint16_t *w;
            CK(cudaMalloc((void **)&x, sizeof(float) * N));
            CK(cudaMalloc((void **)&y, sizeof(float) * N));
            CK(cudaMalloc((void **)&w, 2 * n));
            CK(jk_fill_f32(x, N, 41 + si, 1.0f, NULL));
            CK(jk_fill_bf16(w, n, 51 + si, 1.0f, NULL));
            elem_arg a = {y, x, w, NULL, NULL, R, n, 0, 0};
            const double us = bk_time_us(b, run_rmsnorm, &a);
            CK(cudaMemset(y, 0xff, sizeof(float) * N));
            CK(run_rmsnorm(&a));
            float *hx = xmalloc(sizeof(float) * N), *hy = xmalloc(sizeof(float) * N), *ref = xmalloc(sizeof(float) * N);
            uint16_t *hw = xmalloc(2 * n);
            CK(cudaMemcpy(hx, x, sizeof(float) * N, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(hy, y, sizeof(float) * N, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(hw, w, 2 * n, cudaMemcpyDeviceToHost));
            janus_w wv = {hw, JANUS_BF16, 1, n};
            cpu_rmsnorm(ref, hx, &wv, R, n, 1e-6f);
            double rel;
            const long wrong = bk_wrong(hy, ref, (long)N, 1e-4, &rel);
            char shape[96];
            snprintf(shape, sizeof shape, "[%d, %d] f32, w bf16", R, n);
            bk_row(b, "rmsnorm", shape, us, 2.0 * N * 4 + 2.0 * n, 0, wrong, (long)N, rel, 0);
            free(hx), free(hy), free(ref), free(hw);
            cudaFree(x), cudaFree(y), cudaFree(w);
        }
    }
    if (bk_want(b, "rope")) {
        const int Ts[] = {64, 4096}, nh = 32, hd = 128;
        for (size_t si = 0; si < sizeof Ts / sizeof Ts[0]; si++) {
            const int T = Ts[si];
            const size_t N = (size_t)T * nh * hd;
            float *x, *inv, *hx = xmalloc(sizeof(float) * N), *hinv = xmalloc(sizeof(float) * hd / 2),
                            *got = xmalloc(sizeof(float) * N);
            int32_t *pos, *hpos = xmalloc(sizeof(int32_t) * T);
            CK(cudaMalloc((void **)&x, sizeof(float) * N));
            CK(cudaMalloc((void **)&inv, sizeof(float) * hd / 2));
            CK(cudaMalloc((void **)&pos, sizeof(int32_t) * T));
            cpu_rope_inv_freq(hinv, hd, 1e6);
            for (int t = 0; t < T; t++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                hpos[t] = (int32_t)((rng >> 33) % 8192);
            }
            CK(cudaMemcpy(inv, hinv, sizeof(float) * hd / 2, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(pos, hpos, sizeof(int32_t) * T, cudaMemcpyHostToDevice));
            CK(jk_fill_f32(x, N, 61 + si, 1.0f, NULL));
            elem_arg a = {NULL, x, NULL, pos, inv, T, 0, nh, hd};
            const double us = bk_time_us(b, run_rope, &a); // in place: rotations keep x bounded
            CK(cudaMemcpy(hx, x, sizeof(float) * N, cudaMemcpyDeviceToHost));
            CK(run_rope(&a));
            CK(cudaMemcpy(got, x, sizeof(float) * N, cudaMemcpyDeviceToHost));
            cpu_rope(hx, T, nh, hd, hpos, hinv);
            double rel;
            const long wrong = bk_wrong(got, hx, (long)N, 1e-4, &rel);
            char shape[96];
            snprintf(shape, sizeof shape, "[%d, %d, %d] f32 in place", T, nh, hd);
            bk_row(b, "rope", shape, us, 2.0 * N * 4, 0, wrong, (long)N, rel, 0);
            free(hx), free(hinv), free(got), free(hpos);
            cudaFree(x), cudaFree(inv), cudaFree(pos);
        }
    }
}

// cuBLAS bf16 GEMM [n x n] x [n x n] (f32 accumulation, bf16 out): FLOP/s, median of 10.
static double measure_gemm_flops(bk *b) {
    const int n = 8192;
    uint16_t *A, *B, *C;
    CK(cudaMalloc((void **)&A, (size_t)n * n * 2));
    CK(cudaMalloc((void **)&B, (size_t)n * n * 2));
    CK(cudaMalloc((void **)&C, (size_t)n * n * 2));
    CK(jk_fill_bf16(A, (size_t)n * n, 71, 1.0f, NULL)); // random, not zeros
    CK(jk_fill_bf16(B, (size_t)n * n, 72, 1.0f, NULL));
    const float one = 1.0f, zero = 0.0f;
    float ms[13];
    for (int i = 0; i < 13; i++) {
        CK(cudaEventRecord(b->e0, 0));
        cublasStatus_t st = cublasGemmEx(b->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, A, CUDA_R_16BF, n, B, CUDA_R_16BF, n,
                                         &zero, C, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS) janus_die(NULL, "bench kernels: cuBLAS GemmEx failed (status %d)", (int)st);
        CK(cudaEventRecord(b->e1, 0));
        CK(cudaEventSynchronize(b->e1));
        CK(cudaEventElapsedTime(&ms[i], b->e0, b->e1));
    }
    qsort(ms + 3, 10, sizeof(float), cmp_float);
    cudaFree(A), cudaFree(B), cudaFree(C);
    return 2.0 * n * n * (double)n / (ms[3 + 5] * 1e-3);
}

// Data-sheet dense bf16 tensor peak by device name (FLOP/s, 0 when unknown).
static double datasheet_bf16(const char *name, const char **which) {
    *which = "unknown device (no data-sheet figures)";
    if (strstr(name, "H200")) {
        *which = "H200";
        return 989e12;
    }
    if (strstr(name, "H100") && (strstr(name, "SXM") || strstr(name, "HBM3"))) {
        *which = "H100 SXM";
        return 989e12;
    }
    if (strstr(name, "H100")) {
        *which = "H100 PCIe";
        return 756e12;
    }
    return 0;
}

int bench_kernels(int argc, char **argv) {
    bk b = {0};
    b.iters = 20;
    const char *json = NULL;
    static struct option opts[] = {{"json", required_argument, 0, 'j'}, {"iters", required_argument, 0, 'i'},
                                   {"only", required_argument, 0, 'o'}, {"quick", no_argument, 0, 'q'},
                                   {"attn-configs", no_argument, 0, 'a'}, {"help", no_argument, 0, 'h'},
                                   {0, 0, 0, 0}};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = optarg; break;
        case 'i': b.iters = (int)cli_int("--iters", optarg, 1, 100000); break;
        case 'o': b.only = optarg; break;
        case 'q': b.quick = 1; break;
        case 'a': b.attn_configs = 1; break;
        case 'h':
            puts("usage: janus bench kernels [--json FILE] [--iters N] [--only NAME] [--quick] [--attn-configs]\n"
                 "\n"
                 "Times the forward-pass kernels on model shapes (median of N calls, default 20,\n"
                 "each after evicting L2), checks each against its C twin, and prints one table:\n"
                 "GB/s for memory-bound kernels against the device copy bandwidth measured now\n"
                 "and the data-sheet HBM peak (attention and decode expert FFN also against\n"
                 "a plain read kernel of the same bytes: %read, the roofline of a launch of\n"
                 "that size), TFLOP/s for the prefill expert GEMM and prompt attention against a\n"
                 "cuBLAS 8192^3 bf16 GEMM measured now and the data-sheet dense bf16 peak.\n"
                 "#wrong: checked elements off by more than tol * (|ref| + rms(ref)).\n"
                 "\n"
                 "  --only NAME   kernels whose name contains NAME: attn-splitk (the engine's\n"
                 "                split-K attention), attn-splitk-fma (its FP32 kernel forced),\n"
                 "                attn-gqa, attn-prefill (prompt chunks; attn-prefill-pertoken:\n"
                 "                the per-token kernels on the same tokens), moe-decode,\n"
                 "                moe-prefill, rmsnorm, rope\n"
                 "  --quick       fewer shapes\n"
                 "  --attn-configs  also every launch configuration of the tensor-core split-K\n"
                 "                attention kernel (attn-splitk-mma0 .. mma4; 0 is the default)\n"
                 "  --json FILE   also write the rows as JSON");
            return 0;
        default: janus_die(NULL, "bench kernels: unknown or incomplete option \"%s\"", argv[optind - 1]);
        }
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) janus_die(NULL, "bench kernels: no CUDA device");
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    CK(cudaEventCreate(&b.e0));
    CK(cudaEventCreate(&b.e1));
    if (cublasCreate(&b.blas) != CUBLAS_STATUS_SUCCESS) janus_die(NULL, "bench kernels: cannot create a cuBLAS handle");
    size_t flush_bytes = 2 * (size_t)prop.l2CacheSize;
    if (flush_bytes < ((size_t)128 << 20)) flush_bytes = (size_t)128 << 20;
    b.flush_cols = (int)(flush_bytes / sizeof(float) / FLUSH_ROWS);
    CK(cudaMalloc((void **)&b.flush, sizeof(float) * FLUSH_ROWS * b.flush_cols));
    CK(cudaMalloc((void **)&b.flush_tok, sizeof(int32_t) * FLUSH_ROWS));
    CK(cudaMalloc((void **)&b.flush_lp, sizeof(float) * FLUSH_ROWS));
    CK(jk_fill_f32(b.flush, (size_t)FLUSH_ROWS * b.flush_cols, 1, 1.0f, NULL));
    b.probe_bytes = (size_t)1 << 30;
    CK(cudaMalloc(&b.probe, b.probe_bytes));
    CK(cudaMemset(b.probe, 1, b.probe_bytes));
    CK(cudaMalloc((void **)&b.sink, 4));

    const char *which;
    b.sheet_flops = datasheet_bf16(prop.name, &which);
    b.sheet_bw = datasheet_bw(prop.name);
    b.copy_bw = jk_copy_bandwidth();
    b.gemm_flops = measure_gemm_flops(&b);
    printf("# janus bench kernels on %s (%d SMs, %.0f MB L2), median of %d calls, L2 evicted before each\n", prop.name,
           prop.multiProcessorCount, prop.l2CacheSize / 1e6, b.iters);
    printf("# measured now: device copy %.0f GB/s (read + write), cuBLAS bf16 GEMM 8192^3 %.0f TFLOP/s\n", b.copy_bw / 1e9,
           b.gemm_flops / 1e12);
    printf("# data sheet: %s: HBM %.0f GB/s, dense bf16 %.0f TFLOP/s\n", which, b.sheet_bw / 1e9, b.sheet_flops / 1e12);
    printf("# attn bytes = K + V read (bf16); moe-decode bytes = activated experts' weights; moe-prefill FLOPs = 6 R H I\n");
    printf("# %%read (attn, moe-decode): a plain read kernel's time for the same bytes / the kernel's time: the roofline\n"
           "# of a streaming launch of that size (small reads cannot reach the copy bandwidth: ramp-up and drain)\n");
    printf("%-16s %-46s %10s %9s %-7s %7s %7s %7s %7s %9s\n", "kernel", "shape", "us", "rate", "unit", "%meas", "%sheet", "%read",
           "#wrong", "rel_err");
    if (json) {
        b.jf = fopen(json, "w");
        if (!b.jf) janus_die(json, "cannot open for writing");
        fprintf(b.jf,
                "{\"bench\": \"kernels\", \"device\": \"%s\", \"sms\": %d, \"iters\": %d, \"copy_GBps\": %.1f, "
                "\"gemm_TFLOPs\": %.1f, \"sheet\": \"%s\", \"sheet_GBps\": %.1f, \"sheet_TFLOPs\": %.1f, \"rows\": [",
                prop.name, prop.multiProcessorCount, b.iters, b.copy_bw / 1e9, b.gemm_flops / 1e12, which, b.sheet_bw / 1e9,
                b.sheet_flops / 1e12);
    }
    bench_attention(&b);
    bench_attn_prefill(&b);
    bench_experts(&b);
    bench_elementwise(&b);
    if (b.jf) fprintf(b.jf, "\n]}\n"), fclose(b.jf);
    printf("# %d rows, %d with wrong elements\n", b.rows, b.bad_rows);
    cudaFree(b.flush), cudaFree(b.flush_tok), cudaFree(b.flush_lp), cudaFree(b.probe), cudaFree(b.sink);
    cublasDestroy(b.blas);
    cudaEventDestroy(b.e0), cudaEventDestroy(b.e1);
    return b.bad_rows ? 1 : 0;
}
