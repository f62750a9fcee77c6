// comm/cudampi.c: the exchange payload through a CUDA-aware MPI (see cudampi.h).
#include "comm/cudampi.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(OPEN_MPI) && OPEN_MPI
#include <mpi-ext.h> // MPIX_CUDA_AWARE_SUPPORT, MPIX_Query_cuda_support
#endif

#include "cuda_check.h"
#include "layers.h"

#define CK(x) JANUS_CUDA_CK("CUDA-aware MPI exchange", x)

int janus_cuda_aware_mpi(const char **how) {
    const char *env = getenv("JANUS_CUDA_AWARE_MPI");
    if (env && strcmp(env, "0") && strcmp(env, "1"))
        janus_die_all(NULL, "JANUS_CUDA_AWARE_MPI=%s: expected 0 or 1", env);
    if (env) {
        *how = env[0] == '1' ? "JANUS_CUDA_AWARE_MPI=1" : "JANUS_CUDA_AWARE_MPI=0";
        return env[0] == '1';
    }
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
    *how = "MPIX_Query_cuda_support()";
    return MPIX_Query_cuda_support() == 1;
#elif defined(MPIX_CUDA_AWARE_SUPPORT)
    *how = "Open MPI built without CUDA support: MPIX_CUDA_AWARE_SUPPORT is 0";
    return 0;
#elif defined(MPIX_GPU_SUPPORT_CUDA)
    int yes = 0;
    *how = "MPIX_GPU_query_support(CUDA)";
    return MPIX_GPU_query_support(MPIX_GPU_SUPPORT_CUDA, &yes) == MPI_SUCCESS && yes;
#else
    *how = "this MPI has no CUDA-awareness query";
    return 0;
#endif
}

struct janus_cmpi {
    cudaStream_t st;
    int H, n_mb, M, A;
    size_t rows_attn, rows_moe;
    float *d_send, *d_ret;       // [n_mb, rows_attn, H] attention: rows by destination, outputs back
    float *d_in, *d_out;         // [n_mb, rows_moe, H] MoE: rows in ([a][e][rows]), outputs in that layout
    float *d_xs, *d_ys;          // [rows_moe, H] MoE: grouped by expert, expert outputs
    int32_t *d_idx, *d_idx2, *h_idx, *h_idx2;
    MPI_Request *req_a;          // [n_mb, 2M] attention: each micro-batch's sends and receives
    int *n_req_a;                // [n_mb]
    MPI_Request *req_m;          // [n_mb, A] MoE: each micro-batch's outputs home
    int *n_req_m;                // [n_mb]
    MPI_Datatype row;            // H floats
    bool managed;                // buffers in managed memory (JANUS_CUDA_MPI_MANAGED=1)
};

static const janus_dev_xport cmpi_xport; // the entry points, at the end

static float *buf(const struct janus_cmpi *c, size_t bytes) {
    if (!c->managed) return janus_cuda_alloc(bytes);
    void *p = NULL;
    CK(cudaMallocManaged(&p, bytes ? bytes : 4, cudaMemAttachGlobal));
    return p;
}

