// common.c: the error path, logging, allocation, timers and number formats
// declared in common.h.
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int janus_verbosity = 1;
const char *janus_cuda_alloc_hint = NULL;

// The rank and the cleanup list are process facts the error path needs even
// when it is reached from deep inside a library call; they are set once.
static int g_rank = 0, g_size = 1;
#define MAX_CLEANUP 8
static char *g_cleanup[MAX_CLEANUP];

void janus_set_rank(int rank, int size) { g_rank = rank; g_size = size; }
int janus_rank(void) { return g_rank; }
int janus_nranks(void) { return g_size; }

void janus_cleanup_add(const char *path) {
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (!g_cleanup[i]) { g_cleanup[i] = xstrdup(path); return; }
}
void janus_cleanup_remove(const char *path) {
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (g_cleanup[i] && strcmp(g_cleanup[i], path) == 0) { free(g_cleanup[i]); g_cleanup[i] = NULL; }
}

static _Noreturn void finish_dying(void) {
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (g_cleanup[i]) unlink(g_cleanup[i]);
    fflush(stdout);
    fflush(stderr);
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (g_size > 1 && inited && !finalized) MPI_Abort(MPI_COMM_WORLD, 2);
    exit(2);
}

static void vdie_print(const char *where, const char *fmt, va_list ap) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (g_size > 1)
        fprintf(stderr, "janus: [rank %d] %s%s%s\n", g_rank, where ? where : "", where ? ": " : "", msg);
    else
        fprintf(stderr, "janus: %s%s%s\n", where ? where : "", where ? ": " : "", msg);
    fflush(stderr);
}

void janus_die(const char *where, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdie_print(where, fmt, ap);
    va_end(ap);
    finish_dying();
}

void janus_die_all(const char *where, const char *fmt, ...) {
    if (g_rank == 0) {
        va_list ap;
        va_start(ap, fmt);
        char msg[2048];
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        fprintf(stderr, "janus: %s%s%s\n", where ? where : "", where ? ": " : "", msg);
        fflush(stderr);
    } else {
        // Give rank 0 time to print before the abort tears the job down.
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
    }
    finish_dying();
}

int janus_errf(janus_err *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

// One write per line, so lines of several ranks never interleave mid-line.
static void log_line(const char *prefix, const char *fmt, va_list ap) {
    char line[4096];
    int k = snprintf(line, sizeof line, "%s", prefix);
    vsnprintf(line + k, sizeof line - k - 1, fmt, ap);
    size_t n = strlen(line);
    line[n] = '\n';
    fwrite(line, 1, n + 1, stderr);
    fflush(stderr);
}

void janus_log(const char *fmt, ...) {
    if (janus_verbosity < 1 || g_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    log_line("janus: ", fmt, ap);
    va_end(ap);
}

void janus_vlog(const char *fmt, ...) {
    if (janus_verbosity < 2) return;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "janus[%d]: ", g_rank);
    va_list ap;
    va_start(ap, fmt);
    log_line(prefix, fmt, ap);
    va_end(ap);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) janus_die(NULL, "out of memory allocating %zu bytes", n);
    return p;
}
void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) janus_die(NULL, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}
void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) janus_die(NULL, "out of memory reallocating %zu bytes", n);
    return q;
}
char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

double janus_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t janus_dtype_size(janus_dtype t) { return t == JANUS_F32 ? 4 : 2; }
const char *janus_dtype_name(janus_dtype t) {
    return t == JANUS_F32 ? "F32" : t == JANUS_F16 ? "F16" : "BF16";
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { // subnormal: renormalise
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    uint32_t man = u & 0x7fffff;
    if (((u >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)half;
}

void janus_to_f32(float *dst, const void *src, janus_dtype t, size_t n) {
    if (t == JANUS_F32) { memcpy(dst, src, n * 4); return; }
    const uint16_t *s = src;
    if (t == JANUS_BF16)
        for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
    else
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(s[i]);
}
