// comm/ipc.c: the exchange payload through CUDA IPC within a node (see ipc.h).
#include "comm/ipc.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_check.h"
#include "layers.h"

#define CK(x) JANUS_CUDA_CK("CUDA IPC exchange", x)


struct janus_ipc {
    cudaStream_t st;
    int H, n_mb;
    size_t rows_attn, rows_moe; // rows of one micro-batch: T*k (attention side), A*T*k (MoE side)
    float *d_send;              // [rows_attn, H] attention: rows by destination
    float *d_ret;               // [n_mb, rows_attn, H] attention: outputs back (exported)
    float *d_in;                // [n_mb, rows_moe, H] MoE: rows in, layout [a][e][rows] (exported)
    float *d_xs, *d_ys, *d_out; // [rows_moe, H] MoE: grouped by expert, outputs, outputs in arrival layout
    int32_t *d_idx, *d_idx2;    // [max rows] gather indices
    int32_t *h_idx, *h_idx2;    // pinned staging of the indices
    float **peer_ret, **peer_in;// [size] every rank's exported buffers in this process (NULL: none)
    MPI_Request *req;           // signal sends of a layer
    int n_req, cap_req;
};

typedef struct {
    cudaIpcMemHandle_t ret, in;
    int has_ret, has_in, device;
} ipc_export;

static const janus_dev_xport ipc_xport; // the entry points, at the end


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
    }
    if (x->moe_idx >= 0) {
        c->d_in = janus_cuda_alloc(c->n_mb * c->rows_moe * row);
        c->d_xs = janus_cuda_alloc(c->rows_moe * row), c->d_ys = janus_cuda_alloc(c->rows_moe * row), c->d_out = janus_cuda_alloc(c->rows_moe * row);
        CK(cudaIpcGetMemHandle(&me.in, c->d_in));
        me.has_in = 1;
        if (c->rows_moe > idx) idx = c->rows_moe;
    }
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
    MPI_Barrier(x->world); // every mapping is in place before anyone writes
}

static void ipc_free(janus_xchg *x) {
    struct janus_ipc *c = x->dev_state;
    if (!c) return;
    cudaDeviceSynchronize();
    MPI_Barrier(x->world); // nobody writes into a buffer that is going away
    for (int r = 0; r < x->size; r++) {
        if (r == x->rank) continue;
        if (c->peer_ret[r]) cudaIpcCloseMemHandle(c->peer_ret[r]);
        if (c->peer_in[r]) cudaIpcCloseMemHandle(c->peer_in[r]);
    }
    float *bufs[] = {c->d_send, c->d_ret, c->d_in, c->d_xs, c->d_ys, c->d_out};
    for (size_t b = 0; b < sizeof bufs / sizeof bufs[0]; b++)
        if (bufs[b]) cudaFree(bufs[b]);
    cudaFree(c->d_idx), cudaFree(c->d_idx2);
    cudaFreeHost(c->h_idx), cudaFreeHost(c->h_idx2);
    free(c->peer_ret), free(c->peer_in), free(c->req);
    free(c);
}

static void post_signal(janus_xchg *x, int to, int tag) {
    struct janus_ipc *c = x->dev_state;
    if (c->n_req == c->cap_req) janus_die(NULL, "internal: CUDA IPC exchange: too many signals in flight");
    MPI_Isend(NULL, 0, MPI_BYTE, to, tag, x->world, &c->req[c->n_req++]);
}

// Rows attention rank a sends MoE rank m in micro-batch i: the offset of a's
// rows in m's buffer (sum over a' < a) and of m's rows in a's (sum over m' < m).
static int64_t off_in_moe(const janus_xchg *x, int i, int a, int m) {
    const int64_t *ram = x->rows_am + (size_t)i * x->n_attn * x->n_moe;
    int64_t o = 0;
    for (int b = 0; b < a; b++) o += ram[(size_t)b * x->n_moe + m];
    return o;
}
static int64_t off_in_attn(const janus_xchg *x, int i, int a, int m) {
    const int64_t *ram = x->rows_am + (size_t)i * x->n_attn * x->n_moe;
    int64_t o = 0;
    for (int q = 0; q < m; q++) o += ram[(size_t)a * x->n_moe + q];
    return o;
}

static void ipc_post_rows(janus_xchg *x, int l, int i, const float *d_rows) {
    struct janus_ipc *c = x->dev_state;
    janus_xmb_attn *a = &x->xa[i];
    const int M = x->n_moe, K = x->k, R = a->off[M];
    const size_t row = (size_t)c->H * sizeof(float);
    if ((size_t)R > c->rows_attn) janus_die(NULL, "internal: CUDA IPC exchange: %d rows exceed %zu", R, c->rows_attn);
    if (R == 0) return;
    memcpy(c->h_idx, a->pair, sizeof(int32_t) * R);
    CK(cudaMemcpyAsync(c->d_idx, c->h_idx, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    CK(jk_gather_rows(c->d_send, d_rows, c->d_idx, K, R, c->H, c->st)); // row r = token pair[r] / k
    for (int m = 0; m < M; m++) {
        if (!a->cnt[m]) continue;
        const int w = x->moe_world[m];
        float *dst = c->peer_in[w] + ((size_t)i * c->rows_moe + off_in_moe(x, i, x->attn_idx, m)) * c->H;
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
    // xs[g] = in[perm[g]]; run the experts; out[perm[g]] = ys[g] (a gather by the inverse).
    memcpy(c->h_idx, perm, sizeof(int32_t) * R);
    for (int g = 0; g < R; g++) c->h_idx2[perm[g]] = g;
    CK(cudaMemcpyAsync(c->d_idx, c->h_idx, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    CK(cudaMemcpyAsync(c->d_idx2, c->h_idx2, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    CK(jk_gather_rows(c->d_xs, in, c->d_idx, 1, R, c->H, c->st));
    if (!x->experts_dev_fn) janus_die(NULL, "internal: CUDA IPC exchange without a GPU expert hook");
    x->experts_dev_fn(x->experts_ctx, l, seg, max_rows, c->d_xs, c->d_ys, R);
    CK(jk_gather_rows(c->d_out, c->d_ys, c->d_idx2, 1, R, c->H, c->st));
    for (int a = 0; a < A; a++) {
        if (!q->cnt[a]) continue;
        const int w = x->attn_world[a];
        float *dst = c->peer_ret[w] + ((size_t)i * c->rows_attn + off_in_attn(x, i, a, x->moe_idx)) * c->H;
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
    if (R == 0) return;
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

static const janus_dev_xport ipc_xport = {"GPU to GPU through CUDA IPC", ipc_post_rows, ipc_serve, ipc_collect,
                                          ipc_finish_layer, ipc_free};
