// comm/hier.c: the hierarchical exchange path (see hier.h). Nodes are blocks of
// node_size consecutive world ranks; attention ranks and MoE ranks of one node
// are contiguous ranges of their pools, so every per-node block below is one
// contiguous slice of a sender's or receiver's row layout.
#include "comm/hier.h"

#include <stdlib.h>

enum { F1, F2, F3, B1, B2, B3, NCOMM };
enum { FWD, FWD_IN, FWD_OUT, BACK_IN, BACK_IN2, BACK_OUT, NBUF };

typedef struct {
    float *buf[NBUF];
    size_t cap[NBUF]; // rows
} hier_mb;

struct janus_hier {
    MPI_Comm c[NCOMM];
    int n_nodes;
    MPI_Request *rq;   // [2 * n_nodes * (A + M) + 2] a gateway stage's requests
    size_t *blk, *iblk; // [n_nodes + 1] block starts per node
    hier_mb *mb;       // [n_mb]
    MPI_Request *req;  // the gateway's sends in flight until the layer ends
    int n_req, cap_req;
    MPI_Datatype row;  // 4H bytes (H floats, or a side row's int32 / float bits): counts are rows (no int overflow)
};

static int node_of(const janus_xchg *x, int w) { return w / x->node_size; }
static int gateway(const janus_xchg *x, int node) { return node * x->node_size; }
bool janus_hier_remote(const janus_xchg *x, int a, int b) { return node_of(x, a) != node_of(x, b); }

// Pool members on node N: attention [a0, a1), MoE [m0, m1).
static void a_range(const janus_xchg *x, int N, int *a0, int *a1) {
    *a0 = *a1 = 0;
    bool first = true;
    for (int a = 0; a < x->n_attn; a++)
        if (node_of(x, x->attn_world[a]) == N) {
            if (first) *a0 = a, first = false;
            *a1 = a + 1;
        }
}
static void m_range(const janus_xchg *x, int N, int *m0, int *m1) {
    *m0 = *m1 = 0;
    bool first = true;
    for (int m = 0; m < x->n_moe; m++)
        if (node_of(x, x->moe_world[m]) == N) {
            if (first) *m0 = m, first = false;
            *m1 = m + 1;
        }
}

// Host payload rows between attention rank a and MoE rank m in micro-batch i
// (of the layer under way): tab = x->fwd_am (rows out) or x->back_am (back).
static int64_t Rm(const janus_xchg *x, const int64_t *tab, int i, int a, int m) {
    return tab[((size_t)i * x->n_attn + a) * x->n_moe + m];
}
#define R(x, a, m) Rm(x, tab, i, a, m)

// Rows between attention ranks [a0,a1) and MoE ranks [m0,m1) in micro-batch i.
static int64_t block_rows_i(const janus_xchg *x, const int64_t *tab, int i, int a0, int a1, int m0, int m1) {
    int64_t s = 0;
    for (int a = a0; a < a1; a++)
        for (int m = m0; m < m1; m++) s += Rm(x, tab, i, a, m);
    return s;
}
#define block_rows(x, a0, a1, m0, m1) block_rows_i(x, tab, i, a0, a1, m0, m1)

static float *ensure(struct janus_hier *h, int i, int b, size_t rows, int H) {
    hier_mb *mb = &h->mb[i];
    if (rows > mb->cap[b]) {
        mb->cap[b] = rows + rows / 2 + 16;
        mb->buf[b] = xrealloc(mb->buf[b], sizeof(float) * mb->cap[b] * H);
    }
    return mb->buf[b];
}

static MPI_Request *gw_req(struct janus_hier *h) {
    if (h->n_req == h->cap_req) {
        h->cap_req = h->cap_req ? 2 * h->cap_req : 64;
        h->req = xrealloc(h->req, sizeof(MPI_Request) * h->cap_req);
    }
    return &h->req[h->n_req++];
}

static int tag(const janus_xchg *x, int l, int i) { return (l * x->n_mb + i) % 30000; }

