// model/safetensors.c: opens, checks and memory-maps safetensors files.
// Format: u64 little-endian header size N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the data region; offsets are relative to the data region.
#include "model/safetensors.h"

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const janus_tensor *)a)->name, ((const janus_tensor *)b)->name);
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

// The list of files: from the index if there is one, else model.safetensors,
// else every *.safetensors in the directory (sorted).
static int list_files(const char *dir, janus_st *st, janus_err *e) {
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        json_error_t je;
        json_t *root = json_load_file(path, 0, &je);
        if (!root) return janus_errf(e, "%s: line %d: invalid JSON: %s", path, je.line, je.text);
        json_t *wm = json_object_get(root, "weight_map");
        if (!json_is_object(wm)) {
            json_decref(root);
            return janus_errf(e, "%s: weight_map: missing or not an object", path);
        }
        const char *k;
        json_t *v;
        char **names = NULL;
        int n = 0;
        json_object_foreach(wm, k, v) {
            const char *f = json_string_value(v);
            if (!f || strchr(f, '/')) {
                json_decref(root);
                for (int i = 0; i < n; i++) free(names[i]);
                free(names);
                return janus_errf(e, "%s: weight_map.%s: not a file name", path, k);
            }
            bool seen = false;
            for (int i = 0; i < n && !seen; i++) seen = strcmp(names[i], f) == 0;
            if (!seen) {
                // A shard the index names must be a file in the directory.
                char p[1400];
                snprintf(p, sizeof p, "%s/%s", dir, f);
                struct stat fsb;
                if (stat(p, &fsb) != 0 || !S_ISREG(fsb.st_mode)) {
                    janus_errf(e, "%s: weight_map.%s: shard %s %s", path, k, p,
                               stat(p, &fsb) != 0 ? "does not exist" : "is not a regular file");
                    json_decref(root);
                    for (int i = 0; i < n; i++) free(names[i]);
                    free(names);
                    return -1;
                }
                names = xrealloc(names, sizeof(char *) * (n + 1));
                names[n++] = xstrdup(f);
            }
        }
        json_decref(root);
        qsort(names, n, sizeof(char *), cmp_str);
        st->paths = xcalloc(n, sizeof(char *));
        for (int i = 0; i < n; i++) {
            char p[1400];
            snprintf(p, sizeof p, "%s/%s", dir, names[i]);
            st->paths[i] = xstrdup(p);
            free(names[i]);
        }
        free(names);
        st->n_files = n;
        if (n == 0) return janus_errf(e, "%s: weight_map: empty", path);
        return 0;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (stat(path, &sb) == 0) {
        st->paths = xcalloc(1, sizeof(char *));
        st->paths[0] = xstrdup(path);
        st->n_files = 1;
        return 0;
    }
    DIR *d = opendir(dir);
    if (!d) return janus_errf(e, "%s: cannot open the model directory", dir);
    struct dirent *de;
    char **names = NULL;
    int n = 0;
    while ((de = readdir(d))) {
        if (!ends_with(de->d_name, ".safetensors")) continue;
        names = xrealloc(names, sizeof(char *) * (n + 1));
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (n == 0) return janus_errf(e, "%s: no *.safetensors file in the model directory", dir);
    qsort(names, n, sizeof(char *), cmp_str);
    st->paths = xcalloc(n, sizeof(char *));
    for (int i = 0; i < n; i++) {
        char p[1400];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        st->paths[i] = xstrdup(p);
        free(names[i]);
    }
    free(names);
    st->n_files = n;
    return 0;
}

static int parse_dtype(const char *s, janus_tensor *t) {
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", s);
    t->dtype_ok = true;
    if (!strcmp(s, "F32")) t->dtype = JANUS_F32;
    else if (!strcmp(s, "F16")) t->dtype = JANUS_F16;
    else if (!strcmp(s, "BF16")) t->dtype = JANUS_BF16;
    else t->dtype_ok = false;
    return 0;
}

static size_t other_dtype_size(const char *s) {
    if (!strcmp(s, "F64") || !strcmp(s, "I64") || !strcmp(s, "U64")) return 8;
    if (!strcmp(s, "I32") || !strcmp(s, "U32")) return 4;
    if (!strcmp(s, "I16") || !strcmp(s, "U16")) return 2;
    if (!strcmp(s, "I8") || !strcmp(s, "U8") || !strcmp(s, "BOOL") || !strncmp(s, "F8", 2)) return 1;
    return 0;
}

static int open_one(janus_st *st, int fi, janus_err *e) {
    const char *path = st->paths[fi];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return janus_errf(e, "%s: cannot open (missing or unreadable)", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0) { close(fd); return janus_errf(e, "%s: cannot stat", path); }
    size_t size = (size_t)sb.st_size;
    if (size < 8) { close(fd); return janus_errf(e, "%s: truncated (%zu bytes, no header)", path, size); }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return janus_errf(e, "%s: mmap failed", path);
    st->maps[fi] = map;
    st->map_bytes[fi] = size;
    uint64_t hlen = 0;
    memcpy(&hlen, map, 8); // little-endian host assumed (x86-64, aarch64)
    if (hlen > size - 8) return janus_errf(e, "%s: header length %llu exceeds the file (%zu bytes): truncated or not a safetensors file", path, (unsigned long long)hlen, size);
    json_error_t je;
    json_t *root = json_loadb((const char *)map + 8, hlen, 0, &je);
    if (!root || !json_is_object(root)) {
        if (root) json_decref(root);
        if (root) return janus_errf(e, "%s: header is JSON but not an object", path);
        return janus_errf(e, "%s: header is not a JSON object (%s)", path, je.text);
    }
    const uint8_t *data = (const uint8_t *)map + 8 + hlen;
    size_t data_bytes = size - 8 - hlen;
    const char *name;
    json_t *v;
    int rc = 0;
    json_object_foreach(root, name, v) {
        if (!strcmp(name, "__metadata__")) continue;
        janus_tensor t = {0};
        t.file = path;
        const char *ds = json_string_value(json_object_get(v, "dtype"));
        json_t *shape = json_object_get(v, "shape"), *offs = json_object_get(v, "data_offsets");
        if (!ds || !json_is_array(shape) || !json_is_array(offs) || json_array_size(offs) != 2) {
            rc = janus_errf(e, "%s: tensor %s: header entry lacks dtype, shape or data_offsets", path, name);
            break;
        }
        parse_dtype(ds, &t);
        size_t esize = t.dtype_ok ? janus_dtype_size(t.dtype) : other_dtype_size(ds);
        if (!esize) { rc = janus_errf(e, "%s: tensor %s: unknown dtype %s", path, name, ds); break; }
        if (json_array_size(shape) > 4) { rc = janus_errf(e, "%s: tensor %s: more than 4 dimensions", path, name); break; }
        t.ndim = (int)json_array_size(shape);
        uint64_t count = 1;
        for (int d = 0; d < t.ndim; d++) {
            json_t *s = json_array_get(shape, d);
            if (!json_is_integer(s) || json_integer_value(s) < 0) { rc = janus_errf(e, "%s: tensor %s: bad shape", path, name); break; }
            t.shape[d] = json_integer_value(s);
            if (__builtin_mul_overflow(count, (uint64_t)t.shape[d], &count)) {
                rc = janus_errf(e, "%s: tensor %s: bad shape (too many elements)", path, name);
                break;
            }
        }
        if (rc) break;
        json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
        if (!json_is_integer(b) || !json_is_integer(en) || json_integer_value(b) < 0 ||
            json_integer_value(en) < json_integer_value(b)) {
            rc = janus_errf(e, "%s: tensor %s: bad data_offsets", path, name);
            break;
        }
        uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(en);
        uint64_t need;
        if (__builtin_mul_overflow(count, (uint64_t)esize, &need)) {
            rc = janus_errf(e, "%s: tensor %s: bad shape (too many bytes)", path, name);
            break;
        }
        if (end - begin != need) {
            rc = janus_errf(e, "%s: tensor %s: data_offsets span %llu bytes but shape x dtype needs %llu: the header lies about sizes",
                            path, name, (unsigned long long)(end - begin), (unsigned long long)need);
            break;
        }
        if (end > data_bytes) {
            rc = janus_errf(e, "%s: tensor %s: data ends at byte %llu of a %zu-byte data region: the file is truncated",
                            path, name, (unsigned long long)end, data_bytes);
            break;
        }
        t.data = data + begin;
        t.nbytes = end - begin;
        t.name = xstrdup(name);
        st->tensors = xrealloc(st->tensors, sizeof(janus_tensor) * (st->n_tensors + 1));
        st->tensors[st->n_tensors++] = t;
    }
    json_decref(root);
    return rc;
}

int janus_st_open(const char *dir, janus_st *st, janus_err *e) {
    memset(st, 0, sizeof *st);
    if (list_files(dir, st, e)) return -1;
    st->maps = xcalloc(st->n_files, sizeof(void *));
    st->map_bytes = xcalloc(st->n_files, sizeof(size_t));
    for (int i = 0; i < st->n_files; i++)
        if (open_one(st, i, e)) return -1;
    qsort(st->tensors, st->n_tensors, sizeof(janus_tensor), cmp_tensor);
    for (int i = 1; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, st->tensors[i - 1].name))
            return janus_errf(e, "%s: tensor %s: also in %s", st->tensors[i].file, st->tensors[i].name, st->tensors[i - 1].file);
    return 0;
}

void janus_st_close(janus_st *st) {
    for (int i = 0; i < st->n_tensors; i++) free((char *)st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < st->n_files; i++) {
        if (st->maps && st->maps[i]) munmap(st->maps[i], st->map_bytes[i]);
        free(st->paths[i]);
    }
    free(st->paths);
    free(st->maps);
    free(st->map_bytes);
    memset(st, 0, sizeof *st);
}

const janus_tensor *janus_st_find(const janus_st *st, const char *name) {
    janus_tensor key = {.name = name};
    return bsearch(&key, st->tensors, st->n_tensors, sizeof(janus_tensor), cmp_tensor);
}
