// engine/sample.c: greedy and stochastic token choice (see sample.h).
#include "engine/sample.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

static inline uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

float janus_rng_uniform(uint64_t seed, uint64_t id, uint64_t step) {
    uint64_t x = splitmix64(seed);
    x = splitmix64(x ^ id);
    x = splitmix64(x ^ step);
    return (float)(x >> 40) * (1.0f / 16777216.0f);
}

typedef struct {
    float v;
    int32_t i;
} cand;

// Logit descending, then index ascending: a total order, so ties are stable.
static int cmp_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->v > y->v) return -1;
    if (x->v < y->v) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

static int32_t argmax(const float *l, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

int32_t janus_sample(const float *logits, int V, const janus_sampling *s, int64_t id, int step, float *scratch) {
    if (!(s->temperature > 0.f)) return argmax(logits, V);
    // Candidates: all tokens, or the top_k, sorted by logit.
    cand *c = (cand *)scratch;
    for (int i = 0; i < V; i++) c[i] = (cand){logits[i], i};
    int n = V;
    if (s->top_k > 0 && s->top_k < V) n = s->top_k;
    if (n < V || s->top_p < 1.f) qsort(c, V, sizeof(cand), cmp_desc);
    float *p = scratch + 2 * (size_t)V; // after the candidates
    const float inv_t = 1.0f / s->temperature;
    float mx = -FLT_MAX;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, c[i].v * inv_t);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (p[i] = expf(c[i].v * inv_t - mx));
    if (s->top_p < 1.f) { // smallest prefix whose mass reaches top_p (at least one token)
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += p[i] / sum;
            if (cum >= s->top_p) { keep = i + 1; break; }
        }
        n = keep;
        sum = 0;
        for (int i = 0; i < n; i++) sum += p[i];
    }
    double u = (double)janus_rng_uniform((uint64_t)s->seed, (uint64_t)id, (uint64_t)step) * sum;
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += p[i];
        if (u < acc) return c[i].i;
    }
    return c[n - 1].i;
}
