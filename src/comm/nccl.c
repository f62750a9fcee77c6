// comm/nccl.c: the exchange payload through NCCL send/recv (see nccl.h).
#include "comm/nccl.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cuda_check.h"
#include "layers.h"

#define CK(x) JANUS_CUDA_CK("NCCL exchange", x)
#define NK(x)                                                                                                  \
    do {                                                                                                       \
        ncclResult_t rc_ = (x);                                                                                \
        if (rc_ != ncclSuccess) janus_die(NULL, "NCCL exchange: %s: %s", #x, ncclGetErrorString(rc_));         \
    } while (0)

struct janus_nccl {
    cudaStream_t st, st_f, st_b;  // compute (the GPU's), rows out, outputs back
    ncclComm_t fwd, back;
    int H, n_mb;
    size_t rows_attn, rows_moe;
    float *d_send, *d_ret;        // [n_mb, rows_attn, H] attention: rows by destination, outputs back
    float *d_in, *d_out;          // [n_mb, rows_moe, H] MoE: rows in ([a][e][rows]), outputs in that layout
    float *d_xs, *d_ys;           // [rows_moe, H] MoE: grouped by expert, expert outputs
    int32_t *d_idx, *d_idx2, *h_idx, *h_idx2;
    cudaEvent_t *ev_rows, *ev_ret, *ev_out, *ev_sent; // [n_mb]
    bool both;                    // this rank attends and serves (monolithic): fused groups
};

typedef struct {
    char host[64];
    int device;
} gpu_id;

static const janus_dev_xport nccl_xport; // the entry points, at the end


void janus_nccl_init(janus_xchg *x, int max_tokens, void *stream) {
    struct janus_nccl *c = xcalloc(1, sizeof *c);
    c->st = (cudaStream_t)stream;
    c->H = x->H;
    c->n_mb = x->n_mb;
    c->rows_attn = (size_t)max_tokens * x->k;
    c->rows_moe = (size_t)x->n_attn * c->rows_attn;
    c->both = x->attn_idx >= 0 && x->moe_idx >= 0;
    // NCCL needs one GPU per rank: find two ranks on one (host, device).
    gpu_id me = {{0}, 0}, *all = xcalloc(x->size, sizeof *all);
    gethostname(me.host, sizeof me.host - 1);
    CK(cudaGetDevice(&me.device));
    MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, x->world);
    for (int a = 0; a < x->size; a++)
        for (int b = a + 1; b < x->size; b++)
            if (all[a].device == all[b].device && !strcmp(all[a].host, all[b].host))
                janus_die_all(NULL, "--transport nccl: ranks %d and %d share GPU %d of %s (NCCL needs one GPU per rank); "
                                    "use --transport ipc or mpi, or one task per GPU", a, b, all[a].device, all[a].host);
    free(all);
    ncclUniqueId id[2];
    if (x->rank == 0) {
        NK(ncclGetUniqueId(&id[0]));
        NK(ncclGetUniqueId(&id[1]));
    }
    MPI_Bcast(id, (int)sizeof id, MPI_BYTE, 0, x->world);
    NK(ncclCommInitRank(&c->fwd, x->size, id[0], x->rank));
    NK(ncclCommInitRank(&c->back, x->size, id[1], x->rank));
    CK(cudaStreamCreateWithFlags(&c->st_f, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&c->st_b, cudaStreamNonBlocking));
    const size_t H = x->H, row = H * sizeof(float);
    size_t idx = 1;
    if (x->attn_idx >= 0) {
        c->d_send = janus_cuda_alloc(c->n_mb * c->rows_attn * row);
        c->d_ret = janus_cuda_alloc(c->n_mb * c->rows_attn * row);
        idx = c->rows_attn;
    }
    if (x->moe_idx >= 0) {
        c->d_in = janus_cuda_alloc(c->n_mb * c->rows_moe * row), c->d_out = janus_cuda_alloc(c->n_mb * c->rows_moe * row);
        c->d_xs = janus_cuda_alloc(c->rows_moe * row), c->d_ys = janus_cuda_alloc(c->rows_moe * row);
        if (c->rows_moe > idx) idx = c->rows_moe;
    }
    c->d_idx = janus_cuda_alloc(idx * 4), c->d_idx2 = janus_cuda_alloc(idx * 4);
    CK(cudaMallocHost((void **)&c->h_idx, idx * 4));
    CK(cudaMallocHost((void **)&c->h_idx2, idx * 4));
    cudaEvent_t **evs[] = {&c->ev_rows, &c->ev_ret, &c->ev_out, &c->ev_sent};
    for (int e = 0; e < 4; e++) {
        *evs[e] = xcalloc(c->n_mb, sizeof(cudaEvent_t));
        for (int i = 0; i < c->n_mb; i++) CK(cudaEventCreateWithFlags(&(*evs[e])[i], cudaEventDisableTiming));
    }
    x->dev = &nccl_xport, x->dev_state = c;
}

