// io/parts.h: per-rank part files: every attention rank appends each finished
// request to OUT.parts/run-K.rank-R.bin as it completes, so an interrupted job
// (Slurm time limit, preemption, SIGKILL) loses at most the requests in flight.
// `--resume` reads every part file of every earlier run (any rank count),
// skips the requests found there, and the final file merges old and new.
//
// Record layout (little-endian, packed): u32 magic, u32 kind, u64 payload
// bytes, payload, u32 checksum of the payload. Kinds: a finished request
// (i64 index, i64 id, i32 n, u8 finish, f64 ttft, f64 tpot, i32 tokens[n],
// f32 logprobs[n]) or this rank's cumulative expert counts (i32 layers,
// i32 experts, i64 counts[layers * experts]). A torn last record (killed
// mid-write) fails its length or checksum and is dropped with its request,
// which then runs again.
#ifndef JANUS_IO_PARTS_H
#define JANUS_IO_PARTS_H

#include "common.h"

typedef struct {
    int fd;
    char path[2200];
} janus_parts_writer;

// Directory of the parts of OUT: "OUT.parts".
void janus_parts_dir(const char *out, char *dir, size_t n);

int janus_parts_open(janus_parts_writer *w, const char *out, int run, int rank, janus_err *e);
int janus_parts_append(janus_parts_writer *w, int64_t idx, int64_t id, int32_t n, const int32_t *tokens,
                       const float *logprobs, uint8_t finish, double ttft_s, double tpot_s, janus_err *e);
int janus_parts_stats(janus_parts_writer *w, int layers, int experts, const int64_t *counts, janus_err *e);
int janus_parts_sync(janus_parts_writer *w); // fsync
void janus_parts_close(janus_parts_writer *w);

// What earlier runs left: per request (index into the requests file) whether it
// is done and its results; the summed expert counts; the next run number.
typedef struct {
    int64_t n;
    uint8_t *done;          // [n]
    int32_t *n_gen;         // [n]
    int32_t **tokens;       // [n]
    float **logprobs;       // [n]
    uint8_t *finish;        // [n]
    double *ttft_s, *tpot_s;
    int64_t *counts;        // [layers * experts], summed over part files
    int next_run;
    int64_t n_done, records_dropped;
} janus_parts_state;

// Reads every part file of OUT (none: an empty state with next_run 0). ids
// checks that the parts belong to this requests file.
int janus_parts_load(const char *out, int64_t n, const int64_t *ids, int layers, int experts, janus_parts_state *s,
                     janus_err *e);
void janus_parts_state_free(janus_parts_state *s);
// Removes OUT.parts and its files (after the final file is in place).
void janus_parts_remove(const char *out);

#endif
