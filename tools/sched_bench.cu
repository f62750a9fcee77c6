// tools/sched_bench.cu: standalone driver for the activation scheduler kernel
// (cuda_kernels/sched.cu): the shapes and counts of `janus bench sched`
// (uniform placement, 2 replicas, Zipf 1.0, 512 x 8 routed tokens, 200
// layers), exactness against janus_sched, kernel time back to back and as a
// CUDA graph (best of 5), the C time, and with -DSCHED_PROF the fast kernel's
// cycles per phase (thread 0's clock64, averaged per layer).
// Build (sched.c and placement.c compiled with gcc -std=gnu11 -Isrc first):
//        nvcc -O3 -gencode arch=compute_90,code=sm_90 -Isrc -Icuda_kernels tools/sched_bench.cu
//        cuda_kernels/sched.cu sched.o placement.o tools/sched_stub.c -o sb
//   (gcc -O2 -std=gnu11 -Isrc -Icuda_kernels -c src/sched/sched.c src/plan/placement.c first;
//    common.c needs MPI, tools/sched_stub.c stands in for it; add -DSCHED_PROF to both
//    .cu files for the per-phase cycles.)
// Usage: sb [E M]...   (default: the shapes below)
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>

// From sched/sched.h (common.h is C only: _Noreturn).
extern "C" {
typedef struct {
    int n_experts, n_moe;
    int32_t *rep_off, *rep_rank;
} janus_placement;
typedef struct {
    int E, M, S;
    int32_t *order, *slot_of, *queue, *prev_rank, *prev_exp;
    uint8_t *seen;
    int64_t *keys;
    int32_t *slot_exp, *rs_off, *rs_slot;
} janus_sched_ws;
void janus_placement_uniform(janus_placement *p, int n_experts, int n_moe, int replicas);
void janus_placement_free(janus_placement *p);
void janus_sched_ws_init(janus_sched_ws *w, const janus_placement *p);
void janus_sched_ws_free(janus_sched_ws *w);
void janus_sched(const janus_placement *p, const int64_t *n_tok, int64_t *share, int32_t *act, int64_t *tok, janus_sched_ws *w);
}
#include "sched_gpu.h"

#ifdef SCHED_PROF
extern "C" void jk_sched_prof(unsigned long long *out, int reset);
#endif

#define CK(x) do { int rc_ = (int)(x); if (rc_) { printf("CUDA error %d at %s:%d (%s)\n", rc_, __FILE__, __LINE__, #x); exit(1); } } while (0)

static double now_s(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }

static void run_shape(int E, int M, int replicas, int tokens, double zipf) {
    janus_placement p;
    janus_placement_uniform(&p, E, M, replicas < M ? replicas : M);
    const int S = p.rep_off[E], layers = 200;
    double *cdf = (double *)malloc(sizeof(double) * E), tot = 0;
    for (int e = 0; e < E; e++) tot += pow(e + 1, -zipf), cdf[e] = tot;
    int64_t *n = (int64_t *)calloc((size_t)layers * E, sizeof(int64_t));
    uint64_t rng = 42 + E * 131 + M;
    for (int it = 0; it < layers; it++) {
        int64_t *nl = n + (size_t)it * E;
        for (int t = 0; t < tokens; t++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            double u = (double)(rng >> 11) / 9007199254740992.0 * tot;
            int lo = 0, hi = E - 1;
            while (lo < hi) { int mid = (lo + hi) / 2; if (cdf[mid] < u) lo = mid + 1; else hi = mid; }
            nl[(lo * 2654435761u) % (unsigned)E]++;
        }
    }
    // C version
    janus_sched_ws ws;
    janus_sched_ws_init(&ws, &p);
    int64_t *share = (int64_t *)malloc(8 * (size_t)S * layers), *tok = (int64_t *)malloc(8 * (size_t)M * layers);
    int32_t *act = (int32_t *)malloc(4 * (size_t)M * layers);
    double c_best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        for (int l = 0; l < layers; l++)
            janus_sched(&p, n + (size_t)l * E, share + (size_t)l * S, act + (size_t)l * M, tok + (size_t)l * M, &ws);
        double t = (now_s() - t0) / layers;
        c_best = t < c_best ? t : c_best;
    }
    // GPU
    jk_sched_plan plan;
    CK(jk_sched_plan_init(&plan, E, M, p.rep_off, p.rep_rank, 0));
    int64_t *dn, *dshare, *dtok;
    int32_t *dact;
    CK(cudaMalloc((void **)&dn, 8 * (size_t)E * layers));
    CK(cudaMalloc((void **)&dshare, 8 * (size_t)S * layers));
    CK(cudaMalloc((void **)&dact, 4 * (size_t)M * layers));
    CK(cudaMalloc((void **)&dtok, 8 * (size_t)M * layers));
    CK(cudaMemcpy(dn, n, 8 * (size_t)E * layers, cudaMemcpyHostToDevice));
    CK(cudaMemset(dshare, 0xA5, 8 * (size_t)S * layers));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
