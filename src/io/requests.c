// io/requests.c: the requests file (io/requests.h, DESIGN section 7): reading
// it with every structural check, checking it against a model, writing it.
#define _POSIX_C_SOURCE 200809L
#include "io/requests.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/h5util.h"

#define REQ_FORMAT "janus-requests"
#define REQ_VERSION 1

void janus_requests_free(janus_requests *r) {
    if (!r) return;
    free(r->path);
    free(r->ids);
    free(r->offsets);
    free(r->tokens);
    free(r->max_new);
    free(r->temperature);
    free(r->top_p);
    free(r->top_k);
    free(r->seed);
    memset(r, 0, sizeof *r);
}

// Root attributes: format must be "janus-requests", version (if present) 1.
static int check_root_attrs(hid_t f, const char *path, janus_err *e) {
    char *fmt = NULL;
    int st = h5u_attr_read_str(f, path, "format", &fmt, e);
    if (st < 0) return -1;
    if (st == 0) return janus_errf(e, "%s: root attribute format: missing, expected \"%s\"", path, REQ_FORMAT);
    int bad = strcmp(fmt, REQ_FORMAT) != 0;
    if (bad) janus_errf(e, "%s: root attribute format: is \"%.200s\", expected \"%s\"", path, fmt, REQ_FORMAT);
    free(fmt);
    if (bad) return -1;
    int64_t version = REQ_VERSION;
    st = h5u_attr_read_i64(f, path, "version", &version, e);
    if (st < 0) return -1;
    if (version != REQ_VERSION)
        return janus_errf(e, "%s: root attribute version: is %lld, expected %d", path, (long long)version,
                          REQ_VERSION);
    return 0;
}

typedef struct {
    int64_t id, idx;
} id_idx;

