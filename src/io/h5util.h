// io/h5util.h: the small HDF5 helpers the requests and results files share:
// silencing HDF5's own error printing, opening a dataset with its rank and type
// class checked, whole-dataset reads with HDF5 type conversion (integers
// range-checked when narrowed), dataset and attribute writes, and the
// "write to <path>.tmp.<pid>, then rename" protocol.
//
// Error messages follow common.h: "<file path>: <field>: <what is wrong>", where
// <field> is a dataset path ("/requests/tokens") or "root attribute <name>".
// Every function that takes a janus_err fills it on failure and returns -1.
#ifndef JANUS_IO_H5UTIL_H
#define JANUS_IO_H5UTIL_H

#include <hdf5.h>

#include "common.h"

// Turn off HDF5's automatic error-stack printing so only our messages appear.
// (A library-wide HDF5 setting; idempotent; every public io entry calls it.)
void h5u_quiet(void);

// "integer", "float", "string", ... for messages.
const char *h5u_class_name(H5T_class_t c);

// Open an existing file read-only. Missing file, unreadable file and non-HDF5
// file each get their own message naming the path.
hid_t h5u_open_file(const char *path, janus_err *e);

// Whether every component of the absolute object path exists (links only; the
// object itself is not opened). 1 yes, 0 no. *missing_at (if not NULL) is set
// to the length of the first missing prefix, e.g. 9 for "/requests" when the
// group /requests is absent.
int h5u_exists(hid_t file, const char *objpath, size_t *missing_at);

// An open dataset with its shape.
typedef struct {
    hid_t id;        // dataset id, or -1
    int rank;        // 1 or 2
    hsize_t dims[2]; // dims[1] == 1 when rank == 1
    int64_t count;   // elements in all
    hid_t ftype;     // the dataset's file type (closed by h5u_close)
} h5u_dset;

// Open dataset dpath of file fpath; check it exists, is a dataset, has exactly
// want_rank dimensions (1 or 2) and type class cls (H5T_INTEGER or H5T_FLOAT).
int h5u_open(hid_t file, const char *fpath, const char *dpath, int want_rank, H5T_class_t cls,
             h5u_dset *d, janus_err *e);
void h5u_close(h5u_dset *d);

// Read the whole dataset into buf (d->count elements of memtype, converted by
// HDF5). Nothing is read when d->count == 0 (buf may then be NULL).
int h5u_read(const h5u_dset *d, hid_t memtype, void *buf, const char *fpath, const char *dpath, janus_err *e);

// Open + check + allocate + read a 1-D dataset as a native array.
// want_n >= 0: the dataset must have exactly want_n elements (the message says
// "has X elements, expected want_n" followed by " (why)" when why != NULL).
// want_n < 0: any length. *out gets a fresh xmalloc'ed array (at least one byte
// even when empty), *n its length (n may be NULL).
// Integer readers accept any integer width/sign in the file and fail with the
// index and value of an element that does not fit the target type.
int h5u_read_1d_i64(hid_t file, const char *fpath, const char *dpath, int64_t want_n, const char *why,
                    int64_t **out, int64_t *n, janus_err *e);
int h5u_read_1d_i32(hid_t file, const char *fpath, const char *dpath, int64_t want_n, const char *why,
                    int32_t **out, int64_t *n, janus_err *e);
int h5u_read_1d_u8(hid_t file, const char *fpath, const char *dpath, int64_t want_n, const char *why,
                   uint8_t **out, int64_t *n, janus_err *e);
int h5u_read_1d_f32(hid_t file, const char *fpath, const char *dpath, int64_t want_n, const char *why,
                    float **out, int64_t *n, janus_err *e);
int h5u_read_1d_f64(hid_t file, const char *fpath, const char *dpath, int64_t want_n, const char *why,
                    double **out, int64_t *n, janus_err *e);

// CSR offsets off[n+1] (dataset dpath) indexing a flat array of ntok elements
// (dataset tokpath): off[0] == 0, non-decreasing, off[n] == ntok.
int h5u_check_offsets(const char *fpath, const char *dpath, const int64_t *off, int64_t n, int64_t ntok,
                      const char *tokpath, janus_err *e);

// Write a rank-1 or rank-2 dataset at dpath (intermediate groups created),
// contiguous, stored as filetype (e.g. H5T_STD_I64LE) from buf of memtype
// (e.g. H5T_NATIVE_INT64). dims may contain 0 (an empty dataset; buf may be NULL).
int h5u_write(hid_t file, const char *fpath, const char *dpath, hid_t filetype, hid_t memtype, int rank,
              const hsize_t *dims, const void *buf, janus_err *e);

// Scalar attributes on obj (the file id for root attributes). Strings are
// stored as variable-length UTF-8 (what h5py writes for a Python str, and of
// unlimited size); numbers as int64 / float64.
int h5u_attr_write_str(hid_t obj, const char *fpath, const char *name, const char *val, janus_err *e);
int h5u_attr_write_i64(hid_t obj, const char *fpath, const char *name, int64_t val, janus_err *e);
int h5u_attr_write_f64(hid_t obj, const char *fpath, const char *name, double val, janus_err *e);

// Read scalar (or single-element) attributes. Return 1 when read, 0 when the
// attribute does not exist, -1 on error (wrong type class, not one element).
// Strings may be fixed-length or variable-length; *out is xmalloc'ed.
// Integer attributes must have an integer class; the f64 reader accepts either.
int h5u_attr_read_str(hid_t obj, const char *fpath, const char *name, char **out, janus_err *e);
int h5u_attr_read_i64(hid_t obj, const char *fpath, const char *name, int64_t *out, janus_err *e);
int h5u_attr_read_f64(hid_t obj, const char *fpath, const char *name, double *out, janus_err *e);

// Names of all attributes of obj (creation order when the file tracks it, else
// name order). *names is an xmalloc'ed array of *n xstrdup'ed names.
int h5u_attr_names(hid_t obj, const char *fpath, char ***names, int *n, janus_err *e);
void h5u_free_names(char **names, int n);

// Atomic whole-file writes. h5u_create_tmp creates "<path>.tmp.<pid>" (its
// name returned in *tmp, xmalloc'ed) and returns the file id. h5u_finish_tmp
// closes the file; when ok it renames the temporary file onto path, otherwise
// (or when closing/renaming fails) it unlinks it. It frees *tmp. Returns 0 when
// the file at path is complete, -1 otherwise (e keeps an earlier message when
// ok was 0).
hid_t h5u_create_tmp(const char *path, char **tmp, janus_err *e);
int h5u_finish_tmp(hid_t file, char **tmp, const char *path, int ok, janus_err *e);

#endif
