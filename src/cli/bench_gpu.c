// cli/bench_gpu.c: GPU benchmarks of `janus bench` (CUDA build only).
//   moe-layer: the decode MoE layer (grouped expert FFN) of Qwen3-30B-A3B and
//   Mixtral-8x7B shapes at 1..512 tokens with uniform top-k routing: bytes of
//   the activated experts' weights over the time, against the device copy
//   bandwidth measured in the same run (and the data-sheet HBM peak), and the
//   time a plain read kernel takes for the same bytes (small launches cannot
//   reach the copy bandwidth: ramp-up and drain).
//   sched (GPU column of `janus bench sched`): the activation scheduler kernel
//   per layer, checked against janus_sched.
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "engine/generate.h"
#include "engine/gpu.h"
#include "moe_ffn.h"
#include "moe/experts.h"
#include "sched/sched.h"
#include "sched_gpu.h"
#include "util.h"

#define CK(x)                                                                                        \
    do {                                                                                             \
        int rc_ = (int)(x);                                                                          \
        if (rc_) janus_die(NULL, "%s: CUDA error %d (%s)", #x, rc_, cudaGetErrorString((cudaError_t)rc_)); \
    } while (0)

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// Device-to-device copy: bytes read + written per second (median of 10).
double jk_copy_bandwidth(void) {
    const size_t n = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    CK(cudaMemset(a, 1, n));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float t[10];
    for (int i = 0; i < 13; i++) {
        cudaEventRecord(e0, 0);
        CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0));
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        if (i >= 3) cudaEventElapsedTime(&t[i - 3], e0, e1);
    }
    qsort(t, 10, sizeof(float), cmp_f);
    cudaFree(a);
    cudaFree(b);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return 2.0 * n / (t[5] * 1e-3);
}

// Data-sheet HBM peak by device name (bytes/s), 0 when unknown.
double datasheet_bw(const char *name) {
    if (strstr(name, "H200")) return 4.8e12;
    if (strstr(name, "H100") && (strstr(name, "SXM") || strstr(name, "HBM3"))) return 3.35e12;
    if (strstr(name, "H100")) return 2.0e12; // PCIe
    return 0;
}

