// plan/placement.c: expert replication and placement (DESIGN section 5), the
// Monte-Carlo estimate of the busiest MoE rank's activated experts under a
// placement, and Zipf popularity.
//
// Method. The busiest rank's activated experts are bounded below by
// ceil(active experts / M) whatever the placement, and once most experts are
// active (tens of tokens x top-k) that bound is what every placement that
// lets the scheduler spread them evenly reaches; below that, the hot experts
// decide it. So:
// Replica counts: every expert gets one replica; the spare slots (all of them:
// M * min(slots, E) - E) are apportioned in proportion to p by largest
// remainder, no expert above M replicas (what a cap leaves over goes to the
// next largest remainders).
// Phase 1: one primary replica per expert, hottest first, onto the rank with
// the fewest experts, then the least expected load. Every rank holds one
// expert of each popularity tier and at most ceil(E / M) primaries, so when
// every expert is active the primaries alone already meet the lower bound
// (a single LPT pass over all replicas by load can leave a rank with more
// single-replica cold experts than that: measured 8.65 vs 8.00 for Zipf 1.0,
// 64 experts, 8 ranks, 10 slots, 64 tokens).
// Phase 2: the extra replicas, LPT over replicas sorted by expected load
// p_e / r_e descending, each onto the rank with the least expected load so far
// that has a free slot and does not hold that expert (then fewer experts, then
// the lower rank). Should no rank qualify, a full rank without the expert
// hands one of its experts to a rank with a free slot (always possible).
#include "plan/placement.h"

#include <math.h>
#include <stdlib.h>

void janus_zipf(double *p, int E, double s) {
    double tot = 0;
    for (int e = 0; e < E; e++) tot += p[e] = pow(e + 1, -s);
    for (int e = 0; e < E; e++) p[e] /= tot;
}

// ---- replica counts -------------------------------------------------------

// r: [E] out, replica counts (1 <= r_e <= M) summing to T (E <= T <= E * M).
static void apportion(const double *q, int E, int M, int T, int32_t *r) {
    const int spare = T - E;
    double *want = xmalloc(sizeof(double) * E);
    int given = 0;
    for (int e = 0; e < E; e++) {
        want[e] = spare * q[e];
        int x = (int)floor(want[e]);
        if (x > M - 1) x = M - 1;
        r[e] = 1 + x;
        given += x;
    }
    // Largest remainder first; what the caps leave over goes on the same way:
    // each time to the expert furthest below its quota, want_e - (r_e - 1),
    // compared as want_a - want_b > r_a - r_b so that tiny p are not rounded
    // away (which would break "hotter never fewer replicas").
    for (; given < spare; given++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (r[e] < M && (best < 0 || want[e] - want[best] > (double)(r[e] - r[best]))) best = e;
        r[best]++;
    }
    free(want);
}

// ---- placement ------------------------------------------------------------

typedef struct {
    double w; // sort key: p_e (phase 1), p_e / r_e (phase 2)
    int e, j;
} replica;

static int cmp_replica(const void *a, const void *b) {
    const replica *x = a, *y = b;
    if (x->w != y->w) return x->w < y->w ? 1 : -1;
    if (x->e != y->e) return x->e - y->e;
    return x->j - y->j;
}

// Placement state: held [M, E] (expert e on rank m), load [M] (expected load),
// cnt [M] (experts held), prim [E] (rank of expert e's primary replica).
typedef struct {
    int E, M;
    uint8_t *held;
    double *load;
    int *cnt, *prim;
} state;

static void put(state *s, int m, int e, double w) {
    s->held[(size_t)m * s->E + e] = 1;
    s->load[m] += w;
    s->cnt[m]++;
}

