// plan/placement.h: expert replication and placement from activation
// statistics (DESIGN section 5): how many replicas each expert gets and on
// which MoE ranks, within each rank's expert slots; a Monte-Carlo estimate of
// the busiest MoE rank's activated experts under a placement (through the
// activation scheduler of sched/sched.h); Zipf expert popularity.
#ifndef JANUS_PLAN_PLACEMENT_H
#define JANUS_PLAN_PLACEMENT_H

#include "common.h"
#include "sched/sched.h"

// p: [E] probability that a routed (token, slot) pair goes to expert e (sums
// to 1; normalised here if it does not). M MoE ranks of slots_per_rank expert
// slots each. Every expert gets >= 1 replica, hot experts more, at most one
// replica of an expert per rank, at most slots_per_rank experts per rank, and
// min(slots_per_rank, E) * M replicas in all (every slot used). Chosen to keep
// the expected busiest rank light; deterministic (ties to the lower index).
// out: CSR placement (free with janus_placement_free).
// Returns 0, or -1 (out untouched) when E, M or slots_per_rank < 1,
// M * slots_per_rank < E, or p holds a negative or non-finite entry.
int janus_place_replicated(const double *p, int E, int M, int slots_per_rank, janus_placement *out);

// Monte-Carlo estimate of E[max over MoE ranks of activated experts] when
// `tokens` tokens each route to k distinct experts drawn from p (successive
// draws without replacement; k is capped at the experts with p > 0), their
// per-expert counts scheduled by janus_sched on placement pl. `samples`
// independent layers; deterministic for a seed. mean_tokens_max (may be NULL):
// out, the mean over samples of the busiest rank's (token, slot) pairs.
double janus_expected_max_activated(const janus_placement *pl, const double *p, int tokens, int k, int samples,
                                    uint64_t seed, double *mean_tokens_max);

// p: [E] out, p_e proportional to (e+1)^-s, summing to 1 (s = 0: uniform).
void janus_zipf(double *p, int E, double s);

#endif
