// cli/cmd_bench.c: `janus bench`: benchmarks that print a fixed table, pair
// every figure with its limit, and optionally write JSON.
//   decode: CPU decode step time and tokens/s on a model at several batch sizes;
//           bytes streamed per step (weights read + activated experts + KV) over
//           the time, against this machine's memory copy bandwidth measured in
//           the same run; --calibration fits the planner's model to the step
//           times (plan/calib.h) and writes the file `janus plan --hardware` reads.
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli/cli.h"
#include "engine/forward.h"
#include "engine/generate.h"
#include "io/results.h"
#include "plan/calib.h"
#include "plan/placement.h"
#include "sched/sched.h"

static const char *HELP =
    "usage: janus bench decode --model DIR [options]\n"
    "       janus bench sched [options]\n"
    "       janus bench placement [options]\n"
    "       mpirun -np 2 janus bench exchange [options]   (payload transports: latency, bandwidth)\n"
    "       janus bench moe-layer [--json FILE]   (CUDA build: decode MoE layer vs HBM bandwidth)\n"
    "       janus bench kernels [--json FILE] [--only NAME] [--quick]\n"
    "                                             (CUDA build: attention, expert FFNs, norms vs roofline)\n"
    "       janus bench e2e --model DIR [--synthetic] [--batch B] [--context C] [--steps S] [--zipf Z]\n"
    "                                             (CUDA build: decode step time vs bytes / HBM bandwidth)\n"
    "\n"
    "decode: time decode steps of B sequences that each hold CONTEXT positions of KV\n"
    "cache, for every B in --batch; print ms/step, tokens/s and achieved GB/s\n"
    "(weights + activated experts + KV bytes read per step) against the memory copy\n"
    "bandwidth of this machine measured in the same run.\n"
    "\n"
    "  --model DIR        checkpoint directory\n"
    "  --batch LIST       comma-separated batch sizes (default 1,8,32)\n"
    "  --context N        positions already in each sequence's cache (default 128)\n"
    "  --steps N          timed decode steps per batch size (default 16)\n"
    "  --threads N        OpenMP threads (default: all this process may use)\n"
    "  --json FILE        also write the table as JSON\n"
    "  --calibration FILE fit the planner's CPU model to the step times (at least 3\n"
    "                     batch sizes): eff (fraction of the copy bandwidth), flops and\n"
    "                     layer_overhead_s by least squares of its predicted 1-rank TPOT\n"
    "                     against the median step time of each batch size; print\n"
    "                     measured vs predicted and write FILE for janus plan\n"
    "                     --hardware FILE (docs/plan.md, \"Calibration\"); a batch size\n"
    "                     whose steps other processes disturbed (> 5% of a core) is\n"
    "                     measured again, up to 5 tries\n"
    "\n"
    "usage: janus bench sched [--replicas R] [--tokens N] [--zipf S] [--json FILE]\n"
    "\n"
    "sched: microseconds per layer of the activation scheduler (C version) for\n"
    "8..256 experts and 2..64 MoE ranks; N routed tokens per layer (default 512 x\n"
    "top-8 slots) drawn from a Zipf(S) expert popularity (default 1.0), R replicas\n"
    "of every expert (default 2). The budget column is DESIGN's 10 us per layer.\n"
    "CUDA build with a GPU visible: also the scheduler kernel (cuda_kernels/sched.cu)\n"
    "on the same 200 layers, cudaEvents around all of them after a warm-up pass, best\n"
    "of 5: gpu_us launched back to back on one stream (launch gaps included),\n"
    "graph_us as one CUDA graph; #wrong: layers whose GPU schedule differs from the\n"
    "C one (any: the bench ends with an error).\n"
    "\n"
    "usage: janus bench placement [--experts E] [--ranks M] [--slots LIST] [--tokens LIST]\n"
    "                             [--zipf LIST | --stats RESULTS.h5] [--top-k K] [--samples N] [--json FILE]\n"
    "\n"
    "placement: expected activated experts on the busiest MoE rank (Monte Carlo, N\n"
    "sampled layers, scheduled by the activation scheduler) under contiguous sharding\n"
    "(one replica each) and under replicated placement (janus_place_replicated: hot\n"
    "experts get the spare slots), and the reduction in percent; the bound column is\n"
    "what no placement can beat (every expert on every rank: ceil(active / M)) and\n"
    "max% the largest reduction it allows; tok_contig and tok_repl: the busiest rank's\n"
    "mean (token, slot) pairs (the scheduler's secondary objective).\n"
    "\n"
    "  --experts E        routed experts per layer (default 64; --stats: the file's)\n"
    "  --ranks M          MoE ranks (default 8)\n"
    "  --slots LIST       expert slots per MoE rank, each >= E / M (default 8,10,12)\n"
    "  --tokens LIST      tokens per layer and step (default 16,64,256)\n"
    "  --zipf LIST        expert popularity p_e ~ (e+1)^-s, by index (default 0,0.5,1.0,1.2)\n"
    "  --stats FILE       instead: every MoE layer's /stats/expert_counts of a janus results file\n"
    "  --top-k K          experts per token (default 8)\n"
    "  --samples N        sampled layers per figure (default 200)\n"
    "  --json FILE        also write the table as JSON\n";

