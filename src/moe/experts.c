// moe/experts.c: SwiGLU expert FFN, local grouped dispatch and combine.
#include "moe/experts.h"

#include <stdlib.h>

#include "cpu/kernels.h"

void janus_ffn_scratch_init(janus_ffn_scratch *s, int max_rows, int max_inter) {
    s->max_rows = max_rows;
    s->max_inter = max_inter;
    s->g = xmalloc(sizeof(float) * (size_t)max_rows * max_inter);
    s->u = xmalloc(sizeof(float) * (size_t)max_rows * max_inter);
}

void janus_ffn_scratch_free(janus_ffn_scratch *s) {
    free(s->g);
    free(s->u);
    memset(s, 0, sizeof *s);
}

void janus_swiglu_ffn(float *Y, const float *X, int n, const janus_w *gate, const janus_w *up, const janus_w *down,
                      janus_ffn_scratch *s) {
    // Row blocks of at most max_rows keep the scratch bounded.
    const int I = (int)gate->rows, H = (int)down->rows;
    for (int r0 = 0; r0 < n; r0 += s->max_rows) {
        int m = n - r0 < s->max_rows ? n - r0 : s->max_rows;
        cpu_linear(s->g, X + (size_t)r0 * gate->cols, gate, NULL, m);
        cpu_linear(s->u, X + (size_t)r0 * up->cols, up, NULL, m);
        cpu_silu_mul(s->g, s->u, (size_t)m * I);
        cpu_linear(Y + (size_t)r0 * H, s->g, down, NULL, m);
    }
}

void janus_experts_local(const janus_layer *L, int H, const float *x, const int32_t *ids, int T, int k, float *y,
                         float *xs, float *ys, int32_t *order, janus_ffn_scratch *s) {
    const int P = T * k;
    // Counting sort of pairs by expert id: stable, so rows keep token order.
    int E = 0;
    for (int p = 0; p < P; p++) E = ids[p] + 1 > E ? ids[p] + 1 : E;
    int *start = xcalloc(E + 1, sizeof(int));
    for (int p = 0; p < P; p++) start[ids[p] + 1]++;
    for (int e = 0; e < E; e++) start[e + 1] += start[e];
    int *fill = xmalloc(sizeof(int) * (E + 1));
    memcpy(fill, start, sizeof(int) * (E + 1));
    for (int p = 0; p < P; p++) order[fill[ids[p]]++] = p;
    for (int i = 0; i < P; i++) memcpy(xs + (size_t)i * H, x + (size_t)(order[i] / k) * H, sizeof(float) * H);
    for (int e = 0; e < E; e++) {
        int n = start[e + 1] - start[e];
        if (!n) continue;
        if (!L->gate[e].p) janus_die(NULL, "internal: expert %d of a layer is not loaded on this rank", e);
        janus_swiglu_ffn(ys + (size_t)start[e] * H, xs + (size_t)start[e] * H, n, &L->gate[e], &L->up[e], &L->down[e], s);
    }
    for (int i = 0; i < P; i++) memcpy(y + (size_t)order[i] * H, ys + (size_t)i * H, sizeof(float) * H);
    free(start);
    free(fill);
}

void janus_moe_ffn_grouped_ref(const float *x, const int32_t *seg, const uint16_t *w_gu, const uint16_t *w_down,
                               float *y, int E, int H, int I) {
    janus_ffn_scratch s;
    janus_ffn_scratch_init(&s, 64, I);
    for (int e = 0; e < E; e++) {
        int n = seg[e + 1] - seg[e];
        if (n <= 0) continue;
        const uint16_t *g = w_gu + (size_t)e * 2 * I * H;
        janus_w gate = {g, JANUS_BF16, I, H}, up = {g + (size_t)I * H, JANUS_BF16, I, H},
                down = {w_down + (size_t)e * H * I, JANUS_BF16, H, I};
        janus_swiglu_ffn(y + (size_t)seg[e] * H, x + (size_t)seg[e] * H, n, &gate, &up, &down, &s);
    }
    janus_ffn_scratch_free(&s);
}

void janus_combine(float *out, const float *y, const int32_t *ids, const float *w, int T, int k, int H) {
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * H;
        const int32_t *id = ids + (size_t)t * k;
        int done = 0, last = -1;
        // k is small: pick the slots in ascending expert order.
        while (done < k) {
            int j = -1;
            for (int q = 0; q < k; q++)
                if (id[q] > last && (j < 0 || id[q] < id[j])) j = q;
            const float *yj = y + ((size_t)t * k + j) * H;
            const float wj = w[(size_t)t * k + j];
            if (done == 0)
                for (int d = 0; d < H; d++) o[d] = yj[d] * wj;
            else
                for (int d = 0; d < H; d++) o[d] += yj[d] * wj;
            last = id[j];
            done++;
        }
    }
}

void janus_combine_sums(float *out, const float *y, const int32_t *slot, const int32_t *lead, const int32_t *ids, int T,
                        int k, int H) {
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * H;
        const int32_t *id = ids + (size_t)t * k;
        int done = 0, last = -1;
        for (;;) {
            int j = -1;
            for (int q = 0; q < k; q++)
                if (lead[(size_t)t * k + q] && id[q] > last && (j < 0 || id[q] < id[j])) j = q;
            if (j < 0) break;
            const float *yj = y + (size_t)slot[(size_t)t * k + j] * H;
            if (done == 0)
                memcpy(o, yj, sizeof(float) * H);
            else
                for (int d = 0; d < H; d++) o[d] += yj[d];
            last = id[j];
            done++;
        }
        if (!done) memset(o, 0, sizeof(float) * H);
    }
}
