// cli/cmd_bench.c: `janus bench`: benchmarks that print a fixed table, pair
// every figure with its limit, and optionally write JSON.
//   decode: CPU decode step time and tokens/s on a model at several batch sizes;
//           bytes streamed per step (weights read + activated experts + KV) over
//           the time, against this machine's memory copy bandwidth measured in
//           the same run.
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "engine/forward.h"
#include "engine/generate.h"
#include "sched/sched.h"

static const char *HELP =
    "usage: janus bench decode --model DIR [options]\n"
    "       janus bench sched [options]\n"
    "       janus bench moe-layer [--json FILE]   (CUDA build: decode MoE layer vs HBM bandwidth)\n"
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
    "\n"
    "usage: janus bench sched [--replicas R] [--tokens N] [--zipf S] [--json FILE]\n"
    "\n"
    "sched: microseconds per layer of the activation scheduler (C version) for\n"
    "8..256 experts and 2..64 MoE ranks; N routed tokens per layer (default 512 x\n"
    "top-8 slots) drawn from a Zipf(S) expert popularity (default 1.0), R replicas\n"
    "of every expert (default 2). The budget column is DESIGN's 10 us per layer.\n";

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

static int bench_decode(int argc, char **argv) {
    const char *model = NULL, *json = NULL, *batch_list = "1,8,32";
    int context = 128, steps = 16, threads = 0;
    static struct option opts[] = {{"model", required_argument, 0, 'm'},   {"batch", required_argument, 0, 'b'},
                                   {"context", required_argument, 0, 'c'}, {"steps", required_argument, 0, 's'},
                                   {"threads", required_argument, 0, 't'}, {"json", required_argument, 0, 'j'},
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
                janus_batch b = {n, tok, pos, tbt, 1, rows};
                janus_forward(&en, &b, logits);
            }
        // Timed decode steps: B tokens each.
        int64_t *before = xmalloc(sizeof(int64_t) * cf->n_layers * cf->n_experts);
        double t_total = 0, active_experts = 0;
        for (int st = 0; st < steps; st++) {
            for (int s = 0; s < B; s++) {
                tok[s] = (int32_t)((s * 7919 + st * 104729) % cf->vocab);
                pos[s] = context + st;
                tbt[s] = bt[s];
                rows[s] = s;
            }
            memcpy(before, en.expert_counts, sizeof(int64_t) * cf->n_layers * cf->n_experts);
            janus_batch b = {B, tok, pos, tbt, B, rows};
            double t0 = janus_now_s();
            janus_forward(&en, &b, logits);
            t_total += janus_now_s() - t0;
            for (int i = 0; i < cf->n_layers * cf->n_experts; i++) active_experts += en.expert_counts[i] > before[i];
        }
        int n_moe = janus_n_moe_layers(cf);
        double ms = 1e3 * t_total / steps, tps = B * steps / t_total;
        double act_per_layer = n_moe ? active_experts / steps / n_moe : 0;
        double kv_bytes = (double)B * (context + steps / 2.0) * cf->n_layers * 2.0 * cf->n_kv_heads * cf->head_dim * 4;
        double bytes = attn_bytes + active_experts / steps * expert_bytes + kv_bytes;
        double gbps = bytes / (t_total / steps) / 1e9;
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
    printf("# janus bench sched: C activation scheduler, %d routed tokens per layer, Zipf(%.2f), %d replicas per expert\n",
           tokens, zipf, replicas);
    printf("%8s %6s %12s %12s %14s %10s\n", "experts", "ranks", "us/layer", "budget_us", "max_act/ideal", "max_tok/avg");
    if (jf) fprintf(jf, "{\"bench\": \"sched\", \"tokens\": %d, \"zipf\": %.3f, \"replicas\": %d, \"rows\": [", tokens, zipf, replicas);
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
            int64_t *n = xcalloc(E, sizeof(int64_t)), *share = xmalloc(sizeof(int64_t) * p.rep_off[E]),
                    *tok = xmalloc(sizeof(int64_t) * M);
            int32_t *act = xmalloc(sizeof(int32_t) * M);
            uint64_t rng = 42 + E * 131 + M;
            const int iters = 200;
            double t_total = 0, ratio_act = 0, ratio_tok = 0;
            for (int it = 0; it < iters; it++) {
                memset(n, 0, sizeof(int64_t) * E);
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
            double us = 1e6 * t_total / iters;
            printf("%8d %6d %12.2f %12.1f %14.3f %10.3f\n", E, M, us, 10.0, ratio_act / iters, ratio_tok / iters);
            if (jf) fprintf(jf, "%s{\"experts\": %d, \"ranks\": %d, \"us_per_layer\": %.3f, \"max_act_over_ideal\": %.4f, \"max_tok_over_avg\": %.4f}",
                            first ? "" : ", ", E, M, us, ratio_act / iters, ratio_tok / iters);
            first = 0;
            free(cdf), free(n), free(share), free(tok), free(act);
            janus_sched_ws_free(&ws);
            janus_placement_free(&p);
        }
    if (jf) fprintf(jf, "]}\n"), fclose(jf);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "decode")) return bench_decode(argc - 1, argv + 1);
    if (!strcmp(argv[1], "sched")) return bench_sched(argc - 1, argv + 1);
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
    fprintf(stderr, "janus: bench: unknown benchmark \"%s\" (janus bench --help)\n", argv[1]);
    return 2;
}
