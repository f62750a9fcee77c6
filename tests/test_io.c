// tests/test_io.c: the requests and results files (src/io): write + read
// round trips compared field by field, every rejected kind of bad requests file
// (written here with the HDF5 C API directly, so the reader is tested against
// files janus itself would never write), the model checks, and the atomic
// results write (no file at the target path after a failed write).
// Standalone: exits 0 when every case passes; prints one line per case.
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "io/requests.h"
#include "io/results.h"

typedef struct {
    char dir[256];     // scratch directory (mkdtemp)
    int checks_failed; // within the current case
    int cases_passed, cases_failed;
} T;

#define CHECK(t, cond, ...)                                                   \
    do {                                                                      \
        if (!(cond)) {                                                        \
            (t)->checks_failed++;                                             \
            fprintf(stderr, "    FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
        }                                                                     \
    } while (0)

static void begin(T *t) { t->checks_failed = 0; }
static void end(T *t, const char *name) {
    if (t->checks_failed) {
        t->cases_failed++;
        printf("FAIL  %s (%d checks failed)\n", name, t->checks_failed);
    } else {
        t->cases_passed++;
        printf("ok    %s\n", name);
    }
    fflush(stdout);
}

static void pathof(const T *t, const char *name, char *out, size_t n) { snprintf(out, n, "%s/%s", t->dir, name); }

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

// Number of directory entries whose name starts with prefix.
static int count_prefixed(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

// ---- round trips ---------------------------------------------------------

static void cmp_requests(T *t, const janus_requests *a, const janus_requests *b, int with_optional) {
    CHECK(t, a->n == b->n, "n %lld vs %lld", (long long)a->n, (long long)b->n);
    if (a->n != b->n) return;
    int64_t n = a->n;
    CHECK(t, memcmp(a->ids, b->ids, (size_t)n * 8) == 0, "ids differ");
    CHECK(t, memcmp(a->offsets, b->offsets, (size_t)(n + 1) * 8) == 0, "offsets differ");
    CHECK(t, memcmp(a->tokens, b->tokens, (size_t)a->offsets[n] * 4) == 0, "tokens differ");
    CHECK(t, memcmp(a->max_new, b->max_new, (size_t)n * 4) == 0, "max_new differ");
    for (int64_t i = 0; i < n; i++) {
        float ta = with_optional ? a->temperature[i] : 0.0f, pa = with_optional ? a->top_p[i] : 1.0f;
        int32_t ka = with_optional ? a->top_k[i] : 0;
        int64_t sa = with_optional ? a->seed[i] : 0;
        CHECK(t, b->temperature[i] == ta, "temperature[%lld] %g vs %g", (long long)i, b->temperature[i], ta);
        CHECK(t, b->top_p[i] == pa, "top_p[%lld] %g vs %g", (long long)i, b->top_p[i], pa);
        CHECK(t, b->top_k[i] == ka, "top_k[%lld] %d vs %d", (long long)i, b->top_k[i], ka);
        CHECK(t, b->seed[i] == sa, "seed[%lld] %lld vs %lld", (long long)i, (long long)b->seed[i], (long long)sa);
    }
}

static void test_requests_roundtrip(T *t, int with_optional) {
    begin(t);
    char p[512];
    pathof(t, with_optional ? "req_full.h5" : "req_min.h5", p, sizeof p);
    int64_t ids[4] = {10, -3, 99, 4000000000LL};
    int64_t off[5] = {0, 3, 4, 4, 9}; // request 2 has an empty prompt: read accepts it
    int32_t tok[9] = {1, 2, 3, 7, 0, 511, 100000, 5, 6};
    int32_t mnt[4] = {1, 5, 100, 2};
    float temp[4] = {0.0f, 0.7f, 1.5f, 0.0f}, topp[4] = {1.0f, 0.9f, 0.5f, 1e-3f};
    int32_t topk[4] = {0, 50, 1, 0};
    int64_t seed[4] = {0, 42, -1, INT64_MAX};
    janus_requests w = {.n = 4, .ids = ids, .offsets = off, .tokens = tok, .max_new = mnt};
    if (with_optional) {
        w.temperature = temp;
        w.top_p = topp;
        w.top_k = topk;
        w.seed = seed;
    }
    janus_err e = {{0}};
    int rc = janus_requests_write(p, &w, &e);
    CHECK(t, rc == 0, "write: %s", e.msg);
    janus_requests r;
    rc = janus_requests_read(p, &r, &e);
    CHECK(t, rc == 0, "read: %s", e.msg);
    if (rc == 0) {
        CHECK(t, r.path && strcmp(r.path, p) == 0, "path %s", r.path ? r.path : "(null)");
        cmp_requests(t, &w, &r, with_optional);
        janus_requests_free(&r);
    }
    CHECK(t, count_prefixed(t->dir, with_optional ? "req_full.h5.tmp" : "req_min.h5.tmp") == 0, "temp file left");
    end(t, with_optional ? "requests round trip with the optional sampling arrays"
                         : "requests round trip without the optional arrays (defaults 0, 1, 0, 0)");
}

static void test_requests_empty(T *t) {
    begin(t);
    char p[512];
    pathof(t, "req_empty.h5", p, sizeof p);
    int64_t off[1] = {0};
    janus_requests w = {.n = 0, .offsets = off};
    janus_err e = {{0}};
    CHECK(t, janus_requests_write(p, &w, &e) == 0, "write: %s", e.msg);
    janus_requests r;
    int rc = janus_requests_read(p, &r, &e);
    CHECK(t, rc == 0, "read: %s", e.msg);
    if (rc == 0) {
        CHECK(t, r.n == 0 && r.offsets[0] == 0, "n %lld", (long long)r.n);
        CHECK(t, janus_requests_check_model(&r, 10, 10, &e) == 0, "check_model: %s", e.msg);
        janus_requests_free(&r);
    }
    end(t, "requests with N = 0 (an empty file) round trip");
}

static janus_attr *find_attr(const janus_results *r, const char *name) {
    for (int i = 0; i < r->n_attrs; i++)
        if (strcmp(r->attrs[i].name, name) == 0) return &r->attrs[i];
    return NULL;
}

static void cmp_results(T *t, const janus_results *a, const janus_results *b) {
    CHECK(t, a->n == b->n, "n %lld vs %lld", (long long)a->n, (long long)b->n);
    if (a->n != b->n) return;
    int64_t n = a->n, g = a->offsets[n];
    CHECK(t, n == 0 || memcmp(a->ids, b->ids, (size_t)n * 8) == 0, "ids differ");
    CHECK(t, memcmp(a->offsets, b->offsets, (size_t)(n + 1) * 8) == 0, "offsets differ");
    CHECK(t, g == 0 || memcmp(a->tokens, b->tokens, (size_t)g * 4) == 0, "tokens differ");
    CHECK(t, g == 0 || memcmp(a->logprobs, b->logprobs, (size_t)g * 4) == 0, "logprobs differ");
    CHECK(t, n == 0 || memcmp(a->finish_reason, b->finish_reason, (size_t)n) == 0, "finish_reason differ");
    CHECK(t, n == 0 || memcmp(a->ttft_s, b->ttft_s, (size_t)n * 8) == 0, "ttft_s differ");
    CHECK(t, n == 0 || memcmp(a->tpot_s, b->tpot_s, (size_t)n * 8) == 0, "tpot_s differ");
    CHECK(t, a->n_layers == b->n_layers && a->n_experts == b->n_experts, "expert_counts shape %dx%d vs %dx%d",
          a->n_layers, a->n_experts, b->n_layers, b->n_experts);
    int64_t ne = (int64_t)a->n_layers * a->n_experts;
    if (ne > 0 && b->expert_counts && a->n_layers == b->n_layers && a->n_experts == b->n_experts)
        CHECK(t, memcmp(a->expert_counts, b->expert_counts, (size_t)ne * 8) == 0, "expert_counts differ");
    CHECK(t, a->n_attrs == b->n_attrs, "n_attrs %d vs %d", a->n_attrs, b->n_attrs);
    for (int i = 0; i < a->n_attrs; i++) {
        const janus_attr *x = &a->attrs[i], *y = find_attr(b, x->name);
        CHECK(t, y != NULL, "attribute %s missing", x->name);
        if (!y) continue;
        if (x->str) {
            CHECK(t, y->str && strcmp(x->str, y->str) == 0, "attribute %s: string differs", x->name);
        } else {
            CHECK(t, !y->str && (x->num == y->num || (isnan(x->num) && isnan(y->num))), "attribute %s: %g vs %g",
                  x->name, x->num, y->num);
        }
    }
    // Written order is kept (the file tracks attribute creation order).
    for (int i = 0; i < a->n_attrs && a->n_attrs == b->n_attrs; i++)
        CHECK(t, strcmp(a->attrs[i].name, b->attrs[i].name) == 0, "attribute %d: %s vs %s", i, a->attrs[i].name,
              b->attrs[i].name);
}

static void test_results_roundtrip(T *t) {
    begin(t);
    char p[512];
    pathof(t, "res.h5", p, sizeof p);
    int64_t ids[3] = {7, 1, 1000000000000LL};
    int64_t off[4] = {0, 2, 2, 5};
    int32_t tok[5] = {3, 1, 9, 9, 0};
    float lp[5] = {-0.5f, -1e-7f, -12.25f, 0.0f, -3.0f};
    uint8_t fr[3] = {0, 1, 0};
    double ttft[3] = {0.125, 1e-3, 2.5}, tpot[3] = {0.01, 0.0, 1.0 / 3.0};
    int64_t ec[2 * 4] = {1, 2, 3, 4, 5, 6, 7, (int64_t)1 << 40};
    // A plan-sized string (> 64 KiB, the limit of a compact fixed-size attribute).
    size_t big_n = 100000;
    char *big = xmalloc(big_n + 1);
    for (size_t i = 0; i < big_n; i++) big[i] = (char)('a' + (i % 26));
    big[big_n] = '\0';
    janus_attr attrs[] = {
        {"model", "tiny-moe", 0}, {"plan", big, 0},      {"ranks", NULL, 4},
        {"wall_s", NULL, 12.5},  {"throughput_tok_s", NULL, -0.0}, {"empty", "", 0},
        {"nan", NULL, NAN},      {"a", "utf-8 \xc3\xa9", 0}, {"b", NULL, 1e300},
        {"z_last", "x", 0},
    };
    janus_results w = {.n = 3, .ids = ids, .offsets = off, .tokens = tok, .logprobs = lp, .finish_reason = fr,
                       .ttft_s = ttft, .tpot_s = tpot, .n_layers = 2, .n_experts = 4, .expert_counts = ec,
                       .n_attrs = (int)(sizeof attrs / sizeof attrs[0]), .attrs = attrs};
    janus_err e = {{0}};
    CHECK(t, janus_results_write(p, &w, &e) == 0, "write: %s", e.msg);
    janus_results r;
    int rc = janus_results_read(p, &r, &e);
    CHECK(t, rc == 0, "read: %s", e.msg);
    if (rc == 0) {
        cmp_results(t, &w, &r);
        janus_results_free(&r);
    }
    CHECK(t, count_prefixed(t->dir, "res.h5.tmp") == 0, "temp file left");
    // Overwriting an existing results file works (rename replaces it).
    w.n_layers = 0;
    w.n_experts = 0;
    w.expert_counts = NULL;
    CHECK(t, janus_results_write(p, &w, &e) == 0, "rewrite: %s", e.msg);
    rc = janus_results_read(p, &r, &e);
    CHECK(t, rc == 0, "reread: %s", e.msg);
    if (rc == 0) {
        cmp_results(t, &w, &r);
        janus_results_free(&r);
    }
    free(big);
    end(t, "results round trip (expert_counts, string and number attributes, 100 KB string, overwrite)");
}

static void test_results_empty(T *t) {
    begin(t);
    char p[512];
    pathof(t, "res_empty.h5", p, sizeof p);
    int64_t off[1] = {0};
    janus_results w = {.n = 0, .offsets = off, .n_layers = 0, .n_experts = 8};
    janus_err e = {{0}};
    CHECK(t, janus_results_write(p, &w, &e) == 0, "write: %s", e.msg);
    janus_results r;
    int rc = janus_results_read(p, &r, &e);
    CHECK(t, rc == 0, "read: %s", e.msg);
    if (rc == 0) {
        cmp_results(t, &w, &r);
        CHECK(t, r.expert_counts == NULL, "expert_counts should be NULL for 0 layers");
        janus_results_free(&r);
    }
    end(t, "results with N = 0 and no expert counts round trip");
}

static void test_results_failed_write(T *t) {
    begin(t);
    char p[600], sub[512];
    janus_err e = {{0}};
    int64_t ids[1] = {1}, off[2] = {0, 1};
    int32_t tok[1] = {5};
    float lp[1] = {-1.0f};
    uint8_t fr[1] = {0};
    double tt[1] = {0.5};
    janus_results w = {.n = 1, .ids = ids, .offsets = off, .tokens = tok, .logprobs = lp, .finish_reason = fr,
                       .ttft_s = tt, .tpot_s = tt};
    // 1) into a directory that does not exist
    pathof(t, "no_such_dir/out.h5", p, sizeof p);
    int rc = janus_results_write(p, &w, &e);
    CHECK(t, rc != 0, "write into a missing directory succeeded");
    CHECK(t, strstr(e.msg, p) != NULL, "message does not name the path: %s", e.msg);
    CHECK(t, !file_exists(p), "a file exists at %s", p);
    // 2) failing after the temporary file was created (a duplicate attribute name):
    //    neither the target nor the temporary file may remain.
    pathof(t, "fail_sub", sub, sizeof sub);
    mkdir(sub, 0700);
    snprintf(p, sizeof p, "%s/out.h5", sub);
    janus_attr dup[2] = {{"model", "a", 0}, {"model", "b", 0}};
    w.attrs = dup;
    w.n_attrs = 2;
    rc = janus_results_write(p, &w, &e);
    CHECK(t, rc != 0, "write with a duplicate attribute succeeded");
    CHECK(t, strstr(e.msg, p) != NULL && strstr(e.msg, "model") != NULL, "message: %s", e.msg);
    CHECK(t, !file_exists(p), "a file exists at %s", p);
    CHECK(t, count_prefixed(sub, "") == 2, "%d entries left in %s (expected only . and ..)",
          count_prefixed(sub, ""), sub);
    // 3) a reserved attribute name is refused
    janus_attr res[1] = {{"format", "x", 0}};
    w.attrs = res;
    w.n_attrs = 1;
    CHECK(t, janus_results_write(p, &w, &e) != 0 && strstr(e.msg, "format"), "reserved name: %s", e.msg);
    CHECK(t, !file_exists(p), "a file exists at %s", p);
    // 4) a failed write leaves an earlier complete file untouched
    w.attrs = NULL;
    w.n_attrs = 0;
    CHECK(t, janus_results_write(p, &w, &e) == 0, "write: %s", e.msg);
    w.attrs = dup;
    w.n_attrs = 2;
    CHECK(t, janus_results_write(p, &w, &e) != 0, "duplicate attribute accepted");
    janus_results r;
    rc = janus_results_read(p, &r, &e);
    CHECK(t, rc == 0 && r.n == 1 && r.n_attrs == 0, "earlier file damaged: %s", rc ? e.msg : "contents differ");
    if (rc == 0) janus_results_free(&r);
    unlink(p);
    rmdir(sub);
    end(t, "failed results writes leave no file (missing directory, error after the temp file, earlier file kept)");
}

// ---- bad requests files, written with the HDF5 API directly -------------

// A requests file described field by field; the defaults make a valid file
// with 3 requests. Each bad case changes one thing.
typedef struct {
    const char *format;     // NULL: no format attribute
    int version_kind;       // 0 int64 1 (default), 1 none, 2 int 2, 3 float 1.0
    const char *omit;       // dataset name to leave out ("ids", ..., or "ALL" for no /requests group)
    int64_t ids[8];
    int n_ids;
    int ids_2d;             // store ids as [1, n]
    int64_t off[9];
    int n_off;
    int64_t tok[16];
    int n_tok;
    int tok_kind;           // 0 int32, 1 float32, 2 int64, 3 int16, 4 uint8
    int32_t mnt[8];
    int n_mnt;
    int temp_kind;          // 0 none, 1 float32, 2 int32 (wrong class)
    float top_p[8];         // written when n_top_p > 0
    int n_top_p;
} rawreq;

static rawreq good_raw(void) {
    rawreq r = {.format = "janus-requests",
                .ids = {5, 6, 7},
                .n_ids = 3,
                .off = {0, 2, 5, 6},
                .n_off = 4,
                .tok = {1, 2, 3, 4, 5, 6},
                .n_tok = 6,
                .mnt = {4, 4, 4},
                .n_mnt = 3};
    return r;
}

static int raw_dataset(hid_t f, const char *name, hid_t ftype, int rank, const hsize_t *dims, hid_t mtype,
                       const void *buf) {
    hid_t s = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t cnt = 1;
    for (int i = 0; i < rank; i++) cnt *= dims[i];
    int rc = (s >= 0 && d >= 0 && (cnt == 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0)) ? 0 : -1;
    if (d >= 0) H5Dclose(d);
    if (s >= 0) H5Sclose(s);
    return rc;
}

static int raw_write(const char *path, const rawreq *q) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return -1;
    int rc = 0;
    hid_t sc = H5Screate(H5S_SCALAR);
    if (q->format) {
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, strlen(q->format)); // fixed-length, as numpy bytes would be
        hid_t a = H5Acreate2(f, "format", st, sc, H5P_DEFAULT, H5P_DEFAULT);
        rc |= H5Awrite(a, st, q->format) < 0;
        H5Aclose(a);
        H5Tclose(st);
    }
    if (q->version_kind != 1) {
        int64_t iv = q->version_kind == 2 ? 2 : 1;
        double dv = 1.0;
        int isf = q->version_kind == 3;
        hid_t a = H5Acreate2(f, "version", isf ? H5T_IEEE_F64LE : H5T_STD_I64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
        rc |= H5Awrite(a, isf ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64, isf ? (void *)&dv : (void *)&iv) < 0;
        H5Aclose(a);
    }
    H5Sclose(sc);
    const char *omit = q->omit ? q->omit : "";
    if (strcmp(omit, "ALL") == 0) {
        H5Fclose(f);
        return rc ? -1 : 0;
    }
    hid_t g = H5Gcreate2(f, "/requests", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    hsize_t d;
    if (strcmp(omit, "ids") != 0) {
        hsize_t d2[2] = {1, (hsize_t)q->n_ids};
        d = (hsize_t)q->n_ids;
        rc |= raw_dataset(f, "/requests/ids", H5T_STD_I64LE, q->ids_2d ? 2 : 1, q->ids_2d ? d2 : &d,
                          H5T_NATIVE_INT64, q->ids);
    }
    if (strcmp(omit, "offsets") != 0) {
        d = (hsize_t)q->n_off;
        rc |= raw_dataset(f, "/requests/offsets", H5T_STD_I64LE, 1, &d, H5T_NATIVE_INT64, q->off);
    }
    if (strcmp(omit, "tokens") != 0) {
        d = (hsize_t)q->n_tok;
        if (q->tok_kind == 1) {
            float ft[16];
            for (int i = 0; i < q->n_tok; i++) ft[i] = (float)q->tok[i];
            rc |= raw_dataset(f, "/requests/tokens", H5T_IEEE_F32LE, 1, &d, H5T_NATIVE_FLOAT, ft);
        } else {
            hid_t ft = q->tok_kind == 2 ? H5T_STD_I64LE : q->tok_kind == 3 ? H5T_STD_I16BE
                     : q->tok_kind == 4 ? H5T_STD_U8LE : H5T_STD_I32LE;
            rc |= raw_dataset(f, "/requests/tokens", ft, 1, &d, H5T_NATIVE_INT64, q->tok);
        }
    }
    if (strcmp(omit, "max_new_tokens") != 0) {
        d = (hsize_t)q->n_mnt;
        rc |= raw_dataset(f, "/requests/max_new_tokens", H5T_STD_I32LE, 1, &d, H5T_NATIVE_INT32, q->mnt);
    }
    if (q->temp_kind) {
        d = (hsize_t)q->n_ids;
        float tf[8] = {0};
        int32_t ti[8] = {0};
        rc |= q->temp_kind == 1 ? raw_dataset(f, "/requests/temperature", H5T_IEEE_F32LE, 1, &d, H5T_NATIVE_FLOAT, tf)
                                : raw_dataset(f, "/requests/temperature", H5T_STD_I32LE, 1, &d, H5T_NATIVE_INT32, ti);
    }
    if (q->n_top_p > 0) {
        d = (hsize_t)q->n_top_p;
        rc |= raw_dataset(f, "/requests/top_p", H5T_IEEE_F32LE, 1, &d, H5T_NATIVE_FLOAT, q->top_p);
    }
    rc |= H5Fclose(f) < 0;
    return rc ? -1 : 0;
}

// Read path and expect failure with a message containing the path and each of
// the (up to 3) given substrings; or, with exact != NULL, the whole message
// "<path>: <exact>".
static void expect_bad(T *t, const char *path, const char *exact, const char *s1, const char *s2, const char *s3) {
    janus_requests r;
    janus_err e = {{0}};
    int rc = janus_requests_read(path, &r, &e);
    CHECK(t, rc == -1, "read of a bad file succeeded");
    if (rc == 0) {
        janus_requests_free(&r);
        return;
    }
    CHECK(t, r.ids == NULL && r.tokens == NULL && r.path == NULL, "struct not cleared after failure");
    printf("        -> %s\n", e.msg);
    CHECK(t, strncmp(e.msg, path, strlen(path)) == 0 && e.msg[strlen(path)] == ':',
          "message does not start with the path: %s", e.msg);
    if (exact) {
        char want[1024];
        snprintf(want, sizeof want, "%s: %s", path, exact);
        CHECK(t, strcmp(e.msg, want) == 0, "message\n      got:  %s\n      want: %s", e.msg, want);
    }
    const char *subs[3] = {s1, s2, s3};
    for (int i = 0; i < 3; i++)
        if (subs[i]) CHECK(t, strstr(e.msg, subs[i]) != NULL, "message lacks \"%s\": %s", subs[i], e.msg);
}

static void bad_case(T *t, const char *name, const rawreq *q, const char *exact, const char *s1, const char *s2,
                     const char *s3) {
    begin(t);
    char p[512];
    snprintf(p, sizeof p, "%s/bad.h5", t->dir);
    int rc = raw_write(p, q);
    CHECK(t, rc == 0, "could not write the test file");
    if (rc == 0) expect_bad(t, p, exact, s1, s2, s3);
    unlink(p);
    end(t, name);
}

static void test_bad_requests(T *t) {
    rawreq q;
    q = good_raw(), q.omit = "tokens";
    bad_case(t, "reject: /requests/tokens missing", &q, "/requests/tokens: dataset missing", NULL, NULL, NULL);
    q = good_raw(), q.omit = "max_new_tokens";
    bad_case(t, "reject: /requests/max_new_tokens missing", &q, NULL, "/requests/max_new_tokens", "missing", NULL);
    q = good_raw(), q.omit = "ALL";
    bad_case(t, "reject: no /requests group", &q, NULL, "/requests/ids", "missing", "no group /requests");
    q = good_raw(), q.tok_kind = 1;
    bad_case(t, "reject: tokens stored as float", &q, "/requests/tokens: type class is float, expected integer",
             NULL, NULL, NULL);
    q = good_raw(), q.temp_kind = 2;
    bad_case(t, "reject: temperature stored as integer", &q,
             "/requests/temperature: type class is integer, expected float", NULL, NULL, NULL);
    q = good_raw(), q.tok_kind = 2, q.tok[4] = (int64_t)1 << 33;
    bad_case(t, "reject: int64 token beyond the int32 range", &q, NULL, "/requests/tokens", "element 4", "int32");
    q = good_raw(), q.ids_2d = 1;
    bad_case(t, "reject: ids stored 2-D", &q, NULL, "/requests/ids", "2 dimensions", NULL);
    // offsets not monotone: [0, 5, 15, 12, 20] over 20 tokens
    q = good_raw(), q.n_ids = 4, q.ids[3] = 8, q.n_mnt = 4, q.mnt[3] = 1, q.n_off = 5, q.n_tok = 16;
    q.off[0] = 0, q.off[1] = 5, q.off[2] = 15, q.off[3] = 12, q.off[4] = 16;
    bad_case(t, "reject: offsets not non-decreasing", &q, "/requests/offsets: not non-decreasing at index 3 (12 < 15)",
             NULL, NULL, NULL);
    q = good_raw(), q.n_off = 3;
    bad_case(t, "reject: offsets of length N", &q, NULL, "/requests/offsets", "has 3 elements, expected 4", NULL);
    q = good_raw(), q.off[0] = 1;
    bad_case(t, "reject: offsets[0] != 0", &q, NULL, "/requests/offsets", "first offset is 1", NULL);
    q = good_raw(), q.n_tok = 7;
    bad_case(t, "reject: offsets[N] != number of tokens", &q, NULL, "/requests/offsets", "last offset is 6", "7");
    // duplicate ids: 7 at indices 2 and 5
    q = good_raw(), q.n_ids = 6, q.n_mnt = 6, q.n_off = 7;
    int64_t ids6[6] = {1, 2, 7, 3, 4, 7}, off7[7] = {0, 1, 2, 3, 4, 5, 6};
    memcpy(q.ids, ids6, sizeof ids6);
    memcpy(q.off, off7, sizeof off7);
    for (int i = 0; i < 6; i++) q.mnt[i] = 2;
    bad_case(t, "reject: duplicate ids", &q, "/requests/ids: duplicate id 7 (requests 2 and 5)", NULL, NULL, NULL);
    q = good_raw(), q.mnt[1] = 0;
    bad_case(t, "reject: max_new_tokens 0", &q, NULL, "/requests/max_new_tokens", "request id 6 (index 1)",
             "max_new_tokens 0");
    q = good_raw(), q.n_mnt = 2;
    bad_case(t, "reject: max_new_tokens of the wrong length", &q, NULL, "/requests/max_new_tokens",
             "has 2 elements, expected 3", NULL);
    q = good_raw(), q.n_top_p = 3, q.top_p[0] = 1.0f, q.top_p[1] = 0.0f, q.top_p[2] = 0.5f;
    bad_case(t, "reject: top_p 0", &q, NULL, "/requests/top_p", "index 1", NULL);
    q = good_raw(), q.format = "foo";
    bad_case(t, "reject: format attribute wrong", &q, "root attribute format: is \"foo\", expected \"janus-requests\"",
             NULL, NULL, NULL);
    q = good_raw(), q.format = NULL;
    bad_case(t, "reject: format attribute missing", &q, NULL, "root attribute format", "missing", NULL);
    q = good_raw(), q.version_kind = 2;
    bad_case(t, "reject: version 2", &q, "root attribute version: is 2, expected 1", NULL, NULL, NULL);
    q = good_raw(), q.version_kind = 3;
    bad_case(t, "reject: version stored as float", &q, NULL, "root attribute version", "float", NULL);

    // Not HDF5 at all, and no file.
    begin(t);
    char p[512];
    pathof(t, "not_hdf5.h5", p, sizeof p);
    FILE *fp = fopen(p, "w");
    if (fp) {
        fputs("this is not an HDF5 file\n", fp);
        fclose(fp);
    }
    expect_bad(t, p, "cannot open (not an HDF5 file or unreadable)", NULL, NULL, NULL);
    unlink(p);
    end(t, "reject: a file that is not HDF5");
    begin(t);
    pathof(t, "does_not_exist.h5", p, sizeof p);
    expect_bad(t, p, NULL, "no such file", NULL, NULL);
    end(t, "reject: a missing file");
}

static void test_accept_variants(T *t) {
    begin(t);
    char p[512];
    pathof(t, "variants.h5", p, sizeof p);
    // int16 big-endian tokens, no version attribute, a float32 temperature of zeros.
    rawreq q = good_raw();
    q.tok_kind = 3;
    q.version_kind = 1;
    q.temp_kind = 1;
    janus_err e = {{0}};
    janus_requests r;
    int rc = raw_write(p, &q) == 0 ? janus_requests_read(p, &r, &e) : -1;
    CHECK(t, rc == 0, "read: %s", e.msg);
    if (rc == 0) {
        CHECK(t, r.n == 3 && r.tokens[5] == 6 && r.ids[2] == 7 && r.top_p[0] == 1.0f, "values differ");
        janus_requests_free(&r);
    }
    // uint8 tokens, int64 large but in-range values are fine too.
    q = good_raw();
    q.tok_kind = 4;
    q.tok[0] = 255;
    rc = raw_write(p, &q) == 0 ? janus_requests_read(p, &r, &e) : -1;
    CHECK(t, rc == 0, "read uint8: %s", e.msg);
    if (rc == 0) {
        CHECK(t, r.tokens[0] == 255, "token %d", r.tokens[0]);
        janus_requests_free(&r);
    }
    q = good_raw();
    q.tok_kind = 2;
    q.tok[0] = INT32_MAX;
    rc = raw_write(p, &q) == 0 ? janus_requests_read(p, &r, &e) : -1;
    CHECK(t, rc == 0, "read int64: %s", e.msg);
    if (rc == 0) {
        CHECK(t, r.tokens[0] == INT32_MAX, "token %d", r.tokens[0]);
        janus_requests_free(&r);
    }
    unlink(p);
    end(t, "accept: any integer width (int16 BE, uint8, int64), missing version, fixed-length format string");
}

// ---- the model checks ----------------------------------------------------

static void model_case(T *t, const char *name, const janus_requests *r, int vocab, int ctx, const char *want_tail) {
    begin(t);
    janus_err e = {{0}};
    int rc = janus_requests_check_model(r, vocab, ctx, &e);
    if (!want_tail) {
        CHECK(t, rc == 0, "check failed: %s", e.msg);
    } else {
        CHECK(t, rc == -1, "check passed");
        char want[1024];
        snprintf(want, sizeof want, "%s: %s", r->path, want_tail);
        if (rc) printf("        -> %s\n", e.msg);
        CHECK(t, rc == 0 || strcmp(e.msg, want) == 0, "message\n      got:  %s\n      want: %s", e.msg, want);
    }
    end(t, name);
}

static void test_check_model(T *t) {
    // Request id 12 is index 3 throughout.
    int64_t ids[4] = {9, 10, 11, 12};
    int64_t off[5] = {0, 2, 4, 6, 11};
    int32_t tok[11] = {1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4};
    int32_t mnt[4] = {10, 10, 10, 10};
    char path[] = "in.h5";
    janus_requests r = {.path = path, .n = 4, .ids = ids, .offsets = off, .tokens = tok, .max_new = mnt};
    model_case(t, "check_model: a valid set passes", &r, 512, 320, NULL);
    tok[10] = 600;
    model_case(t, "check_model: token >= vocab", &r, 512, 320,
               "/requests/tokens: request id 12 (index 3) has token 600 at position 4, outside the vocabulary [0, 512)");
    tok[10] = -1;
    model_case(t, "check_model: negative token", &r, 512, 320,
               "/requests/tokens: request id 12 (index 3) has token -1 at position 4, outside the vocabulary [0, 512)");
    tok[10] = 4;
    int64_t off_empty[5] = {0, 2, 4, 11, 11};
    r.offsets = off_empty;
    model_case(t, "check_model: empty prompt", &r, 512, 320,
               "/requests/offsets: request id 12 (index 3) has an empty prompt");
    r.offsets = off;
    mnt[3] = 316; // 5 + 316 = 321 > 320
    model_case(t, "check_model: prompt + max_new_tokens beyond the context", &r, 512, 320,
               "/requests/max_new_tokens: request id 12 (index 3): prompt 5 + max_new_tokens 316 = 321 tokens "
               "exceeds the model context 320");
    mnt[3] = 315; // exactly the context: fine
    model_case(t, "check_model: prompt + max_new_tokens == context passes", &r, 512, 320, NULL);
}

int main(void) {
    T t = {{0}, 0, 0, 0};
    snprintf(t.dir, sizeof t.dir, "/tmp/janus_test_io.XXXXXX");
    if (!mkdtemp(t.dir)) {
        perror("mkdtemp");
        return 2;
    }
    test_requests_roundtrip(&t, 1);
    test_requests_roundtrip(&t, 0);
    test_requests_empty(&t);
    test_results_roundtrip(&t);
    test_results_empty(&t);
    test_results_failed_write(&t);
    test_bad_requests(&t);
    test_accept_variants(&t);
    test_check_model(&t);

    // Remove what the cases left (round-trip files) and the directory.
    const char *left[] = {"req_full.h5", "req_min.h5", "req_empty.h5", "res.h5", "res_empty.h5"};
    for (size_t i = 0; i < sizeof left / sizeof left[0]; i++) {
        char p[512];
        pathof(&t, left[i], p, sizeof p);
        unlink(p);
    }
    if (rmdir(t.dir) != 0) printf("note: %s not empty, left in place\n", t.dir);
    H5close();
    printf("%d passed, %d failed\n", t.cases_passed, t.cases_failed);
    return t.cases_failed ? 1 : 0;
}