static int cmp_id_idx(const void *a, const void *b) {
    const id_idx *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int check_unique_ids(const char *path, const int64_t *ids, int64_t n, janus_err *e) {
    if (n < 2) return 0;
    id_idx *s = xmalloc((size_t)n * sizeof *s);
    for (int64_t i = 0; i < n; i++) s[i] = (id_idx){ids[i], i};
    qsort(s, (size_t)n, sizeof *s, cmp_id_idx);
    int rc = 0;
    for (int64_t i = 1; i < n && rc == 0; i++)
        if (s[i].id == s[i - 1].id)
            rc = janus_errf(e, "%s: /requests/ids: duplicate id %lld (requests %lld and %lld)", path,
                            (long long)s[i].id, (long long)s[i - 1].idx, (long long)s[i].idx);
    free(s);
    return rc;
}

// The per-request value checks (ids are known unique by now).
static int check_values(const char *path, const janus_requests *r, janus_err *e) {
    for (int64_t i = 0; i < r->n; i++) {
        long long id = (long long)r->ids[i], ii = (long long)i;
        if (r->max_new[i] < 1)
            return janus_errf(e, "%s: /requests/max_new_tokens: request id %lld (index %lld) has max_new_tokens %d, "
                              "expected >= 1", path, id, ii, (int)r->max_new[i]);
        float t = r->temperature[i];
        if (!(t >= 0.0f) || isinf(t))
            return janus_errf(e, "%s: /requests/temperature: request id %lld (index %lld) has temperature %g, "
                              "expected a finite value >= 0", path, id, ii, (double)t);
        float p = r->top_p[i];
        if (!(p > 0.0f && p <= 1.0f))
            return janus_errf(e, "%s: /requests/top_p: request id %lld (index %lld) has top_p %g, expected "
                              "a value in (0, 1]", path, id, ii, (double)p);
        if (r->top_k[i] < 0)
            return janus_errf(e, "%s: /requests/top_k: request id %lld (index %lld) has top_k %d, expected >= 0",
                              path, id, ii, (int)r->top_k[i]);
    }
    return 0;
}

// Optional dataset: 1 present (then read with every check), 0 absent.
static int optional_present(hid_t f, const char *dpath) { return h5u_exists(f, dpath, NULL); }

static int read_all(hid_t f, const char *path, janus_requests *r, janus_err *e) {
    if (check_root_attrs(f, path, e)) return -1;
    int64_t n = 0, n_off = 0, n_tok = 0;
    if (h5u_read_1d_i64(f, path, "/requests/ids", -1, NULL, &r->ids, &n, e)) return -1;
    r->n = n;
    char why[96], why1[96];
    snprintf(why, sizeof why, "one per request: %lld in /requests/ids", (long long)n);
    snprintf(why1, sizeof why1, "one more than the %lld requests in /requests/ids", (long long)n);
    if (h5u_read_1d_i64(f, path, "/requests/offsets", n + 1, why1, &r->offsets, &n_off, e)) return -1;
    if (h5u_read_1d_i32(f, path, "/requests/tokens", -1, NULL, &r->tokens, &n_tok, e)) return -1;
    if (h5u_read_1d_i32(f, path, "/requests/max_new_tokens", n, why, &r->max_new, NULL, e)) return -1;
    if (h5u_check_offsets(path, "/requests/offsets", r->offsets, n, n_tok, "/requests/tokens", e)) return -1;
    if (check_unique_ids(path, r->ids, n, e)) return -1;

    // Optional sampling arrays, with their defaults when absent.
    if (optional_present(f, "/requests/temperature")) {
        if (h5u_read_1d_f32(f, path, "/requests/temperature", n, why, &r->temperature, NULL, e)) return -1;
    } else {
        r->temperature = xcalloc((size_t)n, sizeof *r->temperature); // 0: greedy
    }
    if (optional_present(f, "/requests/top_p")) {
        if (h5u_read_1d_f32(f, path, "/requests/top_p", n, why, &r->top_p, NULL, e)) return -1;
    } else {
        r->top_p = xmalloc((size_t)n * sizeof *r->top_p);
        for (int64_t i = 0; i < n; i++) r->top_p[i] = 1.0f;
    }
    if (optional_present(f, "/requests/top_k")) {
        if (h5u_read_1d_i32(f, path, "/requests/top_k", n, why, &r->top_k, NULL, e)) return -1;
    } else {
        r->top_k = xcalloc((size_t)n, sizeof *r->top_k); // 0: off
    }
    if (optional_present(f, "/requests/seed")) {
        if (h5u_read_1d_i64(f, path, "/requests/seed", n, why, &r->seed, NULL, e)) return -1;
    } else {
        r->seed = xcalloc((size_t)n, sizeof *r->seed);
    }
    return check_values(path, r, e);
}

int janus_requests_read(const char *path, janus_requests *r, janus_err *e) {
    memset(r, 0, sizeof *r);
    hid_t f = h5u_open_file(path, e);
    if (f < 0) return -1;
    r->path = xstrdup(path);
    int rc = read_all(f, path, r, e);
    H5Fclose(f);
    if (rc) janus_requests_free(r);
    return rc;
}

int janus_requests_check_model(const janus_requests *r, int vocab, int max_context, janus_err *e) {
    const char *path = r->path ? r->path : "(requests)";
    for (int64_t i = 0; i < r->n; i++) {
        long long id = (long long)r->ids[i], ii = (long long)i;
        int64_t a = r->offsets[i], b = r->offsets[i + 1], len = b - a;
        if (len <= 0)
            return janus_errf(e, "%s: /requests/offsets: request id %lld (index %lld) has an empty prompt", path,
                              id, ii);
        for (int64_t k = a; k < b; k++)
            if (r->tokens[k] < 0 || r->tokens[k] >= vocab)
                return janus_errf(e, "%s: /requests/tokens: request id %lld (index %lld) has token %d at position "
                                  "%lld, outside the vocabulary [0, %d)", path, id, ii, (int)r->tokens[k],
                                  (long long)(k - a), vocab);
        int64_t total = len + (int64_t)r->max_new[i];
        if (total > (int64_t)max_context)
            return janus_errf(e, "%s: /requests/max_new_tokens: request id %lld (index %lld): prompt %lld + "
                              "max_new_tokens %d = %lld tokens exceeds the model context %d", path, id, ii,
                              (long long)len, (int)r->max_new[i], (long long)total, max_context);
    }
    return 0;
}

static int write_all(hid_t f, const char *path, const janus_requests *r, janus_err *e) {
    hsize_t n = (hsize_t)r->n, n1 = n + 1, t = (hsize_t)r->offsets[r->n];
    if (h5u_attr_write_str(f, path, "format", REQ_FORMAT, e)) return -1;
    if (h5u_attr_write_i64(f, path, "version", REQ_VERSION, e)) return -1;
    if (h5u_write(f, path, "/requests/ids", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n, r->ids, e)) return -1;
    if (h5u_write(f, path, "/requests/offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n1, r->offsets, e)) return -1;
    if (h5u_write(f, path, "/requests/tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &t, r->tokens, e)) return -1;
    if (h5u_write(f, path, "/requests/max_new_tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &n, r->max_new, e))
        return -1;
    if (r->temperature &&
        h5u_write(f, path, "/requests/temperature", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &n, r->temperature, e))
        return -1;
    if (r->top_p && h5u_write(f, path, "/requests/top_p", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &n, r->top_p, e))
        return -1;
    if (r->top_k && h5u_write(f, path, "/requests/top_k", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &n, r->top_k, e))
        return -1;
    if (r->seed && h5u_write(f, path, "/requests/seed", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n, r->seed, e))
        return -1;
    return 0;
}

int janus_requests_write(const char *path, const janus_requests *r, janus_err *e) {
    if (r->n < 0 || !r->offsets || (r->n > 0 && (!r->ids || !r->max_new)) || r->offsets[r->n] < 0)
        return janus_errf(e, "%s: cannot write requests: n, ids, offsets or max_new_tokens missing", path);
    char *tmp = NULL;
    hid_t f = h5u_create_tmp(path, &tmp, e);
    if (f < 0) return -1;
    int ok = write_all(f, path, r, e) == 0;
    return h5u_finish_tmp(f, &tmp, path, ok, e);
}
