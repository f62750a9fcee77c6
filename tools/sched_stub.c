// tools/sched_stub.c: the few common.c helpers that the scheduler's C files
// need, without MPI, for the standalone driver (tools/sched_bench.cu) and the
// test built by hand on the device.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
void *xmalloc(size_t n) { void *p = malloc(n ? n : 1); if (!p) abort(); return p; }
void *xcalloc(size_t n, size_t size) { void *p = calloc(n ? n : 1, size ? size : 1); if (!p) abort(); return p; }
