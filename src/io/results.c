// io/results.c: the results file (io/results.h, DESIGN section 7): written
// whole to "<path>.tmp.<pid>" and renamed onto <path>; read back with checks.
#define _POSIX_C_SOURCE 200809L
#include "io/results.h"

#include <stdio.h>
#include <stdlib.h>

#include "io/h5util.h"

#define RES_FORMAT "janus-results"
#define RES_VERSION 1

static int check_args(const char *path, const janus_results *r, janus_err *e) {
    if (r->n < 0 || !r->offsets)
        return janus_errf(e, "%s: cannot write results: no offsets (n = %lld)", path, (long long)r->n);
    if (r->n > 0 && (!r->ids || !r->finish_reason || !r->ttft_s || !r->tpot_s))
        return janus_errf(e, "%s: cannot write results: ids, finish_reason, ttft_s or tpot_s missing", path);
    if (h5u_check_offsets(path, "/results/offsets", r->offsets, r->n, r->offsets[r->n], "/results/tokens", e))
        return -1;
    if (r->offsets[r->n] > 0 && (!r->tokens || !r->logprobs))
        return janus_errf(e, "%s: cannot write results: tokens or logprobs missing", path);
    if (r->n_layers < 0 || r->n_experts < 0 || ((int64_t)r->n_layers * r->n_experts > 0 && !r->expert_counts))
        return janus_errf(e, "%s: /stats/expert_counts: %d x %d counts but no data", path, r->n_layers,
                          r->n_experts);
    for (int i = 0; i < r->n_attrs; i++) {
        const char *nm = r->attrs[i].name;
        if (!nm || !*nm) return janus_errf(e, "%s: root attribute %d: has no name", path, i);
        if (strcmp(nm, "format") == 0 || strcmp(nm, "version") == 0)
            return janus_errf(e, "%s: root attribute %s: reserved for the file format", path, nm);
    }
    return 0;
}

