// io/results.h: the results file (DESIGN section 7).
// Layout (HDF5, CSR): root attrs format="janus-results", version=1 and the run's
// attributes (model, plan JSON, rank layout, versions, wall time, throughput...);
//   /results/ids           int64   [N]    same order as the requests
//   /results/offsets       int64   [N+1]
//   /results/tokens        int32   [G]    generated tokens
//   /results/logprobs      float32 [G]    log-softmax of each generated token
//   /results/finish_reason uint8   [N]    0 length, 1 stop (eos)
//   /results/ttft_s        float64 [N]
//   /results/tpot_s        float64 [N]
//   /stats/expert_counts   int64   [layers, experts]
//   /progress/time_s, /progress/tokens, /progress/requests_done  [P] (optional timeline)
// The file is written whole to "<path>.tmp.<pid>" and renamed onto <path> only
// when complete, so a file at <path> is never half written.
#ifndef JANUS_IO_RESULTS_H
#define JANUS_IO_RESULTS_H

#include "common.h"

typedef struct {
    const char *name;
    const char *str;   // string attribute, or NULL for a number
    double num;
} janus_attr;

typedef struct {
    int64_t n;
    int64_t *ids;           // [n]
    int64_t *offsets;       // [n+1]
    int32_t *tokens;        // [offsets[n]]
    float *logprobs;        // [offsets[n]]
    uint8_t *finish_reason; // [n]
    double *ttft_s;         // [n]
    double *tpot_s;         // [n]
    int n_layers, n_experts;
    int64_t *expert_counts; // [n_layers * n_experts], may be NULL when n_layers == 0
    int n_attrs;
    janus_attr *attrs;      // root attributes besides format and version
    int64_t n_progress;     // timeline of the run (0: none): /progress/time_s, /progress/tokens,
    double *progress_time_s;   // /progress/requests_done: seconds since generation began,
    int64_t *progress_tokens;  // tokens generated and requests done by then (whole job)
    int64_t *progress_done;
} janus_results;

int janus_results_write(const char *path, const janus_results *r, janus_err *e);
// Read a results file (arrays allocated; attrs read as well, names/strings owned).
int janus_results_read(const char *path, janus_results *r, janus_err *e);
void janus_results_free(janus_results *r); // only for what janus_results_read allocated

#endif
