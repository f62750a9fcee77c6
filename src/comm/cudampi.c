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
#include "xchg.h"

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
    // Summed payload (JANUS_XCHG_DEDUP and JANUS_XCHG_SUMS, default 1): to each
    // MoE rank a token's row once, each pair's token row (an int) and each
    // token row's header (comm/ipc.c's: its pairs there, their weights);
    // back one weighted sum per token row. MPI receives fewer rows than a
    // receive posts, so the pair counts of the routing bound every message
    // and nothing more is exchanged.
    bool sums;
    int K;
    MPI_Comm c_idx, c_hdr;       // the index and header messages (the rows keep x->world)
    int32_t *d_isend, *d_hsend;  // [n_mb, rows_attn], [n_mb, rows_attn, 2K] attention: index, headers out
    int32_t **d_htab;            // [n_mb] device array: d_hsend of each micro-batch (jk_xchg_put_headers)
    int32_t *d_lead, *d_slot;    // [n_mb, rows_attn] attention: each pair's lead flag and the row of its sum
    int32_t *h_tok, *h_src, *h_ent, *h_lead, *h_slot; // pinned attention staging ([rows_attn], ent 2 + 2K each)
    int32_t *d_tok, *d_ent;      // device copies of h_tok, h_ent
    int32_t *h_mark, *h_rowof, *h_mof; // [max_tokens], [rows_attn], [rows_attn]
    int *first, *n_tok;          // [M] token rows per MoE rank in this micro-batch's send buffer
    int64_t *reg;                // [M] this rank's region in each MoE rank's receive layout
    int32_t *d_iin, *d_hin;      // [n_mb, rows_moe], [n_mb, rows_moe, 2K] MoE: index, headers in
    float **d_otab;              // [n_mb] device array: d_out of each micro-batch (jk_xchg_return_sums)
    int32_t *d_inv;              // [rows_moe] MoE scratch
    int *ntok_in;                // [n_mb, A] MoE: token rows from each attention rank
    MPI_Status *st_in;           // [3A]
    int64_t pairs, out, back;    // this attention rank's payload (rows)
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
    c->H = x->H, c->n_mb = x->n_mb, c->M = x->n_moe, c->A = x->n_attn, c->K = x->k;
    const char *dd = getenv("JANUS_XCHG_DEDUP"), *su = getenv("JANUS_XCHG_SUMS");
    if (dd && strcmp(dd, "0") && strcmp(dd, "1")) janus_die_all(NULL, "JANUS_XCHG_DEDUP=%s: expected 0 or 1", dd);
    if (su && strcmp(su, "0") && strcmp(su, "1")) janus_die_all(NULL, "JANUS_XCHG_SUMS=%s: expected 0 or 1", su);
    int sums = (!dd || dd[0] == '1') && (!su || su[0] == '1') && x->k <= JK_XCHG_SUM_MAX_K && x->H % 4 == 0;
    MPI_Allreduce(MPI_IN_PLACE, &sums, 1, MPI_INT, MPI_MIN, x->world);
    c->sums = sums;
    MPI_Comm_dup(x->world, &c->c_idx);
    MPI_Comm_dup(x->world, &c->c_hdr);
    c->rows_attn = (size_t)max_tokens * x->k;
    c->rows_moe = (size_t)x->n_attn * c->rows_attn;
    MPI_Type_contiguous(c->H, MPI_FLOAT, &c->row);
    MPI_Type_commit(&c->row);
    const size_t row = (size_t)c->H * sizeof(float);
    size_t idx = 1;
    const size_t K2 = 2 * (size_t)x->k;
    if (x->attn_idx >= 0) {
        c->d_send = buf(c, c->n_mb * c->rows_attn * row), c->d_ret = buf(c, c->n_mb * c->rows_attn * row);
        c->req_a = xcalloc((size_t)c->n_mb * 4 * c->M, sizeof(MPI_Request));
        if (c->sums) {
            const size_t ra = c->rows_attn, nmb = c->n_mb;
            c->d_isend = (int32_t *)buf(c, 4 * nmb * ra), c->d_hsend = (int32_t *)buf(c, 4 * nmb * ra * K2);
            int32_t **tab = xcalloc(nmb, sizeof(int32_t *));
            for (size_t i = 0; i < nmb; i++) tab[i] = c->d_hsend + i * ra * K2;
            c->d_htab = janus_cuda_alloc(sizeof(int32_t *) * nmb);
            CK(cudaMemcpy(c->d_htab, tab, sizeof(int32_t *) * nmb, cudaMemcpyHostToDevice));
            free(tab);
            c->d_lead = janus_cuda_alloc(4 * nmb * ra), c->d_slot = janus_cuda_alloc(4 * nmb * ra);
            CK(cudaMallocHost((void **)&c->h_tok, 4 * ra));
            CK(cudaMallocHost((void **)&c->h_src, 4 * ra));
            CK(cudaMallocHost((void **)&c->h_ent, 4 * ra * (2 + K2)));
            CK(cudaMallocHost((void **)&c->h_lead, 4 * ra));
            CK(cudaMallocHost((void **)&c->h_slot, 4 * ra));
            c->d_tok = janus_cuda_alloc(4 * ra), c->d_ent = janus_cuda_alloc(4 * ra * (2 + K2));
            c->h_mark = xmalloc(4 * (size_t)max_tokens), c->h_rowof = xmalloc(4 * ra), c->h_mof = xmalloc(4 * ra);
            for (int t = 0; t < max_tokens; t++) c->h_mark[t] = -1;
            c->first = xcalloc(c->M, sizeof(int)), c->n_tok = xcalloc(c->M, sizeof(int));
            c->reg = xcalloc(c->M, sizeof(int64_t));
        }
        c->n_req_a = xcalloc(c->n_mb, sizeof(int));
        idx = c->rows_attn;
    }
    if (x->moe_idx >= 0) {
        c->d_in = buf(c, c->n_mb * c->rows_moe * row), c->d_out = buf(c, c->n_mb * c->rows_moe * row);
        c->d_xs = janus_cuda_alloc(c->rows_moe * row), c->d_ys = janus_cuda_alloc(c->rows_moe * row);
        c->req_m = xcalloc((size_t)c->n_mb * 3 * c->A, sizeof(MPI_Request));
        c->n_req_m = xcalloc(c->n_mb, sizeof(int));
        c->st_in = xcalloc(3 * (size_t)c->A, sizeof(MPI_Status));
        c->ntok_in = xcalloc((size_t)c->n_mb * c->A, sizeof(int));
        if (c->sums) {
            const size_t rm = c->rows_moe, nmb = c->n_mb;
            c->d_iin = (int32_t *)buf(c, 4 * nmb * rm), c->d_hin = (int32_t *)buf(c, 4 * nmb * rm * K2);
            float **tab = xcalloc(nmb, sizeof(float *));
            for (size_t i = 0; i < nmb; i++) tab[i] = c->d_out + i * rm * c->H;
            c->d_otab = janus_cuda_alloc(sizeof(float *) * nmb);
            CK(cudaMemcpy(c->d_otab, tab, sizeof(float *) * nmb, cudaMemcpyHostToDevice));
            free(tab);
            c->d_inv = janus_cuda_alloc(4 * rm);
        }
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
    janus_log("CUDA-aware MPI exchange: outputs back %s", c->sums ? "once per (token, MoE rank), summed there"
                                                                  : "once per (token, expert) pair");
    if (x->attn_idx >= 0) {
        janus_log("CUDA-aware MPI exchange: %lld (token, expert) pairs went out as %lld rows and came back as %lld rows "
                  "(rank 0; %.2f and %.2f pairs per row)", (long long)c->pairs, (long long)c->out, (long long)c->back,
                  c->out ? (double)c->pairs / c->out : 0.0, c->back ? (double)c->pairs / c->back : 0.0);
        janus_vlog("rank %d: %lld pairs, %lld rows out, %lld rows back", x->rank, (long long)c->pairs,
                   (long long)c->out, (long long)c->back);
    }
    void *bufs[] = {c->d_send, c->d_ret, c->d_in, c->d_out, c->d_xs, c->d_ys, c->d_isend, c->d_hsend, c->d_htab,
                    c->d_lead, c->d_slot, c->d_tok, c->d_ent, c->d_iin, c->d_hin, c->d_otab, c->d_inv};
    for (size_t b = 0; b < sizeof bufs / sizeof bufs[0]; b++)
        if (bufs[b]) cudaFree(bufs[b]);
    void *pin[] = {c->h_tok, c->h_src, c->h_ent, c->h_lead, c->h_slot};
    for (size_t b = 0; b < sizeof pin / sizeof pin[0]; b++)
        if (pin[b]) cudaFreeHost(pin[b]);
    cudaFree(c->d_idx), cudaFree(c->d_idx2), cudaFreeHost(c->h_idx), cudaFreeHost(c->h_idx2);
    MPI_Type_free(&c->row);
    MPI_Comm_free(&c->c_idx);
    MPI_Comm_free(&c->c_hdr);
    free(c->req_a), free(c->n_req_a), free(c->req_m), free(c->n_req_m), free(c->st_in), free(c->ntok_in);
    free(c->h_mark), free(c->h_rowof), free(c->h_mof), free(c->first), free(c->n_tok), free(c->reg);
    free(c);
}