static int write_all(hid_t f, const char *path, const janus_results *r, janus_err *e) {
    hsize_t n = (hsize_t)r->n, n1 = n + 1, g = (hsize_t)r->offsets[r->n];
    hsize_t ec[2] = {(hsize_t)r->n_layers, (hsize_t)r->n_experts};
    if (h5u_attr_write_str(f, path, "format", RES_FORMAT, e)) return -1;
    if (h5u_attr_write_i64(f, path, "version", RES_VERSION, e)) return -1;
    for (int i = 0; i < r->n_attrs; i++) {
        const janus_attr *a = &r->attrs[i];
        if (a->str ? h5u_attr_write_str(f, path, a->name, a->str, e) : h5u_attr_write_f64(f, path, a->name, a->num, e))
            return -1;
    }
    if (h5u_write(f, path, "/results/ids", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n, r->ids, e)) return -1;
    if (h5u_write(f, path, "/results/offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n1, r->offsets, e)) return -1;
    if (h5u_write(f, path, "/results/tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &g, r->tokens, e)) return -1;
    if (h5u_write(f, path, "/results/logprobs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &g, r->logprobs, e)) return -1;
    if (h5u_write(f, path, "/results/finish_reason", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &n, r->finish_reason, e))
        return -1;
    if (h5u_write(f, path, "/results/ttft_s", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, r->ttft_s, e)) return -1;
    if (h5u_write(f, path, "/results/tpot_s", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, r->tpot_s, e)) return -1;
    if (h5u_write(f, path, "/stats/expert_counts", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, ec, r->expert_counts, e))
        return -1;
    if (r->n_progress > 0) {
        hsize_t np = (hsize_t)r->n_progress;
        if (h5u_write(f, path, "/progress/time_s", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &np, r->progress_time_s, e) ||
            h5u_write(f, path, "/progress/tokens", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &np, r->progress_tokens, e) ||
            h5u_write(f, path, "/progress/requests_done", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &np, r->progress_done, e))
            return -1;
    }
    return 0;
}

int janus_results_write(const char *path, const janus_results *r, janus_err *e) {
    if (check_args(path, r, e)) return -1;
    char *tmp = NULL;
    hid_t f = h5u_create_tmp(path, &tmp, e);
    if (f < 0) return -1;
    int ok = write_all(f, path, r, e) == 0;
    return h5u_finish_tmp(f, &tmp, path, ok, e);
}

void janus_results_free(janus_results *r) {
    if (!r) return;
    free(r->ids);
    free(r->offsets);
    free(r->tokens);
    free(r->logprobs);
    free(r->finish_reason);
    free(r->ttft_s);
    free(r->tpot_s);
    free(r->expert_counts);
    for (int i = 0; i < r->n_attrs; i++) {
        free((char *)r->attrs[i].name);
        free((char *)r->attrs[i].str);
    }
    free(r->attrs);
    memset(r, 0, sizeof *r);
}

// The type class and element count of attribute name (-1 when unreadable).
static int attr_kind(hid_t f, const char *name, H5T_class_t *cls, hssize_t *np) {
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    *cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    *np = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    H5Aclose(a);
    return 0;
}

// Root attributes other than format/version: strings -> str, numbers -> num.
// Attributes of other kinds (arrays, compounds...) are skipped.
static int read_attrs(hid_t f, const char *path, janus_results *r, janus_err *e) {
    char **names = NULL;
    int nn = 0;
    if (h5u_attr_names(f, path, &names, &nn, e)) return -1;
    r->attrs = xcalloc((size_t)(nn ? nn : 1), sizeof *r->attrs);
    int rc = 0;
    for (int i = 0; i < nn && rc == 0; i++) {
        if (strcmp(names[i], "format") == 0 || strcmp(names[i], "version") == 0) continue;
        H5T_class_t c;
        hssize_t np;
        if (attr_kind(f, names[i], &c, &np) < 0) {
            rc = janus_errf(e, "%s: root attribute %s: cannot open", path, names[i]);
            break;
        }
        if (np != 1) continue;
        janus_attr *a = &r->attrs[r->n_attrs];
        if (c == H5T_STRING) {
            char *s = NULL;
            if (h5u_attr_read_str(f, path, names[i], &s, e) != 1) { rc = -1; break; }
            a->str = s;
        } else if (c == H5T_INTEGER || c == H5T_FLOAT) {
            if (h5u_attr_read_f64(f, path, names[i], &a->num, e) != 1) { rc = -1; break; }
        } else {
            continue;
        }
        a->name = names[i];
        names[i] = NULL; // now owned by r->attrs
        r->n_attrs++;
    }
    h5u_free_names(names, nn);
    return rc;
}

static int read_all(hid_t f, const char *path, janus_results *r, janus_err *e) {
    char *fmt = NULL;
    int st = h5u_attr_read_str(f, path, "format", &fmt, e);
    if (st < 0) return -1;
    if (st == 0) return janus_errf(e, "%s: root attribute format: missing, expected \"%s\"", path, RES_FORMAT);
    int bad = strcmp(fmt, RES_FORMAT) != 0;
    if (bad) janus_errf(e, "%s: root attribute format: is \"%.200s\", expected \"%s\"", path, fmt, RES_FORMAT);
    free(fmt);
    if (bad) return -1;
    int64_t version = RES_VERSION;
    if (h5u_attr_read_i64(f, path, "version", &version, e) < 0) return -1;
    if (version != RES_VERSION)
        return janus_errf(e, "%s: root attribute version: is %lld, expected %d", path, (long long)version,
                          RES_VERSION);

    int64_t n = 0, g = 0;
    if (h5u_read_1d_i64(f, path, "/results/ids", -1, NULL, &r->ids, &n, e)) return -1;
    r->n = n;
    char why[96], why1[96], whyg[96];
    snprintf(why, sizeof why, "one per result: %lld in /results/ids", (long long)n);
    snprintf(why1, sizeof why1, "one more than the %lld results in /results/ids", (long long)n);
    if (h5u_read_1d_i64(f, path, "/results/offsets", n + 1, why1, &r->offsets, NULL, e)) return -1;
    if (h5u_read_1d_i32(f, path, "/results/tokens", -1, NULL, &r->tokens, &g, e)) return -1;
    if (h5u_check_offsets(path, "/results/offsets", r->offsets, n, g, "/results/tokens", e)) return -1;
    snprintf(whyg, sizeof whyg, "one per generated token: %lld in /results/tokens", (long long)g);
    if (h5u_read_1d_f32(f, path, "/results/logprobs", g, whyg, &r->logprobs, NULL, e)) return -1;
    if (h5u_read_1d_u8(f, path, "/results/finish_reason", n, why, &r->finish_reason, NULL, e)) return -1;
    if (h5u_read_1d_f64(f, path, "/results/ttft_s", n, why, &r->ttft_s, NULL, e)) return -1;
    if (h5u_read_1d_f64(f, path, "/results/tpot_s", n, why, &r->tpot_s, NULL, e)) return -1;

    // /stats/expert_counts [layers, experts]; absent means no statistics.
    if (h5u_exists(f, "/stats/expert_counts", NULL)) {
        h5u_dset d;
        if (h5u_open(f, path, "/stats/expert_counts", 2, H5T_INTEGER, &d, e)) return -1;
        if (d.dims[0] > INT32_MAX || d.dims[1] > INT32_MAX) {
            h5u_close(&d);
            return janus_errf(e, "%s: /stats/expert_counts: implausible shape", path);
        }
        r->n_layers = (int)d.dims[0];
        r->n_experts = (int)d.dims[1];
        int rc = 0;
        if (d.count > 0) { // else expert_counts stays NULL
            r->expert_counts = xmalloc((size_t)d.count * sizeof *r->expert_counts);
            rc = h5u_read(&d, H5T_NATIVE_INT64, r->expert_counts, path, "/stats/expert_counts", e);
        }
        h5u_close(&d);
        if (rc) return -1;
    }
    return read_attrs(f, path, r, e);
}

int janus_results_read(const char *path, janus_results *r, janus_err *e) {
    memset(r, 0, sizeof *r);
    hid_t f = h5u_open_file(path, e);
    if (f < 0) return -1;
    int rc = read_all(f, path, r, e);
    H5Fclose(f);
    if (rc) janus_results_free(r);
    return rc;
}
