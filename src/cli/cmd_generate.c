// cli/cmd_generate.c: `janus generate`: MPI set-up, model and requests loading
// on every rank, requests shared out (monolithic data-parallel mode: every rank
// holds the whole model), generation, results gathered on rank 0 and written
// atomically in request order.
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "engine/generate.h"
#include "io/parts.h"
#include "io/requests.h"
#include "io/results.h"
#include "model/model.h"
#include "plan/placement.h"
#include "plan/planner.h"
#ifdef JANUS_CUDA
#include <cuda_runtime_api.h>

#include "comm/ipc.h"
#include "comm/cudampi.h"
#include "engine/gpu.h"
#ifdef JANUS_NCCL
#include "comm/nccl.h"
#endif
#endif

static const char *HELP =
    "usage: mpirun -np N janus generate --model DIR --requests IN.h5 --out OUT.h5 [options]\n"
    "\n"
    "Runs every request of IN.h5 through the model and writes OUT.h5 (written to a\n"
    "temporary file and renamed when complete).\n"
    "\n"
    "Layouts: with --attn-ranks A --moe-ranks M (A + M = ranks), world ranks\n"
    "[0, A) run attention (embeddings, attention, router, shared experts, KV cache,\n"
    "requests) and ranks [A, A+M) hold and run the routed experts; every MoE layer\n"
    "the two pools exchange activations (disaggregated mode). Without them every\n"
    "rank does both: attention is data-parallel and the experts are sharded over\n"
    "all ranks (monolithic mode; one rank holds everything). Requests are shared\n"
    "out among the attention ranks. Results do not depend on the layout.\n"
    "\n"
    "required:\n"
    "  --model DIR            Hugging Face checkpoint: config.json + *.safetensors\n"
    "  --requests FILE        requests file (HDF5, format janus-requests)\n"
    "  --out FILE             results file to write (HDF5, format janus-results)\n"
    "\n"
    "layout:\n"
    "  --attn-ranks A         ranks running attention (disaggregated mode)\n"
    "  --moe-ranks M          ranks holding the routed experts (disaggregated mode)\n"
    "  --micro-batches m      split each step into m micro-batches, pipelined so the\n"
    "                         attention of one overlaps the exchange and experts of\n"
    "                         the previous (default 1)\n"
    "  --expert-replicas R    copies of every expert on distinct MoE ranks (default 1);\n"
    "                         the activation scheduler balances tokens over them\n"
    "  --replicate-hot K      one extra replica for each layer's K most activated experts,\n"
    "                         from the /stats/expert_counts of --stats FILE\n"
    "  --expert-slots S       experts each MoE rank holds (>= experts / MoE ranks): the spare\n"
    "                         slots become replicas of the most activated experts of\n"
    "                         --stats FILE, placed to balance the expected load\n"
    "  --stats FILE           a results file of an earlier run (activation statistics)\n"
    "  --plan FILE|auto       take the layout from a plan (janus plan --out FILE), or let\n"
    "                         rank 0 plan it for this job's ranks (--slo-tpot-ms, default 200)\n"
    "  --slo-tpot-ms MS       the SLO --plan auto plans for\n"
    "  --hardware H           the profile --plan auto plans with: h100, h200, cpu (default:\n"
    "                         h100 with --backend cuda, else cpu) or a calibration file\n"
    "                         (janus bench decode/exchange --calibration; docs/plan.md)\n"
    "  --exchange PATH        direct | hierarchical | auto (default auto: direct on one\n"
    "                         node, hierarchical across nodes)\n"
    "  --node-size S          ranks per node for the exchange (default: from MPI;\n"
    "                         set it to test the hierarchical path on one machine)\n"
    "\n"
    "batching and memory (per attention rank):\n"
    "  --max-batch N          sequences in flight (default 64)\n"
    "  --max-step-tokens N    tokens per forward step, decode + chunked prefill (default 512)\n"
    "  --kv-cache-mb N        paged KV cache budget in MiB (default 1024)\n"
    "  --block-size N         KV cache positions per block (default 16)\n"
    "\n"
    "running:\n"
    "  --backend B            cpu (default) or cuda (CUDA build): each rank takes GPU\n"
    "                         (node-local rank mod visible GPUs); ranks may share a GPU\n"
    "  --transport T          exchange payload (cuda, several ranks): ipc (GPU to GPU\n"
    "                         through CUDA IPC, ranks of one node, direct path), nccl\n"
    "                         (NCCL send/recv, one GPU per rank, any nodes; run on one\n"
    "                         node of 2 GPUs, not yet across nodes), cuda-mpi (device\n"
    "                         buffers straight to a CUDA-aware MPI, any nodes), mpi\n"
    "                         (host-staged MPI), auto (default: ipc on one node, else\n"
    "                         cuda-mpi where the MPI says it is CUDA-aware, else mpi;\n"
    "                         JANUS_CUDA_AWARE_MPI=1|0 overrides what it says)\n"
    "  --synthetic            (cuda) weights made on the GPU from config.json alone, for\n"
    "                         scaling runs of full-size shapes without a checkpoint\n"
    "  --zipf S               (with --synthetic) router skew: expert popularity ~ rank^-S\n"
    "  --threads N            OpenMP threads per rank (default: OMP_NUM_THREADS, else\n"
    "                         the CPUs the rank is bound to, else cores / ranks per node)\n"
    "  --progress-interval S  seconds between progress lines on stderr (default 10, 0: off)\n"
    "  --resume               continue an interrupted run of the same --requests and --out\n"
    "                         (finished requests are kept in OUT.parts/ as they complete)\n"
    "  --quiet                only errors\n"
    "  --verbose              per-rank timing breakdown\n"
    "  -h, --help             this text\n"
    "\n"
    "exit status: 0 success; 2 bad input or failure (the message names the file and\n"
    "field); 3 stopped by SIGTERM or SIGUSR1 (Slurm time limit, preemption, --signal):\n"
    "the step in flight finished, finished requests are in OUT.parts/, and the same\n"
    "command with --resume continues without losing or repeating a request.\n";

typedef struct {
    const char *model, *requests, *out, *backend;
    int max_batch, max_step_tokens, kv_mb, block_size, threads;
    int attn_ranks, moe_ranks, micro_batches, replicas, node_size, hot, slots;
    const char *exchange, *stats, *plan, *transport, *hardware;
    int resume, synthetic;
    double slo_ms, zipf;
    double progress_s;
} gen_args;