int bench_moe_layer(int argc, char **argv) {
    const char *json = NULL;
    static struct option opts[] = {{"json", required_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j') json = optarg;
        else if (c == 'h') { puts("usage: janus bench moe-layer [--json FILE]"); return 0; }
        else janus_die(NULL, "bench moe-layer: unknown option \"%s\"", argv[optind - 1]);
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) janus_die(NULL, "bench moe-layer: no CUDA device");
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    double copy_bw = jk_copy_bandwidth(), sheet = datasheet_bw(prop.name);
    printf("# janus bench moe-layer on %s (%d SMs, %.0f MB L2)\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize / 1e6);
    printf("# device copy bandwidth (read + write) measured now: %.0f GB/s; data-sheet HBM peak: %.0f GB/s\n", copy_bw / 1e9,
           sheet / 1e9);
    printf("# read us: one plain read kernel of the same bytes (jk_read_probe, best of 2/4/8 blocks per SM): the\n"
           "# roofline of a streaming launch of that size, ramp-up and drain included (%%read = read us / us)\n");
    printf("%-14s %6s %8s %8s %8s %10s %10s %9s %9s %9s %7s\n", "shape", "tokens", "experts", "tok/exp", "max", "us", "GB/s", "%copy",
           "%sheet", "read us", "%read");
    unsigned *sink;
    CK(cudaMalloc((void **)&sink, 4));
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (json && !jf) janus_die(json, "cannot open for writing");
    if (jf) fprintf(jf, "{\"bench\": \"moe-layer\", \"device\": \"%s\", \"copy_GBps\": %.1f, \"sheet_GBps\": %.1f, \"rows\": [",
                    prop.name, copy_bw / 1e9, sheet / 1e9);
    struct { const char *name; int E, k, H, I, copies; } shapes[] = {
        {"qwen3-30b-a3b", 128, 8, 2048, 768, 4},
        {"mixtral-8x7b", 8, 2, 4096, 14336, 2},
    };
    int first = 1;
    uint64_t rng = 7;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int E = shapes[si].E, K = shapes[si].k, H = shapes[si].H, I = shapes[si].I, NC = shapes[si].copies;
        const size_t ngu = (size_t)E * 2 * I * H, nd = (size_t)E * H * I;
        uint16_t *wgu[4], *wd[4];
        for (int cpy = 0; cpy < NC; cpy++) { // several layers' weights, rotated, so L2 holds none of them
            CK(cudaMalloc((void **)&wgu[cpy], 2 * ngu));
            CK(cudaMalloc((void **)&wd[cpy], 2 * nd));
            CK(jk_fill_bf16(wgu[cpy], ngu, 100 + cpy, 1.0f / 45.0f, NULL));
            CK(jk_fill_bf16(wd[cpy], nd, 200 + cpy, 1.0f / 28.0f, NULL));
        }
        const int maxT = 512;
        float *x, *act, *y;
        int32_t *dseg;
        CK(cudaMalloc((void **)&x, sizeof(float) * maxT * K * H));
        CK(cudaMalloc((void **)&y, sizeof(float) * maxT * K * H));
        CK(cudaMalloc((void **)&act, sizeof(float) * maxT * K * I));
        CK(cudaMalloc((void **)&dseg, sizeof(int32_t) * (E + 1)));
        CK(jk_fill_f32(x, (size_t)maxT * K * H, 5, 1.0f, NULL));
        int32_t *seg = xmalloc(sizeof(int32_t) * (E + 1)), *cnt = xmalloc(sizeof(int32_t) * E);
        for (int T = 1; T <= maxT; T *= 2) {
            memset(cnt, 0, sizeof(int32_t) * E);
            for (int t = 0; t < T; t++) { // k distinct experts per token, uniform
                int chosen[16], nch = 0;
                while (nch < K) {
                    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                    int e = (int)((rng >> 33) % (uint64_t)E), dup = 0;
                    for (int q = 0; q < nch; q++) dup |= chosen[q] == e;
                    if (!dup) chosen[nch++] = e, cnt[e]++;
                }
            }
            seg[0] = 0;
            int active = 0, maxr = 0;
            for (int e = 0; e < E; e++) seg[e + 1] = seg[e] + cnt[e], active += cnt[e] > 0, maxr = cnt[e] > maxr ? cnt[e] : maxr;
            CK(cudaMemcpy(dseg, seg, sizeof(int32_t) * (E + 1), cudaMemcpyHostToDevice));
            cudaEvent_t e0, e1;
            cudaEventCreate(&e0);
            cudaEventCreate(&e1);
            float ms[20];
            for (int it = 0; it < 23; it++) {
                // the variant the engine picks for this step (decode-sized: from the counts alone)
                jk_moe_ffn_args a = {x, dseg, wgu[it % NC], wd[it % NC], act, y, E, H, I,
                                     janus_ffn_variant_rows((int64_t)T * K, T, E, maxr), NULL, 0, T * K};
                cudaEventRecord(e0, 0);
                CK(jk_moe_ffn_decode(&a, NULL));
                cudaEventRecord(e1, 0);
                cudaEventSynchronize(e1);
                if (it >= 3) cudaEventElapsedTime(&ms[it - 3], e0, e1);
            }
            qsort(ms, 20, sizeof(float), cmp_f);
            double t_s = ms[10] * 1e-3;
            double bytes = (double)active * 3.0 * H * I * 2.0;
            double gbps = bytes / t_s / 1e9;
            // The same bytes by a plain read kernel, from the rotated copies (above one
            // copy's gate/up weights, 0.8-1.9 GB, where the rate no longer grows with
            // size, that much is read and the time scaled up).
            const size_t rbytes = (size_t)(bytes < 2.0 * ngu ? bytes : 2.0 * ngu) & ~(size_t)15;
            double read_s = 1e30;
            for (int bps = 2; bps <= 8; bps *= 2) {
                for (int it = 0; it < 23; it++) {
                    cudaEventRecord(e0, 0);
                    CK(jk_read_probe(wgu[it % NC], rbytes, bps, sink, NULL));
                    cudaEventRecord(e1, 0);
                    cudaEventSynchronize(e1);
                    if (it >= 3) cudaEventElapsedTime(&ms[it - 3], e0, e1);
                }
                qsort(ms, 20, sizeof(float), cmp_f);
                const double r = ms[10] * 1e-3 * bytes / (double)rbytes;
                if (r < read_s) read_s = r;
            }
            printf("%-14s %6d %8d %8.2f %8d %10.1f %10.0f %8.1f%% %8.1f%% %9.1f %6.1f%%\n", shapes[si].name, T, active,
                   (double)T * K / active, maxr, t_s * 1e6, gbps, 100 * gbps * 1e9 / copy_bw, sheet ? 100 * gbps * 1e9 / sheet : 0,
                   read_s * 1e6, 100 * read_s / t_s);
            if (jf)
                fprintf(jf, "%s{\"shape\": \"%s\", \"tokens\": %d, \"experts\": %d, \"us\": %.2f, \"GBps\": %.1f, \"pct_copy\": %.2f, \"pct_sheet\": %.2f, \"read_us\": %.2f, \"pct_read\": %.2f}",
                        first ? "" : ", ", shapes[si].name, T, active, t_s * 1e6, gbps, 100 * gbps * 1e9 / copy_bw,
                        sheet ? 100 * gbps * 1e9 / sheet : 0, read_s * 1e6, 100 * read_s / t_s);
            first = 0;
            cudaEventDestroy(e0);
            cudaEventDestroy(e1);
        }
        free(seg), free(cnt);
        cudaFree(x), cudaFree(y), cudaFree(act), cudaFree(dseg);
        for (int cpy = 0; cpy < NC; cpy++) cudaFree(wgu[cpy]), cudaFree(wd[cpy]);
    }
    if (jf) fprintf(jf, "]}\n"), fclose(jf);
    cudaFree(sink);
    return 0;
}

// e2e: decode steps of B sequences on one GPU (weights from the checkpoint, or
// synthetic from config.json alone): step time against the bytes a step must
// read (dense weights + activated experts + KV cache) over the HBM bandwidth.
int bench_e2e(int argc, char **argv) {
    const char *model = NULL, *json = NULL;
    int batch = 64, context = 512, steps = 16, synthetic = 0;
    double zipf = 0;
    static struct option opts[] = {{"model", required_argument, 0, 'm'},   {"batch", required_argument, 0, 'b'},
                                   {"context", required_argument, 0, 'c'}, {"steps", required_argument, 0, 's'},
                                   {"synthetic", no_argument, 0, 'S'},     {"zipf", required_argument, 0, 'z'},
                                   {"json", required_argument, 0, 'j'},    {"help", no_argument, 0, 'h'},
                                   {0, 0, 0, 0}};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'b': batch = (int)cli_int("--batch", optarg, 1, 4096); break;
        case 'c': context = (int)cli_int("--context", optarg, 1, 1 << 20); break;
        case 's': steps = (int)cli_int("--steps", optarg, 1, 100000); break;
        case 'S': synthetic = 1; break;
        case 'z': zipf = cli_num("--zipf", optarg, 0, 10); break;
        case 'j': json = optarg; break;
        case 'h':
            puts("usage: janus bench e2e --model DIR [--synthetic] [--batch 64] [--context 512] [--steps 16] [--zipf S] [--json FILE]");
            return 0;
        default: janus_die(NULL, "bench e2e: unknown or incomplete option \"%s\"", argv[optind - 1]);
        }
    }
    if (!model) janus_die(NULL, "bench e2e: --model DIR is required");
    janus_model m;
    janus_err e;
    if (janus_model_load(model, &m, synthetic ? 0 : JANUS_LOAD_ALL, NULL, &e)) janus_die(NULL, "%s", e.msg);
    const janus_config *cf = &m.cfg;
    const int bs = 16, per_seq = janus_blocks_needed(context, steps + 1, bs), chunk = 256;
    double copy_bw = jk_copy_bandwidth();
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    double sheet = datasheet_bw(prop.name);
    double t0 = janus_now_s();
    janus_gpu *g = janus_gpu_init(&m, 0, batch > chunk ? batch : chunk, batch * per_seq, bs, 1234, zipf);
    printf("# janus bench e2e: %s (%s%s), %s, batch %d, context %d, %d steps; weights ready in %.1f s\n", model,
           cf->model_type, synthetic ? ", synthetic weights" : "", prop.name, batch, context, steps, janus_now_s() - t0);
    int32_t **bt = xmalloc(sizeof(int32_t *) * batch);
    for (int s = 0; s < batch; s++) {
        bt[s] = xmalloc(sizeof(int32_t) * per_seq);
        for (int k = 0; k < per_seq; k++) bt[s][k] = s * per_seq + k;
    }
    const int maxT = batch > chunk ? batch : chunk;
    int32_t *tok = xmalloc(4 * maxT), *pos = xmalloc(4 * maxT), *rows = xmalloc(4 * maxT), *gt = xmalloc(4 * maxT);
    float *glp = xmalloc(4 * maxT);
    const int32_t **tbt = xmalloc(sizeof(int32_t *) * maxT);
    int64_t *counts = xcalloc((size_t)cf->n_layers * cf->n_experts, sizeof(int64_t)),
            *before = xmalloc(sizeof(int64_t) * cf->n_layers * cf->n_experts);
    uint64_t rng = 99;
    t0 = janus_now_s();
    for (int s = 0; s < batch; s++) // prefill, untimed
        for (int p0 = 0; p0 < context; p0 += chunk) {
            int n = context - p0 < chunk ? context - p0 : chunk;
            for (int i = 0; i < n; i++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                tok[i] = (int32_t)((rng >> 33) % (uint64_t)cf->vocab), pos[i] = p0 + i, tbt[i] = bt[s];
            }
            janus_batch b = {.T = n, .tok = tok, .pos = pos, .bt = tbt, .n_out = 0, .out_rows = rows};
            janus_gpu_forward(g, &b, NULL, gt, glp, counts, NULL);
        }
    double prefill_s = janus_now_s() - t0;
    janus_gpu_profile_reset(g);
    for (int s = 0; s < batch; s++) tok[s] = (int32_t)(s % cf->vocab);
    double *ms = xmalloc(sizeof(double) * steps), act_sum = 0, kv_sum = 0;
    const int n_moe = janus_n_moe_layers(cf);
    for (int st = 0; st < steps; st++) {
        for (int s = 0; s < batch; s++) pos[s] = context + st, tbt[s] = bt[s], rows[s] = s;
        memcpy(before, counts, sizeof(int64_t) * cf->n_layers * cf->n_experts);
        janus_batch b = {.T = batch, .tok = tok, .pos = pos, .bt = tbt, .n_out = batch, .out_rows = rows};
        // JANUS_PROFILE_STEP=n: only decode step n inside the profiler's range
        // (ncu/nsys --profile-from-start off), for a per-kernel breakdown.
        const int prof = getenv("JANUS_PROFILE_STEP") && atoi(getenv("JANUS_PROFILE_STEP")) == st;
        if (prof) cudaProfilerStart();
        double a = janus_now_s();
        janus_gpu_forward(g, &b, NULL, gt, glp, counts, NULL);
        ms[st] = 1e3 * (janus_now_s() - a);
        if (prof) cudaProfilerStop();
        memcpy(tok, gt, 4 * batch); // greedy continuation
        for (int i = 0; i < cf->n_layers * cf->n_experts; i++) act_sum += counts[i] > before[i];
        kv_sum += (double)batch * (context + st + 1) * cf->n_layers * 2.0 * cf->n_kv_heads * cf->head_dim * 2;
    }
    double med;
    {
        double *s2 = xmalloc(sizeof(double) * steps);
        memcpy(s2, ms, sizeof(double) * steps);
        for (int i = 0; i < steps; i++)
            for (int j = i + 1; j < steps; j++)
                if (s2[j] < s2[i]) { double t = s2[i]; s2[i] = s2[j]; s2[j] = t; }
        med = s2[steps / 2];
        free(s2);
    }
    const double expert_bytes = 3.0 * cf->hidden * cf->moe_inter * 2;
    const double act = act_sum / steps, bytes = janus_gpu_dense_bytes(g) + act * expert_bytes + kv_sum / steps;
    const double floor_copy = bytes / copy_bw * 1e3, floor_sheet = sheet ? bytes / sheet * 1e3 : 0;
    printf("# prefill of %d x %d tokens: %.2f s (untimed for the table)\n", batch, context, prefill_s);
    printf("# device copy bandwidth %.0f GB/s measured now; data-sheet %.0f GB/s\n", copy_bw / 1e9, sheet / 1e9);
    printf("%8s %10s %12s %16s %12s %14s %14s %12s\n", "batch", "ms/step", "tokens/s", "experts/layer", "GB/step",
           "floor_ms(copy)", "floor_ms(sheet)", "x floor");
    printf("%8d %10.3f %12.1f %16.2f %12.2f %14.3f %14.3f %12.2f\n", batch, med, batch / (med * 1e-3),
           n_moe ? act / n_moe : 0, bytes / 1e9, floor_copy, floor_sheet, sheet ? med / floor_sheet : med / floor_copy);
    if (json) {
        FILE *jf = fopen(json, "w");
        if (!jf) janus_die(json, "cannot open for writing");
        fprintf(jf, "{\"bench\": \"e2e\", \"model\": \"%s\", \"synthetic\": %d, \"device\": \"%s\", \"batch\": %d, \"context\": %d, "
                    "\"steps\": %d, \"ms_per_step\": %.4f, \"tokens_per_s\": %.2f, \"experts_per_layer\": %.3f, \"bytes_per_step\": %.0f, "
                    "\"floor_ms_copy\": %.4f, \"floor_ms_sheet\": %.4f, \"zipf\": %.3f}\n",
                model, synthetic, prop.name, batch, context, steps, med, batch / (med * 1e-3), n_moe ? act / n_moe : 0, bytes,
                floor_copy, floor_sheet, zipf);
        fclose(jf);
    }
    janus_gpu_free(g);
    return 0;
}

