// sched/sched.c: expert placement tables and the activation scheduler (C
// version; the CUDA twin, cuda_kernels/sched.cu, gives identical results).
// The steps after ordering live in sched/sched_core.h, shared with that twin.
//
// Method. Primary objective (activated experts on the busiest MoE rank): every
// active expert goes whole to one replica; greedy in decreasing token count to
// the least loaded replica rank, then augmenting paths (move e1 from the
// busiest rank r0 to r1, e2 from r1 to r2, ..., ending on a rank two below the
// maximum) until none exists. For unit-weight jobs on restricted machines the
// absence of such a path proves the maximum optimal: the ranks reachable from
// the busiest one all carry >= L-1 experts and hold every expert that could
// move, so no assignment does better. Secondary objective (tokens): split an
// expert's tokens from the busiest-by-tokens rank to another replica, where
// that activates no rank beyond the maximum found above.
#include "sched/sched.h"
#include "sched/sched_core.h"

#include <stdlib.h>

void janus_placement_uniform(janus_placement *p, int n_experts, int n_moe, int replicas) {
    if (replicas < 1) replicas = 1;
    if (replicas > n_moe) replicas = n_moe;
    p->n_experts = n_experts;
    p->n_moe = n_moe;
    p->rep_off = xmalloc(sizeof(int32_t) * (n_experts + 1));
    p->rep_rank = xmalloc(sizeof(int32_t) * (size_t)n_experts * replicas);
    const int stride = n_moe / replicas > 0 ? n_moe / replicas : 1;
    for (int e = 0; e < n_experts; e++) {
        p->rep_off[e] = e * replicas;
        int first = (int)((int64_t)e * n_moe / n_experts);
        for (int j = 0; j < replicas; j++) p->rep_rank[e * replicas + j] = (first + j * stride) % n_moe;
    }
    p->rep_off[n_experts] = n_experts * replicas;
}

void janus_placement_hot(janus_placement *p, int n_experts, int n_moe, const int64_t *counts, int hot) {
    if (hot > n_experts) hot = n_experts;
    if (n_moe < 2) hot = 0;
    // Hottest experts first (ties to the lower index).
    int *order = xmalloc(sizeof(int) * n_experts);
    uint8_t *extra = xcalloc(n_experts, 1);
    for (int e = 0; e < n_experts; e++) order[e] = e;
    for (int i = 0; i < hot; i++)
        for (int j = i + 1; j < n_experts; j++)
            if (counts[order[j]] > counts[order[i]] || (counts[order[j]] == counts[order[i]] && order[j] < order[i])) {
                int t = order[i]; order[i] = order[j]; order[j] = t;
            }
    for (int i = 0; i < hot; i++) extra[order[i]] = 1;
    double *load = xcalloc(n_moe, sizeof(double));
    int *first = xmalloc(sizeof(int) * n_experts);
    for (int e = 0; e < n_experts; e++) {
        first[e] = (int)((int64_t)e * n_moe / n_experts);
        load[first[e]] += (double)counts[e];
    }
    p->n_experts = n_experts;
    p->n_moe = n_moe;
    p->rep_off = xmalloc(sizeof(int32_t) * (n_experts + 1));
    p->rep_rank = xmalloc(sizeof(int32_t) * (n_experts + hot));
    int k = 0;
    for (int e = 0; e < n_experts; e++) {
        p->rep_off[e] = k;
        p->rep_rank[k++] = first[e];
    }
    p->rep_off[n_experts] = k;
    // Second replicas, hottest first, each taking half the expert's load.
    int32_t *second = xmalloc(sizeof(int32_t) * n_experts);
    for (int e = 0; e < n_experts; e++) second[e] = -1;
    for (int i = 0; i < hot; i++) {
        int e = order[i], best = -1;
        for (int r = 0; r < n_moe; r++)
            if (r != first[e] && (best < 0 || load[r] < load[best])) best = r;
        second[e] = best;
        load[first[e]] -= counts[e] / 2.0;
        load[best] += counts[e] / 2.0;
    }
    k = 0;
    for (int e = 0; e < n_experts; e++) {
        p->rep_off[e] = k;
        p->rep_rank[k++] = first[e];
        if (second[e] >= 0) p->rep_rank[k++] = second[e];
    }
    p->rep_off[n_experts] = k;
    free(order), free(extra), free(load), free(first), free(second);
}

