// cli/cli.h: the subcommands of the janus binary and the small helpers they share.
#ifndef JANUS_CLI_CLI_H
#define JANUS_CLI_CLI_H

#include "common.h"

int cmd_generate(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_plan(int argc, char **argv);
#ifdef JANUS_CUDA
int bench_moe_layer(int argc, char **argv); // cli/bench_gpu.c
int bench_e2e(int argc, char **argv);
double jk_copy_bandwidth(void);
double datasheet_bw(const char *device_name); // bytes/s, 0 when unknown
int bench_kernels(int argc, char **argv);     // cli/bench_kernels.c
#endif

// Parse a positive integer option value or die naming the option.
long cli_int(const char *opt, const char *val, long lo, long hi);
double cli_num(const char *opt, const char *val, double lo, double hi);
// OpenMP threads for this rank: OMP_NUM_THREADS if set, else the CPUs this
// process may run on divided among the ranks of its node.
int cli_threads(int local_ranks);

#endif
