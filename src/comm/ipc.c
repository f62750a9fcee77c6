// comm/ipc.c: the exchange payload through CUDA IPC within a node (see ipc.h).
#include "comm/ipc.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_check.h"
#include "engine/gpu.h"
#include "layers.h"
#include "sched_gpu.h"
#include "xchg.h"

#define CK(x) JANUS_CUDA_CK("CUDA IPC exchange", x)


struct janus_ipc {
    cudaStream_t st;
    int H, n_mb;
    size_t rows_attn, rows_moe; // rows of one micro-batch: T*k (attention side), A*T*k (MoE side)
    float *d_send;              // [rows_attn, H] attention: rows by destination
    float *d_ret;               // [n_mb, rows_attn, H] attention: outputs back (exported)
    float *d_in;                // [n_mb, rows_moe, H] MoE: rows in, layout [a][e][rows], then the
                                // int32 index part d_in_src (exported together)
    float *d_xs, *d_ys, *d_out; // [rows_moe, H] MoE: grouped by expert, outputs, outputs in arrival layout
    int32_t *d_idx, *d_idx2;    // [max rows] gather indices
    int32_t *h_idx, *h_idx2;    // pinned staging of the indices
    float **peer_ret, **peer_in;// [size] every rank's exported buffers in this process (NULL: none)
    MPI_Request *req;           // signal sends of a layer
    int n_req, cap_req;
    // The schedule on the GPU (x->dev_sched): per MoE layer the scheduler's
    // plan and (MoE side) lseg_k; staging of the handshake per micro-batch.
    jk_sched_plan *plan;        // [n_layers]
    int32_t **d_lseg_k;         // [n_layers] -> [n_loc+1] (jk_xchg_route_args)
    int *n_loc;                 // [n_layers]
    size_t stage_bytes;         // one micro-batch's: n_tok [E] int64, cnt [A, E] int32, ids [rows_attn] int32
    char *h_stage, *d_stage;    // [n_mb] pinned / [1] device
    int64_t *d_share, *d_tok;   // [S], [M]
    int32_t *d_act;             // [M]
    void *d_ws;                 // jk_xchg_ws_bytes
    int32_t *d_dst_m, *d_dst_row; // [rows_attn]
    int32_t *d_ret_row;         // [n_mb, rows_attn]
    int32_t *d_lseg;            // [E+1]
    int32_t *d_perm, *d_out_a, *d_out_row; // [rows_moe]
    int32_t *d_nrows;           // [1]
    int64_t *d_served, *h_served; // rows served on the GPU path so far (device, pinned copy)
    int64_t served_seen;        // of it, already in x->t.rows_served
    float **d_peer_in;          // [M] device array: each MoE rank's receive buffer, mapped here
    float **d_peer_ret;         // [A] device array: each attention rank's return buffer, mapped here
    int *P_mb;                  // [n_mb] pairs this attention rank sent in each micro-batch
    // Rows once per (token, MoE rank) (JANUS_XCHG_DEDUP, default 1; decode
    // steps routed on the GPUs and prompt steps routed on the host alike): the
    // MoE ranks' receive buffers carry, after their rows, an int32 per row
    // (exported with them): where pair q's row lies, written by its sender.
    int dedup;
    int32_t *d_in_src;          // [n_mb, rows_moe] MoE: the index part of d_in
    int32_t **d_peer_idx;       // [M] device array: each MoE rank's index part, mapped here
    int32_t *d_tok_dst;         // [max_tokens, M] attention side
    void *d_dd_ws;              // jk_xchg_dedup_ws_bytes
    int64_t *d_rows_out;        // rows sent on that path (device counter), and
    int64_t pairs_dev;          // the pairs they carried (host)
    // This attention rank's payload on every other path (host counts): the
    // pairs, the rows that carried them out and the rows that came back.
    int64_t pairs_host, out_host, back_host;
    // Outputs back once per (token, MoE rank), the weighted sum of the
    // token's outputs there (JANUS_XCHG_SUMS, default 1; needs dedup, k <= 16
    // and H % 4 == 0, else per pair; steps routed on the GPUs and on the host
    // alike): after the index part, a header of 2k int32 per row (the token
    // rows' pairs and weights: jk_xchg_send_tokens, post_sum_headers).
    int sums;
    int32_t **d_peer_hdr;       // [M] device array: each MoE rank's header part, mapped here
    int32_t *d_lead;            // [n_mb, rows_attn] attention side: 1 where a pair's return row holds its sum
    int32_t *d_inv;             // [rows_moe] MoE side: scratch of jk_xchg_return_sums
    // ... and on host-routed steps (prompt-sized), the headers, leads and
    // return rows built on the host (sums_init):
    int32_t *h_ent, *d_ent;     // [rows_attn, 2 + 2k] pinned / device: jk_xchg_put_headers' entries
    int32_t *h_lead, *h_rowof;  // [rows_attn] pinned: each pair's lead flag, its send row (= its output's return row)
    int32_t *h_mof;             // [rows_attn]: each pair's MoE rank
    int32_t *h_oa, *h_or;       // [rows_moe] pinned, MoE side: each grouped row's attention rank, return row
    int32_t *h_ra;              // [rows_moe] MoE side: each receive row's attention rank
    int64_t *h_reg;             // [max(A, M)]: a region offset per peer
    int32_t *h_tokrow;          // [max_tokens] attention side, host-routed steps: a token's row for one
                                // MoE rank (-1: none), the same once per token and MoE rank there
    int *h_first;               // [2 M] attention side, host-routed steps: per MoE rank, its first
                                // token row in d_send and its count
};

// The index part of a receive buffer (this rank's or a peer's mapping of it):
// the int32 per row after the n_mb micro-batches of rows.
static int32_t *index_part(const janus_xchg *x, const struct janus_ipc *c, float *in) {
    return (int32_t *)(in + (size_t)x->n_mb * c->rows_moe * c->H);
}
// ... and its header part: 2k int32 per row, after the index part.
static int32_t *header_part(const janus_xchg *x, const struct janus_ipc *c, float *in) {
    return index_part(x, c, in) + (size_t)x->n_mb * c->rows_moe;
}