static void nccl_free(janus_xchg *x) {
    struct janus_nccl *c = x->dev_state;
    if (!c) return;
    cudaDeviceSynchronize();
    ncclCommDestroy(c->fwd);
    ncclCommDestroy(c->back);
    float *bufs[] = {c->d_send, c->d_ret, c->d_in, c->d_out, c->d_xs, c->d_ys};
    for (size_t b = 0; b < sizeof bufs / sizeof bufs[0]; b++)
        if (bufs[b]) cudaFree(bufs[b]);
    cudaFree(c->d_idx), cudaFree(c->d_idx2), cudaFreeHost(c->h_idx), cudaFreeHost(c->h_idx2);
    cudaEvent_t *evs[] = {c->ev_rows, c->ev_ret, c->ev_out, c->ev_sent};
    for (int e = 0; e < 4; e++) {
        for (int i = 0; i < c->n_mb; i++) cudaEventDestroy(evs[e][i]);
        free(evs[e]);
    }
    cudaStreamDestroy(c->st_f), cudaStreamDestroy(c->st_b);
    free(c);
}

// The attention side's NCCL calls of (l, i): rows out (fwd) and outputs back (back).
static void attn_sends(janus_xchg *x, int i) {
    struct janus_nccl *c = x->dev_state;
    janus_xmb_attn *a = &x->xa[i];
    const size_t H = c->H;
    for (int m = 0; m < x->n_moe; m++)
        if (a->cnt[m])
            NK(ncclSend(c->d_send + ((size_t)i * c->rows_attn + a->off[m]) * H, a->cnt[m] * H, ncclFloat,
                        x->moe_world[m], c->fwd, c->st_f));
}
static void attn_recvs(janus_xchg *x, int i) {
    struct janus_nccl *c = x->dev_state;
    janus_xmb_attn *a = &x->xa[i];
    const size_t H = c->H;
    for (int m = 0; m < x->n_moe; m++)
        if (a->cnt[m])
            NK(ncclRecv(c->d_ret + ((size_t)i * c->rows_attn + a->off[m]) * H, a->cnt[m] * H, ncclFloat,
                        x->moe_world[m], c->back, c->st_b));
}
static void moe_recvs(janus_xchg *x, int i) {
    struct janus_nccl *c = x->dev_state;
    janus_xmb_moe *q = &x->xm[i];
    const size_t H = c->H;
    for (int a = 0; a < x->n_attn; a++)
        if (q->cnt[a])
            NK(ncclRecv(c->d_in + ((size_t)i * c->rows_moe + q->off[a]) * H, q->cnt[a] * H, ncclFloat,
                        x->attn_world[a], c->fwd, c->st_f));
}
static void moe_sends(janus_xchg *x, int i) {
    struct janus_nccl *c = x->dev_state;
    janus_xmb_moe *q = &x->xm[i];
    const size_t H = c->H;
    for (int a = 0; a < x->n_attn; a++)
        if (q->cnt[a])
            NK(ncclSend(c->d_out + ((size_t)i * c->rows_moe + q->off[a]) * H, q->cnt[a] * H, ncclFloat,
                        x->attn_world[a], c->back, c->st_b));
}