// Copy bandwidth (read + write bytes / s) of a buffer well beyond the caches.
static double copy_bandwidth(void) {
    const size_t n = (size_t)64 << 20; // 256 MiB of floats, per array
    float *a = xmalloc(n * sizeof(float)), *b = xmalloc(n * sizeof(float));
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) a[i] = (float)i, b[i] = 0;
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = janus_now_s();
#pragma omp parallel for
        for (size_t i = 0; i < n; i++) b[i] = a[i];
        double dt = janus_now_s() - t0;
        if (dt < best) best = dt;
    }
    volatile float sink = b[n / 2];
    (void)sink;
    free(a);
    free(b);
    return 2.0 * n * sizeof(float) / best;
}

// Bytes of attention-side weights read once per step: everything but routed experts.
static size_t attn_side_bytes(const janus_model *m) {
    const janus_config *c = &m->cfg;
    size_t experts = 0;
    for (int l = 0; l < c->n_layers; l++)
        if (m->layers[l].moe)
            for (int e = 0; e < c->n_experts; e++)
                experts += 3 * (size_t)m->layers[l].gate[e].rows * m->layers[l].gate[e].cols *
                           janus_dtype_size(m->layers[l].gate[e].dt);
    return m->weight_bytes - experts;
}

// CPU seconds other processes of this machine spent since the last call
// (Linux /proc/stat minus this process's getrusage); 0 where unknown. *state
// holds the two readings between calls.
static double other_cpu_s(double state[2]) {
    double busy = 0, self;
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                   &v[7]) == 8)
            busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / sysconf(_SC_CLK_TCK);
        fclose(f);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    self = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
    double other = busy > 0 && state[0] > 0 ? (busy - state[0]) - (self - state[1]) : 0;
    state[0] = busy, state[1] = self;
    return other > 0 ? other : 0;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench_decode(int argc, char **argv) {
    const char *model = NULL, *json = NULL, *batch_list = "1,8,32", *calib = NULL;
    int context = 128, steps = 16, threads = 0;
    static struct option opts[] = {{"model", required_argument, 0, 'm'},   {"batch", required_argument, 0, 'b'},
                                   {"context", required_argument, 0, 'c'}, {"steps", required_argument, 0, 's'},
                                   {"threads", required_argument, 0, 't'}, {"json", required_argument, 0, 'j'},
                                   {"calibration", required_argument, 0, 'C'},
                                   {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'b': batch_list = optarg; break;
        case 'c': context = (int)cli_int("--context", optarg, 1, 1 << 20); break;
        case 's': steps = (int)cli_int("--steps", optarg, 1, 1 << 20); break;
        case 't': threads = (int)cli_int("--threads", optarg, 1, 4096); break;
        case 'j': json = optarg; break;
        case 'C': calib = optarg; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: janus_die(NULL, "bench decode: unknown or incomplete option \"%s\" (janus bench --help)", argv[optind - 1]);
        }
    }
    if (!model) janus_die(NULL, "bench decode: --model DIR is required");
    if (threads) omp_set_num_threads(threads);
    janus_model m;
    janus_err e;
    if (janus_model_load(model, &m, JANUS_LOAD_ALL, NULL, &e)) janus_die(NULL, "%s", e.msg);
    const janus_config *cf = &m.cfg;
    if (context + steps > cf->max_ctx)
        janus_die(NULL, "bench decode: --context %d + --steps %d exceeds the model context %d", context, steps, cf->max_ctx);
    int batches[32], nb = 0;
    for (const char *p = batch_list; *p && nb < 32;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 4096) janus_die(NULL, "--batch: \"%s\" is not a list of sizes in [1, 4096]", batch_list);
        batches[nb++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') janus_die(NULL, "--batch: \"%s\" is not a comma-separated list", batch_list);
    }
    if (calib && nb < 3) janus_die(NULL, "bench decode: --calibration needs at least 3 batch sizes (--batch), %d given", nb);
    if (calib) { // fail before the measurements, not after (janus_calib_write writes FILE.tmp, then renames)
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", calib);
        FILE *cf = fopen(tmp, "w");
        if (!cf) janus_die(calib, "cannot open for writing");
        fclose(cf);
        remove(tmp);
    }
    janus_calib_point pts[32];
    double bw = copy_bandwidth();
    size_t attn_bytes = attn_side_bytes(&m);
    size_t expert_bytes = janus_expert_bytes(cf, janus_dtype_size(m.layers[0].moe ? m.layers[0].gate[0].dt : m.embed.dt));
    int nthreads = omp_get_max_threads();
    printf("# janus bench decode: %s (%s), %d threads, context %d, %d steps\n", model, cf->model_type, nthreads, context, steps);
    printf("# memory copy bandwidth of this machine: %.1f GB/s (the limit the GB/s column is compared with)\n", bw / 1e9);
    printf("%6s %10s %12s %14s %12s %10s %8s\n", "batch", "ms/step", "tokens/s", "experts/layer", "MB/step", "GB/s", "%copy");
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (json && !jf) janus_die(json, "cannot open for writing");
    if (jf) fprintf(jf, "{\"bench\": \"decode\", \"model\": \"%s\", \"threads\": %d, \"context\": %d, \"steps\": %d, \"copy_GBps\": %.3f, \"rows\": [",
                    model, nthreads, context, steps, bw / 1e9);
    for (int bi = 0; bi < nb; bi++) {
        const int B = batches[bi], bs = 16;
        int per_seq = janus_blocks_needed(context, steps + 1, bs);
        janus_engine en;
        int chunk = 256 > B ? 256 : B;
        janus_engine_init(&en, &m, true, chunk, 1, per_seq * B, bs, NULL);
        int32_t **bt = xmalloc(sizeof(int32_t *) * B);
        for (int s = 0; s < B; s++) {
            bt[s] = xmalloc(sizeof(int32_t) * per_seq);
            for (int k = 0; k < per_seq; k++) bt[s][k] = s * per_seq + k;
        }
        int32_t *tok = xmalloc(sizeof(int32_t) * chunk), *pos = xmalloc(sizeof(int32_t) * chunk),
                *rows = xmalloc(sizeof(int32_t) * chunk);
        const int32_t **tbt = xmalloc(sizeof(int32_t *) * chunk);
        float *logits = xmalloc(sizeof(float) * (size_t)chunk * cf->vocab);
        // Prefill every sequence (untimed), in chunks.
        uint64_t rng = 12345;
        for (int s = 0; s < B; s++)
            for (int p0 = 0; p0 < context; p0 += chunk) {
                int n = context - p0 < chunk ? context - p0 : chunk;
                for (int i = 0; i < n; i++) {
                    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                    tok[i] = (int32_t)((rng >> 33) % (uint64_t)cf->vocab);
                    pos[i] = p0 + i;
                    tbt[i] = bt[s];
                }
                rows[0] = n - 1;
                janus_batch b = {.T = n, .tok = tok, .pos = pos, .bt = tbt, .n_out = 1, .out_rows = rows};
                janus_forward(&en, &b, logits);
            }
        // Timed decode steps: B tokens each.
        int64_t *before = xmalloc(sizeof(int64_t) * cf->n_layers * cf->n_experts);
        double t_total = 0, active_experts = 0, *t_step = xmalloc(sizeof(double) * steps);
        // With --calibration, timed steps during which other processes took
        // more than 5% of a core are measured again (up to 5 tries; the least
        // disturbed is kept): on a shared machine they would skew the fit.
        double *best_step = xmalloc(sizeof(double) * steps), best_other = INFINITY, best_total = 0, best_active = 0;
        for (int attempt = 0;; attempt++) {
            double cpu_state[2] = {0, 0}, t_begin = janus_now_s();
            other_cpu_s(cpu_state);
            t_total = active_experts = 0;
            for (int st = 0; st < steps; st++) {
                for (int s = 0; s < B; s++) {
                    tok[s] = (int32_t)((s * 7919 + st * 104729) % cf->vocab);
                    pos[s] = context + st;
                    tbt[s] = bt[s];
                    rows[s] = s;
                }
                memcpy(before, en.expert_counts, sizeof(int64_t) * cf->n_layers * cf->n_experts);
                janus_batch b = {.T = B, .tok = tok, .pos = pos, .bt = tbt, .n_out = B, .out_rows = rows};
                double t0 = janus_now_s();
                janus_forward(&en, &b, logits);
                t_step[st] = janus_now_s() - t0;
                t_total += t_step[st];
                for (int i = 0; i < cf->n_layers * cf->n_experts; i++) active_experts += en.expert_counts[i] > before[i];
            }
            const double other = other_cpu_s(cpu_state) / (janus_now_s() - t_begin);
            if (other < best_other) {
                best_other = other, best_total = t_total, best_active = active_experts;
                memcpy(best_step, t_step, sizeof(double) * steps);
            }
            if (!calib || other <= 0.05 || attempt == 4) break;
            printf("# batch %d: other processes took %.0f%% of a core during the timed steps; measuring again\n", B, 100 * other);
        }
        if (calib && best_other > 0.05)
            printf("# batch %d: every try was disturbed; kept the one where other processes took %.0f%% of a core\n", B,
                   100 * best_other);
        t_total = best_total, active_experts = best_active;
        memcpy(t_step, best_step, sizeof(double) * steps);
        free(best_step);
        int n_moe = janus_n_moe_layers(cf);
        double ms = 1e3 * t_total / steps, tps = B * steps / t_total;
        double act_per_layer = n_moe ? active_experts / steps / n_moe : 0;
        double kv_bytes = (double)B * (context + steps / 2.0) * cf->n_layers * 2.0 * cf->n_kv_heads * cf->head_dim * 4;
        double bytes = attn_bytes + active_experts / steps * expert_bytes + kv_bytes;
        double gbps = bytes / (t_total / steps) / 1e9;
        // The fit takes the median step: robust to a step that another process
        // on a shared machine slowed down.
        qsort(t_step, steps, sizeof(double), cmp_double);
        pts[bi] = (janus_calib_point){.batch = B, .context = context, .steps = steps,
                                      .step_s = steps % 2 ? t_step[steps / 2] : 0.5 * (t_step[steps / 2 - 1] + t_step[steps / 2])};
        free(t_step);
        printf("%6d %10.3f %12.1f %14.2f %12.2f %10.2f %7.1f%%\n", B, ms, tps, act_per_layer, bytes / 1e6, gbps,
               100.0 * gbps / (bw / 1e9));
        if (jf)
            fprintf(jf, "%s{\"batch\": %d, \"ms_per_step\": %.4f, \"tokens_per_s\": %.2f, \"experts_per_layer\": %.3f, "
                        "\"bytes_per_step\": %.0f, \"GBps\": %.3f, \"pct_copy_bw\": %.2f}",
                    bi ? ", " : "", B, ms, tps, act_per_layer, bytes, gbps, 100.0 * gbps / (bw / 1e9));
        free(before);
        for (int s = 0; s < B; s++) free(bt[s]);
        free(bt);
        free(tok);
        free(pos);
        free(rows);
        free(tbt);
        free(logits);
        janus_engine_free(&en);
    }
    if (jf) {
        fprintf(jf, "]}\n");
        fclose(jf);
    }
    if (calib) {
        janus_hw base = *janus_hw_preset("cpu");
        base.hbm_Bps = bw;
        // A node holds as many ranks of this many threads as it has cores.
        base.gpus_per_node = omp_get_num_procs() / nthreads > 1 ? omp_get_num_procs() / nthreads : 1;
        janus_calib_fit fit;
        char src[1024];
        snprintf(src, sizeof src, "janus bench decode --model %s --batch %s --context %d --steps %d, %d OpenMP threads, "
                                  "copy bandwidth %.2f GB/s", model, batch_list, context, steps, nthreads, bw / 1e9);
        if (janus_calib_fit_decode(cf, &base, pts, nb, &fit, &e) ||
            janus_calib_write(calib, "cpu", &fit, pts, nb, src, &e))
            janus_die(NULL, "%s", e.msg);
        printf("# calibration: %.1f%% of the copy bandwidth (eff %.4f of %.2f GB/s)%s, %.2f GFLOP/s%s, %.1f us per "
               "layer overhead%s\n", 100 * fit.hw.eff, fit.hw.eff, bw / 1e9, fit.fitted & 1 ? "" : " (held: not fitted)",
               fit.hw.flops / 1e9, fit.fitted & 2 ? "" : " (held: not fitted)", fit.hw.layer_overhead_s * 1e6,
               fit.fitted & 4 ? "" : " (held at 0: a free fit makes it negative)");
        printf("%6s %12s %14s %8s   (measured: the median step)\n", "batch", "measured_ms", "predicted_ms", "err%");
        for (int i = 0; i < nb; i++)
            printf("%6d %12.3f %14.3f %7.1f%%\n", pts[i].batch, pts[i].step_s * 1e3, fit.pred_s[i] * 1e3,
                   100 * (fit.pred_s[i] - pts[i].step_s) / pts[i].step_s);
        printf("# fit residual: rms %.1f%%, max %.1f%% of the measured step time; written to %s (janus plan --hardware %s)\n",
               100 * fit.rms_rel, 100 * fit.max_rel, calib, calib);
    }
    janus_model_free(&m);
    return 0;
}