#define ALL() for (int l = 0; l < layers; l++) CK(jk_sched(&plan, dn + (size_t)l * E, dshare + (size_t)l * S, dact + (size_t)l * M, dtok + (size_t)l * M, st))
#ifdef SCHED_PROF
    unsigned long long pr[32];
    jk_sched_prof(pr, 1);
#endif
    ALL();
    CK(cudaStreamSynchronize(st));
#ifdef SCHED_PROF
    jk_sched_prof(pr, 1);
#endif
    int64_t *gshare = (int64_t *)malloc(8 * (size_t)S * layers), *gtok = (int64_t *)malloc(8 * (size_t)M * layers);
    int32_t *gact = (int32_t *)malloc(4 * (size_t)M * layers);
    CK(cudaMemcpy(gshare, dshare, 8 * (size_t)S * layers, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gact, dact, 4 * (size_t)M * layers, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gtok, dtok, 8 * (size_t)M * layers, cudaMemcpyDeviceToHost));
    int wrong = 0;
    for (int l = 0; l < layers; l++)
        wrong += memcmp(share + (size_t)l * S, gshare + (size_t)l * S, 8 * (size_t)S) || memcmp(act + (size_t)l * M, gact + (size_t)l * M, 4 * (size_t)M) ||
                 memcmp(tok + (size_t)l * M, gtok + (size_t)l * M, 8 * (size_t)M);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    float best = 1e30f, ms;
    for (int rep = 0; rep < 5; rep++) {
        CK(cudaEventRecord(e0, st));
        ALL();
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&ms, e0, e1));
        best = ms < best ? ms : best;
    }
    const double us = 1e3 * best / layers;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    ALL();
    CK(cudaStreamEndCapture(st, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaGraphLaunch(exec, st));
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
    const double gus = 1e3 * best / layers;
    printf("%6d %5d %10.2f %10.2f %10.2f %7d  %s smem %zu\n", E, M, 1e6 * c_best, us, gus, wrong,
           plan.path == JK_SCHED_GENERAL ? "general" : plan.ws ? "fast-ws" : "fast", plan.smem_bytes);
#ifdef SCHED_PROF
    if (pr[31]) {
        const double k = 1.0 / (double)pr[31];
        printf("   prof cycles/layer:");
        for (int i = 0; i < 16; i++)
            if (pr[i]) printf(" p%d=%.0f", i, pr[i] * k);
        printf(" | rounds %.2f aug %.2f split %.2f (launches %llu)\n", pr[16] * k, pr[17] * k, pr[18] * k, pr[31]);
    }
#endif
    fflush(stdout);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(st);
    cudaFree(dn), cudaFree(dshare), cudaFree(dact), cudaFree(dtok);
    jk_sched_plan_free(&plan);
    janus_sched_ws_free(&ws);
    janus_placement_free(&p);
    free(cdf), free(n), free(share), free(tok), free(act), free(gshare), free(gtok), free(gact);
}

int main(int argc, char **argv) {
    printf("%6s %5s %10s %10s %10s %7s\n", "E", "M", "c_us", "gpu_us", "graph_us", "#wrong");
    if (argc > 2) {
        for (int i = 1; i + 1 < argc; i += 2) run_shape(atoi(argv[i]), atoi(argv[i + 1]), 2, 4096, 1.0);
        return 0;
    }
    const int shapes[][2] = {{256, 64}, {256, 32}, {256, 16}, {256, 8}, {256, 4}, {256, 2}, {128, 2}, {128, 8}, {64, 2}, {16, 2}, {8, 2}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) run_shape(shapes[i][0], shapes[i][1], 2, 4096, 1.0);
    return 0;
}