typedef struct {
    cudaIpcMemHandle_t ret, in;
    int has_ret, has_in, device;
} ipc_export;

static const janus_dev_xport ipc_xport; // the entry points, at the end
static const janus_dev_sched ipc_sched;


// The schedule on the GPU: JANUS_XCHG_SCHED=gpu (default) or host. Needs
// every MoE layer's scheduler plan, the routing block's shared memory for E,
// and on MoE ranks the GPU expert hook of engine/gpu.h with every expert this
// rank has a replica of held on its GPU; all ranks agree (MPI_Allreduce) or
// every (layer, micro-batch) takes the host's routing.
static void sched_gpu_init(janus_xchg *x, struct janus_ipc *c) {
    const char *env = getenv("JANUS_XCHG_SCHED");
    if (env && strcmp(env, "gpu") && strcmp(env, "host"))
        janus_die_all(NULL, "JANUS_XCHG_SCHED=%s: expected gpu or host", env);
    const janus_config *cf = &x->model->cfg;
    const int E = x->E, A = x->n_attn, M = x->n_moe, L = x->n_layers;
    int S = 0;
    for (int l = 0; l < L; l++)
        if (cf->layer_moe[l] && x->place[l].rep_off[E] > S) S = x->place[l].rep_off[E];
    const size_t ws = jk_xchg_ws_bytes(E, S, A, M);
    int ok = (!env || !strcmp(env, "gpu")) && ws > 0;
    const char *dd = getenv("JANUS_XCHG_DEDUP");
    if (dd && strcmp(dd, "0") && strcmp(dd, "1")) janus_die_all(NULL, "JANUS_XCHG_DEDUP=%s: expected 0 or 1", dd);
    c->dedup = !dd || !strcmp(dd, "1");
    const char *su = getenv("JANUS_XCHG_SUMS");
    if (su && strcmp(su, "0") && strcmp(su, "1")) janus_die_all(NULL, "JANUS_XCHG_SUMS=%s: expected 0 or 1", su);
    c->sums = c->dedup && (!su || !strcmp(su, "1")) && x->k <= JK_XCHG_SUM_MAX_K && x->H % 4 == 0;
    if (ok && x->moe_idx >= 0 && x->experts_dev_fn != janus_gpu_serve_experts_dev) ok = 0;
    c->plan = xcalloc(L, sizeof(jk_sched_plan));
    c->d_lseg_k = xcalloc(L, sizeof(int32_t *));
    c->n_loc = xcalloc(L, sizeof(int));
    int32_t *h = xmalloc(sizeof(int32_t) * (E + 1));
    for (int l = 0; l < L && ok; l++) {
        if (!cf->layer_moe[l]) continue;
        const janus_placement *p = &x->place[l];
        if (jk_sched_plan_init(&c->plan[l], E, M, p->rep_off, p->rep_rank, 0)) {
            cudaGetLastError();
            ok = 0;
            break;
        }
        if (x->moe_idx < 0) continue;
        // lseg_k[j]: this rank's slots (ascending = experts ascending) whose
        // expert's local index is below j.
        int n_loc = 0;
        const int32_t *loc = janus_gpu_local_experts(x->experts_ctx, l, &n_loc);
        int k = 0, jl = 0;
        h[0] = 0;
        for (int e = 0; e < E; e++) {
            bool mine = x->my_slot[(size_t)l * E + e] >= 0;
            if (mine && loc[e] < 0) ok = 0; // a replica here that the GPU does not hold
            if (loc[e] >= 0) h[++jl] = k + mine;
            k += mine;
        }
        c->n_loc[l] = n_loc;
        c->d_lseg_k[l] = janus_cuda_alloc(sizeof(int32_t) * (n_loc + 1));
        CK(cudaMemcpy(c->d_lseg_k[l], h, sizeof(int32_t) * (n_loc + 1), cudaMemcpyHostToDevice));
    }
    free(h);
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, x->world);
    MPI_Allreduce(MPI_IN_PLACE, &c->dedup, 1, MPI_INT, MPI_MIN, x->world);
    MPI_Allreduce(MPI_IN_PLACE, &c->sums, 1, MPI_INT, MPI_MIN, x->world);
    if (!ok) return;
    x->dev_sched = &ipc_sched;
    const size_t rows_attn = c->rows_attn, rows_moe = c->rows_moe;
    c->stage_bytes = 8 * (size_t)E + (((size_t)A * E + rows_attn) * 4 + 7) / 8 * 8;
    CK(cudaMallocHost((void **)&c->h_stage, c->stage_bytes * x->n_mb));
    c->d_stage = janus_cuda_alloc(c->stage_bytes);
    c->d_share = janus_cuda_alloc(8 * (size_t)S), c->d_tok = janus_cuda_alloc(8 * (size_t)M);
    c->d_act = janus_cuda_alloc(4 * (size_t)M);
    c->d_ws = janus_cuda_alloc(ws);
    c->d_served = janus_cuda_alloc(8);
    CK(cudaMemset(c->d_served, 0, 8));
    CK(cudaMallocHost((void **)&c->h_served, 8));
    *c->h_served = 0;
    c->d_nrows = janus_cuda_alloc(4);
    if (x->attn_idx >= 0) {
        c->d_dst_m = janus_cuda_alloc(4 * rows_attn), c->d_dst_row = janus_cuda_alloc(4 * rows_attn);
        c->d_ret_row = janus_cuda_alloc(4 * rows_attn * x->n_mb);
        c->P_mb = xcalloc(x->n_mb, sizeof(int));
        float **h_in = xcalloc(M, sizeof(float *));
        for (int m = 0; m < M; m++) h_in[m] = c->peer_in[x->moe_world[m]];
        c->d_peer_in = janus_cuda_alloc(sizeof(float *) * M);
        CK(cudaMemcpy(c->d_peer_in, h_in, sizeof(float *) * M, cudaMemcpyHostToDevice));
        if (c->dedup) {
            int32_t **h_idx = xcalloc(M, sizeof(int32_t *));
            for (int m = 0; m < M; m++) h_idx[m] = index_part(x, c, h_in[m]);
            c->d_peer_idx = janus_cuda_alloc(sizeof(int32_t *) * M);
            CK(cudaMemcpy(c->d_peer_idx, h_idx, sizeof(int32_t *) * M, cudaMemcpyHostToDevice));
            free(h_idx);
            const int T = (int)(rows_attn / x->k);
            c->d_tok_dst = janus_cuda_alloc(4 * (size_t)T * M);
            c->d_dd_ws = janus_cuda_alloc(jk_xchg_dedup_ws_bytes(T, M));
            c->d_rows_out = janus_cuda_alloc(8);
            CK(cudaMemset(c->d_rows_out, 0, 8));
        }
        free(h_in);
    }
    if (x->moe_idx >= 0) {
        c->d_lseg = janus_cuda_alloc(4 * (size_t)(E + 1));
        c->d_perm = janus_cuda_alloc(4 * rows_moe), c->d_out_a = janus_cuda_alloc(4 * rows_moe);
        c->d_out_row = janus_cuda_alloc(4 * rows_moe);
        float **h_ret = xcalloc(A, sizeof(float *));
        for (int a = 0; a < A; a++) h_ret[a] = c->peer_ret[x->attn_world[a]];
        c->d_peer_ret = janus_cuda_alloc(sizeof(float *) * A);
        CK(cudaMemcpy(c->d_peer_ret, h_ret, sizeof(float *) * A, cudaMemcpyHostToDevice));
        free(h_ret);
    }
}