static int bench_sched(int argc, char **argv) {
    int replicas = 2, tokens = 512 * 8;
    double zipf = 1.0;
    const char *json = NULL;
    static struct option opts[] = {{"replicas", required_argument, 0, 'r'}, {"tokens", required_argument, 0, 'n'},
                                   {"zipf", required_argument, 0, 'z'},     {"json", required_argument, 0, 'j'},
                                   {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'r': replicas = (int)cli_int("--replicas", optarg, 1, 64); break;
        case 'n': tokens = (int)cli_int("--tokens", optarg, 1, 1 << 26); break;
        case 'z': zipf = cli_num("--zipf", optarg, 0, 10); break;
        case 'j': json = optarg; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: janus_die(NULL, "bench sched: unknown or incomplete option \"%s\"", argv[optind - 1]);
        }
    }
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (json && !jf) janus_die(json, "cannot open for writing");
#ifdef JANUS_CUDA
    char gpu[256] = "";
    const int have_gpu = bench_gpu_name(gpu, sizeof gpu) == 0;
#else
    const char *gpu = "";
    const int have_gpu = 0;
#endif
    printf("# janus bench sched: activation scheduler, C%s%s; %d routed tokens per layer, Zipf(%.2f), %d replicas per expert\n",
           have_gpu ? " and CUDA kernel on " : " (no GPU column: no CUDA build or no GPU visible)", gpu, tokens, zipf, replicas);
    printf("%8s %6s %12s %12s %12s %12s %14s %10s %7s\n", "experts", "ranks", "us/layer", "gpu_us", "graph_us", "budget_us",
           "max_act/ideal", "max_tok/avg", "#wrong");
    if (jf) {
        fprintf(jf, "{\"bench\": \"sched\", \"tokens\": %d, \"zipf\": %.3f, \"replicas\": %d, ", tokens, zipf, replicas);
        if (have_gpu) fprintf(jf, "\"gpu\": \"%s\", \"rows\": [", gpu);
        else fprintf(jf, "\"gpu\": null, \"rows\": [");
    }
    int wrong_all = 0;
    const int Es[] = {8, 16, 32, 64, 128, 256}, Ms[] = {2, 4, 8, 16, 32, 64};
    int first = 1;
    for (size_t ei = 0; ei < sizeof Es / sizeof Es[0]; ei++)
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            int E = Es[ei], M = Ms[mi];
            if (M > E) continue;
            janus_placement p;
            janus_placement_uniform(&p, E, M, replicas < M ? replicas : M);
            janus_sched_ws ws;
            janus_sched_ws_init(&ws, &p);
            // Zipf popularity over a fixed random permutation of experts.
            double *cdf = xmalloc(sizeof(double) * E), tot = 0;
            for (int e = 0; e < E; e++) tot += pow(e + 1, -zipf), cdf[e] = tot;
            const int iters = 200;
            int64_t *nall = xcalloc((size_t)iters * E, sizeof(int64_t)), *share = xmalloc(sizeof(int64_t) * p.rep_off[E]),
                    *tok = xmalloc(sizeof(int64_t) * M); // nall: [iters][E], the layers' counts (GPU pass too)
            int32_t *act = xmalloc(sizeof(int32_t) * M);
            uint64_t rng = 42 + E * 131 + M;
            double t_total = 0, ratio_act = 0, ratio_tok = 0;
            for (int it = 0; it < iters; it++) {
                int64_t *n = nall + (size_t)it * E;
                for (int t = 0; t < tokens; t++) {
                    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                    double u = (double)(rng >> 11) / 9007199254740992.0 * tot;
                    int lo = 0, hi = E - 1;
                    while (lo < hi) { int mid = (lo + hi) / 2; if (cdf[mid] < u) lo = mid + 1; else hi = mid; }
                    n[(lo * 2654435761u) % (unsigned)E]++;
                }
                double t0 = janus_now_s();
                janus_sched(&p, n, share, act, tok, &ws);
                t_total += janus_now_s() - t0;
                int active = 0, mx = 0;
                int64_t mt = 0, st = 0;
                for (int e = 0; e < E; e++) active += n[e] > 0;
                for (int r = 0; r < M; r++) mx = act[r] > mx ? act[r] : mx, mt = tok[r] > mt ? tok[r] : mt, st += tok[r];
                ratio_act += active ? mx / ceil((double)active / M) : 1.0;
                ratio_tok += (double)mt / ((double)st / M);
            }
            double us = 1e6 * t_total / iters, gpu_us = 0, graph_us = 0;
            int wrong = -1; // -1: no GPU figure
#ifdef JANUS_CUDA
            if (have_gpu && bench_sched_gpu(&p, nall, iters, &gpu_us, &graph_us, &wrong)) wrong = -1;
#endif
            char g1[32] = "-", g2[32] = "-", g3[16] = "-";
            if (wrong >= 0) {
                snprintf(g1, sizeof g1, "%.2f", gpu_us), snprintf(g2, sizeof g2, "%.2f", graph_us), snprintf(g3, sizeof g3, "%d", wrong);
                wrong_all += wrong;
            }
            printf("%8d %6d %12.2f %12s %12s %12.1f %14.3f %10.3f %7s\n", E, M, us, g1, g2, 10.0, ratio_act / iters,
                   ratio_tok / iters, g3);
            if (jf) {
                fprintf(jf, "%s{\"experts\": %d, \"ranks\": %d, \"us_per_layer\": %.3f, \"max_act_over_ideal\": %.4f, \"max_tok_over_avg\": %.4f",
                        first ? "" : ", ", E, M, us, ratio_act / iters, ratio_tok / iters);
                if (wrong >= 0)
                    fprintf(jf, ", \"gpu_us_per_layer\": %.3f, \"gpu_graph_us_per_layer\": %.3f, \"gpu_wrong\": %d}", gpu_us, graph_us, wrong);
                else
                    fprintf(jf, ", \"gpu_us_per_layer\": null, \"gpu_graph_us_per_layer\": null, \"gpu_wrong\": null}");
            }
            first = 0;
            free(cdf), free(nall), free(share), free(tok), free(act);
            janus_sched_ws_free(&ws);
            janus_placement_free(&p);
        }
    if (jf) fprintf(jf, "]}\n"), fclose(jf);
    if (wrong_all) janus_die(NULL, "bench sched: %d layers scheduled differently by the CUDA kernel and janus_sched", wrong_all);
    return 0;
}