// A replica of e that no rank with a free slot can take: every such rank
// holds e. A rank m2 without e is full, so it holds some f that a free rank m1
// lacks (it holds more experts than m1); f moves to m1 and e takes its slot.
// Prefer an f whose copy on m2 is not its primary, so phase 1's balance stays.
static int make_room(state *s, int e, int per_rank, const double *wt) {
    const int E = s->E, M = s->M;
    int m1 = -1, m2 = -1, f = -1;
    for (int m = 0; m < M && m1 < 0; m++)
        if (s->cnt[m] < per_rank) m1 = m;
    for (int pass = 0; pass < 2 && f < 0; pass++)
        for (int m = 0; m < M && f < 0; m++) {
            if (s->held[(size_t)m * E + e]) continue;
            for (int g = 0; g < E && f < 0; g++)
                if (s->held[(size_t)m * E + g] && !s->held[(size_t)m1 * E + g] && (pass || s->prim[g] != m)) m2 = m, f = g;
        }
    s->held[(size_t)m2 * E + f] = 0, s->load[m2] -= wt[f], s->cnt[m2]--;
    put(s, m1, f, wt[f]);
    if (s->prim[f] == m2) s->prim[f] = m1;
    return m2;
}

int janus_place_replicated(const double *p, int E, int M, int slots_per_rank, janus_placement *out) {
    if (E < 1 || M < 1 || slots_per_rank < 1 || (int64_t)M * slots_per_rank < E) return -1;
    double tot = 0;
    for (int e = 0; e < E; e++) {
        if (!(p[e] >= 0) || !isfinite(p[e])) return -1;
        tot += p[e];
    }
    const int per_rank = slots_per_rank < E ? slots_per_rank : E;
    const int T = M * per_rank;
    double *q = xmalloc(sizeof(double) * E), *wt = xmalloc(sizeof(double) * E);
    for (int e = 0; e < E; e++) q[e] = tot > 0 ? p[e] / tot : 1.0 / E;
    int32_t *r = xmalloc(sizeof(int32_t) * E);
    apportion(q, E, M, T, r);
    for (int e = 0; e < E; e++) wt[e] = q[e] / r[e];

    state s = {E, M, xcalloc((size_t)M * E, 1), xcalloc(M, sizeof(double)), xcalloc(M, sizeof(int)),
               xmalloc(sizeof(int) * E)};
    replica *items = xmalloc(sizeof(replica) * T);
    // Phase 1: one primary replica per expert, hottest first, onto the rank
    // with the fewest experts, then the least expected load: every rank gets
    // one expert of each popularity tier of M, and at most ceil(E / M) in all
    // (<= per_rank, as M * per_rank >= E).
    int n = 0;
    for (int e = 0; e < E; e++) items[n++] = (replica){q[e], e, 0}; // by popularity, not p_e / r_e
    qsort(items, n, sizeof(replica), cmp_replica);
    for (int i = 0; i < n; i++) {
        int e = items[i].e, best = 0;
        for (int m = 1; m < M; m++)
            if (s.cnt[m] < s.cnt[best] || (s.cnt[m] == s.cnt[best] && s.load[m] < s.load[best])) best = m;
        put(&s, best, e, wt[e]);
        s.prim[e] = best;
    }
    // Phase 2: the extra replicas, LPT by expected load p_e / r_e, onto the
    // rank with the least expected load (then fewer experts) that has a free
    // slot and does not hold the expert.
    n = 0;
    for (int e = 0; e < E; e++)
        for (int j = 1; j < r[e]; j++) items[n++] = (replica){wt[e], e, j};
    qsort(items, n, sizeof(replica), cmp_replica);
    for (int i = 0; i < n; i++) {
        int e = items[i].e, best = -1;
        for (int m = 0; m < M; m++) {
            if (s.cnt[m] >= per_rank || s.held[(size_t)m * E + e]) continue;
            if (best < 0 || s.load[m] < s.load[best] || (s.load[m] == s.load[best] && s.cnt[m] < s.cnt[best])) best = m;
        }
        if (best < 0) best = make_room(&s, e, per_rank, wt);
        put(&s, best, e, wt[e]);
    }

    out->n_experts = E;
    out->n_moe = M;
    out->rep_off = xmalloc(sizeof(int32_t) * (E + 1));
    out->rep_rank = xmalloc(sizeof(int32_t) * T);
    int k = 0;
    for (int e = 0; e < E; e++) {
        out->rep_off[e] = k;
        for (int m = 0; m < M; m++)
            if (s.held[(size_t)m * E + e]) out->rep_rank[k++] = m;
    }
    out->rep_off[E] = k;
    free(q), free(wt), free(r), free(items), free(s.held), free(s.load), free(s.cnt), free(s.prim);
    return 0;
}