// Outputs summed on the MoE ranks (both routings): the headers' pointer
// table, leads and scratch, the return tables the device routing shares
// (where sched_gpu_init did not allocate them), the host tables' staging.
static void sums_init(janus_xchg *x, struct janus_ipc *c) {
    if (!c->sums) return;
    const int M = x->n_moe, A = x->n_attn, K = x->k;
    const size_t rows_attn = c->rows_attn, rows_moe = c->rows_moe;
    if (x->attn_idx >= 0) {
        int32_t **h = xcalloc(M, sizeof(int32_t *));
        for (int m = 0; m < M; m++) h[m] = header_part(x, c, c->peer_in[x->moe_world[m]]);
        c->d_peer_hdr = janus_cuda_alloc(sizeof(int32_t *) * M);
        CK(cudaMemcpy(c->d_peer_hdr, h, sizeof(int32_t *) * M, cudaMemcpyHostToDevice));
        free(h);
        c->d_lead = janus_cuda_alloc(4 * rows_attn * x->n_mb);
        if (!c->d_ret_row) c->d_ret_row = janus_cuda_alloc(4 * rows_attn * x->n_mb);
        const size_t ent = (2 + 2 * (size_t)K) * rows_attn * 4;
        CK(cudaMallocHost((void **)&c->h_ent, ent));
        c->d_ent = janus_cuda_alloc(ent);
        CK(cudaMallocHost((void **)&c->h_lead, 4 * rows_attn));
        CK(cudaMallocHost((void **)&c->h_rowof, 4 * rows_attn));
        c->h_mof = xmalloc(4 * rows_attn);
    }
    if (x->moe_idx >= 0) {
        c->d_inv = janus_cuda_alloc(4 * rows_moe);
        if (!c->d_out_a) c->d_out_a = janus_cuda_alloc(4 * rows_moe);
        if (!c->d_out_row) c->d_out_row = janus_cuda_alloc(4 * rows_moe);
        if (!c->d_peer_ret) {
            float **h = xcalloc(A, sizeof(float *));
            for (int a = 0; a < A; a++) h[a] = c->peer_ret[x->attn_world[a]];
            c->d_peer_ret = janus_cuda_alloc(sizeof(float *) * A);
            CK(cudaMemcpy(c->d_peer_ret, h, sizeof(float *) * A, cudaMemcpyHostToDevice));
            free(h);
        }
        CK(cudaMallocHost((void **)&c->h_oa, 4 * rows_moe));
        CK(cudaMallocHost((void **)&c->h_or, 4 * rows_moe));
        c->h_ra = xmalloc(4 * rows_moe);
    }
}

static void sched_gpu_free(janus_xchg *x, struct janus_ipc *c) {
    for (int l = 0; l < x->n_layers; l++) {
        if (c->plan && c->plan[l].dev) jk_sched_plan_free(&c->plan[l]);
        if (c->d_lseg_k && c->d_lseg_k[l]) cudaFree(c->d_lseg_k[l]);
    }
    free(c->plan), free(c->d_lseg_k), free(c->n_loc), free(c->P_mb);
    void *d[] = {c->d_stage, c->d_share, c->d_tok, c->d_act, c->d_ws, c->d_dst_m, c->d_dst_row, c->d_ret_row,
                 c->d_lseg, c->d_perm, c->d_out_a, c->d_out_row, c->d_nrows, c->d_served, c->d_peer_in, c->d_peer_ret,
                 c->d_peer_idx, c->d_tok_dst, c->d_dd_ws, c->d_rows_out, c->d_peer_hdr, c->d_lead, c->d_inv, c->d_ent};
    for (size_t b = 0; b < sizeof d / sizeof d[0]; b++)
        if (d[b]) cudaFree(d[b]);
    void *hp[] = {c->h_ent, c->h_lead, c->h_rowof, c->h_oa, c->h_or};
    for (size_t b = 0; b < sizeof hp / sizeof hp[0]; b++)
        if (hp[b]) cudaFreeHost(hp[b]);
    free(c->h_mof), free(c->h_ra), free(c->h_reg);
    if (c->h_stage) cudaFreeHost(c->h_stage);
    if (c->h_served) cudaFreeHost(c->h_served);
}

