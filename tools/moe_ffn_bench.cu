// tools/moe_ffn_bench.cu: standalone check + timing of the decode grouped
// expert FFN (cuda_kernels/moe_ffn.cu) without the meson build.
//   nvcc -O3 -gencode arch=compute_90,code=sm_90 -Icuda_kernels -o moe_ffn_bench tools/moe_ffn_bench.cu cuda_kernels/moe_ffn.cu
//   ./moe_ffn_bench check            the moe_case shapes of tests/test_cuda_kernels.c (same poisoned seg tail and
//                                    NaN-poisoned y) against a float64 CPU reference, under every JANUS_TC variant
//   ./moe_ffn_bench bench [sweep]    the shapes and routing of `janus bench moe-layer` (same RNG, weight copies
//                                    rotated, copy bandwidth measured in the run); sweep: also time each variant
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moe_ffn.h"

#define CK(x)                                                                                                   \
    do {                                                                                                        \
        int rc_ = (int)(x);                                                                                     \
        if (rc_) { printf("FAIL: %s: CUDA error %d (%s)\n", #x, rc_, cudaGetErrorString((cudaError_t)rc_)); exit(1); } \
    } while (0)

static uint64_t rng = 0x1234567;
static int rnd(int n) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (int)(rng % (uint64_t)n); }
static float frnd(void) { return (float)rnd(1 << 24) / (1 << 23) - 1.0f; }
static uint16_t f2bf(float f) { uint32_t u; memcpy(&u, &f, 4); u += 0x7fff + ((u >> 16) & 1); return (uint16_t)(u >> 16); }
static double bf2d(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }

static int passed, failed;

static void moe_case(int E, int H, int I, int max_rows) {
    int32_t *seg = (int32_t *)malloc(sizeof(int32_t) * (E + 1));
    seg[0] = 0;
    for (int e = 0; e < E; e++) seg[e + 1] = seg[e] + (rnd(3) ? rnd(max_rows + 1) : 0);
    int R = seg[E] ? seg[E] : 1;
    size_t ngu = (size_t)E * 2 * I * H, nd = (size_t)E * H * I;
    float *x = (float *)malloc(sizeof(float) * R * H), *y = (float *)malloc(sizeof(float) * R * H);
    double *ref = (double *)malloc(sizeof(double) * R * H), *act = (double *)malloc(sizeof(double) * I);
    uint16_t *wgu = (uint16_t *)malloc(2 * ngu), *wd = (uint16_t *)malloc(2 * nd);
    for (size_t i = 0; i < (size_t)R * H; i++) x[i] = frnd();
    for (size_t i = 0; i < ngu; i++) wgu[i] = f2bf(frnd() / sqrtf((float)H));
    for (size_t i = 0; i < nd; i++) wd[i] = f2bf(frnd() / sqrtf((float)I));
    for (int e = 0; e < E; e++)
        for (int r = seg[e]; r < seg[e + 1]; r++) {
            const uint16_t *g = wgu + (size_t)e * 2 * I * H, *u = g + (size_t)I * H, *d = wd + (size_t)e * H * I;
            for (int i = 0; i < I; i++) {
                double gs = 0, us = 0;
                for (int k = 0; k < H; k++) gs += x[(size_t)r * H + k] * bf2d(g[(size_t)i * H + k]), us += x[(size_t)r * H + k] * bf2d(u[(size_t)i * H + k]);
                act[i] = gs / (1 + exp(-gs)) * us;
            }
            for (int h = 0; h < H; h++) {
                double s = 0;
                for (int i = 0; i < I; i++) s += act[i] * bf2d(d[(size_t)h * I + i]);
                ref[(size_t)r * H + h] = s;
            }
        }
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
    int32_t *seg_p = (int32_t *)malloc(sizeof(int32_t) * (E + 9));
    memcpy(seg_p, seg, sizeof(int32_t) * (E + 1));
    for (int i = E + 1; i < E + 9; i++) seg_p[i] = seg[E] + 1000000;
    CK(cudaMemcpy(dseg, seg_p, sizeof(int32_t) * (E + 9), cudaMemcpyHostToDevice));
    free(seg_p);
    CK(cudaMemcpy(dwgu, wgu, 2 * ngu, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dwd, wd, 2 * nd, cudaMemcpyHostToDevice));
    int maxr = 0;
    for (int e = 0; e < E; e++) maxr = seg[e + 1] - seg[e] > maxr ? seg[e + 1] - seg[e] : maxr;
    // every TC variant when the tensor-core path runs, else the default only
    static const char *vars[] = {"", "1,8,1,2", "1,8,2,2", "1,8,4,2", "1,4,1,2", "1,4,2,2", "1,4,4,2", "1,4,1,4", "1,4,2,4", "1,4,4,4",
                                 "2,8,1,2", "2,8,2,2", "2,8,4,2", "2,4,1,2", "2,4,2,2", "2,4,4,2", "2,4,1,4", "2,4,2,4", "2,4,4,4"};
    const int nv = maxr > 4 ? (int)(sizeof vars / sizeof vars[0]) : 1;
    for (int v = 0; v < nv; v++) {
        if (v) setenv("JANUS_TC", vars[v], 1); else unsetenv("JANUS_TC");
        for (int pdl = 0; pdl < 2; pdl++) {
            setenv("JANUS_PDL", pdl ? "1" : "0", 1);
            CK(cudaMemset(dy, 0xff, sizeof(float) * R * H)); // NaN poison
            CK(cudaMemset(dact, 0xff, sizeof(float) * R * I));
            jk_moe_ffn_args a = {dx, dseg, dwgu, dwd, dact, dy, E, H, I, maxr};
            CK(jk_moe_ffn_decode(&a, NULL));
            CK(cudaDeviceSynchronize());
            CK(cudaMemcpy(y, dy, sizeof(float) * R * H, cudaMemcpyDeviceToHost));
            double num = 0, den = 0;
            int nan = 0;
            for (int i = 0; i < seg[E] * H; i++) {
                if (isnan(y[i])) nan++;
                num += (y[i] - ref[i]) * (y[i] - ref[i]);
                den += ref[i] * ref[i];
            }
            double rel = den > 0 ? sqrt(num / den) : sqrt(num);
            const double tol = maxr > 4 ? 1e-2 : 1e-4;
            int ok = !nan && rel < tol;
            if (!ok || (v == 0 && pdl == 1))
                printf("%s moe_ffn_decode E=%d H=%d I=%d rows=%d (max %d) tc=%s pdl=%d: rel err %.2e (tol %.0e), unwritten %d\n",
                       ok ? "ok  " : "FAIL", E, H, I, seg[E], maxr, v ? vars[v] : "default", pdl, rel, tol, nan);
            ok ? passed++ : failed++;
        }
    }
    unsetenv("JANUS_TC"), unsetenv("JANUS_PDL");
    cudaFree(dx), cudaFree(dact), cudaFree(dy), cudaFree(dseg), cudaFree(dwgu), cudaFree(dwd);
    free(seg), free(x), free(y), free(ref), free(act), free(wgu), free(wd);
}

__global__ void fill_bf16(uint16_t *p, size_t n, uint32_t seed, float scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed * 0x9e3779b9u;
        h ^= h >> 15, h *= 0x2c1b3c6du, h ^= h >> 12, h *= 0x297a2d39u, h ^= h >> 15;
        float f = ((h >> 8) * (1.0f / 8388608.0f) - 1.0f) * scale;
        uint32_t u = __float_as_uint(f);
        p[i] = (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
    }
}
__global__ void fill_f32(float *p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed * 0x9e3779b9u;
        h ^= h >> 15, h *= 0x2c1b3c6du, h ^= h >> 12, h *= 0x297a2d39u, h ^= h >> 15;
        p[i] = (h >> 8) * (1.0f / 8388608.0f) - 1.0f;
    }
}

