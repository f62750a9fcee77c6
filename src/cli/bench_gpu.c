// cli/bench_gpu.c: GPU benchmarks of `janus bench` (CUDA build only).
//   moe-layer: the decode MoE layer (grouped expert FFN) of Qwen3-30B-A3B and
//   Mixtral-8x7B shapes at 1..512 tokens with uniform top-k routing: bytes of
//   the activated experts' weights over the time, against the device copy
//   bandwidth measured in the same run (and the data-sheet HBM peak).
#include <cuda_runtime_api.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "moe_ffn.h"
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
static double datasheet_bw(const char *name) {
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
    printf("%-14s %6s %8s %8s %8s %10s %10s %9s %9s\n", "shape", "tokens", "experts", "tok/exp", "max", "us", "GB/s", "%copy", "%sheet");
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
                jk_moe_ffn_args a = {x, dseg, wgu[it % NC], wd[it % NC], act, y, E, H, I, maxr};
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
            printf("%-14s %6d %8d %8.2f %8d %10.1f %10.0f %8.1f%% %8.1f%%\n", shapes[si].name, T, active,
                   (double)T * K / active, maxr, t_s * 1e6, gbps, 100 * gbps * 1e9 / copy_bw, sheet ? 100 * gbps * 1e9 / sheet : 0);
            if (jf)
                fprintf(jf, "%s{\"shape\": \"%s\", \"tokens\": %d, \"experts\": %d, \"us\": %.2f, \"GBps\": %.1f, \"pct_copy\": %.2f, \"pct_sheet\": %.2f}",
                        first ? "" : ", ", shapes[si].name, T, active, t_s * 1e6, gbps, 100 * gbps * 1e9 / copy_bw,
                        sheet ? 100 * gbps * 1e9 / sheet : 0);
            first = 0;
            cudaEventDestroy(e0);
            cudaEventDestroy(e1);
        }
        free(seg), free(cnt);
        cudaFree(x), cudaFree(y), cudaFree(act), cudaFree(dseg);
        for (int cpy = 0; cpy < NC; cpy++) cudaFree(wgu[cpy]), cudaFree(wd[cpy]);
    }
    if (jf) fprintf(jf, "]}\n"), fclose(jf);
    return 0;
}