// ---- Monte-Carlo estimate -------------------------------------------------

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double uniform01(uint64_t *s) { return (double)(splitmix64(s) >> 11) / 9007199254740992.0; } // [0, 1)

double janus_expected_max_activated(const janus_placement *pl, const double *p, int tokens, int k, int samples,
                                    uint64_t seed, double *mean_tokens_max) {
    const int E = pl->n_experts, M = pl->n_moe;
    double *cdf = xmalloc(sizeof(double) * E), tot = 0;
    int nz = 0;
    for (int e = 0; e < E; e++) {
        double x = p[e] > 0 && isfinite(p[e]) ? p[e] : 0;
        nz += x > 0;
        cdf[e] = tot += x;
    }
    if (k > nz) k = nz;
    if (samples < 1 || tokens < 1 || k < 1) {
        free(cdf);
        if (mean_tokens_max) *mean_tokens_max = 0;
        return 0;
    }
    janus_sched_ws ws;
    janus_sched_ws_init(&ws, pl);
    int64_t *n = xmalloc(sizeof(int64_t) * E), *share = xmalloc(sizeof(int64_t) * (pl->rep_off[E] + 1)),
            *tok = xmalloc(sizeof(int64_t) * M);
    int32_t *act = xmalloc(sizeof(int32_t) * M);
    int64_t *mark = xcalloc(E, sizeof(int64_t)); // mark[e] == stamp: e already chosen for this token
    int64_t stamp = 0;
    uint64_t rng = seed;
    double sum_act = 0, sum_tok = 0;
    for (int it = 0; it < samples; it++) {
        memset(n, 0, sizeof(int64_t) * E);
        for (int t = 0; t < tokens; t++) {
            stamp++;
            double taken = 0; // mass of the experts chosen so far for this token
            for (int j = 0; j < k; j++) {
                int e = -1;
                // Draw from p, rejecting experts already chosen; after many
                // rejections draw from the remaining mass directly (the same
                // distribution: p restricted to the unchosen experts).
                for (int tries = 0; tries < 32 && e < 0; tries++) {
                    double u = uniform01(&rng) * tot;
                    int lo = 0, hi = E - 1;
                    while (lo < hi) {
                        int mid = (lo + hi) / 2;
                        if (cdf[mid] <= u) lo = mid + 1; else hi = mid;
                    }
                    if (mark[lo] != stamp && cdf[lo] > (lo ? cdf[lo - 1] : 0)) e = lo;
                }
                if (e < 0) {
                    double u = uniform01(&rng) * (tot - taken), acc = 0;
                    for (int x = 0; x < E; x++) {
                        if (mark[x] == stamp) continue;
                        double px = cdf[x] - (x ? cdf[x - 1] : 0);
                        if (px <= 0) continue;
                        e = x;
                        if ((acc += px) > u) break;
                    }
                }
                mark[e] = stamp;
                taken += cdf[e] - (e ? cdf[e - 1] : 0);
                n[e]++;
            }
        }
        janus_sched(pl, n, share, act, tok, &ws);
        int mx = 0;
        int64_t mt = 0;
        for (int m = 0; m < M; m++) mx = act[m] > mx ? act[m] : mx, mt = tok[m] > mt ? tok[m] : mt;
        sum_act += mx;
        sum_tok += (double)mt;
    }
    if (mean_tokens_max) *mean_tokens_max = sum_tok / samples;
    janus_sched_ws_free(&ws);
    free(cdf), free(n), free(share), free(tok), free(act), free(mark);
    return sum_act / samples;
}
