// engine/generate.h: continuous batching on one attention rank: admits
// requests while the batch and the paged KV cache have room, mixes chunked
// prefill with decode tokens in every step, samples, stops on EOS or
// max_new_tokens, and keeps each request's tokens, logprobs and latencies.
#ifndef JANUS_ENGINE_GENERATE_H
#define JANUS_ENGINE_GENERATE_H

#include "engine/forward.h"
#include "engine/sample.h"
#include <signal.h>

#include "io/parts.h"
#include "io/requests.h"

typedef struct {
    int max_batch;          // sequences in flight
    int max_step_tokens;    // tokens per step (decode + prefill chunks)
    int block_size;         // KV positions per block
    int kv_blocks;          // blocks in the pool
    double progress_s;      // seconds between progress lines (rank 0), 0: none
    janus_parts_writer *parts;       // finished requests appended here (NULL: none)
    volatile sig_atomic_t *stop;     // set by SIGTERM/SIGUSR1: finish the step, flush, return
    int64_t total_requests;          // the whole job's remaining requests (progress lines)
} janus_gen_opts;

// Per request (indexed like the requests file); filled for the requests this
// rank ran.
typedef struct {
    int64_t n;
    int32_t *n_gen;         // [n]
    int32_t **tokens;       // [n][n_gen]
    float **logprobs;       // [n][n_gen]
    uint8_t *finish;        // [n] 0 length, 1 eos
    double *ttft_s, *tpot_s;// [n]
    int64_t gen_tokens;     // generated on this rank
    int64_t steps;
    int64_t n_prog, cap_prog; // timeline from the step headers (whole job), every 0.25 s
    double *prog_t;
    int64_t *prog_tokens, *prog_done;
} janus_gen_out;

void janus_gen_out_init(janus_gen_out *o, int64_t n);
void janus_gen_out_free(janus_gen_out *o);

// KV blocks one request needs: its prompt and all but its last new token.
int janus_blocks_needed(int64_t prompt_len, int max_new, int block_size);

// Runs requests mine[0..n_mine) of R to completion on en. Returns 0, or 1 when
// a stop was requested (on any rank): the requests finished so far are in the
// part file, the others not run.
int janus_generate(janus_engine *en, const janus_requests *R, const int64_t *mine, int64_t n_mine,
                   const janus_gen_opts *o, janus_gen_out *out);

// A MoE-only rank: serve every step until no attention rank has work (0) or a
// stop was requested (1).
int janus_moe_loop(janus_engine *en, volatile sig_atomic_t *stop);

#endif
