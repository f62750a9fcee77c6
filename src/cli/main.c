// cli/main.c: the janus binary: dispatches to a subcommand.
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli/cli.h"

static const char *USAGE =
    "janus " JANUS_VERSION " - batch inference for Mixture-of-Experts models under MPI\n"
    "\n"
    "usage: janus COMMAND [options]      (janus COMMAND --help for its options)\n"
    "\n"
    "commands:\n"
    "  generate   run a requests file through a model, write a results file\n"
    "             (mpirun -np N janus generate --model DIR --requests in.h5 --out out.h5)\n"
    "  plan       choose the layout (attention GPUs, MoE GPUs, batch, micro-batches)\n"
    "             for a latency SLO at the lowest GPU cost; --simulate sweeps GPU counts\n"
    "  inspect    summarise a model directory, a requests file or a results file\n"
    "  bench      benchmarks (decode: CPU decode tokens/s on a model)\n"
    "\n"
    "files: HDF5 requests/results in CSR layout (see README.md, 'File formats');\n"
    "models: Hugging Face checkpoint directories (config.json + *.safetensors) of the\n"
    "families mixtral, qwen2_moe, qwen3_moe, olmoe.\n";

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("janus %s\n", JANUS_VERSION);
        return 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect")) return cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "plan")) return cmd_plan(argc - 1, argv + 1);
    fprintf(stderr, "janus: unknown command \"%s\" (janus --help lists them)\n", cmd);
    return 2;
}