void janus_hier_init(janus_xchg *x) {
    struct janus_hier *h = xcalloc(1, sizeof *h);
    for (int c = 0; c < NCOMM; c++) MPI_Comm_dup(x->world, &h->c[c]);
    MPI_Type_contiguous(4 * x->H, MPI_BYTE, &h->row); // as exchange.c's rows
    MPI_Type_commit(&h->row);
    h->n_nodes = (x->size + x->node_size - 1) / x->node_size;
    h->mb = xcalloc(x->n_mb, sizeof(hier_mb));
    h->rq = xmalloc(sizeof(MPI_Request) * (size_t)(2 * h->n_nodes * (x->n_attn + x->n_moe) + 2));
    h->blk = xcalloc(h->n_nodes + 1, sizeof(size_t));
    h->iblk = xcalloc(h->n_nodes + 1, sizeof(size_t));
    x->hier = h;
}

void janus_hier_free(janus_xchg *x) {
    struct janus_hier *h = x->hier;
    if (!h) return;
    for (int c = 0; c < NCOMM; c++) MPI_Comm_free(&h->c[c]);
    MPI_Type_free(&h->row);
    for (int i = 0; i < x->n_mb; i++)
        for (int b = 0; b < NBUF; b++) free(h->mb[i].buf[b]);
    free(h->mb);
    free(h->req);
    free(h->rq), free(h->blk), free(h->iblk);
    free(h);
    x->hier = NULL;
}

void janus_hier_attn_post(janus_xchg *x, int l, int i) {
    struct janus_hier *h = x->hier;
    janus_xmb_attn *a = &x->xa[i];
    const int me = x->rank, Nme = node_of(x, me), H = x->H, gw = gateway(x, Nme);
    for (int N = 0; N < h->n_nodes; N++) {
        if (N == Nme) continue;
        int m0, m1;
        m_range(x, N, &m0, &m1);
        if (m1 <= m0 || a->off[m1] == a->off[m0]) continue;
        MPI_Irecv(a->recv + (size_t)a->boff[m0] * H, a->boff[m1] - a->boff[m0], h->row, gw, tag(x, l, i), h->c[B3],
                  &a->req[a->n_req++]);
        MPI_Isend(a->send + (size_t)a->foff[m0] * H, a->foff[m1] - a->foff[m0], h->row, gw, tag(x, l, i), h->c[F1],
                  &a->req[a->n_req++]);
    }
}

