// cli/cli.h: the subcommands of the janus binary and the small helpers they share.
#ifndef JANUS_CLI_CLI_H
#define JANUS_CLI_CLI_H

#include "common.h"

int cmd_generate(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int bench_exchange(int argc, char **argv); // cli/bench_exchange.c
#ifdef JANUS_CUDA
int bench_moe_layer(int argc, char **argv); // cli/bench_gpu.c
int bench_e2e(int argc, char **argv);
double jk_copy_bandwidth(void);
double datasheet_bw(const char *device_name); // bytes/s, 0 when unknown
int bench_kernels(int argc, char **argv);     // cli/bench_kernels.c
// cli/bench_gpu.c, for `janus bench sched`: the first GPU's name (0), or -1
// when none is visible; the scheduler kernel on `layers` count vectors (n:
// [layers][E]): us per layer launched back to back and as one CUDA graph,
// layers whose schedule differs from janus_sched's (-1: no GPU).
#include "sched/sched.h"
int bench_gpu_name(char *name, size_t len);
int bench_sched_gpu(const janus_placement *p, const int64_t *n, int layers, double *us, double *graph_us, int *wrong);
#endif

// Parse a positive integer option value or die naming the option.
long cli_int(const char *opt, const char *val, long lo, long hi);
double cli_num(const char *opt, const char *val, double lo, double hi);
// OpenMP threads for this rank: OMP_NUM_THREADS if set, else the CPUs this
// process may run on divided among the ranks of its node.
int cli_threads(int local_ranks);

#endif