int bench_gpu_name(char *name, size_t len) {
    int ndev = 0;
    struct cudaDeviceProp prop;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0 || cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return -1;
    snprintf(name, len, "%s", prop.name);
    return 0;
}

int bench_sched_gpu(const janus_placement *p, const int64_t *n, int layers, double *us, double *graph_us, int *wrong) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) return -1;
    const int E = p->n_experts, M = p->n_moe, S = p->rep_off[E];
    jk_sched_plan plan;
    CK(jk_sched_plan_init(&plan, E, M, p->rep_off, p->rep_rank, 0));
    int64_t *dn, *dshare, *dtok;
    int32_t *dact;
    CK(cudaMalloc((void **)&dn, sizeof(int64_t) * E * layers));
    CK(cudaMalloc((void **)&dshare, sizeof(int64_t) * S * layers));
    CK(cudaMalloc((void **)&dact, sizeof(int32_t) * M * layers));
    CK(cudaMalloc((void **)&dtok, sizeof(int64_t) * M * layers));
    CK(cudaMemcpy(dn, n, sizeof(int64_t) * E * layers, cudaMemcpyHostToDevice));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
#define SCHED_ALL_LAYERS()                                                                                          \
    for (int l = 0; l < layers; l++)                                                                                \
        CK(jk_sched(&plan, dn + (size_t)l * E, dshare + (size_t)l * S, dact + (size_t)l * M, dtok + (size_t)l * M, st))
    SCHED_ALL_LAYERS(); // warm-up, and the results to check
    CK(cudaStreamSynchronize(st));
    int64_t *gshare = xmalloc(sizeof(int64_t) * S * layers), *gtok = xmalloc(sizeof(int64_t) * M * layers),
            *share = xmalloc(sizeof(int64_t) * S), *tok = xmalloc(sizeof(int64_t) * M);
    int32_t *gact = xmalloc(sizeof(int32_t) * M * layers), *act = xmalloc(sizeof(int32_t) * M);
    CK(cudaMemcpy(gshare, dshare, sizeof(int64_t) * S * layers, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gact, dact, sizeof(int32_t) * M * layers, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gtok, dtok, sizeof(int64_t) * M * layers, cudaMemcpyDeviceToHost));
    janus_sched_ws ws;
    janus_sched_ws_init(&ws, p);
    *wrong = 0;
    for (int l = 0; l < layers; l++) {
        janus_sched(p, n + (size_t)l * E, share, act, tok, &ws);
        *wrong += memcmp(share, gshare + (size_t)l * S, sizeof(int64_t) * S) || memcmp(act, gact + (size_t)l * M, sizeof(int32_t) * M) ||
                  memcmp(tok, gtok + (size_t)l * M, sizeof(int64_t) * M);
    }
    janus_sched_ws_free(&ws);
    // Back to back on the stream (launch gaps included), then the same
    // launches as one CUDA graph; best of 5 passes each.
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    float best = 1e30f, ms;
    for (int rep = 0; rep < 5; rep++) {
        CK(cudaEventRecord(e0, st));
        SCHED_ALL_LAYERS();
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&ms, e0, e1));
        best = ms < best ? ms : best;
    }
    *us = 1e3 * best / layers;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    SCHED_ALL_LAYERS();
    CK(cudaStreamEndCapture(st, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaGraphLaunch(exec, st)); // warm-up
    CK(cudaStreamSynchronize(st));
    best = 1e30f;
    for (int rep = 0; rep < 5; rep++) {
        CK(cudaEventRecord(e0, st));
        CK(cudaGraphLaunch(exec, st));
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&ms, e0, e1));
        best = ms < best ? ms : best;
    }
    *graph_us = 1e3 * best / layers;
#undef SCHED_ALL_LAYERS
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaStreamDestroy(st);
    free(gshare), free(gtok), free(gact), free(share), free(tok), free(act);
    cudaFree(dn), cudaFree(dshare), cudaFree(dact), cudaFree(dtok);
    jk_sched_plan_free(&plan);
    return 0;
}