void janus_ipc_init(janus_xchg *x, int max_tokens, void *stream) {
    struct janus_ipc *c = xcalloc(1, sizeof *c);
    c->st = (cudaStream_t)stream;
    c->H = x->H;
    c->n_mb = x->n_mb;
    c->rows_attn = (size_t)max_tokens * x->k;
    c->rows_moe = (size_t)x->n_attn * c->rows_attn;
    const size_t H = x->H, row = H * sizeof(float);
    ipc_export me = {0};
    CK(cudaGetDevice(&me.device));
    size_t idx = 1;
    if (x->attn_idx >= 0) {
        c->d_send = janus_cuda_alloc(c->rows_attn * row);
        c->d_ret = janus_cuda_alloc(c->n_mb * c->rows_attn * row);
        CK(cudaIpcGetMemHandle(&me.ret, c->d_ret));
        me.has_ret = 1;
        idx = c->rows_attn;
        c->h_tokrow = xmalloc(sizeof(int32_t) * (size_t)max_tokens);
        for (int t = 0; t < max_tokens; t++) c->h_tokrow[t] = -1;
        c->h_first = xmalloc(sizeof(int) * 2 * (size_t)x->n_moe);
    }
    if (x->moe_idx >= 0) {
        // rows, then an int32 per row (where the deduplicated rows put each
        // pair's), then 2k int32 per row (the headers of summed outputs)
        c->d_in = janus_cuda_alloc(c->n_mb * c->rows_moe * (row + sizeof(int32_t) * (1 + 2 * (size_t)x->k)));
        c->d_in_src = index_part(x, c, c->d_in);
        c->d_xs = janus_cuda_alloc(c->rows_moe * row), c->d_ys = janus_cuda_alloc(c->rows_moe * row), c->d_out = janus_cuda_alloc(c->rows_moe * row);
        CK(cudaIpcGetMemHandle(&me.in, c->d_in));
        me.has_in = 1;
        if (c->rows_moe > idx) idx = c->rows_moe;
    }
    c->h_reg = xmalloc(sizeof(int64_t) * (size_t)(x->n_attn > x->n_moe ? x->n_attn : x->n_moe));
    c->d_idx = janus_cuda_alloc(idx * 4), c->d_idx2 = janus_cuda_alloc(idx * 4);
    CK(cudaMallocHost((void **)&c->h_idx, idx * 4));
    CK(cudaMallocHost((void **)&c->h_idx2, idx * 4));
    ipc_export *all = xcalloc(x->size, sizeof *all);
    MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, x->world);
    c->peer_ret = xcalloc(x->size, sizeof(float *));
    c->peer_in = xcalloc(x->size, sizeof(float *));
    for (int r = 0; r < x->size; r++) {
        if (r == x->rank) {
            c->peer_ret[r] = c->d_ret, c->peer_in[r] = c->d_in;
            continue;
        }
        if (all[r].device != me.device) { // a peer GPU: direct access where the link allows it
            int ok = 0;
            cudaDeviceCanAccessPeer(&ok, me.device, all[r].device);
            if (ok) {
                cudaError_t rc = cudaDeviceEnablePeerAccess(all[r].device, 0);
                if (rc != cudaSuccess && rc != cudaErrorPeerAccessAlreadyEnabled)
                    janus_die(NULL, "CUDA IPC exchange: peer access GPU %d -> %d: %s", me.device, all[r].device,
                              cudaGetErrorString(rc));
                cudaGetLastError();
            }
        }
        void *p;
        if (all[r].has_ret) {
            CK(cudaIpcOpenMemHandle(&p, all[r].ret, cudaIpcMemLazyEnablePeerAccess));
            c->peer_ret[r] = p;
        }
        if (all[r].has_in) {
            CK(cudaIpcOpenMemHandle(&p, all[r].in, cudaIpcMemLazyEnablePeerAccess));
            c->peer_in[r] = p;
        }
    }
    free(all);
    c->cap_req = 2 * x->size * x->n_mb + 4;
    c->req = xcalloc(c->cap_req, sizeof(MPI_Request));
    x->dev = &ipc_xport, x->dev_state = c;
    sched_gpu_init(x, c);
    sums_init(x, c);
    MPI_Barrier(x->world); // every mapping is in place before anyone writes
}

static void ipc_free(janus_xchg *x) {
    struct janus_ipc *c = x->dev_state;
    if (!c) return;
    cudaDeviceSynchronize();
    MPI_Barrier(x->world); // nobody writes into a buffer that is going away
    janus_log("CUDA IPC exchange: %lld of %lld (layer, micro-batch)s scheduled and routed on the GPUs (%s)",
              (long long)x->t.routed_gpu, (long long)(x->t.routed_gpu + x->t.routed_host),
              x->dev_sched ? "decode-sized steps" : "off: JANUS_XCHG_SCHED=host or not supported here");
    janus_log("CUDA IPC exchange: rows sent %s; outputs back %s",
              c->dedup ? "once per (token, MoE rank)" : "once per (token, expert) pair (JANUS_XCHG_DEDUP=0)",
              c->sums ? "once per (token, MoE rank), summed there"
                      : c->dedup ? "once per pair (JANUS_XCHG_SUMS=0)" : "once per pair");
    if (x->attn_idx >= 0) { // this attention rank's payload (the log: rank 0's; verbose: every rank's)
        int64_t rows = 0; // token rows of the deduplicated GPU-routed steps
        if (c->d_rows_out) cudaMemcpy(&rows, c->d_rows_out, 8, cudaMemcpyDeviceToHost);
        const long long pairs = c->pairs_dev + c->pairs_host, out = rows + c->out_host,
                        back = (c->sums ? rows : 0) + c->back_host;
        janus_log("CUDA IPC exchange: %lld (token, expert) pairs went out as %lld rows and came back as %lld rows "
                  "(rank 0; %.2f and %.2f pairs per row)", pairs, out, back, out ? (double)pairs / out : 0.0,
                  back ? (double)pairs / back : 0.0);
        janus_vlog("rank %d: %lld pairs, %lld rows out, %lld rows back", x->rank, pairs, out, back);
    }
    for (int r = 0; r < x->size; r++) {
        if (r == x->rank) continue;
        if (c->peer_ret[r]) cudaIpcCloseMemHandle(c->peer_ret[r]);
        if (c->peer_in[r]) cudaIpcCloseMemHandle(c->peer_in[r]);
    }
    float *bufs[] = {c->d_send, c->d_ret, c->d_in, c->d_xs, c->d_ys, c->d_out};
    for (size_t b = 0; b < sizeof bufs / sizeof bufs[0]; b++)
        if (bufs[b]) cudaFree(bufs[b]);
    cudaFree(c->d_idx), cudaFree(c->d_idx2);
    sched_gpu_free(x, c);
    cudaFreeHost(c->h_idx), cudaFreeHost(c->h_idx2);
    free(c->peer_ret), free(c->peer_in), free(c->req), free(c->h_tokrow), free(c->h_first);
    free(c);
}

