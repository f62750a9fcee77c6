// comm/exchange.h: the two-phase exchange between the attention pool and the
// MoE pool for one (MoE layer, micro-batch) (DESIGN section 2).
//
// Phase 1, the handshake: every rank contributes its per-expert pair counts
// ([E] int32; MoE-only ranks contribute zeros) to one MPI_Allgather on the
// world; from the [A, E] matrix every rank runs the same activation scheduler
// (sched/) and so knows, with no further message, which replica serves which
// rows. The host payload (rows once per (token, MoE rank)) also needs each
// attention rank's distinct tokens per MoE rank: they ride on that allgather
// ([E + M]) where every expert of the layer has one replica, and take one more
// allgather of [M] after the schedule otherwise (host_tables in exchange.c).
// Phase 2, the payload: attention rank a sends to MoE rank m its pairs for
// the experts m serves (expert order, then token order) — by default each
// token's row once with the pairs' (token row, weight) — MoE rank m runs each
// expert once over the rows of all attention ranks and sends back, per token,
// the weighted sum of its outputs there (JANUS_XCHG_SUMS=0: each pair's
// output, in the pair order). Rows move through a transport: host MPI
// nonblocking point-to-point here; CUDA IPC, NCCL and CUDA-aware MPI plug in
// with the GPU backend. Paths: direct (every attention rank to every MoE rank) or
// hierarchical (rows for another node gathered on one rank of the sender's
// node, sent once per node pair, scattered on the receiver's node).
#ifndef JANUS_COMM_EXCHANGE_H
#define JANUS_COMM_EXCHANGE_H

#include <mpi.h>

#include "moe/experts.h"
#include "sched/sched.h"

typedef enum { XPATH_DIRECT = 0, XPATH_HIER = 1 } janus_xpath;

// Per-phase seconds (summed over steps), for the result file and the planner.
typedef struct {
    double handshake_s, sched_s, send_s, wait_s, experts_s, serve_wait_s;
    int64_t rows_sent, rows_served, bytes_sent; // rows_sent, bytes_sent: the host payload's (side rows included) and
                                                // the device transports' host-known ones (not GPU-routed steps')
    int64_t routed_gpu, routed_host; // (layer, micro-batch)s scheduled and routed on the GPU / on the host
    // the host-staged payload (no device transport), this attention rank's:
    // (token, expert) pairs, token rows out, rows of pair indices and weights
    // that went with them, rows back
    int64_t h_pairs, h_rows_out, h_side_out, h_rows_back;
} janus_xchg_times;

// One micro-batch's exchange state on an attention rank.
typedef struct {
    int cap;            // pairs capacity (pair, slot, lead)
    float *send, *recv; // host payload: rows out [foff[M], H] and back [boff[M], H] (layout [m][rows])
    size_t cap_send, cap_recv; // their capacity in rows
    int32_t *pair;      // [cap] pair index of each row in the pair layout ([m][expert][token])
    int *cnt, *off;     // [M] pairs per MoE rank and offsets
    int *foff, *boff;   // [M+1] host payload: where MoE rank m's rows start out and back
    int32_t *slot, *lead; // [cap] outputs summed on the MoE ranks (host payload): each pair's row in recv, lead
    bool summed;        // this micro-batch's outputs came back summed (host payload)
    MPI_Request *req;   // [2M + 2 nodes]
    int n_req;
    int tag_ret;        // tag of this micro-batch's outputs (set by dispatch)
} janus_xmb_attn;

// One micro-batch's exchange state on a MoE rank.
typedef struct {
    int cap;            // pairs capacity
    float *in, *out;    // host payload: rows in [foff[A], H] and outputs [boff[A], H] (layout [a][rows])
    size_t cap_in, cap_out;
    float *xs, *ys;     // [cap, H]: the pairs' rows grouped by expert
    int32_t *perm;      // [cap] grouped position -> pair row in the [a][e][rows] layout
    int32_t *inv;       // [cap] its inverse (outputs summed here)
    int *cnt, *off;     // [A] pairs per attention rank and offsets
    int *foff, *boff;   // [A+1] host payload: where attention rank a's rows start in and out
    MPI_Request *req;   // [2A + 2 nodes]
    int n_req;
} janus_xmb_moe;