// Summed payload, attention side: per MoE rank the distinct tokens of this
// rank's pairs there (token order) gathered into d_send, each pair's token row
// in m's receive layout (index), each token row's header (its pairs there by
// (expert, slot): receive rows and weights), and each pair's lead flag and
// the row its sum comes back to (this rank's region for m in d_ret, token row
// order). Then the sends and the sums' receives.
static void post_summed(janus_xchg *x, int l, int i, const float *d_rows, const int32_t *ids, const float *d_w) {
    struct janus_cmpi *c = x->dev_state;
    janus_xmb_attn *a = &x->xa[i];
    const int M = c->M, K = c->K, P = a->off[M], W = 2 + 2 * K;
    if (P > 0 && !d_w) janus_die(NULL, "internal: CUDA-aware MPI exchange: outputs summed without router weights");
    janus_xchg_rows1 d = {.tok = c->h_tok, .src = c->h_src, .first = c->first, .n_tok = c->n_tok, .reg = c->reg,
                          .mark = c->h_mark, .rowof = c->h_rowof, .mof = c->h_mof, .lead = c->h_lead, .rank = c->h_slot,
                          .ent = c->h_ent};
    const int n = janus_xchg_rows_once(x, i, ids, &d), ne = d.n_ent;
    int32_t *tok = c->h_tok, *src = c->h_src, *ent = c->h_ent;
    for (int e = 0; e < ne; e++) { // {m, rank} -> {micro-batch i's header buffer, m's token rows first[m] + rank}
        int32_t *en = ent + (size_t)e * W;
        en[1] += c->first[en[0]], en[0] = i;
    }
    for (int q = 0; q < P; q++) c->h_slot[q] += a->off[c->h_mof[q]]; // rank -> the sum's row: m's region of d_ret
    const size_t ra = c->rows_attn, K2 = 2 * (size_t)K;
    float *send = c->d_send + (size_t)i * ra * c->H, *ret = c->d_ret + (size_t)i * ra * c->H;
    int32_t *isend = c->d_isend + (size_t)i * ra, *hsend = c->d_hsend + (size_t)i * ra * K2;
    CK(cudaMemcpyAsync(c->d_tok, tok, sizeof(int32_t) * n, cudaMemcpyHostToDevice, c->st));
    CK(jk_gather_rows(send, d_rows, c->d_tok, 1, n, c->H, c->st));
    CK(cudaMemcpyAsync(isend, src, sizeof(int32_t) * P, cudaMemcpyHostToDevice, c->st));
    CK(cudaMemcpyAsync(c->d_ent, ent, sizeof(int32_t) * W * (size_t)ne, cudaMemcpyHostToDevice, c->st));
    CK(jk_xchg_put_headers(c->d_htab, c->d_ent, d_w, ne, K, c->st));
    CK(cudaMemcpyAsync(c->d_lead + ra * i, c->h_lead, sizeof(int32_t) * P, cudaMemcpyHostToDevice, c->st));
    CK(cudaMemcpyAsync(c->d_slot + ra * i, c->h_slot, sizeof(int32_t) * P, cudaMemcpyHostToDevice, c->st));
    CK(cudaStreamSynchronize(c->st)); // rows, index and headers in place before MPI reads them (and staging reusable)
    MPI_Request *rq = c->req_a + (size_t)i * 4 * M;
    int nr = 0;
    for (int m = 0; m < M; m++) {
        if (!a->cnt[m]) continue;
        const int w = x->moe_world[m], tg0 = janus_xchg_tag(x, l, i, 0), tg1 = janus_xchg_tag(x, l, i, 1);
        MPI_Irecv(ret + (size_t)a->off[m] * c->H, a->cnt[m], c->row, w, tg1, x->world, &rq[nr++]); // up to cnt sums
        MPI_Isend(send + (size_t)c->first[m] * c->H, c->n_tok[m], c->row, w, tg0, x->world, &rq[nr++]);
        MPI_Isend(isend + a->off[m], a->cnt[m], MPI_INT32_T, w, tg0, c->c_idx, &rq[nr++]);
        MPI_Isend(hsend + (size_t)c->first[m] * K2, (int)(c->n_tok[m] * K2), MPI_INT32_T, w, tg0, c->c_hdr, &rq[nr++]);
        x->t.rows_sent += a->cnt[m];
        x->t.bytes_sent += (int64_t)c->n_tok[m] * c->H * 4;
    }
    c->n_req_a[i] = nr;
    c->pairs += P, c->out += n, c->back += n;
}

