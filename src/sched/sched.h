// sched/sched.h: the activation scheduler (DESIGN section 4) and the expert
// placement it works on (section 5).
//
// A placement says, per MoE layer, which MoE ranks hold a replica of each
// expert. Given one layer's global per-expert token counts, the scheduler
// decides how many of each expert's tokens every replica serves, so that the
// most loaded MoE rank has as few activated experts as possible (primary) and
// then as few tokens as possible (secondary); a hot expert may be split across
// its replicas. It is a pure, deterministic function (ties go to the lower
// index), so every rank computes the same schedule from the same counts with
// no further messages.
#ifndef JANUS_SCHED_SCHED_H
#define JANUS_SCHED_SCHED_H

#include "common.h"

// One layer's placement, CSR over experts: the replicas of expert e are the
// MoE ranks rep_rank[rep_off[e] .. rep_off[e+1]) (distinct, in [0, n_moe)).
typedef struct {
    int n_experts, n_moe;
    int32_t *rep_off;  // [n_experts + 1]
    int32_t *rep_rank; // [rep_off[n_experts]]
} janus_placement;

// Contiguous sharding (expert e's first replica on MoE rank e * n_moe / E) with
// `replicas` copies of every expert on distinct ranks (replicas <= n_moe).
void janus_placement_uniform(janus_placement *p, int n_experts, int n_moe, int replicas);
// Contiguous sharding plus one extra replica for each of the `hot` experts
// with the most activations (counts: [n_experts]), on the rank with the least
// expected load that does not hold it yet (ties: lower rank).
void janus_placement_hot(janus_placement *p, int n_experts, int n_moe, const int64_t *counts, int hot);
void janus_placement_free(janus_placement *p);
// Experts rank m holds: mask[e] = 1.
void janus_placement_mask(const janus_placement *p, int m, uint8_t *mask);

// Scratch for janus_sched, built once for one placement (it indexes its slots).
typedef struct {
    int E, M, S;
    int32_t *order, *slot_of, *queue, *prev_rank, *prev_exp;
    uint8_t *seen;
    int64_t *keys;
    int32_t *slot_exp;           // [S] expert of each replica slot
    int32_t *rs_off, *rs_slot;   // CSR [M+1], [S]: the slots each rank holds
} janus_sched_ws;
void janus_sched_ws_init(janus_sched_ws *w, const janus_placement *p);
void janus_sched_ws_free(janus_sched_ws *w);

// n_tok: [E] tokens (token-slot pairs) per expert this step.
// share: [rep_off[E]] out: tokens each replica slot serves (sum over an
// expert's slots = n_tok[e]).
// act, tok: [M] out: activated experts and tokens per MoE rank.
void janus_sched(const janus_placement *p, const int64_t *n_tok, int64_t *share, int32_t *act, int64_t *tok,
                 janus_sched_ws *w);

#endif
