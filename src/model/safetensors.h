// model/safetensors.h: memory-mapped *.safetensors files of one checkpoint
// directory (single file, sharded with model.safetensors.index.json, or every
// *.safetensors file in the directory), and lookup of tensors by name.
// Nothing is copied: a tensor is a pointer into the mapping.
#ifndef JANUS_MODEL_SAFETENSORS_H
#define JANUS_MODEL_SAFETENSORS_H

#include "common.h"

typedef struct {
    const char *name;   // owned by the set
    const char *file;   // path of the file holding it
    janus_dtype dtype;
    bool dtype_ok;      // false: a dtype janus does not compute with (reported on use)
    char dtype_name[12];
    int ndim;
    int64_t shape[4];
    const void *data;   // into the mapping
    size_t nbytes;
} janus_tensor;

typedef struct {
    int n_files;
    char **paths;
    void **maps;
    size_t *map_bytes;
    int n_tensors;
    janus_tensor *tensors; // sorted by name
} janus_st;

// Opens and checks every file: header length within the file, valid JSON,
// each tensor's data_offsets inside the data region and matching
// shape x dtype size. Errors name the file and the tensor.
int janus_st_open(const char *dir, janus_st *st, janus_err *e);
void janus_st_close(janus_st *st);
const janus_tensor *janus_st_find(const janus_st *st, const char *name);

#endif