static int cmp_f(const void *a, const void *b) { float x = *(const float *)a, y = *(const float *)b; return (x > y) - (x < y); }

static double copy_bw(void) {
    const size_t n = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    CK(cudaMemset(a, 1, n));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    float t[10];
    for (int i = 0; i < 13; i++) {
        cudaEventRecord(e0, 0);
        CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0));
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        if (i >= 3) cudaEventElapsedTime(&t[i - 3], e0, e1);
    }
    qsort(t, 10, sizeof(float), cmp_f);
    cudaFree(a), cudaFree(b);
    return 2.0 * n / (t[5] * 1e-3);
}

// what: 0 whole decode, 1 gate/up only, 2 down only. Median of 20 (3 warm-up), like janus bench moe-layer.
static double time_it(int what, int NC, uint16_t **wgu, uint16_t **wd, float *x, int32_t *dseg, float *act, float *y,
                      int E, int H, int I, int maxr) {
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    float ms[20];
    for (int it = 0; it < 23; it++) {
        jk_moe_ffn_args a = {x, dseg, wgu[it % NC], wd[it % NC], act, y, E, H, I, maxr};
        cudaEventRecord(e0, 0);
        if (what == 0) CK(jk_moe_ffn_decode(&a, NULL));
        else if (what == 1) CK(jk_grouped_gemv(x, dseg, wgu[it % NC], act, E, I, H, 1, maxr, NULL));
        else CK(jk_grouped_gemv(act, dseg, wd[it % NC], y, E, H, I, 0, maxr, NULL));
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        if (it >= 3) cudaEventElapsedTime(&ms[it - 3], e0, e1);
    }
    CK(cudaGetLastError());
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    qsort(ms, 20, sizeof(float), cmp_f);
    return ms[10] * 1e-3;
}

