// io/h5util.c: the HDF5 helpers declared in io/h5util.h (checked dataset
// opens, converting reads, dataset/attribute writes, atomic temp+rename files).
#define _POSIX_C_SOURCE 200809L
#include "io/h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

void h5u_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

const char *h5u_class_name(H5T_class_t c) {
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_TIME: return "time";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_ARRAY: return "array";
    default: return "unknown";
    }
}

// File access: closing the file closes whatever is still open inside it, so an
// error path can never keep a file open.
static hid_t strong_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    return fapl;
}

hid_t h5u_open_file(const char *path, janus_err *e) {
    h5u_quiet();
    struct stat st;
    if (stat(path, &st) != 0) {
        janus_errf(e, "%s: cannot open: %s", path, errno == ENOENT ? "no such file" : strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        janus_errf(e, "%s: cannot open: is a directory", path);
        return -1;
    }
    hid_t fapl = strong_fapl();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        janus_errf(e, "%s: cannot open (not an HDF5 file or unreadable)", path);
        return -1;
    }
    return f;
}

int h5u_exists(hid_t file, const char *objpath, size_t *missing_at) {
    size_t len = strlen(objpath);
    char *buf = xmalloc(len + 1);
    memcpy(buf, objpath, len + 1);
    int ok = 1;
    // Check "/a", "/a/b", ... in turn: H5Lexists needs every parent to exist.
    for (size_t i = 1; i <= len && ok; i++) {
        if (i < len && objpath[i] != '/') continue;
        buf[i] = '\0';
        if (H5Lexists(file, buf, H5P_DEFAULT) <= 0) {
            ok = 0;
            if (missing_at) *missing_at = i;
        }
        buf[i] = objpath[i];
    }
    free(buf);
    return ok;
}

int h5u_open(hid_t file, const char *fpath, const char *dpath, int want_rank, H5T_class_t cls,
             h5u_dset *d, janus_err *e) {
    memset(d, 0, sizeof *d);
    d->id = -1;
    d->ftype = -1;
    size_t miss = 0;
    if (!h5u_exists(file, dpath, &miss)) {
        if (miss < strlen(dpath))
            return janus_errf(e, "%s: %s: dataset missing (no group %.*s)", fpath, dpath, (int)miss, dpath);
        return janus_errf(e, "%s: %s: dataset missing", fpath, dpath);
    }
    hid_t obj = H5Oopen(file, dpath, H5P_DEFAULT);
    if (obj < 0) return janus_errf(e, "%s: %s: cannot open", fpath, dpath);
    if (H5Iget_type(obj) != H5I_DATASET) {
        H5Oclose(obj);
        return janus_errf(e, "%s: %s: is not a dataset", fpath, dpath);
    }
    d->id = obj;
    const char *want_shape = want_rank == 1 ? "a 1-D array" : "a 2-D array";
    hid_t space = H5Dget_space(obj);
    if (space < 0) {
        h5u_close(d);
        return janus_errf(e, "%s: %s: cannot read its shape", fpath, dpath);
    }
    H5S_class_t sc = H5Sget_simple_extent_type(space);
    int rank = sc == H5S_SIMPLE ? H5Sget_simple_extent_ndims(space) : 0;
    hsize_t dims[H5S_MAX_RANK] = {0};
    if (sc == H5S_SIMPLE && rank > 0) H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    if (sc == H5S_SCALAR) {
        h5u_close(d);
        return janus_errf(e, "%s: %s: is a scalar, expected %s", fpath, dpath, want_shape);
    }
    if (sc != H5S_SIMPLE) {
        h5u_close(d);
        return janus_errf(e, "%s: %s: has no data (null dataspace), expected %s", fpath, dpath, want_shape);
    }
    if (rank != want_rank) {
        h5u_close(d);
        return janus_errf(e, "%s: %s: has %d dimensions, expected %s", fpath, dpath, rank, want_shape);
    }
    d->rank = rank;
    d->dims[0] = dims[0];
    d->dims[1] = rank == 2 ? dims[1] : 1;
    d->count = (int64_t)(d->dims[0] * d->dims[1]);
    d->ftype = H5Dget_type(obj);
    if (d->ftype < 0) {
        h5u_close(d);
        return janus_errf(e, "%s: %s: cannot read its type", fpath, dpath);
    }
    H5T_class_t c = H5Tget_class(d->ftype);
    if (c != cls) {
        h5u_close(d);
        return janus_errf(e, "%s: %s: type class is %s, expected %s", fpath, dpath, h5u_class_name(c),
                          h5u_class_name(cls));
    }
    return 0;
}