void janus_cudampi_init(janus_xchg *x, int max_tokens, void *stream, bool managed) {
    struct janus_cmpi *c = xcalloc(1, sizeof *c);
    c->managed = managed;
    c->st = (cudaStream_t)stream;
    c->H = x->H, c->n_mb = x->n_mb, c->M = x->n_moe, c->A = x->n_attn;
    c->rows_attn = (size_t)max_tokens * x->k;
    c->rows_moe = (size_t)x->n_attn * c->rows_attn;
    MPI_Type_contiguous(c->H, MPI_FLOAT, &c->row);
    MPI_Type_commit(&c->row);
    const size_t row = (size_t)c->H * sizeof(float);
    size_t idx = 1;
    if (x->attn_idx >= 0) {
        c->d_send = buf(c, c->n_mb * c->rows_attn * row), c->d_ret = buf(c, c->n_mb * c->rows_attn * row);
        c->req_a = xcalloc((size_t)c->n_mb * 2 * c->M, sizeof(MPI_Request));
        c->n_req_a = xcalloc(c->n_mb, sizeof(int));
        idx = c->rows_attn;
    }
    if (x->moe_idx >= 0) {
        c->d_in = buf(c, c->n_mb * c->rows_moe * row), c->d_out = buf(c, c->n_mb * c->rows_moe * row);
        c->d_xs = janus_cuda_alloc(c->rows_moe * row), c->d_ys = janus_cuda_alloc(c->rows_moe * row);
        c->req_m = xcalloc((size_t)c->n_mb * c->A, sizeof(MPI_Request));
        c->n_req_m = xcalloc(c->n_mb, sizeof(int));
        if (c->rows_moe > idx) idx = c->rows_moe;
    }
    c->d_idx = janus_cuda_alloc(idx * 4), c->d_idx2 = janus_cuda_alloc(idx * 4);
    CK(cudaMallocHost((void **)&c->h_idx, idx * 4));
    CK(cudaMallocHost((void **)&c->h_idx2, idx * 4));
    x->dev = &cmpi_xport, x->dev_state = c;
}

static void cmpi_free(janus_xchg *x) {
    struct janus_cmpi *c = x->dev_state;
    if (!c) return;
    cudaDeviceSynchronize();
    float *bufs[] = {c->d_send, c->d_ret, c->d_in, c->d_out, c->d_xs, c->d_ys};
    for (size_t b = 0; b < sizeof bufs / sizeof bufs[0]; b++)
        if (bufs[b]) cudaFree(bufs[b]);
    cudaFree(c->d_idx), cudaFree(c->d_idx2), cudaFreeHost(c->h_idx), cudaFreeHost(c->h_idx2);
    MPI_Type_free(&c->row);
    free(c->req_a), free(c->n_req_a), free(c->req_m), free(c->n_req_m);
    free(c);
}

