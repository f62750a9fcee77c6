// cuda_kernels/sched_gpu.h: C launch API of the activation scheduler kernel
// (cuda_kernels/sched.cu), the CUDA twin of janus_sched (src/sched/sched.h):
// from one layer's per-expert token counts in device memory to the schedule
// in device memory, no host round trip, results identical to the C version.
// tests/test_cuda_sched.c compares the two.
// (Not "sched.h": cuda_kernels/ is on the include path of the CUDA build, and
// that name would hide the system <sched.h> that pthread.h includes.)
#ifndef JANUS_CUDA_SCHED_GPU_H
#define JANUS_CUDA_SCHED_GPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Which kernel a plan launches.
enum {
    JK_SCHED_FAST = 0,    // parallel one-block kernel (up to 64 MoE ranks)
    JK_SCHED_GENERAL = 1, // the C steps (sched/sched_core.h) on one thread: any size, slow
};
// Flags of jk_sched_plan_init.
enum { JK_SCHED_FORCE_GENERAL = 1 }; // tests: take the general kernel whatever the size

// One layer's placement on the device, with the tables and scratch the kernel
// needs, uploaded once (one device allocation). Fields are read-only to callers.
typedef struct {
    int E, M, S;            // experts, MoE ranks, replica slots (rep_off[E])
    int path;               // JK_SCHED_FAST or JK_SCHED_GENERAL
    size_t smem_bytes;      // dynamic shared memory of one launch (0: its scratch is in ws)
    void *dev;              // the device allocation (everything below points into it)
    const int32_t *rep_off, *rep_rank;          // [E+1], [S]: the placement CSR
    const int32_t *slot_exp, *rs_off, *rs_slot; // [S], [M+1], [S]: as janus_sched_ws
    const uint64_t *rep_mask;                   // [E] ranks holding each expert (bit r; fast path)
    void *ws;                                   // scratch of one launch in global memory, or NULL
} jk_sched_plan;

// Builds and uploads a plan from a placement in host memory (as janus_placement:
// the replicas of expert e are the ranks rep_rank[rep_off[e] .. rep_off[e+1]),
// at least one, distinct, in [0, M)), for the current device. Synchronous.
// Returns 0, or a CUDA error code (cudaError_t as int; cudaErrorInvalidValue
// for a malformed placement).
int jk_sched_plan_init(jk_sched_plan *p, int E, int M, const int32_t *rep_off, const int32_t *rep_rank, int flags);
void jk_sched_plan_free(jk_sched_plan *p);

// The schedule of one layer, enqueued on stream (a cudaStream_t, NULL: the
// default stream); every pointer is device memory.
//   n_tok: [E] int64 tokens (token-slot pairs) per expert; <= 0: inactive
//   share: [S] int64 out: tokens each replica slot serves
//   act:   [M] int32 out: activated experts per MoE rank
//   tok:   [M] int64 out: tokens per MoE rank
// Equal to janus_sched on the same placement and counts, element for element
// (for counts below 2^43, where the C version's sort keys hold). Launches on
// one plan must not overlap (they may share its scratch): one stream per plan.
// Returns 0, or the launch's CUDA error code.
int jk_sched(const jk_sched_plan *p, const int64_t *n_tok, int64_t *share, int32_t *act, int64_t *tok, void *stream);

#ifdef __cplusplus
}
#endif

#endif