static void nccl_post_rows(janus_xchg *x, int l, int i, const float *d_rows, const int32_t *ids, const float *d_w) {
    (void)ids, (void)d_w; // outputs come back per pair
    struct janus_nccl *c = x->dev_state;
    janus_xmb_attn *a = &x->xa[i];
    const int R = a->off[x->n_moe];
    if ((size_t)R > c->rows_attn) janus_die(NULL, "internal: NCCL exchange: %d rows exceed %zu", R, c->rows_attn);
    if (R > 0) {
        memcpy(c->h_idx, a->pair, sizeof(int32_t) * R);
        CK(cudaMemcpyAsync(c->d_idx, c->h_idx, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
        CK(jk_gather_rows(c->d_send + (size_t)i * c->rows_attn * c->H, d_rows, c->d_idx, x->k, R, c->H, c->st));
        CK(cudaEventRecord(c->ev_rows[i], c->st));
        CK(cudaStreamWaitEvent(c->st_f, c->ev_rows[i], 0));
        CK(cudaStreamSynchronize(c->st)); // h_idx is reused next
        x->t.rows_sent += R;
        x->t.bytes_sent += (int64_t)R * c->H * 4;
    }
    if (c->both) return; // monolithic: fused with this rank's receives in serve
    NK(ncclGroupStart());
    attn_sends(x, i);
    NK(ncclGroupEnd());
    NK(ncclGroupStart());
    attn_recvs(x, i);
    NK(ncclGroupEnd());
    CK(cudaEventRecord(c->ev_ret[i], c->st_b)); // (l, i)'s outputs are home once this passes
    (void)l;
}

static void nccl_serve(janus_xchg *x, int l, int i, const int32_t *perm, const int32_t *seg, int R, int max_rows) {
    struct janus_nccl *c = x->dev_state;
    const double t0 = janus_now_s();
    if ((size_t)R > c->rows_moe) janus_die(NULL, "internal: NCCL exchange: %d rows exceed %zu", R, c->rows_moe);
    // Rows in (fused with this rank's own sends when it also attends).
    NK(ncclGroupStart());
    if (c->both) attn_sends(x, i);
    moe_recvs(x, i);
    NK(ncclGroupEnd());
    CK(cudaEventRecord(c->ev_rows[i], c->st_f));
    CK(cudaStreamWaitEvent(c->st, c->ev_rows[i], 0));
    if (R > 0) {
        float *in = c->d_in + (size_t)i * c->rows_moe * c->H, *out = c->d_out + (size_t)i * c->rows_moe * c->H;
        memcpy(c->h_idx, perm, sizeof(int32_t) * R);
        for (int g = 0; g < R; g++) c->h_idx2[perm[g]] = g;
        CK(cudaMemcpyAsync(c->d_idx, c->h_idx, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
        CK(cudaMemcpyAsync(c->d_idx2, c->h_idx2, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
        CK(jk_gather_rows(c->d_xs, in, c->d_idx, 1, R, c->H, c->st));
        if (!x->experts_dev_fn) janus_die(NULL, "internal: NCCL exchange without a GPU expert hook");
        CK(cudaStreamWaitEvent(c->st, c->ev_sent[i], 0)); // d_out[i] of the last layer has left
        x->experts_dev_fn(x->experts_ctx, l, seg, max_rows, c->d_xs, c->d_ys, R);
        CK(jk_gather_rows(out, c->d_ys, c->d_idx2, 1, R, c->H, c->st));
        CK(cudaEventRecord(c->ev_out[i], c->st));
        CK(cudaStreamWaitEvent(c->st_b, c->ev_out[i], 0));
        CK(cudaStreamSynchronize(c->st)); // h_idx, h_idx2 are reused next
    }
    // Outputs home (fused with this rank's own receives when it also attends).
    NK(ncclGroupStart());
    moe_sends(x, i);
    if (c->both) attn_recvs(x, i);
    NK(ncclGroupEnd());
    CK(cudaEventRecord(c->ev_sent[i], c->st_b));
    if (c->both) CK(cudaEventRecord(c->ev_ret[i], c->st_b));
    x->t.rows_served += R;
    x->t.experts_s += janus_now_s() - t0;
}

static void nccl_collect(janus_xchg *x, int i, float *d_y) {
    struct janus_nccl *c = x->dev_state;
    janus_xmb_attn *a = &x->xa[i];
    const int R = a->off[x->n_moe];
    CK(cudaStreamWaitEvent(c->st, c->ev_ret[i], 0)); // recorded where the receives were posted
    if (R == 0) return;
    for (int r = 0; r < R; r++) c->h_idx2[a->pair[r]] = r;
    CK(cudaMemcpyAsync(c->d_idx2, c->h_idx2, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    CK(jk_gather_rows(d_y, c->d_ret + (size_t)i * c->rows_attn * c->H, c->d_idx2, 1, R, c->H, c->st));
    CK(cudaStreamSynchronize(c->st)); // h_idx2 is reused next
}

static void nccl_finish_layer(janus_xchg *x) { (void)x; }

static const janus_dev_xport nccl_xport = {"GPU to GPU through NCCL", nccl_post_rows, nccl_serve, nccl_collect,
                                           nccl_finish_layer, nccl_free, NULL};