typedef struct {
    MPI_Comm world;
    int rank, size;
    int n_attn, n_moe;
    int *attn_world, *moe_world; // world ranks of each pool's members
    int attn_idx, moe_idx;       // this rank's index in each pool, -1 if not a member
    int E, k, H, n_layers;
    janus_placement *place;      // [n_layers] (MoE layers only are used)
    janus_sched_ws *ws;          // [n_layers] (a workspace knows its placement's slots)
    janus_xpath path;
    int node_size;               // ranks per node for the hierarchical path
    int32_t *hs_send, *hs_all;   // [E], [size, E]
    int64_t *n_tok, *share, *tok;// [E], [max slots], [M]
    int32_t *act;                // [M]
    int64_t *seg;                // [A, S]: rows attention rank a sends to replica slot s
    int64_t *rows_am;            // [n_mb, A, M]: pairs attention rank a sends to MoE rank m
    // The host payload (no device transport): rows once per (token, MoE rank)
    // (JANUS_XCHG_DEDUP, then each (a, m) message is the token rows and
    // ceil(2 * pairs / H) rows of (token row, router weight) per pair) and the
    // outputs summed on the MoE ranks (JANUS_XCHG_SUMS); every rank agrees.
    bool host_dedup, host_sums;
    bool *unrep;                 // [n_layers] every expert of the layer has one replica
    int32_t *dd_send, *dd_all;   // [E + M], [size, E + M]: the handshake with distinct tokens per MoE rank
    int64_t *tok_am;             // [n_mb, A, M]: distinct tokens a sends to m (host dedup)
    int64_t *fwd_am, *back_am;   // [n_mb, A, M]: host payload rows a -> m and m -> a (the hierarchical path's too)
    int32_t *hd_tok, *hd_src, *hd_mark; // scratch of janus_xchg_rows_once (host dedup): [pairs], [pairs], [tokens]
    int *hd_first, *hd_ntok;     // [M]
    int64_t *hd_reg;             // [M]
    uint8_t *hd_seen;            // [tokens] MoE side: a token's first pair
    int32_t *hs_tok0, *hs_ntok, *hs_pb; // [A] MoE side, experts_sums_fn: each region's token rows, its first packed
    int32_t *hs_srow, *hs_off, *hs_gi; // [pairs], [pairs + 1], [pairs]
    float *hs_w;                 // [pairs]
    int hs_cap;
    int hd_cap, hd_tcap, hd_seen_cap;
    struct janus_hier *hier;     // hierarchical path state (comm/hier.c), NULL when direct
    // scratch sized once (order grows with the largest micro-batch seen)
    int *e_start, *e_fill, *m_fill, *a_cur; // [E+1], [E+1], [M], [A+1]
    int32_t *order;              // [order_cap] pairs sorted by expert
    int order_cap;
    int *my_slot;                // [n_layers, E] this MoE rank's replica slot of each expert, -1 none
    int n_mb;
    janus_xmb_attn *xa;          // [n_mb] on attention ranks
    janus_xmb_moe *xm;           // [n_mb] on MoE ranks
    const janus_model *model;    // the experts this rank holds (MoE ranks)
    janus_ffn_scratch ffn;
    janus_xchg_times t;
    // Expert compute of a MoE rank (NULL: the CPU reference). rows xs [R, H]
    // grouped by expert (expert e's rows seg[e] .. seg[e+1], host arrays),
    // outputs ys [R, H]; max_rows: the most rows any expert has job-wide this
    // (layer, micro-batch). The GPU backend sets janus_gpu_serve_experts.
    void (*experts_fn)(void *ctx, int l, const int32_t *seg, int max_rows, const float *xs, float *ys, int R);
    void *experts_ctx;
    // The host payload summed here (optional; the GPU backend sets
    // janus_gpu_serve_experts_sums): instead of experts_fn and the host's
    // sums, the token rows of each attention rank's region of `in` (region r:
    // rows tok0[r] .. + n_tok[r]) packed in region order, grouped row g = packed
    // row src_row[g], and out [n_out, H] = per output row o the sum over j in
    // off[o] .. off[o+1] of grouped output gi[j] times w[j], in j order.
    void (*experts_sums_fn)(void *ctx, int l, const int32_t *seg, int max_rows, const float *in, const int32_t *tok0,
                            const int32_t *n_tok, int n_reg, const int32_t *src_row, int R, const int32_t *off,
                            const int32_t *gi, const float *w, int n_out, float *out);
    // The same on device rows (CUDA IPC transport): d_xs, d_ys device [R, H].
    void (*experts_dev_fn)(void *ctx, int l, const int32_t *seg, int max_rows, const float *d_xs, float *d_ys, int R);
    int32_t *seg32;              // [E+1] scratch for experts_fn
    // Non-NULL: the payload moves GPU to GPU (comm/ipc.c: CUDA IPC within a
    // node; comm/nccl.c: NCCL send/recv); the rows given to dispatch and the y
    // given to collect are then device pointers. dev_state is the transport's.
    const struct janus_dev_xport *dev;
    void *dev_state;
    // Non-NULL: decode-sized (layer, micro-batch)s are scheduled and routed
    // on every rank's GPU from the handshake counts (comm/ipc.c sets it unless
    // JANUS_XCHG_SCHED=host; NULL it to keep the host's routing);
    // sched_on_gpu[i]: whether micro-batch i of the current layer took that
    // path (every rank decides alike, from the counts).
    const struct janus_dev_sched *dev_sched;
    uint8_t *sched_on_gpu;       // [n_mb]
} janus_xchg;