static int bench_placement(int argc, char **argv) {
    int E = 64, M = 8, k = 8, samples = 200;
    const char *json = NULL, *stats = NULL;
    const char *lists[3] = {"8,10,12", "16,64,256", "0,0.5,1.0,1.2"}; // slots, tokens, zipf
    static struct option opts[] = {{"experts", required_argument, 0, 'e'}, {"ranks", required_argument, 0, 'r'},
                                   {"slots", required_argument, 0, 's'},   {"tokens", required_argument, 0, 'n'},
                                   {"zipf", required_argument, 0, 'z'},    {"stats", required_argument, 0, 'S'},
                                   {"top-k", required_argument, 0, 'k'},   {"samples", required_argument, 0, 'N'},
                                   {"json", required_argument, 0, 'j'},    {"help", no_argument, 0, 'h'},
                                   {0, 0, 0, 0}};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'e': E = (int)cli_int("--experts", optarg, 1, 1 << 16); break;
        case 'r': M = (int)cli_int("--ranks", optarg, 1, 1 << 12); break;
        case 's': lists[0] = optarg; break;
        case 'n': lists[1] = optarg; break;
        case 'z': lists[2] = optarg; break;
        case 'S': stats = optarg; break;
        case 'k': k = (int)cli_int("--top-k", optarg, 1, 1 << 16); break;
        case 'N': samples = (int)cli_int("--samples", optarg, 1, 1 << 24); break;
        case 'j': json = optarg; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: janus_die(NULL, "bench placement: unknown or incomplete option \"%s\" (janus bench --help)", argv[optind - 1]);
        }
    }
    // Popularity vectors: one per Zipf exponent, or one per MoE layer of --stats.
    int nd = 0;
    double *dist = NULL; // [nd, E]
    char (*name)[24] = NULL;
    if (stats) {
        janus_results res;
        janus_err err;
        if (janus_results_read(stats, &res, &err)) janus_die(NULL, "%s", err.msg);
        E = res.n_experts;
        dist = xmalloc(sizeof(double) * ((size_t)res.n_layers * E + 1));
        name = xmalloc(sizeof *name * (res.n_layers + 1));
        for (int l = 0; l < res.n_layers; l++) {
            const int64_t *cnt = res.expert_counts + (size_t)l * E;
            double tot = 0;
            for (int e = 0; e < E; e++) tot += (double)cnt[e];
            if (tot <= 0) continue; // a dense layer
            for (int e = 0; e < E; e++) dist[(size_t)nd * E + e] = (double)cnt[e] / tot;
            snprintf(name[nd++], sizeof name[0], "layer%d", l);
        }
        janus_results_free(&res);
        if (!nd) janus_die(stats, "/stats/expert_counts: no layer with routed tokens");
    }
    // Lists: slots and tokens (integers), Zipf exponents (numbers).
    const char *lname[3] = {"--slots", "--tokens", "--zipf"};
    double vals[3][64];
    int nv[3] = {0, 0, 0};
    for (int li = 0; li < 3; li++)
        for (const char *q = lists[li]; *q;) {
            char *end;
            double v = strtod(q, &end);
            bool integer = li < 2;
            if (end == q || (*end && *end != ',') || nv[li] == 64 || !(v >= (li == 2 ? 0 : 1)) || v > (li == 2 ? 10 : 1 << 20) ||
                (integer && v != floor(v)))
                janus_die(NULL, "%s: \"%s\" is not a comma-separated list of %s (at most 64)", lname[li], lists[li],
                          li == 2 ? "numbers in [0, 10]" : "integers in [1, 1048576]");
            vals[li][nv[li]++] = v;
            q = *end ? end + 1 : end;
        }
    if (!stats) {
        nd = nv[2];
        dist = xmalloc(sizeof(double) * (size_t)nd * E);
        name = xmalloc(sizeof *name * nd);
        for (int d = 0; d < nd; d++) {
            janus_zipf(dist + (size_t)d * E, E, vals[2][d]);
            snprintf(name[d], sizeof name[0], "zipf%.2f", vals[2][d]);
        }
    }
    if (k > E) janus_die(NULL, "bench placement: --top-k %d exceeds the %d experts", k, E);
    for (int i = 0; i < nv[0]; i++)
        if ((int64_t)vals[0][i] * M < E)
            janus_die(NULL, "--slots: %d slots x %d ranks cannot hold %d experts", (int)vals[0][i], M, E);
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (json && !jf) janus_die(json, "cannot open for writing");
    printf("# janus bench placement: %d experts, %d MoE ranks, top-%d, %d sampled layers per figure, popularity from %s\n",
           E, M, k, samples, stats ? stats : "Zipf by expert index");
    printf("# activated experts on the busiest MoE rank: contiguous sharding vs replicated placement; "
           "bound: no placement does better\n");
    printf("%-10s %6s %7s %10s %10s %7s %8s %7s %10s %10s\n", "dist", "slots", "tokens", "contiguous", "replicated", "red%",
           "bound", "max%", "tok_contig", "tok_repl");
    if (jf)
        fprintf(jf, "{\"bench\": \"placement\", \"experts\": %d, \"ranks\": %d, \"top_k\": %d, \"samples\": %d, "
                    "\"stats\": %s%s%s, \"rows\": [",
                E, M, k, samples, stats ? "\"" : "", stats ? stats : "null", stats ? "\"" : "");
    janus_placement contig, full;
    janus_placement_uniform(&contig, E, M, 1);
    janus_placement_uniform(&full, E, M, M);
    int first = 1;
    for (int d = 0; d < nd; d++) {
        const double *p = dist + (size_t)d * E;
        for (int si = 0; si < nv[0]; si++) {
            const int slots = (int)vals[0][si];
            janus_placement rep;
            if (janus_place_replicated(p, E, M, slots, &rep))
                janus_die(NULL, "bench placement: no placement for %s, %d slots", name[d], slots);
            for (int ti = 0; ti < nv[1]; ti++) {
                const int tokens = (int)vals[1][ti];
                const uint64_t seed = 42 + (uint64_t)tokens; // the same sampled layers for all three
                double tc, tr;
                double ac = janus_expected_max_activated(&contig, p, tokens, k, samples, seed, &tc);
                double ar = janus_expected_max_activated(&rep, p, tokens, k, samples, seed, &tr);
                double ab = janus_expected_max_activated(&full, p, tokens, k, samples, seed, NULL);
                double red = ac > 0 ? 100 * (ac - ar) / ac : 0, mx = ac > 0 ? 100 * (ac - ab) / ac : 0;
                printf("%-10s %6d %7d %10.3f %10.3f %6.1f%% %8.3f %6.1f%% %10.1f %10.1f\n", name[d], slots, tokens, ac, ar,
                       red, ab, mx, tc, tr);
                if (jf)
                    fprintf(jf, "%s{\"dist\": \"%s\", \"slots\": %d, \"tokens\": %d, \"contiguous_max_act\": %.4f, "
                                "\"replicated_max_act\": %.4f, \"reduction_pct\": %.2f, \"bound_max_act\": %.4f, "
                                "\"bound_reduction_pct\": %.2f, \"contiguous_max_tok\": %.2f, \"replicated_max_tok\": %.2f}",
                            first ? "" : ", ", name[d], slots, tokens, ac, ar, red, ab, mx, tc, tr);
                first = 0;
            }
            janus_placement_free(&rep);
        }
    }
    if (jf) fprintf(jf, "]}\n"), fclose(jf);
    janus_placement_free(&contig);
    janus_placement_free(&full);
    free(dist);
    free(name);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "decode")) return bench_decode(argc - 1, argv + 1);
    if (!strcmp(argv[1], "sched")) return bench_sched(argc - 1, argv + 1);
    if (!strcmp(argv[1], "placement")) return bench_placement(argc - 1, argv + 1);
    if (!strcmp(argv[1], "exchange")) return bench_exchange(argc - 1, argv + 1);
    if (!strcmp(argv[1], "e2e")) {
#ifdef JANUS_CUDA
        return bench_e2e(argc - 1, argv + 1);
#else
        janus_die(NULL, "bench e2e: this janus was built without CUDA (meson -Dcuda=enabled)");
#endif
    }
    if (!strcmp(argv[1], "moe-layer")) {
#ifdef JANUS_CUDA
        return bench_moe_layer(argc - 1, argv + 1);
#else
        janus_die(NULL, "bench moe-layer: this janus was built without CUDA (meson -Dcuda=enabled)");
#endif
    }
    if (!strcmp(argv[1], "kernels")) {
#ifdef JANUS_CUDA
        return bench_kernels(argc - 1, argv + 1);
#else
        janus_die(NULL, "bench kernels: this janus was built without CUDA (meson -Dcuda=enabled)");
#endif
    }
    fprintf(stderr, "janus: bench: unknown benchmark \"%s\" (janus bench --help)\n", argv[1]);
    return 2;
}