void janus_hier_gateway_forward(janus_xchg *x, int l, int i) {
    struct janus_hier *h = x->hier;
    const int64_t *tab = x->fwd_am;
    const int me = x->rank, Ng = node_of(x, me), H = x->H, T = tag(x, l, i), NN = h->n_nodes;
    if (gateway(x, Ng) != me) return;
    int la0, la1, lm0, lm1;
    a_range(x, Ng, &la0, &la1);
    m_range(x, Ng, &lm0, &lm1);
    // Stage 1: rows of local attention ranks for each remote node, layout [N][a][m][rows].
    size_t tot = 0;
    for (int N = 0; N < NN; N++) {
        int m0, m1;
        m_range(x, N, &m0, &m1);
        if (N != Ng && m1 > m0) tot += block_rows(x, la0, la1, m0, m1);
    }
    float *fwd = ensure(h, i, FWD, tot, H);
    MPI_Request *rq = h->rq;
    int nr = 0;
    size_t pos = 0;
    size_t *blk = h->blk; // start of node N's block
    for (int N = 0; N < NN; N++) {
        blk[N] = pos;
        int m0, m1;
        m_range(x, N, &m0, &m1);
        if (N == Ng || m1 <= m0) continue;
        for (int a = la0; a < la1; a++) {
            int64_t n = block_rows(x, a, a + 1, m0, m1);
            if (n) MPI_Irecv(fwd + pos * H, (int)n, h->row, x->attn_world[a], T, h->c[F1], &rq[nr++]);
            pos += n;
        }
    }
    blk[NN] = pos;
    MPI_Waitall(nr, rq, MPI_STATUSES_IGNORE);
    nr = 0;
    // Stage 2: one message per node pair, [a in source node][m in my node][rows].
    size_t tin = 0;
    for (int Ns = 0; Ns < NN; Ns++) {
        int a0, a1;
        a_range(x, Ns, &a0, &a1);
        if (Ns != Ng && a1 > a0 && lm1 > lm0) tin += block_rows(x, a0, a1, lm0, lm1);
    }
    float *fin = ensure(h, i, FWD_IN, tin, H);
    size_t *iblk = h->iblk;
    pos = 0;
    for (int Ns = 0; Ns < NN; Ns++) {
        iblk[Ns] = pos;
        int a0, a1;
        a_range(x, Ns, &a0, &a1);
        if (Ns == Ng || a1 <= a0 || lm1 <= lm0) continue;
        int64_t n = block_rows(x, a0, a1, lm0, lm1);
        if (n) MPI_Irecv(fin + pos * H, (int)n, h->row, gateway(x, Ns), T, h->c[F2], &rq[nr++]);
        pos += n;
    }
    for (int N = 0; N < NN; N++) {
        size_t n = blk[N + 1] - blk[N];
        if (N != Ng && n) MPI_Isend(fwd + blk[N] * H, (int)n, h->row, gateway(x, N), T, h->c[F2], &rq[nr++]);
    }
    MPI_Waitall(nr, rq, MPI_STATUSES_IGNORE);
    // Stage 3: to each local MoE rank m, per source node, the rows of every
    // attention rank of that node in attention order: [m][Ns][a][rows].
    float *fout = ensure(h, i, FWD_OUT, tin, H);
    size_t opos = 0;
    for (int m = lm0; m < lm1; m++)
        for (int Ns = 0; Ns < NN; Ns++) {
            int a0, a1;
            a_range(x, Ns, &a0, &a1);
            if (Ns == Ng || a1 <= a0) continue;
            size_t start = opos, src = iblk[Ns];
            for (int a = a0; a < a1; a++) {
                size_t before = 0; // rows of a for local MoE ranks below m
                for (int q = lm0; q < m; q++) before += R(x, a, q);
                int64_t n = R(x, a, m);
                memcpy(fout + opos * H, fin + (src + before) * H, sizeof(float) * n * H);
                opos += n;
                src += block_rows(x, a, a + 1, lm0, lm1);
            }
            if (opos > start)
                MPI_Isend(fout + start * H, (int)(opos - start), h->row, x->moe_world[m], T, h->c[F3], gw_req(h));
        }
}

void janus_hier_moe_post_recv(janus_xchg *x, int l, int i) {
    struct janus_hier *h = x->hier;
    const int64_t *tab = x->fwd_am;
    janus_xmb_moe *q = &x->xm[i];
    const int me = x->rank, Nm = node_of(x, me), H = x->H, mi = x->moe_idx;
    for (int Ns = 0; Ns < h->n_nodes; Ns++) {
        int a0, a1;
        a_range(x, Ns, &a0, &a1);
        if (Ns == Nm || a1 <= a0) continue;
        int64_t n = block_rows(x, a0, a1, mi, mi + 1);
        if (n)
            MPI_Irecv(q->in + (size_t)q->foff[a0] * H, (int)n, h->row, gateway(x, Nm), tag(x, l, i), h->c[F3],
                      &q->req[q->n_req++]);
    }
}

void janus_hier_moe_send(janus_xchg *x, int l, int i) {
    struct janus_hier *h = x->hier;
    const int64_t *tab = x->back_am;
    janus_xmb_moe *q = &x->xm[i];
    const int me = x->rank, Nm = node_of(x, me), H = x->H, mi = x->moe_idx;
    for (int Ns = 0; Ns < h->n_nodes; Ns++) {
        int a0, a1;
        a_range(x, Ns, &a0, &a1);
        if (Ns == Nm || a1 <= a0) continue;
        int64_t n = block_rows(x, a0, a1, mi, mi + 1);
        if (n)
            MPI_Isend(q->out + (size_t)q->boff[a0] * H, (int)n, h->row, gateway(x, Nm), tag(x, l, i), h->c[B1],
                      &q->req[q->n_req++]);
    }
}

