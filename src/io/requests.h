// io/requests.h: the requests file (DESIGN section 7): reading and checking it.
// Layout (HDF5, CSR): root attrs format="janus-requests", version=1;
//   /requests/ids            int64   [N]    unique request ids
//   /requests/offsets        int64   [N+1]  prompt i = tokens[offsets[i]:offsets[i+1]]
//   /requests/tokens         int32   [T]
//   /requests/max_new_tokens int32   [N]
//   /requests/temperature    float32 [N]    optional, default 0 (greedy)
//   /requests/top_p          float32 [N]    optional, default 1
//   /requests/top_k          int32   [N]    optional, default 0 (off)
//   /requests/seed           int64   [N]    optional, default 0
#ifndef JANUS_IO_REQUESTS_H
#define JANUS_IO_REQUESTS_H

#include "common.h"

typedef struct {
    char *path;
    int64_t n;            // number of requests
    int64_t *ids;         // [n]
    int64_t *offsets;     // [n+1], offsets[0] == 0, non-decreasing
    int32_t *tokens;      // [offsets[n]]
    int32_t *max_new;     // [n], >= 1
    float *temperature;   // [n], >= 0
    float *top_p;         // [n], in (0, 1]
    int32_t *top_k;       // [n], >= 0
    int64_t *seed;        // [n]
} janus_requests;

// Read and check the file's structure: format attribute, every required dataset
// present with an integer/float class as listed, 1-D, consistent lengths,
// offsets starting at 0, non-decreasing and ending at the token count,
// unique ids, max_new_tokens >= 1, sampling fields in range.
// Returns 0, or -1 with e->msg = "<path>: <field>: <what is wrong>".
int janus_requests_read(const char *path, janus_requests *r, janus_err *e);

// Check the requests against a model: every prompt non-empty, every token id
// in [0, vocab), prompt length + max_new_tokens <= max_context.
int janus_requests_check_model(const janus_requests *r, int vocab, int max_context, janus_err *e);

// Write a requests file (tests, tools, demos). Optional arrays may be NULL.
int janus_requests_write(const char *path, const janus_requests *r, janus_err *e);

void janus_requests_free(janus_requests *r);

#endif
