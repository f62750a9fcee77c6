// tests/test_rows_once.c: janus_xchg_rows_once (comm/exchange.c), the host
// tables of the payload sent once per (token, MoE rank) and summed on the MoE
// ranks (comm/ipc.c's host-routed steps, comm/cudampi.c), against a
// brute-force reference written from its contract: per MoE rank the sorted
// set of its tokens, each send row's token row (this rank's region in that
// MoE rank's layout + the token's index in the set), and per (token, MoE
// rank) in token then MoE rank order the entry {m, rank, receive rows, pair
// indices} with the pairs ordered by (expert id, slot) by a full sort, the
// leads and ranks. Random layouts: 1..3 attention ranks (this one any of
// them), 1..6 MoE ranks, top-1..8 with repeated expert ids (ties go by slot),
// rows of each MoE rank in random order. No MPI calls, no GPU.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/exchange.h"

static uint64_t rng = 88172645463325252ull;
static int rnd(int n) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (int)(rng % (uint64_t)n);
}

static const int32_t *g_ids;
static int by_id_slot(const void *pa, const void *pb) { // pair indices of one token
    const int a = *(const int *)pa, b = *(const int *)pb;
    if (g_ids[a] != g_ids[b]) return g_ids[a] < g_ids[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

static int instance(int it) {
    const int A = 1 + rnd(3), M = 1 + rnd(6), K = 1 + rnd(8), T = 1 + rnd(40), E = 1 + rnd(12), nmb = 1 + rnd(2);
    const int ai = rnd(A), i = rnd(nmb), P = T * K, W = 2 + 2 * K;
    int32_t *ids = malloc(sizeof(int32_t) * P), *mof = malloc(sizeof(int32_t) * P);
    for (int q = 0; q < P; q++) ids[q] = rnd(E), mof[q] = rnd(M);
    janus_xmb_attn *xa = calloc(nmb, sizeof *xa);
    janus_xmb_attn *a = &xa[i];
    a->cnt = calloc(M, sizeof(int)), a->off = calloc(M + 1, sizeof(int)), a->pair = malloc(sizeof(int32_t) * P);
    for (int q = 0; q < P; q++) a->cnt[mof[q]]++;
    for (int m = 0; m < M; m++) a->off[m + 1] = a->off[m] + a->cnt[m];
    int *fill = calloc(M, sizeof(int));
    for (int q = 0; q < P; q++) a->pair[a->off[mof[q]] + fill[mof[q]]++] = q;
    for (int m = 0; m < M; m++) // each MoE rank's rows in random order
        for (int r = a->off[m + 1] - 1; r > a->off[m]; r--) {
            const int s = a->off[m] + rnd(r - a->off[m] + 1), t = a->pair[r];
            a->pair[r] = a->pair[s], a->pair[s] = t;
        }
    int64_t *ram = calloc((size_t)nmb * A * M, sizeof(int64_t));
    for (int b = 0; b < A; b++)
        for (int m = 0; m < M; m++) ram[((size_t)i * A + b) * M + m] = b == ai ? a->cnt[m] : rnd(50);
    janus_xchg x;
    memset(&x, 0, sizeof x);
    x.n_attn = A, x.n_moe = M, x.k = K, x.attn_idx = ai, x.xa = xa, x.rows_am = ram, x.n_mb = nmb;

    janus_xchg_rows1 d = {.tok = malloc(4 * P), .src = malloc(4 * P), .first = malloc(sizeof(int) * M),
                          .n_tok = malloc(sizeof(int) * M), .reg = malloc(8 * M), .mark = malloc(4 * T),
                          .rowof = malloc(4 * P), .mof = malloc(4 * P), .lead = malloc(4 * P), .rank = malloc(4 * P),
                          .ent = malloc(4 * (size_t)P * W)};
    for (int t = 0; t < T; t++) d.mark[t] = -1;
    const int n = janus_xchg_rows_once(&x, i, it % 5 ? ids : NULL, &d);

    // The reference.
    int ok = 1, want_n = 0, want_ent = 0;
    char *has = calloc((size_t)T * M, 1);
    for (int q = 0; q < P; q++) has[(size_t)(q / K) * M + mof[q]] = 1;
    int *idx = malloc(sizeof(int) * (size_t)T * M); // token t's index among MoE rank m's tokens
    for (int m = 0; m < M; m++) {
        int64_t reg = 0;
        for (int b = 0; b < ai; b++) reg += ram[((size_t)i * A + b) * M + m];
        if (d.reg[m] != reg) ok = 0;
        if (d.first[m] != want_n) ok = 0;
        int c = 0;
        for (int t = 0; t < T; t++)
            if (has[(size_t)t * M + m]) {
                idx[(size_t)t * M + m] = c;
                if (want_n + c >= n || d.tok[want_n + c] != t) ok = 0;
                c++;
            }
        if (d.n_tok[m] != c) ok = 0;
        want_n += c;
        for (int r = a->off[m]; r < a->off[m + 1]; r++)
            if (d.src[r] != reg + idx[(size_t)(a->pair[r] / K) * M + m]) ok = 0;
    }
    if (n != want_n) ok = 0;
    for (int t = 0; t < T; t++)
        if (d.mark[t] != -1) ok = 0; // left as it came
    if (it % 5) {
        int *ps = malloc(sizeof(int) * K);
        g_ids = ids;
        for (int t = 0; t < T; t++)
            for (int m = 0; m < M; m++) {
                if (!has[(size_t)t * M + m]) continue;
                int np = 0;
                for (int j = 0; j < K; j++)
                    if (mof[t * K + j] == m) ps[np++] = t * K + j;
                qsort(ps, np, sizeof(int), by_id_slot);
                int64_t reg = d.reg[m];
                const int32_t *e = d.ent + (size_t)want_ent * W;
                if (want_ent >= d.n_ent || e[0] != m || e[1] != idx[(size_t)t * M + m]) { ok = 0; break; }
                for (int u = 0; u < K; u++) {
                    int row = -1, q = -1;
                    if (u < np) {
                        q = ps[u];
                        int r = a->off[m];
                        while (a->pair[r] != q) r++;
                        row = (int)(reg + r - a->off[m]);
                        if (d.rowof[q] != r || d.mof[q] != m || d.lead[q] != (u == 0) ||
                            d.rank[q] != idx[(size_t)t * M + m])
                            ok = 0;
                    }
                    if (e[2 + u] != row || e[2 + K + u] != q) ok = 0;
                }
                want_ent++;
            }
        if (d.n_ent != want_ent) ok = 0;
        free(ps);
    } else if (d.n_ent != 0) {
        ok = 0;
    }
    if (!ok) printf("FAIL instance %d (A=%d a=%d M=%d K=%d T=%d E=%d sums=%d)\n", it, A, ai, M, K, T, E, it % 5 != 0);
    free(ids), free(mof), free(a->cnt), free(a->off), free(a->pair), free(xa), free(fill), free(ram), free(has), free(idx);
    free(d.tok), free(d.src), free(d.first), free(d.n_tok), free(d.reg), free(d.mark), free(d.rowof), free(d.mof);
    free(d.lead), free(d.rank), free(d.ent);
    return ok;
}

int main(int argc, char **argv) {
    const int n = argc > 1 ? atoi(argv[1]) : 2000;
    int passed = 0;
    for (int it = 0; it < n; it++) passed += instance(it);
    printf("%d of %d layouts: the tables of rows once per (token, MoE rank) equal the brute-force reference\n", passed, n);
    printf("%d passed, %d failed\n", passed, n - passed);
    return passed == n ? 0 : 1;
}