void h5u_close(h5u_dset *d) {
    if (d->ftype >= 0) H5Tclose(d->ftype);
    if (d->id >= 0) H5Dclose(d->id);
    d->ftype = -1;
    d->id = -1;
}

int h5u_read(const h5u_dset *d, hid_t memtype, void *buf, const char *fpath, const char *dpath, janus_err *e) {
    if (d->count == 0) return 0;
    if (H5Dread(d->id, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        return janus_errf(e, "%s: %s: cannot read (corrupt file or unconvertible type)", fpath, dpath);
    return 0;
}

// The shared front half of the 1-D readers: open, check class and length.
static int open_1d(hid_t file, const char *fpath, const char *dpath, H5T_class_t cls, int64_t want_n,
                   const char *why, h5u_dset *d, janus_err *e) {
    if (h5u_open(file, fpath, dpath, 1, cls, d, e)) return -1;
    if (want_n >= 0 && d->count != want_n) {
        janus_errf(e, "%s: %s: has %lld elements, expected %lld%s%s%s", fpath, dpath, (long long)d->count,
                   (long long)want_n, why ? " (" : "", why ? why : "", why ? ")" : "");
        h5u_close(d);
        return -1;
    }
    return 0;
}

// Read an integer dataset of any width/sign into int64 (buf: d->count elements).
static int read_ints(const h5u_dset *d, int64_t *buf, const char *fpath, const char *dpath, janus_err *e) {
    if (H5Tget_sign(d->ftype) == H5T_SGN_NONE && H5Tget_size(d->ftype) >= 8) {
        // uint64 in the file: HDF5 would clip values above INT64_MAX silently.
        uint64_t *u = xmalloc((size_t)d->count * sizeof *u);
        int rc = h5u_read(d, H5T_NATIVE_UINT64, u, fpath, dpath, e);
        for (int64_t i = 0; rc == 0 && i < d->count; i++) {
            if (u[i] > (uint64_t)INT64_MAX)
                rc = janus_errf(e, "%s: %s: element %lld is %llu, outside the int64 range", fpath, dpath,
                                (long long)i, (unsigned long long)u[i]);
            buf[i] = (int64_t)u[i];
        }
        free(u);
        return rc;
    }
    return h5u_read(d, H5T_NATIVE_INT64, buf, fpath, dpath, e);
}

int h5u_read_1d_i64(hid_t file, const char *fpath, const char *dpath, int64_t want_n, const char *why,
                    int64_t **out, int64_t *n, janus_err *e) {
    *out = NULL;
    h5u_dset d;
    if (open_1d(file, fpath, dpath, H5T_INTEGER, want_n, why, &d, e)) return -1;
    int64_t *buf = xmalloc((size_t)d.count * sizeof *buf);
    int rc = read_ints(&d, buf, fpath, dpath, e);
    if (rc == 0 && n) *n = d.count;
    h5u_close(&d);
    if (rc) { free(buf); return -1; }
    *out = buf;
    return 0;
}

// Narrowing integer read: values are read as int64 and checked against
// [lo, hi] unless the file type is known to fit the target (direct read).
static int read_narrow(hid_t file, const char *fpath, const char *dpath, int64_t want_n, const char *why,
                       hid_t memtype, size_t elsize, int is_signed, int64_t lo, int64_t hi,
                       const char *tname, void **out, int64_t *n, janus_err *e) {
    *out = NULL;
    h5u_dset d;
    if (open_1d(file, fpath, dpath, H5T_INTEGER, want_n, why, &d, e)) return -1;
    size_t fsize = H5Tget_size(d.ftype);
    int fsigned = H5Tget_sign(d.ftype) != H5T_SGN_NONE;
    // Fits when narrower than the target, or as wide with the same signedness
    // (a narrower unsigned type always fits a wider signed one).
    int fits = fsize < elsize ? (is_signed || !fsigned) : (fsize == elsize && fsigned == is_signed);
    void *buf = xmalloc((size_t)d.count * elsize);
    int rc;
    if (fits) {
        rc = h5u_read(&d, memtype, buf, fpath, dpath, e);
    } else {
        int64_t *wide = xmalloc((size_t)d.count * sizeof *wide);
        rc = read_ints(&d, wide, fpath, dpath, e);
        for (int64_t i = 0; rc == 0 && i < d.count; i++) {
            if (wide[i] < lo || wide[i] > hi) {
                rc = janus_errf(e, "%s: %s: element %lld is %lld, outside the %s range", fpath, dpath,
                                (long long)i, (long long)wide[i], tname);
            } else if (elsize == 4) {
                ((int32_t *)buf)[i] = (int32_t)wide[i];
            } else {
                ((uint8_t *)buf)[i] = (uint8_t)wide[i];
            }
        }
        free(wide);
    }
    if (rc == 0 && n) *n = d.count;
    h5u_close(&d);
    if (rc) { free(buf); return -1; }
    *out = buf;
    return 0;
}

int h5u_read_1d_i32(hid_t file, const char *fpath, const char *dpath, int64_t want_n, const char *why,
                    int32_t **out, int64_t *n, janus_err *e) {
    void *p;
    int rc = read_narrow(file, fpath, dpath, want_n, why, H5T_NATIVE_INT32, 4, 1, INT32_MIN, INT32_MAX,
                         "int32", &p, n, e);
    *out = p;
    return rc;
}

int h5u_read_1d_u8(hid_t file, const char *fpath, const char *dpath, int64_t want_n, const char *why,
                   uint8_t **out, int64_t *n, janus_err *e) {
    void *p;
    int rc = read_narrow(file, fpath, dpath, want_n, why, H5T_NATIVE_UINT8, 1, 0, 0, UINT8_MAX, "uint8", &p,
                         n, e);
    *out = p;
    return rc;
}

static int read_floats(hid_t file, const char *fpath, const char *dpath, int64_t want_n, const char *why,
                       hid_t memtype, size_t elsize, void **out, int64_t *n, janus_err *e) {
    *out = NULL;
    h5u_dset d;
    if (open_1d(file, fpath, dpath, H5T_FLOAT, want_n, why, &d, e)) return -1;
    void *buf = xmalloc((size_t)d.count * elsize);
    int rc = h5u_read(&d, memtype, buf, fpath, dpath, e);
    if (rc == 0 && n) *n = d.count;
    h5u_close(&d);
    if (rc) { free(buf); return -1; }
    *out = buf;
    return 0;
}

int h5u_read_1d_f32(hid_t file, const char *fpath, const char *dpath, int64_t want_n, const char *why,
                    float **out, int64_t *n, janus_err *e) {
    void *p;
    int rc = read_floats(file, fpath, dpath, want_n, why, H5T_NATIVE_FLOAT, sizeof(float), &p, n, e);
    *out = p;
    return rc;
}

int h5u_read_1d_f64(hid_t file, const char *fpath, const char *dpath, int64_t want_n, const char *why,
                    double **out, int64_t *n, janus_err *e) {
    void *p;
    int rc = read_floats(file, fpath, dpath, want_n, why, H5T_NATIVE_DOUBLE, sizeof(double), &p, n, e);
    *out = p;
    return rc;
}

int h5u_check_offsets(const char *fpath, const char *dpath, const int64_t *off, int64_t n, int64_t ntok,
                      const char *tokpath, janus_err *e) {
    if (off[0] != 0)
        return janus_errf(e, "%s: %s: first offset is %lld, expected 0", fpath, dpath, (long long)off[0]);
    for (int64_t i = 1; i <= n; i++)
        if (off[i] < off[i - 1])
            return janus_errf(e, "%s: %s: not non-decreasing at index %lld (%lld < %lld)", fpath, dpath,
                              (long long)i, (long long)off[i], (long long)off[i - 1]);
    if (off[n] != ntok)
        return janus_errf(e, "%s: %s: last offset is %lld, expected %lld (the length of %s)", fpath, dpath,
                          (long long)off[n], (long long)ntok, tokpath);
    return 0;
}

int h5u_write(hid_t file, const char *fpath, const char *dpath, hid_t filetype, hid_t memtype, int rank,
              const hsize_t *dims, const void *buf, janus_err *e) {
    hsize_t count = 1;
    for (int i = 0; i < rank; i++) count *= dims[i];
    if (count > 0 && !buf) return janus_errf(e, "%s: %s: no data given to write", fpath, dpath);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t d = -1;
    int rc = -1;
    if (lcpl >= 0 && space >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0)
        d = H5Dcreate2(file, dpath, filetype, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (d < 0)
        janus_errf(e, "%s: %s: cannot create the dataset", fpath, dpath);
    else if (count > 0 && H5Dwrite(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        janus_errf(e, "%s: %s: cannot write (disk full?)", fpath, dpath);
    else
        rc = 0;
    if (d >= 0) H5Dclose(d);
    if (space >= 0) H5Sclose(space);
    if (lcpl >= 0) H5Pclose(lcpl);
    return rc;
}

// ---- attributes ----------------------------------------------------------

static int attr_write(hid_t obj, const char *fpath, const char *name, hid_t type, const void *buf,
                      janus_err *e) {
    if (H5Aexists(obj, name) > 0) return janus_errf(e, "%s: root attribute %s: written twice", fpath, name);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = space >= 0 ? H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = -1;
    if (a < 0)
        janus_errf(e, "%s: root attribute %s: cannot create", fpath, name);
    else if (H5Awrite(a, type, buf) < 0)
        janus_errf(e, "%s: root attribute %s: cannot write", fpath, name);
    else
        rc = 0;
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    return rc;
}

int h5u_attr_write_str(hid_t obj, const char *fpath, const char *name, const char *val, janus_err *e) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        if (t >= 0) H5Tclose(t);
        return janus_errf(e, "%s: root attribute %s: cannot make a string type", fpath, name);
    }
    const char *p = val ? val : "";
    int rc = attr_write(obj, fpath, name, t, &p, e); // a variable-length string is written from a char*
    H5Tclose(t);
    return rc;
}

int h5u_attr_write_i64(hid_t obj, const char *fpath, const char *name, int64_t val, janus_err *e) {
    // Stored as little-endian int64; H5Awrite converts from the native type.
    if (H5Aexists(obj, name) > 0) return janus_errf(e, "%s: root attribute %s: written twice", fpath, name);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = space >= 0 ? H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &val) >= 0 ? 0 : -1;
    if (rc) janus_errf(e, "%s: root attribute %s: cannot write", fpath, name);
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    return rc;
}

int h5u_attr_write_f64(hid_t obj, const char *fpath, const char *name, double val, janus_err *e) {
    if (H5Aexists(obj, name) > 0) return janus_errf(e, "%s: root attribute %s: written twice", fpath, name);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = space >= 0 ? H5Acreate2(obj, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = a >= 0 && H5Awrite(a, H5T_NATIVE_DOUBLE, &val) >= 0 ? 0 : -1;
    if (rc) janus_errf(e, "%s: root attribute %s: cannot write", fpath, name);
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    return rc;
}

// Open attribute name of obj for reading a single value: 1 opened (*a, *type
// set), 0 absent, -1 error.
static int attr_open1(hid_t obj, const char *fpath, const char *name, hid_t *a, hid_t *type, janus_err *e) {
    *a = *type = -1;
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) return janus_errf(e, "%s: root attribute %s: cannot look it up", fpath, name);
    if (ex == 0) return 0;
    *a = H5Aopen(obj, name, H5P_DEFAULT);
    if (*a < 0) return janus_errf(e, "%s: root attribute %s: cannot open", fpath, name);
    hid_t space = H5Aget_space(*a);
    hssize_t np = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (space >= 0) H5Sclose(space);
    *type = H5Aget_type(*a);
    if (np != 1 || *type < 0) {
        if (*type >= 0) H5Tclose(*type);
        H5Aclose(*a);
        *a = *type = -1;
        return janus_errf(e, "%s: root attribute %s: has %lld values, expected one", fpath, name, (long long)np);
    }
    return 1;
}

int h5u_attr_read_str(hid_t obj, const char *fpath, const char *name, char **out, janus_err *e) {
    *out = NULL;
    hid_t a, t;
    int st = attr_open1(obj, fpath, name, &a, &t, e);
    if (st <= 0) return st;
    int rc = -1;
    H5T_class_t c = H5Tget_class(t);
    if (c != H5T_STRING) {
        janus_errf(e, "%s: root attribute %s: type class is %s, expected string", fpath, name, h5u_class_name(c));
    } else if (H5Tis_variable_str(t) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t));
        char *s = NULL;
        if (H5Aread(a, mt, &s) < 0) {
            janus_errf(e, "%s: root attribute %s: cannot read", fpath, name);
        } else {
            *out = xstrdup(s ? s : "");
            rc = 1;
        }
        if (s) H5free_memory(s);
        H5Tclose(mt);
    } else {
        size_t size = H5Tget_size(t);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, size);
        H5Tset_cset(mt, H5Tget_cset(t));
        H5Tset_strpad(mt, H5T_STR_NULLPAD);
        char *s = xcalloc(size + 1, 1);
        if (H5Aread(a, mt, s) < 0) {
            janus_errf(e, "%s: root attribute %s: cannot read", fpath, name);
            free(s);
        } else {
            s[size] = '\0';
            if (H5Tget_strpad(t) == H5T_STR_SPACEPAD) // Fortran-style: trailing blanks are padding
                for (size_t k = strlen(s); k > 0 && s[k - 1] == ' '; k--) s[k - 1] = '\0';
            *out = s;
            rc = 1;
        }
        H5Tclose(mt);
    }
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