static void post_signal(janus_xchg *x, int to, int tag) {
    struct janus_ipc *c = x->dev_state;
    if (c->n_req == c->cap_req) janus_die(NULL, "internal: CUDA IPC exchange: too many signals in flight");
    MPI_Isend(NULL, 0, MPI_BYTE, to, tag, x->world, &c->req[c->n_req++]);
}


// Host-routed steps (prompt-sized), rows once per (token, MoE rank), as the
// decode path's jk_xchg_dedup: for MoE rank m the distinct tokens of this
// rank's rows there, in token order, from the start of its region of m's
// receive buffer; the region's index part gets, per row (pair), the row of
// its token. h_idx: the tokens to gather, by MoE rank; h_idx2: the indices.
static void post_sum_headers(janus_xchg *x, int i, const janus_xchg_rows1 *d, const float *d_w);
static void post_rows_dedup(janus_xchg *x, int l, int i, const float *d_rows, const int32_t *ids, const float *d_w) {
    struct janus_ipc *c = x->dev_state;
    janus_xmb_attn *a = &x->xa[i];
    const int M = x->n_moe;
    const size_t row = (size_t)c->H * sizeof(float);
    int32_t *tok = c->h_idx, *src = c->h_idx2;
    int *first = c->h_first, *n_tok = first + M;
    janus_xchg_rows1 d = {.tok = tok, .src = src, .first = first, .n_tok = n_tok, .reg = c->h_reg, .mark = c->h_tokrow,
                          .rowof = c->h_rowof, .mof = c->h_mof, .lead = c->h_lead, .ent = c->h_ent};
    const int n = janus_xchg_rows_once(x, i, c->sums ? ids : NULL, &d);
    CK(cudaMemcpyAsync(c->d_idx, tok, sizeof(int32_t) * n, cudaMemcpyHostToDevice, c->st));
    CK(cudaMemcpyAsync(c->d_idx2, src, sizeof(int32_t) * a->off[M], cudaMemcpyHostToDevice, c->st));
    CK(jk_gather_rows(c->d_send, d_rows, c->d_idx, 1, n, c->H, c->st));
    for (int m = 0; m < M; m++) {
        if (!a->cnt[m]) continue;
        const int w = x->moe_world[m];
        const size_t at = (size_t)i * c->rows_moe + d.reg[m];
        CK(cudaMemcpyAsync(c->peer_in[w] + at * c->H, c->d_send + (size_t)first[m] * c->H, n_tok[m] * row,
                           cudaMemcpyDefault, c->st));
        CK(cudaMemcpyAsync(index_part(x, c, c->peer_in[w]) + at, c->d_idx2 + a->off[m], sizeof(int32_t) * a->cnt[m],
                           cudaMemcpyDefault, c->st)); // device to device, as the rows
        x->t.rows_sent += a->cnt[m];
        x->t.bytes_sent += (int64_t)n_tok[m] * row;
    }
    if (c->sums) post_sum_headers(x, i, &d, d_w);
    c->pairs_host += a->off[M], c->out_host += n, c->back_host += c->sums ? n : a->off[M];
    CK(cudaStreamSynchronize(c->st)); // the rows are there before the signal says so (and tok, src reusable)
    for (int m = 0; m < M; m++)
        if (a->cnt[m]) post_signal(x, x->moe_world[m], janus_xchg_tag(x, l, i, 0));
}

// Outputs summed on the MoE ranks, host-routed steps: the headers of
// janus_xchg_rows_once's entries at each token row of each MoE rank's header
// part (jk_xchg_put_headers: their pairs' weights from the GPU), each pair's
// lead flag, and the row its sum comes back to: the return layout mirrors
// the send layout, so a lead's sum lands at its send row.
static void post_sum_headers(janus_xchg *x, int i, const janus_xchg_rows1 *d, const float *d_w) {
    struct janus_ipc *c = x->dev_state;
    const int P = x->xa[i].off[x->n_moe], W = 2 + 2 * x->k;
    if (P > 0 && !d_w) janus_die(NULL, "internal: CUDA IPC exchange: outputs summed without router weights");
    for (int e = 0; e < d->n_ent; e++) { // {m, rank} -> {m, the token row in m's header part}
        int32_t *en = d->ent + (size_t)e * W;
        en[1] = (int32_t)((size_t)i * c->rows_moe + d->reg[en[0]] + en[1]);
    }
    CK(cudaMemcpyAsync(c->d_ent, d->ent, sizeof(int32_t) * W * (size_t)d->n_ent, cudaMemcpyHostToDevice, c->st));
    CK(jk_xchg_put_headers(c->d_peer_hdr, c->d_ent, d_w, d->n_ent, x->k, c->st));
    CK(cudaMemcpyAsync(c->d_lead + c->rows_attn * i, d->lead, sizeof(int32_t) * P, cudaMemcpyHostToDevice, c->st));
    CK(cudaMemcpyAsync(c->d_ret_row + c->rows_attn * i, d->rowof, sizeof(int32_t) * P, cudaMemcpyHostToDevice, c->st));
}