void janus_placement_free(janus_placement *p) {
    free(p->rep_off);
    free(p->rep_rank);
    memset(p, 0, sizeof *p);
}

void janus_placement_mask(const janus_placement *p, int m, uint8_t *mask) {
    for (int e = 0; e < p->n_experts; e++) {
        mask[e] = 0;
        for (int s = p->rep_off[e]; s < p->rep_off[e + 1]; s++) mask[e] |= p->rep_rank[s] == m;
    }
}

void janus_sched_ws_init(janus_sched_ws *w, const janus_placement *p) {
    w->E = p->n_experts;
    w->M = p->n_moe;
    w->S = p->rep_off[p->n_experts];
    w->order = xmalloc(sizeof(int32_t) * w->E);
    w->slot_of = xmalloc(sizeof(int32_t) * w->E);
    w->queue = xmalloc(sizeof(int32_t) * w->M);
    w->prev_rank = xmalloc(sizeof(int32_t) * w->M);
    w->prev_exp = xmalloc(sizeof(int32_t) * w->M);
    w->seen = xmalloc(w->M);
    w->keys = xmalloc(sizeof(int64_t) * (w->E ? w->E : 1));
    w->slot_exp = xmalloc(sizeof(int32_t) * (w->S ? w->S : 1));
    w->rs_off = xcalloc(w->M + 1, sizeof(int32_t));
    w->rs_slot = xmalloc(sizeof(int32_t) * (w->S ? w->S : 1));
    for (int e = 0; e < w->E; e++)
        for (int s = p->rep_off[e]; s < p->rep_off[e + 1]; s++) w->slot_exp[s] = e, w->rs_off[p->rep_rank[s] + 1]++;
    for (int r = 0; r < w->M; r++) w->rs_off[r + 1] += w->rs_off[r];
    int32_t *fill = xmalloc(sizeof(int32_t) * (w->M + 1));
    memcpy(fill, w->rs_off, sizeof(int32_t) * (w->M + 1));
    for (int s = 0; s < w->S; s++) w->rs_slot[fill[p->rep_rank[s]]++] = s; // ascending slot = ascending expert
    free(fill);
}

void janus_sched_ws_free(janus_sched_ws *w) {
    free(w->order);
    free(w->slot_of);
    free(w->queue);
    free(w->prev_rank);
    free(w->prev_exp);
    free(w->seen);
    free(w->keys);
    free(w->slot_exp);
    free(w->rs_off);
    free(w->rs_slot);
    memset(w, 0, sizeof *w);
}

static int cmp_desc64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

void janus_sched(const janus_placement *p, const int64_t *n_tok, int64_t *share, int32_t *act, int64_t *tok,
                 janus_sched_ws *w) {
    const int E = p->n_experts, M = p->n_moe;
    for (int r = 0; r < M; r++) act[r] = 0, tok[r] = 0;
    for (int s = 0; s < p->rep_off[E]; s++) share[s] = 0;
    // Active experts by decreasing tokens, ties to the lower index: sort keys
    // (tokens << 20 | (2^20 - 1 - e)) descending.
    int64_t *keys = w->keys;
    int na = 0;
    bool any_choice = false;
    for (int e = 0; e < E; e++) {
        w->slot_of[e] = -1;
        if (n_tok[e] > 0) {
            keys[na++] = (n_tok[e] << 20) | (int64_t)((1 << 20) - 1 - e);
            any_choice |= p->rep_off[e + 1] - p->rep_off[e] > 1;
        }
    }
    qsort(keys, na, sizeof(int64_t), cmp_desc64);
    for (int i = 0; i < na; i++) w->order[i] = (1 << 20) - 1 - (int)(keys[i] & ((1 << 20) - 1));
    janus_sched_core c = {E, M, p->rep_off, p->rep_rank, w->slot_exp, w->rs_off, w->rs_slot,
                          w->order, w->slot_of, w->queue, w->prev_rank, w->prev_exp, w->seen};
    janus_sched_finish(&c, na, any_choice, n_tok, share, act, tok);
}