// Attention side: rows gathered by destination, then to each MoE rank (its
// outputs' receives posted first). d_send[i] and d_ret[i] are free: collect
// waited for micro-batch i's requests before this layer's dispatch.
static void cmpi_post_rows(janus_xchg *x, int l, int i, const float *d_rows, const int32_t *ids, const float *d_w) {
    (void)ids, (void)d_w; // outputs come back per pair
    struct janus_cmpi *c = x->dev_state;
    janus_xmb_attn *a = &x->xa[i];
    const int R = a->off[c->M];
    if ((size_t)R > c->rows_attn) janus_die(NULL, "internal: CUDA-aware MPI exchange: %d rows exceed %zu", R, c->rows_attn);
    float *send = c->d_send + (size_t)i * c->rows_attn * c->H, *ret = c->d_ret + (size_t)i * c->rows_attn * c->H;
    if (R > 0) {
        memcpy(c->h_idx, a->pair, sizeof(int32_t) * R);
        CK(cudaMemcpyAsync(c->d_idx, c->h_idx, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
        CK(jk_gather_rows(send, d_rows, c->d_idx, x->k, R, c->H, c->st)); // row r = token pair[r] / k
        CK(cudaStreamSynchronize(c->st)); // the rows are in place before MPI reads them
    }
    MPI_Request *rq = c->req_a + (size_t)i * 2 * c->M;
    int n = 0;
    for (int m = 0; m < c->M; m++) {
        if (!a->cnt[m]) continue;
        MPI_Irecv(ret + (size_t)a->off[m] * c->H, a->cnt[m], c->row, x->moe_world[m], janus_xchg_tag(x, l, i, 1),
                  x->world, &rq[n++]);
        MPI_Isend(send + (size_t)a->off[m] * c->H, a->cnt[m], c->row, x->moe_world[m], janus_xchg_tag(x, l, i, 0),
                  x->world, &rq[n++]);
        x->t.rows_sent += a->cnt[m];
        x->t.bytes_sent += (int64_t)a->cnt[m] * c->H * 4;
    }
    c->n_req_a[i] = n;
}

// MoE side: rows in, experts, outputs home (sends completed by finish_layer).
static void cmpi_serve(janus_xchg *x, int l, int i, const int32_t *perm, const int32_t *seg, int R, int max_rows) {
    struct janus_cmpi *c = x->dev_state;
    janus_xmb_moe *q = &x->xm[i];
    if ((size_t)R > c->rows_moe) janus_die(NULL, "internal: CUDA-aware MPI exchange: %d rows exceed %zu", R, c->rows_moe);
    const double t0 = janus_now_s();
    float *in = c->d_in + (size_t)i * c->rows_moe * c->H, *out = c->d_out + (size_t)i * c->rows_moe * c->H;
    MPI_Request *rq = c->req_m + (size_t)i * c->A; // free now: finish_layer completed the last layer's
    int n = 0;
    for (int a = 0; a < c->A; a++)
        if (q->cnt[a])
            MPI_Irecv(in + (size_t)q->off[a] * c->H, q->cnt[a], c->row, x->attn_world[a], janus_xchg_tag(x, l, i, 0),
                      x->world, &rq[n++]);
    MPI_Waitall(n, rq, MPI_STATUSES_IGNORE);
    const double t1 = janus_now_s();
    x->t.serve_wait_s += t1 - t0;
    c->n_req_m[i] = 0;
    if (R == 0) return;
    memcpy(c->h_idx, perm, sizeof(int32_t) * R);
    for (int g = 0; g < R; g++) c->h_idx2[perm[g]] = g;
    CK(cudaMemcpyAsync(c->d_idx, c->h_idx, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    CK(cudaMemcpyAsync(c->d_idx2, c->h_idx2, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    CK(jk_gather_rows(c->d_xs, in, c->d_idx, 1, R, c->H, c->st));
    if (!x->experts_dev_fn) janus_die(NULL, "internal: CUDA-aware MPI exchange without a GPU expert hook");
    x->experts_dev_fn(x->experts_ctx, l, seg, max_rows, c->d_xs, c->d_ys, R);
    CK(jk_gather_rows(out, c->d_ys, c->d_idx2, 1, R, c->H, c->st));
    CK(cudaStreamSynchronize(c->st)); // the outputs are in place before MPI reads them (and h_idx* reusable)
    n = 0;
    for (int a = 0; a < c->A; a++)
        if (q->cnt[a])
            MPI_Isend(out + (size_t)q->off[a] * c->H, q->cnt[a], c->row, x->attn_world[a], janus_xchg_tag(x, l, i, 1),
                      x->world, &rq[n++]);
    c->n_req_m[i] = n;
    x->t.rows_served += R;
    x->t.experts_s += janus_now_s() - t1;
}

// Attention side: (l, i)'s outputs home, into d_y in pair order.
static void cmpi_collect(janus_xchg *x, int i, float *d_y) {
    struct janus_cmpi *c = x->dev_state;
    janus_xmb_attn *a = &x->xa[i];
    const int R = a->off[c->M];
    MPI_Waitall(c->n_req_a[i], c->req_a + (size_t)i * 2 * c->M, MPI_STATUSES_IGNORE);
    c->n_req_a[i] = 0;
    if (R == 0) return;
    for (int r = 0; r < R; r++) c->h_idx2[a->pair[r]] = r;
    CK(cudaMemcpyAsync(c->d_idx2, c->h_idx2, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    CK(jk_gather_rows(d_y, c->d_ret + (size_t)i * c->rows_attn * c->H, c->d_idx2, 1, R, c->H, c->st));
    CK(cudaStreamSynchronize(c->st)); // h_idx2 is reused next
}

static void cmpi_finish_layer(janus_xchg *x) {
    struct janus_cmpi *c = x->dev_state;
    if (!c->req_m) return;
    for (int i = 0; i < c->n_mb; i++) {
        MPI_Waitall(c->n_req_m[i], c->req_m + (size_t)i * c->A, MPI_STATUSES_IGNORE);
        c->n_req_m[i] = 0;
    }
}

static const janus_dev_xport cmpi_xport = {"GPU to GPU through a CUDA-aware MPI", cmpi_post_rows, cmpi_serve,
                                           cmpi_collect, cmpi_finish_layer, cmpi_free, NULL};
