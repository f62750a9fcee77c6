// io/parts.c: per-rank append-only part files and their recovery (parts.h).
#include "io/parts.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define PART_MAGIC 0x4a414e55u // "JANU"
enum { REC_REQUEST = 1, REC_STATS = 2 };

// FNV-1a, 32 bits: catches torn and corrupted records (not an adversary).
static uint32_t checksum(const uint8_t *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

void janus_parts_dir(const char *out, char *dir, size_t n) { snprintf(dir, n, "%s.parts", out); }

int janus_parts_open(janus_parts_writer *w, const char *out, int run, int rank, janus_err *e) {
    char dir[1100];
    janus_parts_dir(out, dir, sizeof dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return janus_errf(e, "%s: cannot create the parts directory: %s", dir, strerror(errno));
    snprintf(w->path, sizeof w->path, "%s/run-%d.rank-%d.bin", dir, run, rank);
    w->fd = open(w->path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (w->fd < 0) return janus_errf(e, "%s: cannot open for appending: %s", w->path, strerror(errno));
    return 0;
}

static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        b += k, n -= (size_t)k;
    }
    return 0;
}

static int put_record(janus_parts_writer *w, uint32_t kind, const uint8_t *payload, uint64_t len, janus_err *e) {
    // One write() of the whole record, so a kill leaves at most one torn tail.
    size_t total = 16 + len + 4;
    uint8_t *buf = xmalloc(total);
    uint32_t magic = PART_MAGIC, ck = checksum(payload, len);
    memcpy(buf, &magic, 4);
    memcpy(buf + 4, &kind, 4);
    memcpy(buf + 8, &len, 8);
    memcpy(buf + 16, payload, len);
    memcpy(buf + 16 + len, &ck, 4);
    int rc = write_all(w->fd, buf, total);
    free(buf);
    if (rc) return janus_errf(e, "%s: write failed: %s", w->path, strerror(errno));
    return 0;
}

int janus_parts_append(janus_parts_writer *w, int64_t idx, int64_t id, int32_t n, const int32_t *tokens,
                       const float *logprobs, uint8_t finish, double ttft_s, double tpot_s, janus_err *e) {
    uint64_t len = 8 + 8 + 4 + 1 + 8 + 8 + 8 * (uint64_t)n;
    uint8_t *p = xmalloc(len), *q = p;
    memcpy(q, &idx, 8), q += 8;
    memcpy(q, &id, 8), q += 8;
    memcpy(q, &n, 4), q += 4;
    *q++ = finish;
    memcpy(q, &ttft_s, 8), q += 8;
    memcpy(q, &tpot_s, 8), q += 8;
    memcpy(q, tokens, 4 * (size_t)n), q += 4 * (size_t)n;
    memcpy(q, logprobs, 4 * (size_t)n);
    int rc = put_record(w, REC_REQUEST, p, len, e);
    free(p);
    return rc;
}

int janus_parts_stats(janus_parts_writer *w, int layers, int experts, const int64_t *counts, janus_err *e) {
    uint64_t len = 8 + 8 * (uint64_t)layers * experts;
    uint8_t *p = xmalloc(len);
    int32_t le[2] = {layers, experts};
    memcpy(p, le, 8);
    memcpy(p + 8, counts, 8 * (size_t)layers * experts);
    int rc = put_record(w, REC_STATS, p, len, e);
    free(p);
    return rc;
}

int janus_parts_sync(janus_parts_writer *w) { return w->fd >= 0 ? fsync(w->fd) : 0; }

void janus_parts_close(janus_parts_writer *w) {
    if (w->fd >= 0) {
        fsync(w->fd);
        close(w->fd);
    }
    w->fd = -1;
}

static int load_file(const char *path, int64_t n, const int64_t *ids, int layers, int experts, janus_parts_state *s,
                     janus_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return janus_errf(e, "%s: cannot open: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size < 0) { // not a regular file: fread below would overrun buf
        fclose(f);
        return janus_errf(e, "%s: cannot read: %s", path, strerror(errno));
    }
    uint8_t *buf = xmalloc(size > 0 ? (size_t)size : 1);
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    size_t at = 0;
    int64_t *last_stats = NULL;
    while (at < got) {
        uint32_t magic, kind, ck;
        uint64_t len;
        if (got - at < 16) { s->records_dropped++; break; }
        memcpy(&magic, buf + at, 4), memcpy(&kind, buf + at + 4, 4), memcpy(&len, buf + at + 8, 8);
        if (magic != PART_MAGIC || len > got - at - 16 || got - at - 16 - len < 4) { s->records_dropped++; break; }
        const uint8_t *p = buf + at + 16;
        memcpy(&ck, p + len, 4);
        if (ck != checksum(p, len)) { s->records_dropped++; break; }
        at += 16 + len + 4;
        if (kind == REC_REQUEST && len >= 37) {
            int64_t idx, id;
            int32_t k;
            memcpy(&idx, p, 8), memcpy(&id, p + 8, 8), memcpy(&k, p + 16, 4);
            if (k < 0 || len != 37 + 8 * (uint64_t)k) { s->records_dropped++; continue; }
            if (idx < 0 || idx >= n || ids[idx] != id) {
                free(buf);
                free(last_stats);
                return janus_errf(e, "%s: a request (index %lld, id %lld) that is not in this requests file: the parts come from another run; delete them or use another --out",
                                  path, (long long)idx, (long long)id);
            }
            if (s->done[idx]) continue; // a repeat in a later run cannot happen; keep the first
            s->done[idx] = 1;
            s->n_done++;
            s->n_gen[idx] = k;
            s->finish[idx] = p[20];
            memcpy(&s->ttft_s[idx], p + 21, 8), memcpy(&s->tpot_s[idx], p + 29, 8);
            s->tokens[idx] = xmalloc(4 * (size_t)(k ? k : 1));
            s->logprobs[idx] = xmalloc(4 * (size_t)(k ? k : 1));
            memcpy(s->tokens[idx], p + 37, 4 * (size_t)k);
            memcpy(s->logprobs[idx], p + 37 + 4 * (size_t)k, 4 * (size_t)k);
        } else if (kind == REC_STATS && len >= 8) {
            int32_t le[2];
            memcpy(le, p, 8);
            if (le[0] != layers || le[1] != experts || len != 8 + 8 * (uint64_t)layers * experts) continue;
            if (!last_stats) last_stats = xmalloc(8 * (size_t)layers * experts);
            memcpy(last_stats, p + 8, 8 * (size_t)layers * experts);
        }
    }
    if (last_stats)
        for (int64_t i = 0; i < (int64_t)layers * experts; i++) s->counts[i] += last_stats[i];
    free(last_stats);
    free(buf);
    return 0;
}

int janus_parts_load(const char *out, int64_t n, const int64_t *ids, int layers, int experts, janus_parts_state *s,
                     janus_err *e) {
    memset(s, 0, sizeof *s);
    s->n = n;
    s->done = xcalloc(n ? n : 1, 1);
    s->n_gen = xcalloc(n ? n : 1, sizeof(int32_t));
    s->tokens = xcalloc(n ? n : 1, sizeof(int32_t *));
    s->logprobs = xcalloc(n ? n : 1, sizeof(float *));
    s->finish = xcalloc(n ? n : 1, 1);
    s->ttft_s = xcalloc(n ? n : 1, sizeof(double));
    s->tpot_s = xcalloc(n ? n : 1, sizeof(double));
    s->counts = xcalloc((size_t)layers * experts > 0 ? (size_t)layers * experts : 1, sizeof(int64_t));
    char dir[1100];
    janus_parts_dir(out, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    char **names = NULL;
    int nn = 0;
    while ((de = readdir(d))) {
        int run, rank;
        if (sscanf(de->d_name, "run-%d.rank-%d.bin", &run, &rank) != 2) continue;
        if (run + 1 > s->next_run) s->next_run = run + 1;
        names = xrealloc(names, sizeof(char *) * (nn + 1));
        names[nn++] = xstrdup(de->d_name);
    }
    closedir(d);
    int rc = 0;
    for (int i = 0; i < nn && !rc; i++) {
        char path[2300];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = load_file(path, n, ids, layers, experts, s, e);
    }
    for (int i = 0; i < nn; i++) free(names[i]);
    free(names);
    return rc;
}

void janus_parts_state_free(janus_parts_state *s) {
    for (int64_t i = 0; i < s->n; i++) free(s->tokens[i]), free(s->logprobs[i]);
    free(s->done), free(s->n_gen), free(s->tokens), free(s->logprobs), free(s->finish), free(s->ttft_s), free(s->tpot_s);
    free(s->counts);
    memset(s, 0, sizeof *s);
}

void janus_parts_remove(const char *out) {
    char dir[1100];
    janus_parts_dir(out, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[2300];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}