static void parse(int argc, char **argv, gen_args *a) {
    *a = (gen_args){.backend = "cpu", .max_batch = 64, .max_step_tokens = 512, .kv_mb = 1024, .block_size = 16,
                    .progress_s = 10,
                    .micro_batches = 1, .replicas = 1, .exchange = "auto", .slo_ms = 200, .transport = "auto"};
    static struct option opts[] = {
        {"model", required_argument, 0, 'm'},          {"requests", required_argument, 0, 'r'},
        {"out", required_argument, 0, 'o'},            {"max-batch", required_argument, 0, 'b'},
        {"max-step-tokens", required_argument, 0, 's'}, {"kv-cache-mb", required_argument, 0, 'k'},
        {"block-size", required_argument, 0, 'B'},     {"threads", required_argument, 0, 't'},
        {"progress-interval", required_argument, 0, 'p'}, {"backend", required_argument, 0, 'x'},
        {"quiet", no_argument, 0, 'q'},                {"verbose", no_argument, 0, 'v'},
        {"attn-ranks", required_argument, 0, 'A'},     {"moe-ranks", required_argument, 0, 'M'},
        {"micro-batches", required_argument, 0, 'u'},  {"expert-replicas", required_argument, 0, 'R'},
        {"exchange", required_argument, 0, 'X'},       {"node-size", required_argument, 0, 'N'},
        {"replicate-hot", required_argument, 0, 'H'},  {"stats", required_argument, 0, 'S'},
        {"resume", no_argument, 0, 'Z'},               {"plan", required_argument, 0, 'P'},
        {"expert-slots", required_argument, 0, 'E'},
        {"slo-tpot-ms", required_argument, 0, 'L'},    {"transport", required_argument, 0, 'Y'},
        {"synthetic", no_argument, 0, 'y'},            {"zipf", required_argument, 0, 'z'},
        {"hardware", required_argument, 0, 'W'},
        {"help", no_argument, 0, 'h'},                 {0, 0, 0, 0}};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'r': a->requests = optarg; break;
        case 'o': a->out = optarg; break;
        case 'b': a->max_batch = (int)cli_int("--max-batch", optarg, 1, 1 << 20); break;
        case 's': a->max_step_tokens = (int)cli_int("--max-step-tokens", optarg, 1, 1 << 24); break;
        case 'k': a->kv_mb = (int)cli_int("--kv-cache-mb", optarg, 1, 1 << 30); break;
        case 'B': a->block_size = (int)cli_int("--block-size", optarg, 1, 4096); break;
        case 't': a->threads = (int)cli_int("--threads", optarg, 1, 4096); break;
        case 'p': a->progress_s = cli_num("--progress-interval", optarg, 0, 1e9); break;
        case 'x': a->backend = optarg; break;
        case 'A': a->attn_ranks = (int)cli_int("--attn-ranks", optarg, 1, 1 << 20); break;
        case 'M': a->moe_ranks = (int)cli_int("--moe-ranks", optarg, 1, 1 << 20); break;
        case 'u': a->micro_batches = (int)cli_int("--micro-batches", optarg, 1, 64); break;
        case 'R': a->replicas = (int)cli_int("--expert-replicas", optarg, 1, 1 << 20); break;
        case 'X': a->exchange = optarg; break;
        case 'Y': a->transport = optarg; break;
        case 'y': a->synthetic = 1; break;
        case 'W': a->hardware = optarg; break;
        case 'z': a->zipf = cli_num("--zipf", optarg, 0, 10); break;
        case 'H': a->hot = (int)cli_int("--replicate-hot", optarg, 0, 1 << 20); break;
        case 'S': a->stats = optarg; break;
        case 'Z': a->resume = 1; break;
        case 'E': a->slots = (int)cli_int("--expert-slots", optarg, 1, 1 << 20); break;
        case 'P': a->plan = optarg; break;
        case 'L': a->slo_ms = cli_num("--slo-tpot-ms", optarg, 1e-3, 1e7); break;
        case 'N': a->node_size = (int)cli_int("--node-size", optarg, 1, 1 << 20); break;
        case 'q': janus_verbosity = 0; break;
        case 'v': janus_verbosity = 2; break;
        case 'h':
            if (janus_rank() == 0) fputs(HELP, stdout);
            MPI_Finalize();
            exit(0);
        default:
            janus_die_all(NULL, "generate: unknown or incomplete option \"%s\" (janus generate --help)", argv[optind - 1]);
        }
    }
    if (optind < argc) janus_die_all(NULL, "generate: unexpected argument \"%s\"", argv[optind]);
    if (!a->model) janus_die_all(NULL, "generate: --model DIR is required (janus generate --help)");
    if (!a->requests) janus_die_all(NULL, "generate: --requests FILE is required");
    if (!a->out) janus_die_all(NULL, "generate: --out FILE is required");
#ifdef JANUS_CUDA
    if (strcmp(a->backend, "cpu") != 0 && strcmp(a->backend, "cuda") != 0)
        janus_die_all(NULL, "--backend: \"%s\" is not one of cpu, cuda", a->backend);
#else
    if (strcmp(a->backend, "cpu") != 0)
        janus_die_all(NULL, "--backend: \"%s\" is not available in this build (cpu only; build with -Dcuda=enabled)", a->backend);
#endif
    if (strcmp(a->transport, "auto") && strcmp(a->transport, "mpi") && strcmp(a->transport, "ipc") &&
        strcmp(a->transport, "nccl") && strcmp(a->transport, "cuda-mpi"))
        janus_die_all(NULL, "--transport: \"%s\" is not one of auto, ipc, cuda-mpi, mpi, nccl", a->transport);
    if (a->synthetic && strcmp(a->backend, "cuda"))
        janus_die_all(NULL, "--synthetic: weights are made on the GPU; add --backend cuda");
    if (a->zipf > 0 && !a->synthetic) janus_die_all(NULL, "--zipf: only with --synthetic (a checkpoint routes as it was trained)");
#ifndef JANUS_NCCL
    if (!strcmp(a->transport, "nccl"))
        janus_die_all(NULL, "--transport nccl: this janus was built without NCCL; use ipc (one node) or mpi");