// Attention side: rows gathered by destination, then to each MoE rank (its
// outputs' receives posted first). d_send[i] and d_ret[i] are free: collect
// waited for micro-batch i's requests before this layer's dispatch.
static void cmpi_post_rows(janus_xchg *x, int l, int i, const float *d_rows, const int32_t *ids, const float *d_w) {
    struct janus_cmpi *c = x->dev_state;
    janus_xmb_attn *a = &x->xa[i];
    const int R = a->off[c->M];
    if ((size_t)R > c->rows_attn) janus_die(NULL, "internal: CUDA-aware MPI exchange: %d rows exceed %zu", R, c->rows_attn);
    if (c->sums) {
        post_summed(x, l, i, d_rows, ids, d_w);
        return;
    }
    c->pairs += R, c->out += R, c->back += R;
    float *send = c->d_send + (size_t)i * c->rows_attn * c->H, *ret = c->d_ret + (size_t)i * c->rows_attn * c->H;
    if (R > 0) {
        memcpy(c->h_idx, a->pair, sizeof(int32_t) * R);
        CK(cudaMemcpyAsync(c->d_idx, c->h_idx, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
        CK(jk_gather_rows(send, d_rows, c->d_idx, x->k, R, c->H, c->st)); // row r = token pair[r] / k
        CK(cudaStreamSynchronize(c->st)); // the rows are in place before MPI reads them
    }
    MPI_Request *rq = c->req_a + (size_t)i * 4 * c->M;
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
    MPI_Request *rq = c->req_m + (size_t)i * 3 * c->A; // free now: finish_layer completed the last layer's
    int n = 0;
    const size_t K2 = 2 * (size_t)c->K;
    int32_t *iin = c->sums ? c->d_iin + (size_t)i * c->rows_moe : NULL;
    int32_t *hin = c->sums ? c->d_hin + (size_t)i * c->rows_moe * K2 : NULL;
    for (int a = 0; a < c->A; a++) {
        if (!q->cnt[a]) continue;
        const int w = x->attn_world[a], tg = janus_xchg_tag(x, l, i, 0);
        MPI_Irecv(in + (size_t)q->off[a] * c->H, q->cnt[a], c->row, w, tg, x->world, &rq[n++]); // up to cnt rows
        if (!c->sums) continue;
        MPI_Irecv(iin + q->off[a], q->cnt[a], MPI_INT32_T, w, tg, c->c_idx, &rq[n++]);
        MPI_Irecv(hin + (size_t)q->off[a] * K2, (int)(q->cnt[a] * K2), MPI_INT32_T, w, tg, c->c_hdr, &rq[n++]);
    }
    MPI_Waitall(n, rq, c->st_in);
    int *ntok = c->ntok_in + (size_t)i * c->A; // token rows each attention rank sent (summed: sums back)
    for (int a = 0, k = 0; a < c->A; a++) {
        ntok[a] = 0;
        if (!q->cnt[a]) continue;
        if (c->sums) {
            MPI_Get_count(&c->st_in[k], c->row, &ntok[a]);
            if (ntok[a] < 1 || ntok[a] > q->cnt[a])
                janus_die(NULL, "internal: CUDA-aware MPI exchange: %d token rows from attention rank %d for %d pairs",
                          ntok[a], a, q->cnt[a]);
        } else {
            ntok[a] = q->cnt[a];
        }
        k += c->sums ? 3 : 1;
    }
    const double t1 = janus_now_s();
    x->t.serve_wait_s += t1 - t0;
    c->n_req_m[i] = 0;
    if (R == 0) return;
    memcpy(c->h_idx, perm, sizeof(int32_t) * R);
    CK(cudaMemcpyAsync(c->d_idx, c->h_idx, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    if (c->sums) { // each pair's row through its token row
        CK(jk_xchg_gather_rows_via(c->d_xs, in, iin, c->d_idx, NULL, R, c->H, c->st));
    } else {
        for (int g = 0; g < R; g++) c->h_idx2[perm[g]] = g;
        CK(cudaMemcpyAsync(c->d_idx2, c->h_idx2, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
        CK(jk_gather_rows(c->d_xs, in, c->d_idx, 1, R, c->H, c->st));
    }
    if (!x->experts_dev_fn) janus_die(NULL, "internal: CUDA-aware MPI exchange without a GPU expert hook");
    x->experts_dev_fn(x->experts_ctx, l, seg, max_rows, c->d_xs, c->d_ys, R);
    if (c->sums) // the sums at their token rows of d_out[i]: attention rank a's are off[a] .. off[a] + ntok[a]
        CK(jk_xchg_return_sums(c->d_otab + i, 0, c->d_ys, c->d_idx, iin, hin, c->d_inv, NULL, NULL, NULL, R, c->K,
                               c->H, c->st));
    else
        CK(jk_gather_rows(out, c->d_ys, c->d_idx2, 1, R, c->H, c->st));
    CK(cudaStreamSynchronize(c->st)); // the outputs are in place before MPI reads them (and h_idx* reusable)
    n = 0;
    for (int a = 0; a < c->A; a++)
        if (q->cnt[a])
            MPI_Isend(out + (size_t)q->off[a] * c->H, ntok[a], c->row, x->attn_world[a], janus_xchg_tag(x, l, i, 1),
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
    MPI_Waitall(c->n_req_a[i], c->req_a + (size_t)i * 4 * c->M, MPI_STATUSES_IGNORE);
    c->n_req_a[i] = 0;
    if (R == 0 || c->sums) return; // summed: the combine reads them in place (cmpi_sums)
    for (int r = 0; r < R; r++) c->h_idx2[a->pair[r]] = r;
    CK(cudaMemcpyAsync(c->d_idx2, c->h_idx2, sizeof(int32_t) * R, cudaMemcpyHostToDevice, c->st));
    CK(jk_gather_rows(d_y, c->d_ret + (size_t)i * c->rows_attn * c->H, c->d_idx2, 1, R, c->H, c->st));
    CK(cudaStreamSynchronize(c->st)); // h_idx2 is reused next
}

static void cmpi_finish_layer(janus_xchg *x) {
    struct janus_cmpi *c = x->dev_state;
    if (!c->req_m) return;
    for (int i = 0; i < c->n_mb; i++) {
        MPI_Waitall(c->n_req_m[i], c->req_m + (size_t)i * 3 * c->A, MPI_STATUSES_IGNORE);
        c->n_req_m[i] = 0;
    }
}

// Summed outputs: the combine reads micro-batch i's return buffer through each
// pair's sum row, the leads' only.
static bool cmpi_sums(const janus_xchg *x, int i, const float **y, const int32_t **slot, const int32_t **lead) {
    const struct janus_cmpi *c = x->dev_state;
    if (!c->sums) return false;
    *y = c->d_ret + (size_t)i * c->rows_attn * c->H;
    *slot = c->d_slot + c->rows_attn * i;
    *lead = c->d_lead + c->rows_attn * i;
    return true;
}

static const janus_dev_xport cmpi_xport = {"GPU to GPU through a CUDA-aware MPI", cmpi_post_rows, cmpi_serve,
                                           cmpi_collect, cmpi_finish_layer, cmpi_free, cmpi_sums};