static int attr_read_num(hid_t obj, const char *fpath, const char *name, int int_only, hid_t memtype,
                         void *out, janus_err *e) {
    hid_t a, t;
    int st = attr_open1(obj, fpath, name, &a, &t, e);
    if (st <= 0) return st;
    int rc = -1;
    H5T_class_t c = H5Tget_class(t);
    if (c != H5T_INTEGER && (int_only || c != H5T_FLOAT))
        janus_errf(e, "%s: root attribute %s: type class is %s, expected %s", fpath, name, h5u_class_name(c),
                   int_only ? "integer" : "a number");
    else if (H5Aread(a, memtype, out) < 0)
        janus_errf(e, "%s: root attribute %s: cannot read", fpath, name);
    else
        rc = 1;
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

int h5u_attr_read_i64(hid_t obj, const char *fpath, const char *name, int64_t *out, janus_err *e) {
    return attr_read_num(obj, fpath, name, 1, H5T_NATIVE_INT64, out, e);
}

int h5u_attr_read_f64(hid_t obj, const char *fpath, const char *name, double *out, janus_err *e) {
    return attr_read_num(obj, fpath, name, 0, H5T_NATIVE_DOUBLE, out, e);
}

typedef struct {
    char **names;
    int n, cap;
} name_list;

static herr_t collect_name(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    (void)loc;
    (void)info;
    name_list *l = data;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->names = xrealloc(l->names, (size_t)l->cap * sizeof *l->names);
    }
    l->names[l->n++] = xstrdup(name);
    return 0;
}