void janus_hier_gateway_back(janus_xchg *x, int l, int i) {
    struct janus_hier *h = x->hier;
    const int64_t *tab = x->back_am;
    const int me = x->rank, Ng = node_of(x, me), H = x->H, T = tag(x, l, i), NN = h->n_nodes;
    if (gateway(x, Ng) != me) return;
    int la0, la1, lm0, lm1;
    a_range(x, Ng, &la0, &la1);
    m_range(x, Ng, &lm0, &lm1);
    // Stage 1 back: outputs of local MoE ranks for each remote node, [Ns][m][a][rows].
    size_t tot = 0;
    for (int Ns = 0; Ns < NN; Ns++) {
        int a0, a1;
        a_range(x, Ns, &a0, &a1);
        if (Ns != Ng && a1 > a0) tot += block_rows(x, a0, a1, lm0, lm1);
    }
    float *bin = ensure(h, i, BACK_IN, tot, H);
    MPI_Request *rq = h->rq;
    int nr = 0;
    size_t *blk = h->blk, pos = 0;
    for (int Ns = 0; Ns < NN; Ns++) {
        blk[Ns] = pos;
        int a0, a1;
        a_range(x, Ns, &a0, &a1);
        if (Ns == Ng || a1 <= a0) continue;
        for (int m = lm0; m < lm1; m++) {
            int64_t n = block_rows(x, a0, a1, m, m + 1);
            if (n) MPI_Irecv(bin + pos * H, (int)n, h->row, x->moe_world[m], T, h->c[B1], &rq[nr++]);
            pos += n;
        }
    }
    blk[NN] = pos;
    MPI_Waitall(nr, rq, MPI_STATUSES_IGNORE);
    nr = 0;
    // Stage 2 back: from each remote node's gateway, [m in that node][a in my node][rows].
    size_t tin = 0;
    for (int Nd = 0; Nd < NN; Nd++) {
        int m0, m1;
        m_range(x, Nd, &m0, &m1);
        if (Nd != Ng && m1 > m0 && la1 > la0) tin += block_rows(x, la0, la1, m0, m1);
    }
    float *bin2 = ensure(h, i, BACK_IN2, tin, H);
    size_t *iblk = h->iblk;
    pos = 0;
    for (int Nd = 0; Nd < NN; Nd++) {
        iblk[Nd] = pos;
        int m0, m1;
        m_range(x, Nd, &m0, &m1);
        if (Nd == Ng || m1 <= m0 || la1 <= la0) continue;
        int64_t n = block_rows(x, la0, la1, m0, m1);
        if (n) MPI_Irecv(bin2 + pos * H, (int)n, h->row, gateway(x, Nd), T, h->c[B2], &rq[nr++]);
        pos += n;
    }
    for (int Ns = 0; Ns < NN; Ns++) {
        size_t n = blk[Ns + 1] - blk[Ns];
        if (Ns != Ng && n) MPI_Isend(bin + blk[Ns] * H, (int)n, h->row, gateway(x, Ns), T, h->c[B2], &rq[nr++]);
    }
    MPI_Waitall(nr, rq, MPI_STATUSES_IGNORE);
    // Stage 3 back: to each local attention rank a, per remote node, [m][rows].
    float *bout = ensure(h, i, BACK_OUT, tin, H);
    size_t opos = 0;
    for (int a = la0; a < la1; a++)
        for (int Nd = 0; Nd < NN; Nd++) {
            int m0, m1;
            m_range(x, Nd, &m0, &m1);
            if (Nd == Ng || m1 <= m0) continue;
            size_t start = opos, src = iblk[Nd];
            for (int m = m0; m < m1; m++) {
                size_t before = 0; // rows for local attention ranks below a from m
                for (int b = la0; b < a; b++) before += R(x, b, m);
                int64_t n = R(x, a, m);
                memcpy(bout + opos * H, bin2 + (src + before) * H, sizeof(float) * n * H);
                opos += n;
                src += block_rows(x, la0, la1, m, m + 1);
            }
            if (opos > start)
                MPI_Isend(bout + start * H, (int)(opos - start), h->row, x->attn_world[a], T, h->c[B3], gw_req(h));
        }
}

void janus_hier_finish_layer(janus_xchg *x) {
    struct janus_hier *h = x->hier;
    MPI_Waitall(h->n_req, h->req, MPI_STATUSES_IGNORE);
    h->n_req = 0;
}
