// engine/sample.h: token choice from logits: greedy, or temperature / top-k /
// top-p sampling driven by a counter-based RNG keyed on (seed, request id,
// step), so a request's tokens never depend on batching or the rank layout.
#ifndef JANUS_ENGINE_SAMPLE_H
#define JANUS_ENGINE_SAMPLE_H

#include "common.h"

typedef struct {
    float temperature; // 0: greedy
    int32_t top_k;     // 0: off
    float top_p;       // 1: off
    int64_t seed;
} janus_sampling;

// Uniform in [0, 1) from (seed, id, step): splitmix64 rounds, 24-bit mantissa.
float janus_rng_uniform(uint64_t seed, uint64_t id, uint64_t step);

// Chooses a token from logits [V]. Greedy picks the highest logit (lowest
// index on ties). scratch: [3V] floats, provided by the caller.
int32_t janus_sample(const float *logits, int V, const janus_sampling *s, int64_t id, int step, float *scratch);

#endif