#endif
    if (a->max_step_tokens < a->max_batch) a->max_step_tokens = a->max_batch; // every decode token fits a step
    if (strcmp(a->exchange, "auto") && strcmp(a->exchange, "direct") && strcmp(a->exchange, "hierarchical"))
        janus_die_all(NULL, "--exchange: \"%s\" is not one of direct, hierarchical, auto", a->exchange);
    if (a->hot && !a->stats) janus_die_all(NULL, "--replicate-hot needs --stats FILE (a results file with /stats/expert_counts)");
    if (a->slots && !a->stats) janus_die_all(NULL, "--expert-slots needs --stats FILE (a results file with /stats/expert_counts)");
    if (a->slots && (a->hot || a->replicas > 1))
        janus_die_all(NULL, "--expert-slots excludes --replicate-hot and --expert-replicas");
    if (a->hot && a->replicas > 1) janus_die_all(NULL, "--replicate-hot and --expert-replicas exclude each other");
    if (a->plan && (a->attn_ranks || a->moe_ranks))
        janus_die_all(NULL, "--plan and --attn-ranks/--moe-ranks exclude each other");
    if (!!a->attn_ranks != !!a->moe_ranks)
        janus_die_all(NULL, "--attn-ranks and --moe-ranks go together (or neither, for monolithic mode)");
    int size = janus_nranks();
    if (a->plan) return; // checked once the plan is known
    if (a->attn_ranks && a->attn_ranks + a->moe_ranks != size)
        janus_die_all(NULL, "--attn-ranks %d + --moe-ranks %d = %d, but the job has %d ranks", a->attn_ranks,
                      a->moe_ranks, a->attn_ranks + a->moe_ranks, size);
}

// SIGTERM / SIGUSR1: finish the step, flush, exit 3. The flag is the one piece
// of process state a signal handler may touch.
static volatile sig_atomic_t g_stop;
static void on_stop_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

// The output's directory must exist and be writable before hours of compute.
static void check_out_path(const char *out) {
    char *dup = xstrdup(out);
    const char *dir = dirname(dup);
    if (access(dir, W_OK) != 0) janus_die_all(out, "the directory %s does not exist or is not writable", dir);
    free(dup);
}

