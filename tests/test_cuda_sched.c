// tests/test_cuda_sched.c: the activation scheduler kernel (cuda_kernels/
// sched.cu) against janus_sched, element for element (share, act, tok), on
// random layers: 4..256 experts, 1..64 MoE ranks; uniform placements with 1..3
// replicas, hot-expert placements, replicated placements from Zipf
// popularity, random replica sets (some on many ranks); uniform, Zipf-skewed,
// tied, huge, all-zero and all-on-one-expert counts. Also: more than 64 ranks
// and the forced general kernel (the C steps on one thread), a layer too big
// for shared memory (scratch in the workspace), 1000 experts in shared memory,
// and a stream of many layers launched back to back with no synchronisation
// between them. Outputs start
// poisoned, so an unwritten element fails. A mismatch prints the instance.
// Exits 77 (meson: skipped) when no GPU is present.
// Usage: test_cuda_sched [random instances, default 3000] [seed]
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/placement.h"
#include "sched/sched.h"
#include "sched_gpu.h"

#define CK(x)                                                                                  \
    do {                                                                                       \
        int rc_ = (int)(x);                                                                    \
        if (rc_) { printf("FAIL: %s: CUDA error %d (%s)\n", #x, rc_, cudaGetErrorString((cudaError_t)rc_)); exit(1); } \
    } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next64(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static int rnd(int n) { return (int)(next64() % (uint64_t)n); }
static double urand(void) { return (double)(next64() >> 11) / 9007199254740992.0; }

static const char *count_kinds[] = {"uniform", "zipf", "ties", "huge", "zero", "one-expert", "sparse"};

// n: [E] counts of the given kind.
static void make_counts(int64_t *n, int E, int kind) {
    memset(n, 0, sizeof(int64_t) * E);
    switch (kind) {
    case 0: for (int e = 0; e < E; e++) n[e] = rnd(50); break;
    case 1: { // tokens x top-k pairs from Zipf(s) popularity over a shuffled expert order
        double s = 0.5 + 1.0 * urand(), *cdf = malloc(sizeof(double) * E), tot = 0;
        for (int e = 0; e < E; e++) tot += pow(e + 1, -s), cdf[e] = tot;
        int perm_mul = 1 + 2 * rnd(1000), tokens = 1 + rnd(4096);
        for (int t = 0; t < tokens; t++) {
            double u = urand() * tot;
            int lo = 0, hi = E - 1;
            while (lo < hi) { int mid = (lo + hi) / 2; if (cdf[mid] < u) lo = mid + 1; else hi = mid; }
            n[(int)(((int64_t)lo * perm_mul) % E)]++;
        }
        free(cdf);
        break;
    }
    case 2: for (int e = 0; e < E; e++) n[e] = rnd(3); break;                        // many equal counts
    case 3: for (int e = 0; e < E; e++) n[e] = rnd(4) ? (int64_t)(next64() >> 24) : 0; break; // up to 2^40
    case 4: break;
    case 5: n[rnd(E)] = 1 + rnd(100000); break;
    case 6: for (int e = 0; e < E; e++) n[e] = rnd(8) ? 0 : 1 + rnd(20); break;
    }
}

static const char *place_kinds[] = {"uniform", "hot", "replicated", "random", "random-wide"};

// Placement of the given kind (counts: the layer's, for the hot placement).
static void make_placement(janus_placement *p, int E, int M, int kind, const int64_t *n) {
    switch (kind) {
    case 0: janus_placement_uniform(p, E, M, 1 + rnd(3)); return;
    case 1: janus_placement_hot(p, E, M, n, rnd(E / 4 + 2)); return;
    case 2: {
        double *pp = malloc(sizeof(double) * E);
        janus_zipf(pp, E, 1.5 * urand());
        int slots = (E + M - 1) / M + rnd(3);
        int rc = janus_place_replicated(pp, E, M, slots, p);
        free(pp);
        if (rc == 0) return;
        janus_placement_uniform(p, E, M, 2);
        return;
    }
    default: { // random distinct replica sets; "wide": some experts on up to all ranks
        int maxr = kind == 4 ? M : (M < 3 ? M : 3);
        p->n_experts = E, p->n_moe = M;
        p->rep_off = malloc(sizeof(int32_t) * (E + 1));
        p->rep_rank = malloc(sizeof(int32_t) * (size_t)E * M);
        int *perm = malloc(sizeof(int) * M), k = 0;
        for (int e = 0; e < E; e++) {
            p->rep_off[e] = k;
            for (int r = 0; r < M; r++) perm[r] = r;
            int nr = 1 + rnd(maxr);
            for (int j = 0; j < nr; j++) {
                int q = j + rnd(M - j), t = perm[j];
                perm[j] = perm[q], perm[q] = t;
                p->rep_rank[k++] = perm[j];
            }
        }
        p->rep_off[E] = k;
        free(perm);
    }
    }
}

static void print_instance(const janus_placement *p, const int64_t *n) {
    const int E = p->n_experts;
    printf("  instance: E=%d M=%d S=%d\n  rep_off:", E, p->n_moe, p->rep_off[E]);
    for (int e = 0; e <= E; e++) printf(" %d", p->rep_off[e]);
    printf("\n  rep_rank:");
    for (int s = 0; s < p->rep_off[E]; s++) printf(" %d", p->rep_rank[s]);
    printf("\n  n_tok:");
    for (int e = 0; e < E; e++) printf(" %lld", (long long)n[e]);
    printf("\n");
}

static int shown;

// Schedules `layers` count vectors (n: [layers][E]) on the GPU, launched back
// to back on one stream, and compares each with janus_sched. Returns the
// number of mismatching layers.
static int check(const janus_placement *p, const int64_t *n, int layers, int flags, const char *what, int *path_seen) {
    const int E = p->n_experts, M = p->n_moe, S = p->rep_off[E];
    jk_sched_plan plan;
    int rc = jk_sched_plan_init(&plan, E, M, p->rep_off, p->rep_rank, flags);
    if (rc) {
        printf("FAIL %s: jk_sched_plan_init: CUDA error %d\n", what, rc);
        print_instance(p, n);
        return layers;
    }
    path_seen[plan.path == JK_SCHED_GENERAL ? 2 : plan.ws ? 1 : 0]++;
    int64_t *dn, *dshare, *dtok;
    int32_t *dact;
    CK(cudaMalloc((void **)&dn, sizeof(int64_t) * E * layers));
    CK(cudaMalloc((void **)&dshare, sizeof(int64_t) * (S ? S : 1) * layers));
    CK(cudaMalloc((void **)&dact, sizeof(int32_t) * M * layers));
    CK(cudaMalloc((void **)&dtok, sizeof(int64_t) * M * layers));
    CK(cudaMemcpy(dn, n, sizeof(int64_t) * E * layers, cudaMemcpyHostToDevice));
    CK(cudaMemset(dshare, 0xA5, sizeof(int64_t) * (S ? S : 1) * layers)); // poison
    CK(cudaMemset(dact, 0xA5, sizeof(int32_t) * M * layers));
    CK(cudaMemset(dtok, 0xA5, sizeof(int64_t) * M * layers));
    for (int l = 0; l < layers; l++)
        CK(jk_sched(&plan, dn + (size_t)l * E, dshare + (size_t)l * S, dact + (size_t)l * M, dtok + (size_t)l * M, NULL));
    CK(cudaDeviceSynchronize());
    int64_t *gshare = malloc(sizeof(int64_t) * (S ? S : 1) * layers), *gtok = malloc(sizeof(int64_t) * M * layers);
    int32_t *gact = malloc(sizeof(int32_t) * M * layers);
    CK(cudaMemcpy(gshare, dshare, sizeof(int64_t) * S * layers, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gact, dact, sizeof(int32_t) * M * layers, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gtok, dtok, sizeof(int64_t) * M * layers, cudaMemcpyDeviceToHost));
    janus_sched_ws ws;
    janus_sched_ws_init(&ws, p);
    int64_t *share = malloc(sizeof(int64_t) * (S ? S : 1)), *tok = malloc(sizeof(int64_t) * M);
    int32_t *act = malloc(sizeof(int32_t) * M);
    int bad_layers = 0;
    for (int l = 0; l < layers; l++) {
        const int64_t *nl = n + (size_t)l * E;
        janus_sched(p, nl, share, act, tok, &ws);
        int bad = 0;
        for (int s = 0; s < S; s++)
            if (gshare[(size_t)l * S + s] != share[s]) {
                if (!bad && shown < 5) printf("FAIL %s: share[%d]: gpu %lld, c %lld\n", what, s, (long long)gshare[(size_t)l * S + s], (long long)share[s]);
                bad++;
            }
        for (int r = 0; r < M; r++) {
            if (gact[(size_t)l * M + r] != act[r]) {
                if (!bad && shown < 5) printf("FAIL %s: act[%d]: gpu %d, c %d\n", what, r, gact[(size_t)l * M + r], act[r]);
                bad++;
            }
            if (gtok[(size_t)l * M + r] != tok[r]) {
                if (!bad && shown < 5) printf("FAIL %s: tok[%d]: gpu %lld, c %lld\n", what, r, (long long)gtok[(size_t)l * M + r], (long long)tok[r]);
                bad++;
            }
        }
        if (bad) {
            if (shown < 5) {
                printf("  (%d elements differ; layer %d of %d; kernel %s)\n", bad, l, layers,
                       plan.path == JK_SCHED_GENERAL ? "general" : plan.ws ? "fast, scratch in workspace" : "fast");
                print_instance(p, nl);
            }
            shown++;
            bad_layers++;
        }
    }
    janus_sched_ws_free(&ws);
    free(share), free(tok), free(act), free(gshare), free(gtok), free(gact);
    cudaFree(dn), cudaFree(dshare), cudaFree(dact), cudaFree(dtok);
    jk_sched_plan_free(&plan);
    return bad_layers;
}

int main(int argc, char **argv) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    const int n_inst = argc > 1 ? atoi(argv[1]) : 3000;
    if (argc > 2 && strtoull(argv[2], NULL, 10)) rng = strtoull(argv[2], NULL, 10);
    int passed = 0, failed = 0, path_seen[3] = {0, 0, 0};
    int bad = 0, by_place[5] = {0}, by_count[7] = {0};
    char what[96];
    // Random layers, one launch each.
    for (int it = 0; it < n_inst; it++) {
        int E = 4 + rnd(253), M = 1 + rnd(64);
        if (rnd(3) == 0) M = 1 + rnd(E < 64 ? E : 64); // as often M <= E
        const int pk = rnd(5), ck = rnd(7);
        int64_t *n = malloc(sizeof(int64_t) * E);
        make_counts(n, E, ck);
        janus_placement p;
        make_placement(&p, E, M, pk, n);
        snprintf(what, sizeof what, "random #%d (%s placement, %s counts)", it, place_kinds[pk], count_kinds[ck]);
        int b = check(&p, n, 1, 0, what, path_seen);
        bad += b, by_place[pk] += b, by_count[ck] += b;
        janus_placement_free(&p);
        free(n);
    }
    printf("%s %d random layers (E 4..256, M 1..64) identical to janus_sched: %d differ", bad ? "FAIL" : "ok  ", n_inst, bad);
    if (bad) {
        printf(" (by placement:");
        for (int k = 0; k < 5; k++) printf(" %s %d", place_kinds[k], by_place[k]);
        printf("; by counts:");
        for (int k = 0; k < 7; k++) printf(" %s %d", count_kinds[k], by_count[k]);
        printf(")");
    }
    printf("\n");
    bad ? failed++ : passed++;

    // The DESIGN budget's shape, a stream of layers: 256 experts, 64 ranks,
    // 2 replicas, Zipf counts; back to back on one stream.
    {
        const int E = 256, M = 64, layers = 64;
        int64_t *n = malloc(sizeof(int64_t) * E * layers);
        for (int l = 0; l < layers; l++) make_counts(n + (size_t)l * E, E, l % 2 ? 1 : 0);
        janus_placement p;
        janus_placement_uniform(&p, E, M, 2);
        int b = check(&p, n, layers, 0, "stream of 64 layers, 256 experts x 64 ranks x 2 replicas", path_seen);
        printf("%s %d layers of 256 experts x 64 ranks launched back to back: %d differ\n", b ? "FAIL" : "ok  ", layers, b);
        b ? failed++ : passed++;
        janus_placement_free(&p);
        free(n);
    }
    // The general kernel: more than 64 ranks, and forced on small layers.
    {
        int b = 0, cnt = 0;
        for (int it = 0; it < 60; it++) {
            const int big = it < 20, E = big ? 128 + rnd(257) : 4 + rnd(120), M = big ? 65 + rnd(128) : 1 + rnd(16);
            const int pk = rnd(5), ck = rnd(7);
            int64_t *n = malloc(sizeof(int64_t) * E);
            make_counts(n, E, ck);
            janus_placement p;
            make_placement(&p, E, M, pk, n);
            snprintf(what, sizeof what, "general #%d (%s placement, %s counts)", it, place_kinds[pk], count_kinds[ck]);
            b += check(&p, n, 1, big ? 0 : JK_SCHED_FORCE_GENERAL, what, path_seen);
            cnt++;
            janus_placement_free(&p);
            free(n);
        }
        printf("%s %d layers on the general kernel (65..192 ranks, or forced): %d differ\n", b ? "FAIL" : "ok  ", cnt, b);
        b ? failed++ : passed++;
    }
    // Too big for shared memory: 4096 experts, 64 ranks, 2 replicas.
    {
        const int E = 4096, M = 64;
        int64_t *n = malloc(sizeof(int64_t) * E * 2);
        make_counts(n, E, 1);
        make_counts(n + E, E, 0);
        janus_placement p;
        janus_placement_uniform(&p, E, M, 2);
        int b = check(&p, n, 2, 0, "4096 experts x 64 ranks", path_seen);
        printf("%s 4096 experts x 64 ranks (scratch in the workspace): %d differ\n", b ? "FAIL" : "ok  ", b);
        b ? failed++ : passed++;
        janus_placement_free(&p);
        free(n);
    }
    // More experts than twice the block's threads, scratch in shared memory
    // (the kernel's tail loops): 1000 experts, 48 ranks, 3 replicas.
    {
        const int E = 1000, M = 48;
        int64_t *n = malloc(sizeof(int64_t) * E * 3);
        make_counts(n, E, 1);
        make_counts(n + E, E, 0);
        make_counts(n + 2 * E, E, 6);
        janus_placement p;
        janus_placement_uniform(&p, E, M, 3);
        int b = check(&p, n, 3, 0, "1000 experts x 48 ranks", path_seen);
        printf("%s 1000 experts x 48 ranks x 3 replicas: %d differ\n", b ? "FAIL" : "ok  ", b);
        b ? failed++ : passed++;
        janus_placement_free(&p);
        free(n);
    }
    const int all_paths = path_seen[0] && path_seen[1] && path_seen[2];
    printf("%s kernels exercised: fast %d, fast with workspace scratch %d, general %d\n", all_paths ? "ok  " : "FAIL",
           path_seen[0], path_seen[1], path_seen[2]);
    all_paths ? passed++ : failed++;
    // A malformed placement is refused, not scheduled.
    {
        int32_t off[3] = {0, 2, 3}, rank[3] = {1, 1, 0}; // expert 0 twice on rank 1
        jk_sched_plan plan;
        int rc = jk_sched_plan_init(&plan, 2, 2, off, rank, 0);
        printf("%s placement with two replicas of one expert on one rank refused (rc %d)\n", rc ? "ok  " : "FAIL", rc);
        rc ? passed++ : failed++;
        if (!rc) jk_sched_plan_free(&plan);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
