// cli/cli_util.c: option-value parsing and thread-count helpers shared by the subcommands.
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli/cli.h"

long cli_int(const char *opt, const char *val, long lo, long hi) {
    char *end;
    long v = strtol(val ? val : "", &end, 10);
    if (!val || !*val || *end || v < lo || v > hi) janus_die_all(NULL, "%s: \"%s\" is not an integer in [%ld, %ld]", opt, val ? val : "", lo, hi);
    return v;
}

double cli_num(const char *opt, const char *val, double lo, double hi) {
    char *end;
    double v = strtod(val ? val : "", &end);
    if (!val || !*val || *end || !(v >= lo && v <= hi)) janus_die_all(NULL, "%s: \"%s\" is not a number in [%g, %g]", opt, val ? val : "", lo, hi);
    return v;
}

int cli_threads(int local_ranks) {
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && atoi(env) > 0) return atoi(env);
    cpu_set_t set;
    int mine = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0) mine = CPU_COUNT(&set);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (mine <= 0) mine = (int)online;
    // Bound to a subset (mpirun/srun binding): use it all. Unbound: share the node.
    int t = (mine < online) ? mine : (int)(online / (local_ranks > 0 ? local_ranks : 1));
    return t > 0 ? t : 1;
}