// --plan FILE: the layout of a saved plan; --plan auto: rank 0 plans for this
// job's ranks and broadcasts {attention, MoE, micro-batches, batch}.
static void apply_plan(gen_args *a, int size, char *json, size_t n) {
    janus_plan pl = {0};
    int v[4] = {0, 0, 0, 0};
    if (strcmp(a->plan, "auto") != 0) {
        janus_err e;
        if (janus_plan_read(a->plan, &pl, &e)) janus_die_all(NULL, "%s", e.msg);
        v[0] = pl.attn, v[1] = pl.moe, v[2] = pl.micro, v[3] = pl.batch;
        snprintf(json, n, "{\"mode\": \"%s\", \"attn_ranks\": %d, \"moe_ranks\": %d, \"micro_batches\": %d, \"max_batch\": %d, \"from\": \"%s\"}",
                 pl.moe ? "disaggregated" : "monolithic", pl.attn, pl.moe, pl.micro, pl.batch, a->plan);
    } else if (janus_rank() == 0) {
        janus_config c;
        janus_err e;
        if (janus_config_load(a->model, &c, &e)) janus_die(NULL, "%s", e.msg);
        janus_requests R;
        if (janus_requests_read(a->requests, &R, &e)) janus_die(NULL, "%s", e.msg);
        janus_workload w = {1, 1, 0, 0};
        double pl_sum = 0, out_sum = 0;
        for (int64_t i = 0; i < R.n; i++) pl_sum += (double)(R.offsets[i + 1] - R.offsets[i]), out_sum += R.max_new[i];
        if (R.n) w.prompt_len = pl_sum / R.n, w.output_len = out_sum / R.n;
        janus_requests_free(&R);
        const char *hwname = a->hardware ? a->hardware : !strcmp(a->backend, "cuda") ? "h100" : "cpu";
        janus_hw hw_v;
        janus_err he;
        if (janus_hw_get(hwname, &hw_v, &he)) janus_die(NULL, "%s", he.msg);
        const janus_hw *hw = &hw_v;
        // Only layouts of exactly this job's ranks: a search "within size GPUs"
        // ranks smaller layouts first and its top list may hold none of them.
        for (int at = 0; at < size; at++) // at == 0: monolithic on every rank
            for (int mb = 1; mb <= (at ? 4 : 1); mb++) {
                janus_plan cand = at ? (janus_plan){.attn = at, .moe = size - at, .micro = mb}
                                     : (janus_plan){.attn = size, .moe = 0, .micro = 1};
                int lo = 1, hi = 4096, best = 0; // largest batch meeting the SLO in memory
                while (lo <= hi) {
                    cand.batch = lo + (hi - lo) / 2;
                    janus_plan_eval(&c, hw, &w, &cand);
                    if (cand.fits && cand.tpot_s <= a->slo_ms / 1e3) best = cand.batch, lo = cand.batch + 1;
                    else hi = cand.batch - 1;
                }
                if (!best || best < mb) continue;
                cand.batch = best;
                janus_plan_eval(&c, hw, &w, &cand);
                if (!pl.attn || cand.per_gpu > pl.per_gpu) pl = cand;
            }
        if (!pl.attn) {
            pl = (janus_plan){.attn = size, .moe = 0, .micro = 1, .batch = a->max_batch};
            janus_plan_eval(&c, hw, &w, &pl);
        }
        v[0] = pl.attn, v[1] = pl.moe, v[2] = pl.micro, v[3] = pl.batch;
        janus_plan_json(&pl, hwname, a->slo_ms / 1e3, json, n);
        janus_log("plan auto (%s profile, %d ranks, SLO %.0f ms): %s", hwname, size, a->slo_ms, json);
    }
    MPI_Bcast(v, 4, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(json, (int)n, MPI_CHAR, 0, MPI_COMM_WORLD);
    const int need = v[1] ? v[0] + v[1] : v[0];
    if (need != size)
        janus_die_all(a->plan, "the plan needs %d ranks (%d attention + %d MoE) but the job has %d", need, v[0], v[1], size);
    if (v[1]) a->attn_ranks = v[0], a->moe_ranks = v[1];
    a->micro_batches = v[2];
    a->max_batch = v[3];
    if (a->max_step_tokens < a->max_batch) a->max_step_tokens = a->max_batch;
}

// Rank 0 gathers every rank's n elements (64-bit counts; sent in chunks of at
// most 2^30 elements, each an int count) to recv at disp[q] (cnt, disp: rank 0).
static void gather_big(const void *send, int64_t n, MPI_Datatype t, size_t esz, void *recv, const int64_t *cnt,
                       const int64_t *disp, int tag) {
    const int64_t CH = (int64_t)1 << 30;
    if (janus_rank() == 0) {
        if (n) memcpy((char *)recv + (size_t)disp[0] * esz, send, (size_t)n * esz);
        for (int q = 1; q < janus_nranks(); q++)
            for (int64_t off = 0; off < cnt[q]; off += CH)
                MPI_Recv((char *)recv + (size_t)(disp[q] + off) * esz, (int)(cnt[q] - off < CH ? cnt[q] - off : CH), t, q,
                         tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
        for (int64_t off = 0; off < n; off += CH)
            MPI_Send((const char *)send + (size_t)off * esz, (int)(n - off < CH ? n - off : CH), t, 0, tag, MPI_COMM_WORLD);
    }
}

// Gathers this rank's results to rank 0 and fills res in request order.
static void gather_results(const janus_requests *R, const int64_t *mine, int64_t n_mine, janus_gen_out *g,
                           const janus_parts_state *prev, janus_results *res) {
    int rank = janus_rank(), size = janus_nranks();
    // Fixed part per request: idx, n_gen, finish (as doubles for one message), ttft, tpot.
    int64_t ntok = 0;
    for (int64_t i = 0; i < n_mine; i++) ntok += g->n_gen[mine[i]];
    double *meta = xmalloc(sizeof(double) * 5 * (n_mine ? n_mine : 1));
    int32_t *tok = xmalloc(sizeof(int32_t) * (ntok ? ntok : 1));
    float *lp = xmalloc(sizeof(float) * (ntok ? ntok : 1));
    int64_t k = 0;
    for (int64_t i = 0; i < n_mine; i++) {
        int64_t r = mine[i];
        meta[5 * i + 0] = (double)r;
        meta[5 * i + 1] = g->n_gen[r];
        meta[5 * i + 2] = g->finish[r];
        meta[5 * i + 3] = g->ttft_s[r];
        meta[5 * i + 4] = g->tpot_s[r];
        memcpy(tok + k, g->tokens[r], sizeof(int32_t) * g->n_gen[r]);
        memcpy(lp + k, g->logprobs[r], sizeof(float) * g->n_gen[r]);
        k += g->n_gen[r];
    }
    // 64-bit counts and chunked point-to-point: a job's generated tokens can
    // exceed the int counts and displacements of MPI_Gatherv (2^31).
    int64_t counts[2] = {5 * n_mine, ntok};
    int64_t *all = rank == 0 ? xmalloc(sizeof(int64_t) * 2 * size) : NULL;
    MPI_Gather(counts, 2, MPI_INT64_T, all, 2, MPI_INT64_T, 0, MPI_COMM_WORLD);
    int64_t *cm = NULL, *dm = NULL, *ct = NULL, *dt = NULL;
    double *meta_all = NULL;
    int32_t *tok_all = NULL;
    float *lp_all = NULL;
    if (rank == 0) {
        cm = xmalloc(sizeof(int64_t) * size), dm = xmalloc(sizeof(int64_t) * size);
        ct = xmalloc(sizeof(int64_t) * size), dt = xmalloc(sizeof(int64_t) * size);
        int64_t sm = 0, st = 0;
        for (int q = 0; q < size; q++) {
            cm[q] = all[2 * q];
            ct[q] = all[2 * q + 1];
            dm[q] = sm;
            dt[q] = st;
            sm += cm[q];
            st += ct[q];
        }
        meta_all = xmalloc(sizeof(double) * (sm ? sm : 1));
        tok_all = xmalloc(sizeof(int32_t) * (st ? st : 1));
        lp_all = xmalloc(sizeof(float) * (st ? st : 1));
    }
    gather_big(meta, counts[0], MPI_DOUBLE, sizeof(double), meta_all, cm, dm, 1);
    gather_big(tok, counts[1], MPI_INT32_T, sizeof(int32_t), tok_all, ct, dt, 2);
    gather_big(lp, counts[1], MPI_FLOAT, sizeof(float), lp_all, ct, dt, 3);
    free(meta);
    free(tok);
    free(lp);
    if (rank == 0) {
        const int64_t N = R->n;
        res->n = N;
        res->ids = xmalloc(sizeof(int64_t) * (N ? N : 1));
        res->offsets = xcalloc(N + 1, sizeof(int64_t));
        res->finish_reason = xcalloc(N ? N : 1, 1);
        res->ttft_s = xcalloc(N ? N : 1, sizeof(double));
        res->tpot_s = xcalloc(N ? N : 1, sizeof(double));
        int32_t *ng = xcalloc(N ? N : 1, sizeof(int32_t));
        int64_t *src = xcalloc(N ? N : 1, sizeof(int64_t)); // where request r's tokens start in tok_all
        int64_t nreq = 0;
        for (int q = 0; q < size; q++) {
            int64_t at = dt[q];
            for (int64_t i = 0; i < cm[q] / 5; i++) {
                const double *mm = meta_all + dm[q] + 5 * i;
                int64_t r = (int64_t)mm[0];
                ng[r] = (int32_t)mm[1];
                res->finish_reason[r] = (uint8_t)mm[2];
                res->ttft_s[r] = mm[3];
                res->tpot_s[r] = mm[4];
                src[r] = at;
                at += ng[r];
                nreq++;
            }
        }
        for (int64_t r = 0; r < N; r++) // finished by earlier runs (--resume)
            if (prev->done[r]) ng[r] = prev->n_gen[r], res->finish_reason[r] = prev->finish[r], res->ttft_s[r] = prev->ttft_s[r],
                               res->tpot_s[r] = prev->tpot_s[r], nreq++;
        if (nreq != N) janus_die(NULL, "internal: gathered %lld results for %lld requests", (long long)nreq, (long long)N);
        for (int64_t r = 0; r < N; r++) {
            res->ids[r] = R->ids[r];
            res->offsets[r + 1] = res->offsets[r] + ng[r];
        }
        int64_t G = res->offsets[N];
        res->tokens = xmalloc(sizeof(int32_t) * (G ? G : 1));
        res->logprobs = xmalloc(sizeof(float) * (G ? G : 1));
        for (int64_t r = 0; r < N; r++) {
            const int32_t *ts = prev->done[r] ? prev->tokens[r] : tok_all + src[r];
            const float *ls = prev->done[r] ? prev->logprobs[r] : lp_all + src[r];
            memcpy(res->tokens + res->offsets[r], ts, sizeof(int32_t) * ng[r]);
            memcpy(res->logprobs + res->offsets[r], ls, sizeof(float) * ng[r]);
        }
        free(ng);
        free(src);
        free(all);
        free(cm);
        free(dm);
        free(ct);
        free(dt);
        free(meta_all);
        free(tok_all);
        free(lp_all);
    }
}

int cmd_generate(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    janus_set_rank(rank, size);
    // A stop during loading is kept and honoured at the first step (exit 3).
    signal(SIGTERM, on_stop_signal);
    signal(SIGUSR1, on_stop_signal);
    double t0 = janus_now_s();
    gen_args a;
    parse(argc, argv, &a);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    int local_size;
    MPI_Comm_size(node, &local_size);
    int local_rank;
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_free(&node);
    int threads = a.threads ? a.threads : cli_threads(local_size);
    omp_set_num_threads(threads);
    check_out_path(a.out);
    char plan_json[1024] = "";
    if (a.plan) apply_plan(&a, size, plan_json, sizeof plan_json);

    // Layout: disaggregated (A attention + M MoE ranks) or monolithic (every
    // rank both; one rank: all experts local, no exchange).
    const bool disagg = a.attn_ranks > 0;
    const int A = disagg ? a.attn_ranks : size, M = disagg ? a.moe_ranks : size;
    const bool is_attn = rank < A, is_moe = disagg ? rank >= A : true;
    const int moe_idx = disagg ? rank - A : rank;

    // Every rank checks the same inputs, so a bad file fails everywhere alike.
    janus_config cfg;
    janus_err e;
    if (janus_config_load(a.model, &cfg, &e)) janus_die_all(NULL, "%s", e.msg);
    if (a.replicas > M)
        janus_die_all(NULL, "--expert-replicas %d: more replicas than the %d MoE ranks", a.replicas, M);
    janus_placement *place = xcalloc(cfg.n_layers, sizeof(janus_placement));
    int64_t *stats = NULL;
    if (a.hot || a.slots) { // activation statistics of an earlier run choose the hot experts
        janus_results sr;
        if (janus_results_read(a.stats, &sr, &e)) janus_die_all(NULL, "%s", e.msg);
        if (sr.n_layers != cfg.n_layers || sr.n_experts != cfg.n_experts || !sr.expert_counts)
            janus_die_all(a.stats, "/stats/expert_counts: shape [%d, %d], but the model has %d layers x %d experts",
                          sr.n_layers, sr.n_experts, cfg.n_layers, cfg.n_experts);
        stats = xmalloc(sizeof(int64_t) * cfg.n_layers * cfg.n_experts);
        memcpy(stats, sr.expert_counts, sizeof(int64_t) * cfg.n_layers * cfg.n_experts);
        janus_results_free(&sr);
    }
    for (int l = 0; l < cfg.n_layers; l++) {
        if (!cfg.layer_moe[l]) continue;
        if (stats && a.slots) {
            const int E = cfg.n_experts;
            double *p = xmalloc(sizeof(double) * E), tot = 0;
            for (int x = 0; x < E; x++) tot += (double)stats[(size_t)l * E + x] + 1.0; // +1: unseen experts stay possible
            for (int x = 0; x < E; x++) p[x] = ((double)stats[(size_t)l * E + x] + 1.0) / tot;
            if (janus_place_replicated(p, E, M, a.slots, &place[l]))
                janus_die_all(NULL, "--expert-slots %d: %d MoE ranks x %d slots cannot hold the %d experts", a.slots, M,
                              a.slots, E);
            free(p);
        } else if (stats) {
            janus_placement_hot(&place[l], cfg.n_experts, M, stats + (size_t)l * cfg.n_experts, a.hot);
        } else {
            janus_placement_uniform(&place[l], cfg.n_experts, M, a.replicas);
        }
    }
    free(stats);
    // The experts this rank holds (all of them when it is alone).
    uint8_t *mask = xcalloc((size_t)cfg.n_layers * cfg.n_experts, 1);
    for (int l = 0; l < cfg.n_layers; l++)
        if (cfg.layer_moe[l] && is_moe) janus_placement_mask(&place[l], moe_idx, mask + (size_t)l * cfg.n_experts);
    int what = (is_attn ? JANUS_LOAD_ATTN : 0) | (is_moe ? JANUS_LOAD_EXPERTS : 0);
    janus_model m;
    if (a.synthetic) what = 0; // config.json alone; the GPUs make the weights
    if (janus_model_load(a.model, &m, what, size == 1 ? NULL : mask, &e)) janus_die_all(NULL, "%s", e.msg);
    janus_requests R;
    if (janus_requests_read(a.requests, &R, &e)) janus_die_all(NULL, "%s", e.msg);
    if (janus_requests_check_model(&R, m.cfg.vocab, m.cfg.max_ctx, &e)) janus_die_all(NULL, "%s", e.msg);
    janus_xpath path = XPATH_DIRECT;
    int node_size = a.node_size;
    if (!node_size) // one value on every rank (nodes may hold different rank counts)
        MPI_Allreduce(&local_size, &node_size, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    // The CUDA-aware MPI transport (cuda backend, several ranks): asked for, or
    // auto across nodes where the MPI says it is CUDA-aware on every rank; it
    // takes the direct path (--exchange auto then picks it across nodes too).
    // JANUS_CUDA_MPI_MANAGED=1 (tests) runs it on any MPI through managed memory.
    bool cmpi = false, cmpi_managed = false;
    const char *cmpi_how = "";
#ifdef JANUS_CUDA
    if (!strcmp(a.backend, "cuda") && size > 1 && (!strcmp(a.transport, "cuda-mpi") || !strcmp(a.transport, "auto"))) {
        const char *mg = getenv("JANUS_CUDA_MPI_MANAGED");
        if (mg && strcmp(mg, "0") && strcmp(mg, "1"))
            janus_die_all(NULL, "JANUS_CUDA_MPI_MANAGED=%s: expected 0 or 1", mg);
        cmpi_managed = mg && mg[0] == '1';
        int aware = janus_cuda_aware_mpi(&cmpi_how), aware_all = 0, one_node = 0;
        MPI_Allreduce(&aware, &aware_all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(&local_size, &one_node, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        one_node = one_node == size;
        if (!strcmp(a.transport, "cuda-mpi")) {
            if (!aware_all && !cmpi_managed)
                janus_die_all(NULL, "--transport cuda-mpi: this MPI is not CUDA-aware on every rank (%s); use --transport "
                                    "mpi, or set JANUS_CUDA_AWARE_MPI=1 if it is (e.g. Cray MPICH with "
                                    "MPICH_GPU_SUPPORT_ENABLED=1)", cmpi_how);
            if (!strcmp(a.exchange, "hierarchical"))
                janus_die_all(NULL, "--transport cuda-mpi: needs the direct exchange path (drop --exchange hierarchical)");
            cmpi = true;
        } else {
            cmpi = aware_all && !one_node && strcmp(a.exchange, "hierarchical");
        }
    }
#endif
    (void)cmpi_managed, (void)cmpi_how;
    if (!strcmp(a.exchange, "hierarchical") || (!strcmp(a.exchange, "auto") && node_size < size && !cmpi))
        path = XPATH_HIER;
    char layout[256];
    if (disagg)
        snprintf(layout, sizeof layout, "disaggregated: %d attention + %d MoE ranks, %d expert replica(s), %d micro-batch(es), %s exchange, %d threads each",
                 A, M, a.replicas, a.micro_batches, path == XPATH_HIER ? "hierarchical" : "direct", threads);
    else if (size > 1)
        snprintf(layout, sizeof layout, "monolithic: %d ranks x (attention + 1/%d of the experts), %d expert replica(s), %d micro-batch(es), %s exchange, %d threads each",
                 size, size, a.replicas, a.micro_batches, path == XPATH_HIER ? "hierarchical" : "direct", threads);
    else
        snprintf(layout, sizeof layout, "monolithic: 1 rank (attention + all experts), %d micro-batch(es), %d threads", a.micro_batches, threads);
    janus_log("model %s (%s): %d layers, hidden %d, %d experts top-%d", a.model, m.cfg.model_type, m.cfg.n_layers,
              m.cfg.hidden, m.cfg.n_experts, m.cfg.top_k);
    janus_log("requests %s: %lld requests, %lld prompt tokens", a.requests, (long long)R.n,
              (long long)(R.n ? R.offsets[R.n] : 0));
    janus_log("layout: %s", layout);
    if (!a.synthetic) { // synthetic weights: counted on the GPUs, below
        double mib = m.weight_bytes / 1048576.0, mx, mn;
        MPI_Allreduce(&mib, &mx, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(&mib, &mn, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
        janus_log("weights per rank: %.1f to %.1f MiB (replicas included)", mn, mx);
    }

    // Earlier runs' finished requests (--resume), from OUT.parts/.
    janus_parts_state prev;
    {
        char pdir[1100];
        janus_parts_dir(a.out, pdir, sizeof pdir);
        struct stat sb;
        if (!a.resume && stat(pdir, &sb) == 0)
            janus_die_all(pdir, "exists: an interrupted run of this --out; rerun with --resume to continue it, or delete it");
        if (janus_parts_load(a.out, R.n, R.ids, m.cfg.n_layers, m.cfg.n_experts, &prev, &e)) janus_die_all(NULL, "%s", e.msg);
        if (a.resume)
            janus_log("resume: %lld of %lld requests already done (run %d%s)", (long long)prev.n_done, (long long)R.n,
                      prev.next_run, prev.records_dropped ? ", a torn record dropped: its request runs again" : "");
    }
    // Share out the remaining requests round-robin among the attention ranks.
    int64_t n_mine = 0, n_left = 0;
    int64_t *mine = xmalloc(sizeof(int64_t) * (R.n / A + 1));
    for (int64_t i = 0; i < R.n; i++) {
        if (prev.done[i]) continue;
        if (is_attn && n_left % A == rank) mine[n_mine++] = i;
        n_left++;
    }
    MPI_Barrier(MPI_COMM_WORLD); // every rank has looked at OUT.parts before any creates it
    janus_parts_writer pw = {.fd = -1};
    if (is_attn && janus_parts_open(&pw, a.out, prev.next_run, rank, &e)) janus_die(NULL, "%s", e.msg);

    const bool gpu = !strcmp(a.backend, "cuda");
    size_t block_bytes = janus_kv_block_bytes(&m.cfg, a.block_size);
#ifdef JANUS_CUDA
    if (gpu) block_bytes = janus_gpu_kv_block_bytes(&m.cfg, a.block_size);
#endif
    size_t kv_blocks_z = ((size_t)a.kv_mb << 20) / block_bytes;
    int kv_blocks = kv_blocks_z > INT32_MAX ? INT32_MAX : (int)kv_blocks_z;
    if (kv_blocks < 1)
        janus_die_all(NULL, "--kv-cache-mb: %d MiB holds no KV block (one block of %d positions takes %.2f MiB)", a.kv_mb,
                      a.block_size, block_bytes / 1048576.0);
    const int mb_tokens = (a.max_step_tokens + a.micro_batches - 1) / a.micro_batches;
    janus_xchg xc, *xcp = NULL;
    if (size > 1) {
        janus_xchg_init(&xc, MPI_COMM_WORLD, A, M, !disagg, &m.cfg, place, a.micro_batches, path, node_size, &m);
        xcp = &xc;
    }
    janus_engine en;
    janus_engine_init(&en, &m, is_attn, mb_tokens, a.micro_batches, is_attn && !gpu ? kv_blocks : 0, a.block_size, xcp);
#ifdef JANUS_CUDA
    janus_gpu *gpu_h = NULL;
    if (gpu) { // this rank's GPU holds what its role needs
        janus_gpu_opts go = {.device = local_rank, .attn = is_attn, .experts = is_moe,
                             .expert_mask = size == 1 ? NULL : mask, .max_tokens = mb_tokens,
                             .max_out = a.max_batch, // a micro-batch emits at most one token per sequence
                             .n_mb = a.micro_batches, .kv_blocks = kv_blocks, .block_size = a.block_size,
                             .max_expert_rows = A * mb_tokens * m.cfg.top_k, .seed = 1234, .zipf = a.zipf};
        gpu_h = janus_gpu_init_opts(&m, &go);
        if (is_attn) en.gpu = gpu_h;
        if (xcp && is_moe) xc.experts_fn = janus_gpu_serve_experts, xc.experts_dev_fn = janus_gpu_serve_experts_dev,
                           xc.experts_sums_fn = janus_gpu_serve_experts_sums, xc.experts_ctx = gpu_h;
        int dev = -1;
        cudaGetDevice(&dev);
        // The payload: CUDA IPC where every rank is on this node and the path
        // is direct, else host-staged MPI.
        const bool ipc_ok = local_size == size && path == XPATH_DIRECT;
        if (!strcmp(a.transport, "ipc") && !ipc_ok && xcp)
            janus_die_all(NULL, "--transport ipc: needs every rank on one node and the direct exchange path "
                                "(this job: %d of %d ranks on this node, %s path); use --transport mpi",
                          local_size, size, path == XPATH_DIRECT ? "direct" : "hierarchical");
        if (!strcmp(a.transport, "nccl") && xcp && path != XPATH_DIRECT)
            janus_die_all(NULL, "--transport nccl: needs the direct exchange path (add --exchange direct)");
#ifdef JANUS_NCCL
        if (xcp && !strcmp(a.transport, "nccl")) janus_nccl_init(&xc, mb_tokens, janus_gpu_stream(gpu_h));
        else
#endif
        if (xcp && cmpi) janus_cudampi_init(&xc, mb_tokens, janus_gpu_stream(gpu_h), cmpi_managed);
        else if (xcp && ipc_ok && strcmp(a.transport, "mpi")) janus_ipc_init(&xc, mb_tokens, janus_gpu_stream(gpu_h));
        if (xcp)
            janus_log("cuda: each rank on GPU (node-local rank mod visible GPUs); exchange payload %s%s%s%s",
                      xc.dev ? xc.dev->name : "host-staged through MPI", cmpi ? " (" : "",
                      cmpi ? (cmpi_managed ? "managed buffers: JANUS_CUDA_MPI_MANAGED=1" : cmpi_how) : "",
                      cmpi ? ")" : "");
        janus_vlog("rank %d: GPU %d holds %.1f MiB of weights%s", rank, dev, janus_gpu_weight_bytes(gpu_h) / 1048576.0,
                   is_attn ? " and the KV cache" : "");
        if (a.synthetic) {
            double mib = janus_gpu_weight_bytes(gpu_h) / 1048576.0, mx, mn;
            MPI_Allreduce(&mib, &mx, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            MPI_Allreduce(&mib, &mn, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
            janus_log("weights per rank: %.1f to %.1f MiB (synthetic, made on the GPUs; replicas included)", mn, mx);
        }
        if (is_attn && rank == 0)
            janus_log("cuda: a %d-block KV cache (%.1f MiB) per attention GPU", kv_blocks, kv_blocks * block_bytes / 1048576.0);
    }
#endif
    en.fault_step = -1;
    // Testing hook: JANUS_FAULT="RANK:STEP[:SIGNAL]" sends that rank the signal
    // (default SIGKILL) at that step.
    const char *fault = getenv("JANUS_FAULT");
    if (fault) {
        int fr = -1, fs = -1, fsig = SIGKILL;
        if (sscanf(fault, "%d:%d:%d", &fr, &fs, &fsig) >= 2 && fr == rank) en.fault_step = fs, en.fault_signal = fsig;
    }
    janus_gen_opts go = {a.max_batch, a.max_step_tokens, a.block_size, kv_blocks, janus_verbosity ? a.progress_s : 0,
                         is_attn ? &pw : NULL, &g_stop, n_left};
    janus_gen_out g;
    janus_gen_out_init(&g, R.n);
    double tg0 = janus_now_s();
    int stopped = is_attn ? janus_generate(&en, &R, mine, n_mine, &go, &g) : janus_moe_loop(&en, &g_stop);
    double gen_s = janus_now_s() - tg0;
    janus_parts_close(&pw);
    if (stopped) { // every rank saw the stop in the same step header
        int64_t done_here = 0, done_all = 0;
        for (int64_t i = 0; i < n_mine; i++) done_here += g.n_gen[mine[i]] > 0;
        MPI_Reduce(&done_here, &done_all, 1, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
        janus_log("stopped by a signal: %lld of %lld requests done (%lld this run); they are in %s.parts/; rerun "
                  "the same command with --resume to continue",
                  (long long)(done_all + prev.n_done), (long long)R.n, (long long)done_all, a.out);
        MPI_Finalize();
        exit(3);
    }

    // Expert activations and timing reach rank 0.
    const int L = m.cfg.n_layers, E = m.cfg.n_experts;
    int64_t *counts = rank == 0 ? xcalloc((size_t)L * E, sizeof(int64_t)) : NULL;
    MPI_Reduce(en.expert_counts, counts, L * E, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
    janus_xchg_times xt = xcp ? xc.t : (janus_xchg_times){0};
    enum { NT = 13 };
    double tl[NT] = {en.times.attn_s, en.times.router_s, en.times.experts_s, en.times.combine_s, en.times.dense_s,
                     en.times.lm_head_s, gen_s, xt.handshake_s, xt.sched_s, xt.send_s, xt.wait_s, xt.experts_s,
                     xt.serve_wait_s};
    double tmax[NT];
    MPI_Reduce(tl, tmax, NT, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (is_attn)
        janus_vlog("rank %d (attention): %lld requests, %lld tokens, %lld steps; attention %.3f s, router %.3f s, "
                   "experts (incl. exchange) %.3f s, combine %.3f s, dense %.3f s, lm_head %.3f s; handshake %.3f s, "
                   "schedule %.3f s, send %.3f s, wait for outputs %.3f s",
                   rank, (long long)n_mine, (long long)g.gen_tokens, (long long)g.steps, tl[0], tl[1], tl[2], tl[3],
                   tl[4], tl[5], xt.handshake_s, xt.sched_s, xt.send_s, xt.wait_s);
    if (is_moe && xcp)
        janus_vlog("rank %d (moe %d): %lld rows served, expert compute %.3f s, waiting for rows %.3f s, handshake %.3f s",
                   rank, moe_idx, (long long)xt.rows_served, xt.experts_s, xt.serve_wait_s, xt.handshake_s);
    if (janus_verbosity >= 2 && rank == 0 && is_attn) {
        fprintf(stderr, "janus[0]: per-layer time on rank 0 (attention rank): layer, kind, attention s, ffn/moe s (router + exchange + experts + combine)\n");
        for (int l = 0; l < m.cfg.n_layers; l++)
            fprintf(stderr, "janus[0]:   %3d %-5s %10.4f %10.4f\n", l, m.cfg.layer_moe[l] ? "moe" : "dense",
                    en.layer_attn_s[l], en.layer_ffn_s[l]);
    }
    janus_results res = {0};
    gather_results(&R, mine, n_mine, &g, &prev, &res);
    if (rank == 0) {
        double wall = janus_now_s() - t0;
        int64_t G = res.offsets[res.n];
        char cmdline[2048] = "", plan[512];
        snprintf(plan, sizeof plan,
                 "{\"mode\": \"%s\", \"attn_ranks\": %d, \"moe_ranks\": %d, \"micro_batches\": %d, "
                 "\"expert_replicas\": %d, \"replicate_hot\": %d, \"exchange\": \"%s\", \"max_batch\": %d}",
                 disagg ? "disaggregated" : "monolithic", A, disagg ? M : 0, a.micro_batches, a.replicas, a.hot,
                 path == XPATH_HIER ? "hierarchical" : "direct", a.max_batch);
        for (int i = 0, k = 0; i < argc && k < (int)sizeof cmdline - 2; i++)
            k += snprintf(cmdline + k, sizeof cmdline - k, "%s%s", i ? " " : "janus ", argv[i]);
        janus_attr attrs[] = {
            {"model", a.model, 0},
            {"model_type", m.cfg.model_type, 0},
            {"requests", a.requests, 0},
            {"layout", layout, 0},
            {"plan", plan_json[0] ? plan_json : plan, 0},
            {"janus_version", JANUS_VERSION, 0},
            {"backend", a.backend, 0},
            {"command", cmdline, 0},
            {"ranks", NULL, size},
            {"attn_ranks", NULL, A},
            {"moe_ranks", NULL, disagg ? M : 0},
            {"micro_batches", NULL, a.micro_batches},
            {"expert_replicas", NULL, a.replicas},
            {"threads_per_rank", NULL, threads},
            {"wall_s", NULL, wall},
            {"generate_s", NULL, tmax[6]},
            {"generated_tokens", NULL, (double)G},
            {"tokens_per_s", NULL, tmax[6] > 0 ? G / tmax[6] : 0},
            {"time_attention_s", NULL, tmax[0]},
            {"time_router_s", NULL, tmax[1]},
            {"time_experts_s", NULL, tmax[2]},
            {"time_combine_s", NULL, tmax[3]},
            {"time_dense_s", NULL, tmax[4]},
            {"time_lm_head_s", NULL, tmax[5]},
            {"time_handshake_s", NULL, tmax[7]},
            {"time_schedule_s", NULL, tmax[8]},
            {"time_payload_send_s", NULL, tmax[9]},
            {"time_payload_wait_s", NULL, tmax[10]},
            {"time_moe_expert_compute_s", NULL, tmax[11]},
            {"time_moe_idle_s", NULL, tmax[12]},
        };
        res.n_layers = L;
        res.n_experts = E;
        for (int64_t i = 0; i < (int64_t)L * E; i++) counts[i] += prev.counts[i]; // earlier runs' activations
        res.expert_counts = counts;
        res.attrs = attrs;
        res.n_attrs = (int)(sizeof attrs / sizeof attrs[0]);
        res.n_progress = g.n_prog; // rank 0's copy of the step headers: the whole job
        res.progress_time_s = g.prog_t, res.progress_tokens = g.prog_tokens, res.progress_done = g.prog_done;
        if (janus_results_write(a.out, &res, &e)) janus_die(NULL, "%s", e.msg);
        { // durable before the parts go: a crash must leave one or the other
            int fd = open(a.out, O_RDONLY);
            if (fd >= 0) fsync(fd), close(fd);
            char *dup = xstrdup(a.out);
            int dfd = open(dirname(dup), O_RDONLY);
            if (dfd >= 0) fsync(dfd), close(dfd);
            free(dup);
        }
        janus_parts_remove(a.out); // the final file holds everything now
        int64_t n_eos = 0;
        for (int64_t i = 0; i < res.n; i++) n_eos += res.finish_reason[i];
        janus_log("done: %lld requests (%lld stopped at EOS), %lld tokens generated in %.2f s: %.1f tokens/s -> %s",
                  (long long)res.n, (long long)n_eos, (long long)G, tmax[6], tmax[6] > 0 ? G / tmax[6] : 0.0, a.out);
        free(res.ids);
        free(res.offsets);
        free(res.tokens);
        free(res.logprobs);
        free(res.finish_reason);
        free(res.ttft_s);
        free(res.tpot_s);
        free(counts);
    }
    janus_gen_out_free(&g);
#ifdef JANUS_CUDA
    if (xcp) janus_xchg_free_device(&xc); // before the GPU (and its stream) goes
    janus_gpu_free(gpu_h);
#endif
    janus_engine_free(&en);
    if (xcp) janus_xchg_free(&xc);
    for (int l = 0; l < cfg.n_layers; l++)
        if (cfg.layer_moe[l]) janus_placement_free(&place[l]);
    free(place);
    free(mask);
    free(mine);
    janus_parts_state_free(&prev);
    janus_requests_free(&R);
    janus_model_free(&m);
    MPI_Finalize();
    return 0;
}