static void ipc_post_rows(janus_xchg *x, int l, int i, const float *d_rows, const int32_t *ids, const float *d_w) {
    struct janus_ipc *c = x->dev_state;
    janus_xmb_attn *a = &x->xa[i];
    const int M = x->n_moe, K = x->k, R = a->off[M];
    const size_t row = (size_t)c->H * sizeof(float);
    if ((size_t)R > c->rows_attn) janus_die(NULL, "internal: CUDA IPC exchange: %d rows exceed %zu", R, c->rows_attn);
    if (R == 0) return;
    if (c->dedup) { // each token's row once per MoE rank, and where each pair finds it
        post_rows_dedup(x, l, i, d_rows, ids, d_w);
        return;
    }
    memcpy(c->h_idx, a->pair, sizeof(int32_t) * R);
    CK(cudaMemcpyAsync(c->d_idx, c->h_idx, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    CK(jk_gather_rows(c->d_send, d_rows, c->d_idx, K, R, c->H, c->st)); // row r = token pair[r] / k
    c->pairs_host += R, c->out_host += R, c->back_host += R;
    for (int m = 0; m < M; m++) {
        if (!a->cnt[m]) continue;
        const int w = x->moe_world[m];
        float *dst = c->peer_in[w] + ((size_t)i * c->rows_moe + janus_xchg_off_in_moe(x, i, x->attn_idx, m)) * c->H;
        CK(cudaMemcpyAsync(dst, c->d_send + (size_t)a->off[m] * c->H, a->cnt[m] * row, cudaMemcpyDefault, c->st));
        x->t.rows_sent += a->cnt[m];
        x->t.bytes_sent += (int64_t)a->cnt[m] * row;
    }
    CK(cudaStreamSynchronize(c->st)); // the rows are there before the signal says so
    for (int m = 0; m < M; m++)
        if (a->cnt[m]) post_signal(x, x->moe_world[m], janus_xchg_tag(x, l, i, 0));
}

static void ipc_serve(janus_xchg *x, int l, int i, const int32_t *perm, const int32_t *seg, int R, int max_rows) {
    struct janus_ipc *c = x->dev_state;
    janus_xmb_moe *q = &x->xm[i];
    const int A = x->n_attn;
    const size_t row = (size_t)c->H * sizeof(float);
    if ((size_t)R > c->rows_moe) janus_die(NULL, "internal: CUDA IPC exchange: %d rows exceed %zu", R, c->rows_moe);
    double t0 = janus_now_s();
    for (int a = 0; a < A; a++)
        if (q->cnt[a]) MPI_Recv(NULL, 0, MPI_BYTE, x->attn_world[a], janus_xchg_tag(x, l, i, 0), x->world, MPI_STATUS_IGNORE);
    double t1 = janus_now_s();
    x->t.serve_wait_s += t1 - t0;
    if (R == 0) return;
    float *in = c->d_in + (size_t)i * c->rows_moe * c->H;
    // xs[g] = in[perm[g]]; run the experts; out[perm[g]] = ys[g] (a gather by
    // the inverse), or summed: each token's outputs here to the return row of
    // its lead pair (out_a / out_row of each grouped row: its attention rank,
    // the row there mirroring its receive row).
    memcpy(c->h_idx, perm, sizeof(int32_t) * R);
    CK(cudaMemcpyAsync(c->d_idx, c->h_idx, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    if (c->sums) {
        int64_t *reg = c->h_reg; // this rank's rows in each attention rank's return buffer
        int32_t *ra = c->h_ra;   // the attention rank of each receive row
        for (int a = 0; a < A; a++) {
            reg[a] = janus_xchg_off_in_attn(x, i, a, x->moe_idx);
            for (int r = q->off[a]; r < q->off[a + 1]; r++) ra[r] = a;
        }
        for (int g = 0; g < R; g++) {
            const int r = perm[g], a = ra[r];
            c->h_oa[g] = a, c->h_or[g] = (int32_t)(reg[a] + r - q->off[a]);
        }
        CK(cudaMemcpyAsync(c->d_out_a, c->h_oa, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
        CK(cudaMemcpyAsync(c->d_out_row, c->h_or, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    } else {
        for (int g = 0; g < R; g++) c->h_idx2[perm[g]] = g;
        CK(cudaMemcpyAsync(c->d_idx2, c->h_idx2, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    }
    if (c->dedup) // the row of each pair's token (post_rows_dedup)
        CK(jk_xchg_gather_rows_via(c->d_xs, in, c->d_in_src + (size_t)i * c->rows_moe, c->d_idx, NULL, R, c->H, c->st));
    else
        CK(jk_gather_rows(c->d_xs, in, c->d_idx, 1, R, c->H, c->st));
    if (!x->experts_dev_fn) janus_die(NULL, "internal: CUDA IPC exchange without a GPU expert hook");
    x->experts_dev_fn(x->experts_ctx, l, seg, max_rows, c->d_xs, c->d_ys, R);
    if (c->sums) {
        CK(jk_xchg_return_sums(c->d_peer_ret, c->rows_attn * i, c->d_ys, c->d_idx, c->d_in_src + (size_t)i * c->rows_moe,
                               header_part(x, c, c->d_in) + (size_t)i * c->rows_moe * 2 * x->k, c->d_inv, c->d_out_a,
                               c->d_out_row, NULL, R, x->k, c->H, c->st));
        CK(cudaStreamSynchronize(c->st));
        for (int a = 0; a < A; a++)
            if (q->cnt[a]) post_signal(x, x->attn_world[a], janus_xchg_tag(x, l, i, 1));
        x->t.rows_served += R;
        x->t.experts_s += janus_now_s() - t1;
        return;
    }
    CK(jk_gather_rows(c->d_out, c->d_ys, c->d_idx2, 1, R, c->H, c->st));
    for (int a = 0; a < A; a++) {
        if (!q->cnt[a]) continue;
        const int w = x->attn_world[a];
        float *dst = c->peer_ret[w] + ((size_t)i * c->rows_attn + janus_xchg_off_in_attn(x, i, a, x->moe_idx)) * c->H;
        CK(cudaMemcpyAsync(dst, c->d_out + (size_t)q->off[a] * c->H, q->cnt[a] * row, cudaMemcpyDefault, c->st));
    }
    CK(cudaStreamSynchronize(c->st));
    for (int a = 0; a < A; a++)
        if (q->cnt[a]) post_signal(x, x->attn_world[a], janus_xchg_tag(x, l, i, 1));
    x->t.rows_served += R;
    x->t.experts_s += janus_now_s() - t1;
}

static void ipc_collect(janus_xchg *x, int i, float *d_y) {
    struct janus_ipc *c = x->dev_state;
    janus_xmb_attn *a = &x->xa[i];
    const int M = x->n_moe, R = a->off[M];
    for (int m = 0; m < M; m++)
        if (a->cnt[m]) MPI_Recv(NULL, 0, MPI_BYTE, x->moe_world[m], a->tag_ret, x->world, MPI_STATUS_IGNORE);
    if (R == 0 || c->sums) return; // summed: the combine reads them in place (ipc_sums)
    for (int r = 0; r < R; r++) c->h_idx2[a->pair[r]] = r;
    CK(cudaMemcpyAsync(c->d_idx2, c->h_idx2, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    CK(jk_gather_rows(d_y, c->d_ret + (size_t)i * c->rows_attn * c->H, c->d_idx2, 1, R, c->H, c->st));
    CK(cudaStreamSynchronize(c->st)); // h_idx2 is reused next
}

static void ipc_finish_layer(janus_xchg *x) {
    struct janus_ipc *c = x->dev_state;
    MPI_Waitall(c->n_req, c->req, MPI_STATUSES_IGNORE);
    c->n_req = 0;
}

// ---- the schedule on the GPU ------------------------------------------------
// Every rank: the handshake up (one copy), the scheduler kernel, the routing
// block. Attention ranks then write their rows into the MoE ranks' receive
// buffers and signal every MoE rank (zero-byte message, also with no rows:
// the host does not know the counts per MoE rank); MoE ranks wait for every
// attention rank, group, run the experts and write every output into its
// attention rank's return buffer, then signal every attention rank.

static void ipc_dispatch_dev(janus_xchg *x, int l, int i, const float *d_rows, const int32_t *ids, const float *d_w,
                             int T) {
    struct janus_ipc *c = x->dev_state;
    const int E = x->E, A = x->n_attn, K = x->k, P = x->attn_idx >= 0 ? T * K : 0;
    const double t0 = janus_now_s();
    if ((size_t)P > c->rows_attn) janus_die(NULL, "internal: CUDA IPC exchange: %d rows exceed %zu", P, c->rows_attn);
    char *hs = c->h_stage + c->stage_bytes * i; // this micro-batch's staging: its copy may still be queued
    int64_t *n_tok = (int64_t *)hs;
    int32_t *cnt = (int32_t *)(hs + 8 * (size_t)E), *hid = cnt + (size_t)A * E;
    memcpy(n_tok, x->n_tok, 8 * (size_t)E);
    for (int a = 0; a < A; a++) memcpy(cnt + (size_t)a * E, x->hs_all + (size_t)x->attn_world[a] * E, 4 * (size_t)E);
    if (P) memcpy(hid, ids, 4 * (size_t)P);
    const size_t bytes = 8 * (size_t)E + ((size_t)A * E + P) * 4;
    CK(cudaMemcpyAsync(c->d_stage, hs, bytes, cudaMemcpyHostToDevice, c->st));
    const int64_t *d_ntok = (const int64_t *)c->d_stage;
    const int32_t *d_cnt = (const int32_t *)(c->d_stage + 8 * (size_t)E), *d_ids = d_cnt + (size_t)A * E;
    const jk_sched_plan *pl = &c->plan[l];
    CK(jk_sched(pl, d_ntok, c->d_share, c->d_act, c->d_tok, c->st));
    jk_xchg_route_args ra = {.E = E, .S = pl->S, .A = A, .M = x->n_moe, .K = K, .ai = x->attn_idx, .mi = x->moe_idx,
                             .rep_off = pl->rep_off, .rep_rank = pl->rep_rank, .rs_off = pl->rs_off,
                             .rs_slot = pl->rs_slot, .cnt = d_cnt, .share = c->d_share, .ws = c->d_ws};
    if (x->attn_idx >= 0)
        ra.ids = d_ids, ra.P = P, ra.dst_m = c->d_dst_m, ra.dst_row = c->d_dst_row,
        ra.ret_row = c->d_ret_row + c->rows_attn * i;
    if (x->moe_idx >= 0)
        ra.lseg_k = c->d_lseg_k[l], ra.n_loc = c->n_loc[l], ra.lseg = c->d_lseg, ra.perm = c->d_perm,
        ra.out_a = c->d_out_a, ra.out_row = c->d_out_row, ra.n_rows = c->d_nrows, ra.served = c->d_served;
    CK(jk_xchg_route(&ra, c->st));
    const double t1 = janus_now_s();
    x->t.sched_s += t1 - t0;
    if (x->attn_idx < 0) return;
    c->P_mb[i] = P;
    if (c->dedup) { // each token's row once per MoE rank, and where each pair finds it
        CK(jk_xchg_dedup(c->d_dst_m, c->d_dst_row, T, K, x->n_moe, c->d_tok_dst, c->d_rows_out, c->d_dd_ws, c->st));
        c->pairs_dev += P; // the rows out are counted on the GPU; back the same where summed
        if (!c->sums) c->back_host += P;
        if (c->sums && !d_w) janus_die(NULL, "internal: CUDA IPC exchange: outputs summed without router weights");
        CK(jk_xchg_send_tokens(c->d_peer_in, c->d_peer_idx, c->sums ? c->d_peer_hdr : NULL, c->rows_moe * i, d_rows,
                               c->d_tok_dst, c->d_dst_m, c->d_dst_row, d_ids, d_w,
                               c->sums ? c->d_lead + c->rows_attn * i : NULL, T, K, x->n_moe, c->H, c->st));
    } else {
        CK(jk_xchg_send_rows(c->d_peer_in, c->rows_moe * i, d_rows, c->d_dst_m, c->d_dst_row, K, P, c->H, c->st));
        x->t.bytes_sent += (int64_t)P * c->H * 4; // (the deduplicated path's count stays on the GPU)
        c->pairs_host += P, c->out_host += P, c->back_host += P;
    }
    CK(cudaStreamSynchronize(c->st)); // the rows are there before the signal says so
    for (int m = 0; m < x->n_moe; m++) post_signal(x, x->moe_world[m], janus_xchg_tag(x, l, i, 0));
    x->t.rows_sent += P;
    x->t.send_s += janus_now_s() - t1;
}

static void ipc_serve_dev(janus_xchg *x, int l, int i, int max_rows) {
    struct janus_ipc *c = x->dev_state;
    const int A = x->n_attn;
    int pairs = 0; // every row this layer job-wide: a bound of this rank's
    for (int e = 0; e < x->E; e++) pairs += (int)x->n_tok[e];
    if ((size_t)pairs > c->rows_moe) janus_die(NULL, "internal: CUDA IPC exchange: %d rows exceed %zu", pairs, c->rows_moe);
    const double t0 = janus_now_s();
    for (int a = 0; a < A; a++)
        MPI_Recv(NULL, 0, MPI_BYTE, x->attn_world[a], janus_xchg_tag(x, l, i, 0), x->world, MPI_STATUS_IGNORE);
    const double t1 = janus_now_s();
    x->t.serve_wait_s += t1 - t0;
    const float *in = c->d_in + (size_t)i * c->rows_moe * c->H;
    if (c->dedup)
        CK(jk_xchg_gather_rows_via(c->d_xs, in, c->d_in_src + (size_t)i * c->rows_moe, c->d_perm, c->d_nrows, pairs,
                                   c->H, c->st));
    else
        CK(jk_xchg_gather_rows(c->d_xs, in, c->d_perm, c->d_nrows, pairs, c->H, c->st));
    janus_gpu_serve_experts_devseg(x->experts_ctx, l, c->d_lseg, max_rows, c->d_xs, c->d_ys);
    if (c->sums) // each token's outputs here, weighted and summed: one row back per (token, this rank)
        CK(jk_xchg_return_sums(c->d_peer_ret, c->rows_attn * i, c->d_ys, c->d_perm, c->d_in_src + (size_t)i * c->rows_moe,
                               header_part(x, c, c->d_in) + (size_t)i * c->rows_moe * 2 * x->k, c->d_inv, c->d_out_a,
                               c->d_out_row, c->d_nrows, pairs, x->k, c->H, c->st));
    else
        CK(jk_xchg_return_rows(c->d_peer_ret, c->rows_attn * i, c->d_ys, c->d_out_a, c->d_out_row, c->d_nrows, pairs,
                               c->H, c->st));
    CK(cudaMemcpyAsync(c->h_served, c->d_served, 8, cudaMemcpyDeviceToHost, c->st)); // statistics, with the sync
    CK(cudaStreamSynchronize(c->st));
    for (int a = 0; a < A; a++) post_signal(x, x->attn_world[a], janus_xchg_tag(x, l, i, 1));
    x->t.rows_served += *c->h_served - c->served_seen;
    c->served_seen = *c->h_served;
    x->t.experts_s += janus_now_s() - t1;
}

static void ipc_collect_dev(janus_xchg *x, int i, float *d_y) {
    struct janus_ipc *c = x->dev_state;
    for (int m = 0; m < x->n_moe; m++)
        MPI_Recv(NULL, 0, MPI_BYTE, x->moe_world[m], x->xa[i].tag_ret, x->world, MPI_STATUS_IGNORE);
    // No wait: the next write into this return buffer follows this rank's
    // next dispatch of micro-batch i, which synchronises the stream.
    if (c->sums) return; // the combine reads the sums where they landed (ipc_sums)
    CK(jk_gather_rows(d_y, c->d_ret + (size_t)i * c->rows_attn * c->H, c->d_ret_row + c->rows_attn * i, 1, c->P_mb[i],
                      c->H, c->st));
}

static bool ipc_sums(const janus_xchg *x, int i, const float **y, const int32_t **slot, const int32_t **lead);
static const janus_dev_xport ipc_xport = {"GPU to GPU through CUDA IPC", ipc_post_rows, ipc_serve, ipc_collect,
                                          ipc_finish_layer, ipc_free, ipc_sums};
// Summed outputs: the combine reads micro-batch i's return buffer through the
// pairs' return rows, the leads' only.
static bool ipc_sums(const janus_xchg *x, int i, const float **y, const int32_t **slot, const int32_t **lead) {
    const struct janus_ipc *c = x->dev_state;
    if (!c->sums) return false;
    *y = c->d_ret + (size_t)i * c->rows_attn * c->H;
    *slot = c->d_ret_row + c->rows_attn * i;
    *lead = c->d_lead + c->rows_attn * i;
    return true;
}

static const janus_dev_sched ipc_sched = {ipc_dispatch_dev, ipc_serve_dev, ipc_collect_dev};
