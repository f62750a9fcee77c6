// tests/test_sample.c: the sampler against a brute-force oracle. For several
// (temperature, top_k, top_p) settings the oracle computes the exact target
// distribution by enumeration (softmax of logits / T, restricted to the top_k,
// then to the smallest top-p prefix, renormalised); 200k draws with distinct
// (id, step) counters must match it (total variation < 0.01), greedy must be
// the argmax with the lowest index on ties, and a draw must be a pure
// function of (seed, id, step).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/sample.h"

static int passed, failed;
#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (cond) passed++;                               \
        else { failed++; printf("FAIL: " __VA_ARGS__); printf("\n"); } \
    } while (0)

// Oracle: exact probabilities of each token under the sampling settings.
static void oracle(const float *l, int V, float temp, int top_k, float top_p, double *p) {
    int *idx = malloc(sizeof(int) * V);
    for (int i = 0; i < V; i++) idx[i] = i;
    for (int i = 0; i < V; i++) // selection sort, descending logit, ascending index on ties
        for (int j = i + 1; j < V; j++)
            if (l[idx[j]] > l[idx[i]] || (l[idx[j]] == l[idx[i]] && idx[j] < idx[i])) { int t = idx[i]; idx[i] = idx[j]; idx[j] = t; }
    int n = (top_k > 0 && top_k < V) ? top_k : V;
    double *q = calloc(V, sizeof(double)), s = 0;
    for (int i = 0; i < n; i++) s += (q[i] = exp((double)l[idx[i]] / temp - (double)l[idx[0]] / temp));
    if (top_p < 1) {
        double c = 0;
        int keep = n;
        for (int i = 0; i < n; i++) { c += q[i] / s; if (c >= top_p) { keep = i + 1; break; } }
        n = keep;
        s = 0;
        for (int i = 0; i < n; i++) s += q[i];
    }
    for (int i = 0; i < V; i++) p[i] = 0;
    for (int i = 0; i < n; i++) p[idx[i]] = q[i] / s;
    free(q);
    free(idx);
}

int main(void) {
    enum { V = 12, DRAWS = 200000 };
    const float logits[V] = {1.0f, 2.5f, -0.5f, 2.5f, 0.3f, 1.7f, -2.0f, 0.9f, 2.2f, -1.0f, 0.0f, 1.2f};
    float scratch[3 * V];
    struct { float t; int k; float p; } cases[] = {
        {1.0f, 0, 1.0f}, {0.7f, 0, 1.0f}, {1.3f, 5, 1.0f}, {1.0f, 0, 0.8f}, {0.9f, 6, 0.7f}, {2.0f, 3, 0.5f}, {1.0f, 1, 1.0f},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        janus_sampling s = {cases[c].t, cases[c].k, cases[c].p, 42};
        double want[V], got[V] = {0};
        oracle(logits, V, cases[c].t, cases[c].k, cases[c].p, want);
        for (int d = 0; d < DRAWS; d++) got[janus_sample(logits, V, &s, d % 977, d / 977, scratch)] += 1.0 / DRAWS;
        double tv = 0;
        for (int i = 0; i < V; i++) tv += 0.5 * fabs(got[i] - want[i]);
        int outside = 0;
        for (int i = 0; i < V; i++) outside += want[i] == 0 && got[i] > 0;
        CHECK(tv < 0.01 && !outside, "temperature %.1f top_k %d top_p %.2f: total variation %.4f, %d draws outside the support",
              cases[c].t, cases[c].k, cases[c].p, tv, outside);
    }
    janus_sampling greedy = {0, 0, 1, 0};
    CHECK(janus_sample(logits, V, &greedy, 1, 0, scratch) == 1, "greedy must pick the first of the tied maxima (index 1)");
    janus_sampling s = {1.0f, 0, 1.0f, 7};
    int same = 1, differs = 0;
    for (int step = 0; step < 200; step++) {
        int a = janus_sample(logits, V, &s, 5, step, scratch), b = janus_sample(logits, V, &s, 5, step, scratch);
        same &= a == b;
        janus_sampling s2 = s;
        s2.seed = 8;
        differs += janus_sample(logits, V, &s2, 5, step, scratch) != a;
    }
    CHECK(same, "a draw must be a pure function of (seed, id, step)");
    CHECK(differs > 50, "another seed must give other draws (%d of 200 differ)", differs);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