// A device payload transport: the phase-2 steps of dispatch, serve and
// collect on device rows, once the routing (a->pair, q->cnt/off, perm, seg)
// is known on the host.
typedef struct janus_dev_xport {
    const char *name;
    // attention side: rows d_rows [T, H] leave by destination (a->pair built);
    // ids [T, k] (host) and d_w [T, k] (device, may be NULL) the routing
    void (*post_rows)(janus_xchg *x, int l, int i, const float *d_rows, const int32_t *ids, const float *d_w);
    // MoE side: rows in, experts (x->experts_dev_fn), outputs home
    void (*serve)(janus_xchg *x, int l, int i, const int32_t *perm, const int32_t *seg, int R, int max_rows);
    // attention side: (l, i)'s outputs into d_y [T*k, H], pair order
    void (*collect)(janus_xchg *x, int i, float *d_y);
    void (*finish_layer)(janus_xchg *x);
    void (*free)(janus_xchg *x); // collective; before the GPU stream it uses goes
    // NULL or false: collect filled d_y; else janus_xchg_sums's answer (either routing).
    bool (*sums)(const janus_xchg *x, int i, const float **y, const int32_t **slot, const int32_t **lead);
} janus_dev_xport;

// A device transport's phase 2 with the schedule and routing computed on this
// rank's GPU from the handshake counts (x->hs_all, x->n_tok), direct path:
// nothing of the schedule reaches the host. ids [T, k]: host (the counts'
// source, copied up with them); max_rows: janus_ffn_variant_rows of the
// layer's pairs (decode-sized steps only).
typedef struct janus_dev_sched {
    void (*dispatch)(janus_xchg *x, int l, int i, const float *d_rows, const int32_t *ids, const float *d_w, int T);
    void (*serve)(janus_xchg *x, int l, int i, int max_rows);
    void (*collect)(janus_xchg *x, int i, float *d_y);
} janus_dev_sched;

// Builds the pools: world ranks [0, n_attn) attend, [n_attn, n_attn + n_moe)
// serve experts; monolithic (both true) makes every rank both.
void janus_xchg_init(janus_xchg *x, MPI_Comm world, int n_attn, int n_moe, bool monolithic, const janus_config *c,
                     janus_placement *place, int n_mb, janus_xpath path, int node_size, const janus_model *m);
void janus_xchg_free(janus_xchg *x);

