// common.h: what every part of janus shares: the error path (die), logging,
// checked allocation, wall-clock timers, and the bf16/f16 <-> f32 conversions.
#ifndef JANUS_COMMON_H
#define JANUS_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define JANUS_VERSION "0.1.0"

// ---- errors -------------------------------------------------------------
// janus_die: a local error (this rank alone found it). Prints
//   "janus: [rank R] <where>: <what>" (the rank only when the job has several)
// removes the files registered with janus_cleanup_add, and ends the whole job
// (MPI_Abort when several ranks, exit(2) otherwise).
// janus_die_all: an error every rank finds at the same point (bad config, bad
// requests file): rank 0 alone prints it, then the job ends as above.
// <where> is a file path, or a file path and a field ("in.h5: /requests/tokens").
_Noreturn void janus_die(const char *where, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
_Noreturn void janus_die_all(const char *where, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
// Set once after MPI_Init (rank, size); before that, die behaves as one rank.
void janus_set_rank(int rank, int size);
int janus_rank(void);
int janus_nranks(void);
// Files to unlink if the job dies (temporary outputs). At most a few.
void janus_cleanup_add(const char *path);
void janus_cleanup_remove(const char *path);

// Error buffers for functions that report rather than die (libraries, tests):
// they return 0 on success, -1 with err filled ("<where>: <what>").
typedef struct { char msg[1024]; } janus_err;
int janus_errf(janus_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---- logging ------------------------------------------------------------
// Progress and information lines go to stderr (the Slurm log), one line each.
extern int janus_verbosity; // 0 quiet, 1 normal, 2 verbose
void janus_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));   // rank 0, verbosity>=1
void janus_vlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));  // any rank, verbosity>=2

// ---- memory -------------------------------------------------------------
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

// ---- time ---------------------------------------------------------------
double janus_now_s(void); // monotonic seconds

// ---- numbers ------------------------------------------------------------
typedef enum { JANUS_F32 = 0, JANUS_F16 = 1, JANUS_BF16 = 2 } janus_dtype;
size_t janus_dtype_size(janus_dtype t);
const char *janus_dtype_name(janus_dtype t);

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t f32_to_bf16(float f) { // round to nearest even
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Convert n elements of type t at src to f32.
void janus_to_f32(float *dst, const void *src, janus_dtype t, size_t n);

#endif