static void bench(int sweep) {
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const double bw = copy_bw();
    printf("# %s (%d SMs, %.0f MB L2); copy bandwidth (read + write) %.0f GB/s\n", prop.name, prop.multiProcessorCount,
           prop.l2CacheSize / 1e6, bw / 1e9);
    struct { const char *name; int E, k, H, I, copies; } shapes[] = {{"qwen3-30b-a3b", 128, 8, 2048, 768, 4}, {"mixtral-8x7b", 8, 2, 4096, 14336, 2}};
    static const char *vars[] = {"1,8,1,2", "1,8,2,2", "1,8,4,2", "1,4,1,2", "1,4,2,2", "1,4,4,2", "1,4,1,4", "1,4,2,4", "1,4,4,4",
                                 "2,8,1,2", "2,8,2,2", "2,8,4,2", "2,4,1,2", "2,4,2,2", "2,4,4,2", "2,4,1,4", "2,4,2,4", "2,4,4,4"};
    const int nv = sizeof vars / sizeof vars[0];
    uint64_t r = 7;
    printf("%-14s %6s %8s %8s %5s %9s %7s %7s %7s %7s | %s\n", "shape", "tokens", "experts", "tok/exp", "max", "us", "%copy",
           "%nopdl", "%gu", "%down", sweep ? "sweep: best gu / best down (MT,NB,KS,D %)" : "");
    for (int si = 0; si < 2; si++) {
        const int E = shapes[si].E, K = shapes[si].k, H = shapes[si].H, I = shapes[si].I, NC = shapes[si].copies;
        const size_t ngu = (size_t)E * 2 * I * H, nd = (size_t)E * H * I;
        uint16_t *wgu[4], *wd[4];
        for (int c = 0; c < NC; c++) {
            CK(cudaMalloc((void **)&wgu[c], 2 * ngu));
            CK(cudaMalloc((void **)&wd[c], 2 * nd));
            fill_bf16<<<1024, 256>>>(wgu[c], ngu, 100 + c, 1.0f / 45.0f);
            fill_bf16<<<1024, 256>>>(wd[c], nd, 200 + c, 1.0f / 28.0f);
        }
        const int maxT = 512;
        float *x, *act, *y;
        int32_t *dseg;
        CK(cudaMalloc((void **)&x, sizeof(float) * maxT * K * H));
        CK(cudaMalloc((void **)&y, sizeof(float) * maxT * K * H));
        CK(cudaMalloc((void **)&act, sizeof(float) * maxT * K * I));
        CK(cudaMalloc((void **)&dseg, sizeof(int32_t) * (E + 1)));
        fill_f32<<<1024, 256>>>(x, (size_t)maxT * K * H, 5);
        CK(cudaDeviceSynchronize());
        int32_t *seg = (int32_t *)malloc(sizeof(int32_t) * (E + 1)), *cnt = (int32_t *)malloc(sizeof(int32_t) * E);
        for (int T = 1; T <= maxT; T *= 2) {
            memset(cnt, 0, sizeof(int32_t) * E);
            for (int t = 0; t < T; t++) {
                int chosen[16], nch = 0;
                while (nch < K) {
                    r = r * 6364136223846793005ull + 1442695040888963407ull;
                    int e = (int)((r >> 33) % (uint64_t)E), dup = 0;
                    for (int q = 0; q < nch; q++) dup |= chosen[q] == e;
                    if (!dup) chosen[nch++] = e, cnt[e]++;
                }
            }
            seg[0] = 0;
            int active = 0, maxr = 0;
            for (int e = 0; e < E; e++) seg[e + 1] = seg[e] + cnt[e], active += cnt[e] > 0, maxr = cnt[e] > maxr ? cnt[e] : maxr;
            CK(cudaMemcpy(dseg, seg, sizeof(int32_t) * (E + 1), cudaMemcpyHostToDevice));
            const double bytes = (double)active * 3.0 * H * I * 2.0, bgu = (double)active * 2.0 * H * I * 2.0, bd = bytes - bgu;
            unsetenv("JANUS_TC");
            setenv("JANUS_PDL", "0", 1);
            const double t_nopdl = time_it(0, NC, wgu, wd, x, dseg, act, y, E, H, I, maxr);
            unsetenv("JANUS_PDL");
            const double t = time_it(0, NC, wgu, wd, x, dseg, act, y, E, H, I, maxr);
            const double tg = time_it(1, NC, wgu, wd, x, dseg, act, y, E, H, I, maxr);
            const double td = time_it(2, NC, wgu, wd, x, dseg, act, y, E, H, I, maxr);
            printf("%-14s %6d %8d %8.2f %5d %9.1f %6.1f%% %6.1f%% %6.1f%% %6.1f%% |", shapes[si].name, T, active, (double)T * K / active,
                   maxr, t * 1e6, 100 * bytes / t / bw, 100 * bytes / t_nopdl / bw, 100 * bgu / tg / bw, 100 * bd / td / bw);
            if (sweep && maxr > 4) {
                int bg = 0, bdn = 0;
                double pg[32], pd[32];
                for (int v = 0; v < nv; v++) {
                    setenv("JANUS_TC", vars[v], 1);
                    pg[v] = 100 * bgu / time_it(1, NC, wgu, wd, x, dseg, act, y, E, H, I, maxr) / bw;
                    pd[v] = 100 * bd / time_it(2, NC, wgu, wd, x, dseg, act, y, E, H, I, maxr) / bw;
                    bg = pg[v] > pg[bg] ? v : bg, bdn = pd[v] > pd[bdn] ? v : bdn;
                }
                unsetenv("JANUS_TC");
                printf(" gu %s %.1f / down %s %.1f\n   all gu:", vars[bg], pg[bg], vars[bdn], pd[bdn]);
                for (int v = 0; v < nv; v++) printf(" %s=%.0f", vars[v], pg[v]);
                printf("\n   all dn:");
                for (int v = 0; v < nv; v++) printf(" %s=%.0f", vars[v], pd[v]);
            }
            if (sweep && maxr <= 4 && si == 0 && T <= 4) { // FMA tile width for the 1-2 row cases
                printf(" cols:");
                for (int c = 16; c <= 128; c *= 2) {
                    char b[16];
                    snprintf(b, sizeof b, "%d", c);
                    setenv("JANUS_GEMV_COLS", b, 1);
                    printf(" %d=%.0f/%.0f", c, 100 * bgu / time_it(1, NC, wgu, wd, x, dseg, act, y, E, H, I, maxr) / bw,
                           100 * bd / time_it(2, NC, wgu, wd, x, dseg, act, y, E, H, I, maxr) / bw);
                }
                unsetenv("JANUS_GEMV_COLS");
            }
            printf("\n");
            fflush(stdout);
        }
        free(seg), free(cnt);
        cudaFree(x), cudaFree(y), cudaFree(act), cudaFree(dseg);
        for (int c = 0; c < NC; c++) cudaFree(wgu[c]), cudaFree(wd[c]);
    }
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "check";
    if (!strcmp(mode, "check")) {
        moe_case(8, 64, 32, 3);
        moe_case(6, 96, 40, 20);
        moe_case(16, 2048, 768, 16);
        moe_case(4, 4096, 1024, 9);
        moe_case(3, 264, 136, 1);
        moe_case(32, 512, 256, 1);
        moe_case(32, 512, 256, 2);
        moe_case(32, 512, 256, 4);
        moe_case(32, 512, 256, 8);
        moe_case(32, 512, 256, 40);
        moe_case(1, 96, 40, 12);
        moe_case(5, 160, 96, 30);
        moe_case(300, 64, 32, 6); // more than 256 experts: the active-expert scan loops
        printf("%d passed, %d failed\n", passed, failed);
        return failed != 0;
    }
    bench(argc > 2 && !strcmp(argv[2], "sweep"));
    return 0;
}