// Phase 1 + the start of phase 2 for micro-batch i of layer l. On attention
// ranks: x [T, H] rows, ids [T, k] routing (host), w [T, k] the router's
// weights where the rows are (device rows: device weights; required where
// the outputs are summed on the MoE ranks: CUDA IPC, cuda-mpi and the host
// payload by default, JANUS_XCHG_SUMS; NULL only on ranks without tokens or
// where a row per pair comes back). Every rank calls
// it, in the same (l, i) order.
void janus_xchg_dispatch(janus_xchg *x, int l, int i, const float *xrows, const int32_t *ids, const float *w, int T);
// MoE ranks: receive this (l, i)'s rows, run the experts, start sending outputs.
void janus_xchg_serve(janus_xchg *x, int l, int i);
// Attention ranks: wait for (l, i)'s outputs and scatter them into y [T*k, H]
// (unless janus_xchg_sums says they came back summed).
void janus_xchg_collect(janus_xchg *x, int i, float *y);
// Attention ranks, after collect: true when micro-batch i's outputs came back
// as one row per (token, MoE rank), the weighted sum of the token's outputs
// there (CUDA IPC, JANUS_XCHG_SUMS): *y the rows (device), *slot [T*k]
// each pair's row in *y, *lead [T*k] 1 for the one pair per (token, MoE rank)
// whose row holds that sum (jk_combine_add's lead); collect then left its y
// alone. False: y holds every pair's output.
// The host payload (no device transport) gives host pointers, the device
// transports device pointers.
bool janus_xchg_sums(const janus_xchg *x, int i, const float **y, const int32_t **slot, const int32_t **lead);
// Host payload, after collect: the rows janus_xchg_sums's *y holds.
int64_t janus_xchg_host_rows_back(const janus_xchg *x, int i);
// Every rank, after all dispatch/serve calls of a layer: the hierarchical
// path's gateways relay (l, i)'s outputs back to their nodes.
void janus_xchg_relay_back(janus_xchg *x, int l, int i);
// The payload moves GPU to GPU (IPC or NCCL): dispatch takes device rows and
// collect fills device outputs.
static inline bool janus_xchg_on_device(const janus_xchg *x) { return x->dev != NULL; }
// The MPI tag of (layer l, micro-batch i)'s rows (out = 0) or outputs (out = 1).
int janus_xchg_tag(const janus_xchg *x, int l, int i, int out);
// Tears the device transport down (collective; a no-op without one).
void janus_xchg_free_device(janus_xchg *x);
// Every rank: wait for every send of the layer (before buffers are reused).
void janus_xchg_finish_layer(janus_xchg *x);

// Micro-batch i's rows from attention rank a to MoE rank m: where a's region
// starts in m's receive layout (the rows of attention ranks before a), and
// where m's rows start in a's return layout (the rows of MoE ranks before m).
int64_t janus_xchg_off_in_moe(const janus_xchg *x, int i, int a, int m);
int64_t janus_xchg_off_in_attn(const janus_xchg *x, int i, int a, int m);

// Rows once per (token, MoE rank), host-built (the device transports'
// host-routed steps, every step of --transport cuda-mpi and of the host
// payload): for this
// attention rank's micro-batch i (routed: x->xa[i].pair, off, cnt), per MoE
// rank m the distinct tokens of its pairs there in token order, tok[first[m]
// .. first[m] + n_tok[m]), and for each send row r its token's row in m's
// receive layout, src[r] = reg[m] (this rank's region there) + the token's
// rank. With ids [T, k] (outputs summed on the MoE ranks) also, per (token,
// MoE rank) with pairs, in token then MoE rank order, an entry of 2 + 2k
// int32 in ent: {m, the token's rank, its pairs' receive rows in (expert id,
// slot) order then -1, their pair indices then -1} (the order the combine
// sums in; comm/ipc.c and comm/cudampi.c address the entries), lead[q] = 1
// for each entry's first pair, rank[q] (if non-NULL) = q's token's rank at its MoE rank,
// rowof[q] = q's send row, mof[q] its MoE rank, n_ent the entries. mark
// [tokens]: scratch, -1 everywhere on entry and on return. Returns the
// tokens listed.
typedef struct {
    int32_t *tok, *src;           // [pairs]
    int *first, *n_tok;           // [M]
    int64_t *reg;                 // [M]
    int32_t *mark;                // [tokens]
    int32_t *rowof, *mof, *lead, *rank, *ent; // with ids: [pairs] each, ent [pairs, 2 + 2k]
    int n_ent;
} janus_xchg_rows1;
int janus_xchg_rows_once(const janus_xchg *x, int i, const int32_t *ids, janus_xchg_rows1 *d);

#endif