int h5u_attr_names(hid_t obj, const char *fpath, char ***names, int *n, janus_err *e) {
    name_list l = {0};
    // Creation order is only available when the file tracks it (ours do);
    // otherwise fall back to name order.
    if (H5Aiterate2(obj, H5_INDEX_CRT_ORDER, H5_ITER_INC, NULL, collect_name, &l) < 0) {
        h5u_free_names(l.names, l.n);
        l = (name_list){0};
        if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_name, &l) < 0) {
            h5u_free_names(l.names, l.n);
            *names = NULL;
            *n = 0;
            return janus_errf(e, "%s: root attributes: cannot list them", fpath);
        }
    }
    *names = l.names;
    *n = l.n;
    return 0;
}

void h5u_free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

// ---- atomic files -------------------------------------------------------

hid_t h5u_create_tmp(const char *path, char **tmp, janus_err *e) {
    h5u_quiet();
    size_t len = strlen(path) + 32;
    *tmp = xmalloc(len);
    snprintf(*tmp, len, "%s.tmp.%ld", path, (long)getpid());
    // Create the file ourselves first: HDF5 does not say why a create failed.
    int fd = open(*tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        janus_errf(e, "%s: cannot create the temporary file %s: %s", path, *tmp, strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return -1;
    }
    close(fd);
    // Track attribute creation order so readers list the run's attributes in
    // the order they were written.
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fcpl >= 0) H5Pset_attr_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    hid_t fapl = strong_fapl();
    hid_t f = H5Fcreate(*tmp, H5F_ACC_TRUNC, fcpl >= 0 ? fcpl : H5P_DEFAULT, fapl >= 0 ? fapl : H5P_DEFAULT);
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (f < 0) {
        janus_errf(e, "%s: cannot create the HDF5 file %s", path, *tmp);
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
        return -1;
    }
    janus_cleanup_add(*tmp); // unlinked if the job dies before h5u_finish_tmp
    return f;
}

int h5u_finish_tmp(hid_t file, char **tmp, const char *path, int ok, janus_err *e) {
    if (H5Fclose(file) < 0 && ok) {
        janus_errf(e, "%s: cannot finish writing %s (disk full?)", path, *tmp);
        ok = 0;
    }
    if (ok && rename(*tmp, path) != 0) {
        janus_errf(e, "%s: cannot rename %s onto it: %s", path, *tmp, strerror(errno));
        ok = 0;
    }
    if (!ok) unlink(*tmp);
    janus_cleanup_remove(*tmp);
    free(*tmp);
    *tmp = NULL;
    return ok ? 0 : -1;
}
