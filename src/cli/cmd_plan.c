// cli/cmd_plan.c: `janus plan`: the SLO planner on the command line: the best
// layouts for a GPU budget as a table, why the winner won, the plan JSON, the
// sbatch geometry; --simulate sweeps GPU counts and writes CSV; --eval
// predicts one given layout (tools/check_plan.py compares it with real runs).
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/requests.h"
#include "plan/planner.h"

static const char *HELP =
    "usage: janus plan --model DIR --gpus N [options]\n"
    "       janus plan --model DIR --eval A,M,B,m [--json] [workload and hardware options]\n"
    "\n"
    "Chooses attention GPUs, MoE GPUs, batch per attention GPU and micro-batches\n"
    "(and compares the monolithic layouts) for the most output tokens/s per GPU\n"
    "under a per-token latency SLO, from the model's shapes, the workload and the\n"
    "hardware. Prints the best candidates and writes the plan as JSON (janus\n"
    "generate --plan FILE uses it).\n"
    "\n"
    "  --model DIR            checkpoint or config-only directory (config.json)\n"
    "  --gpus N               GPU budget (with --simulate: a list, e.g. 8,16,64,512)\n"
    "  --slo-tpot-ms MS       time-per-output-token SLO (default 200)\n"
    "  --requests FILE        workload: mean prompt and output lengths of a requests file\n"
    "  --prompt-len P         workload without a file (default 512)\n"
    "  --output-len O         (default 256)\n"
    "  --zipf S               router skew assumed (default 0: uniform)\n"
    "  --objective O          decode (default): the most decode tokens/s per GPU; job: the\n"
    "                         most over the whole job, the prompts' prefill included\n"
    "  --hardware H           h100 | h200 | cpu (default h100), or a calibration JSON file\n"
    "                         (janus bench decode --calibration FILE writes one for CPUs,\n"
    "                         tools/gpu-plan-check one for ranks sharing one GPU)\n"
    "  --gpus-per-node G      override the hardware's GPUs per node\n"
    "  --inter-gbps B         override the network bandwidth per GPU (Gbit/s)\n"
    "  --max-batch B          largest batch per attention GPU considered (default 1024)\n"
    "  --top K                candidates shown (default 8)\n"
    "  --out FILE             write the winning plan as JSON\n"
    "  --sbatch               print the sbatch geometry and command of the plan\n"
    "  --simulate             sweep --gpus (a list) and write --csv FILE\n"
    "  --csv FILE             simulation output (default plan-simulation.csv)\n"
    "  --eval A,M,B,m         predict one layout instead of searching: A attention ranks,\n"
    "                         M MoE ranks (0: monolithic on A ranks), B sequences per\n"
    "                         attention rank, m micro-batches; prints TPOT and its parts\n"
    "  --json                 with --eval: print the prediction as one JSON object\n";

static void workload_from(const char *path, janus_workload *w) {
    janus_requests R;
    janus_err e;
    if (janus_requests_read(path, &R, &e)) janus_die(NULL, "%s", e.msg);
    double p = 0, o = 0;
    for (int64_t i = 0; i < R.n; i++) p += (double)(R.offsets[i + 1] - R.offsets[i]), o += R.max_new[i];
    if (R.n) w->prompt_len = p / R.n, w->output_len = o / R.n;
    janus_requests_free(&R);
}

static const char *layout_str(const janus_plan *p, char *buf, size_t n) {
    if (p->moe) snprintf(buf, n, "%d attn + %d moe", p->attn, p->moe);
    else snprintf(buf, n, "%d monolithic", p->attn);
    return buf;
}

static void print_table(const janus_plan *top, int n) {
    printf("%3s %-18s %6s %6s %10s %12s %12s %10s %10s %9s %10s %12s\n", "#", "layout", "batch", "micro", "tpot_ms",
           "tokens/s", "tok/s/GPU", "attn_GB", "moe_GB", "act/MoE", "prefill_s", "job/GPU");
    for (int i = 0; i < n; i++) {
        char l[64];
        printf("%3d %-18s %6d %6d %10.2f %12.1f %12.1f %10.1f %10.1f %9.1f %10.2f %12.1f\n", i + 1,
               layout_str(&top[i], l, sizeof l), top[i].batch, top[i].micro, top[i].tpot_s * 1e3, top[i].tokens_per_s,
               top[i].per_gpu, top[i].attn_mem / 1e9, top[i].moe_mem / 1e9, top[i].act_per_moe_gpu, top[i].prefill_s,
               top[i].job_per_gpu);
    }
}

static int parse_list(const char *s, int *v, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < 1) janus_die(NULL, "--gpus: \"%s\" is not a list of positive integers", s);
        v[n++] = (int)x;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') janus_die(NULL, "--gpus: \"%s\" is not a comma-separated list", s);
    }
    return n;
}

// --eval A,M,B,m: the model's prediction for one layout.
static int eval_one(const janus_config *cfg, const janus_hw *hw, const janus_workload *w, const char *model,
                    const char *spec, int as_json) {
    int v[4], n = 0;
    for (const char *s = spec; *s && n < 4;) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < 0 || x > (1 << 20) || (*end && *end != ',')) break;
        v[n++] = (int)x;
        s = *end ? end + 1 : end;
    }
    if (n != 4 || v[0] < 1 || v[2] < 1 || v[3] < 1 || v[3] > 64 || (v[1] == 0 && v[3] != 1) || v[3] > v[2])
        janus_die(NULL, "--eval: \"%s\" is not A,M,B,m (A >= 1 attention ranks, M MoE ranks or 0 for monolithic, "
                        "B >= m sequences per attention rank, m in [1, 64] micro-batches, 1 when monolithic)", spec);
    janus_plan pl = {.attn = v[0], .moe = v[1], .batch = v[2], .micro = v[3]};
    janus_plan_eval(cfg, hw, w, &pl);
    if (as_json) {
        char js[1024];
        janus_plan_json(&pl, hw->name, 0, js, sizeof js);
        js[strlen(js) - 1] = 0; // add the parts of one layer and the workload
        printf("%s, \"fits\": %s, \"t_attn_ms\": %.4f, \"t_moe_ms\": %.4f, \"t_xchg_ms\": %.4f, "
               "\"act_per_moe_rank\": %.3f, \"prompt_len\": %.2f, \"output_len\": %.2f, \"zipf\": %.3f}\n",
               js, pl.fits ? "true" : "false", pl.t_attn_s * 1e3, pl.t_moe_s * 1e3, pl.t_xchg_s * 1e3, pl.act_per_moe_gpu,
               w->prompt_len, w->output_len, w->zipf);
        return 0;
    }
    printf("# janus plan --eval: %s (%s) on %s, prompt %.0f, output %.0f, zipf %.2f\n", model, cfg->model_type, hw->name,
           w->prompt_len, w->output_len, w->zipf);
    print_table(&pl, 1);
    printf("# one layer: attention %.3f ms, exchange %.3f ms, experts %.3f ms (%.1f activated per MoE rank)%s\n",
           pl.t_attn_s * 1e3, pl.t_xchg_s * 1e3, pl.t_moe_s * 1e3, pl.act_per_moe_gpu,
           pl.fits ? "" : "; does NOT fit in memory");
    return 0;
}

int cmd_plan(int argc, char **argv) {
    const char *model = NULL, *requests = NULL, *out = NULL, *hwname = "h100", *gpus_s = NULL, *csv = "plan-simulation.csv";
    double slo_ms = 200, inter_gbps = 0;
    const char *eval_s = NULL;
    int max_batch = 1024, ntop = 8, sbatch = 0, simulate = 0, gpn = 0, as_json = 0;
    janus_workload w = {512, 256, 0, 0};
    static struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"gpus", required_argument, 0, 'g'},
        {"slo-tpot-ms", required_argument, 0, 's'}, {"requests", required_argument, 0, 'r'},
        {"prompt-len", required_argument, 0, 'p'},  {"output-len", required_argument, 0, 'o'},
        {"zipf", required_argument, 0, 'z'},        {"hardware", required_argument, 0, 'H'},
        {"gpus-per-node", required_argument, 0, 'n'}, {"inter-gbps", required_argument, 0, 'i'},
        {"max-batch", required_argument, 0, 'b'},   {"top", required_argument, 0, 't'},
        {"out", required_argument, 0, 'O'},         {"sbatch", no_argument, 0, 'S'},
        {"simulate", no_argument, 0, 'Y'},          {"csv", required_argument, 0, 'c'},
        {"eval", required_argument, 0, 'e'},        {"json", no_argument, 0, 'J'},
        {"objective", required_argument, 0, 'j'},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'g': gpus_s = optarg; break;
        case 's': slo_ms = cli_num("--slo-tpot-ms", optarg, 1e-3, 1e7); break;
        case 'r': requests = optarg; break;
        case 'p': w.prompt_len = cli_num("--prompt-len", optarg, 1, 1e7); break;
        case 'o': w.output_len = cli_num("--output-len", optarg, 1, 1e7); break;
        case 'z': w.zipf = cli_num("--zipf", optarg, 0, 10); break;
        case 'j':
            if (strcmp(optarg, "decode") && strcmp(optarg, "job"))
                janus_die(NULL, "--objective: \"%s\" is not decode or job", optarg);
            w.job = !strcmp(optarg, "job");
            break;
        case 'H': hwname = optarg; break;
        case 'n': gpn = (int)cli_int("--gpus-per-node", optarg, 1, 1024); break;
        case 'i': inter_gbps = cli_num("--inter-gbps", optarg, 1e-3, 1e6); break;
        case 'b': max_batch = (int)cli_int("--max-batch", optarg, 1, 1 << 20); break;
        case 't': ntop = (int)cli_int("--top", optarg, 1, 1000); break;
        case 'O': out = optarg; break;
        case 'S': sbatch = 1; break;
        case 'Y': simulate = 1; break;
        case 'c': csv = optarg; break;
        case 'e': eval_s = optarg; break;
        case 'J': as_json = 1; break;
        case 'h': fputs(HELP, stdout); return 0;
        default: janus_die(NULL, "plan: unknown or incomplete option \"%s\" (janus plan --help)", argv[optind - 1]);
        }
    }
    if (!model) janus_die(NULL, "plan: --model DIR is required (janus plan --help)");
    if (!gpus_s && !eval_s) janus_die(NULL, "plan: --gpus N (or --eval A,M,B,m) is required");
    if (as_json && !eval_s) janus_die(NULL, "plan: --json goes with --eval (the search writes its plan with --out FILE)");
    janus_hw hw;
    janus_err he;
    if (janus_hw_get(hwname, &hw, &he)) janus_die(NULL, "%s", he.msg);
    if (gpn) hw.gpus_per_node = gpn;
    if (inter_gbps > 0) hw.inter_Bps = inter_gbps * 1e9 / 8;
    janus_config cfg;
    janus_err e;
    if (janus_config_load(model, &cfg, &e)) janus_die(NULL, "%s", e.msg);
    if (requests) workload_from(requests, &w);
    if (eval_s) return eval_one(&cfg, &hw, &w, model, eval_s, as_json);
    int glist[64];
    int ng = parse_list(gpus_s, glist, 64);
    janus_plan *top = xcalloc(ntop, sizeof(janus_plan));
    if (simulate) {
        FILE *f = fopen(csv, "w");
        if (!f) janus_die(csv, "cannot open for writing");
        fprintf(f, "model,hardware,gpus,gpus_per_node,slo_tpot_ms,best_mode,attn,moe,micro,batch,tpot_ms,tokens_per_s,"
                   "tokens_per_s_per_gpu,best_monolithic_per_gpu,best_disaggregated_per_gpu,job_tokens_per_s_per_gpu,"
                   "best_monolithic_job_per_gpu,best_disaggregated_job_per_gpu,objective\n");
        printf("# janus plan --simulate: %s on %s, SLO %.0f ms, prompt %.0f, output %.0f, zipf %.2f\n", model, hw.name,
               slo_ms, w.prompt_len, w.output_len, w.zipf);
        printf("%6s %-18s %6s %10s %12s %14s %14s %8s\n", "gpus", "best", "batch", "tpot_ms", "tok/s/GPU", "mono tok/s/GPU",
               "disagg tok/s/GPU", "ratio");
        for (int i = 0; i < ng; i++) {
            const int G = glist[i];
            // Layouts using all G GPUs: monolithic G, and A + M = G with A on a
            // geometric grid (the full grid is quadratic in G).
            janus_plan best_m = {0}, best_d = {0};
            janus_plan pm = {.attn = G, .moe = 0, .micro = 1};
            int bm = 0;
            {
                int lo = 1, hi = max_batch;
                while (lo <= hi) {
                    int mid = lo + (hi - lo) / 2;
                    pm.batch = mid;
                    janus_plan_eval(&cfg, &hw, &w, &pm);
                    if (pm.fits && pm.tpot_s <= slo_ms / 1e3) bm = mid, lo = mid + 1;
                    else hi = mid - 1;
                }
                if (bm) pm.batch = bm, janus_plan_eval(&cfg, &hw, &w, &pm), best_m = pm;
            }
            for (int a = 1; a < G; a = a < 4 ? a + 1 : (int)ceil(a * 1.25)) {
                for (int mb = 1; mb <= 4; mb *= 2) {
                    janus_plan pd = {.attn = a, .moe = G - a, .micro = mb};
                    int bd = 0, lo = 1, hi = max_batch;
                    while (lo <= hi) {
                        int mid = lo + (hi - lo) / 2;
                        pd.batch = mid;
                        janus_plan_eval(&cfg, &hw, &w, &pd);
                        if (pd.fits && pd.tpot_s <= slo_ms / 1e3) bd = mid, lo = mid + 1;
                        else hi = mid - 1;
                    }
                    if (!bd || bd < mb) continue;
                    pd.batch = bd;
                    janus_plan_eval(&cfg, &hw, &w, &pd);
                    if (janus_plan_score(&pd, &w) > janus_plan_score(&best_d, &w)) best_d = pd;
                }
            }
            const janus_plan *b = janus_plan_score(&best_d, &w) > janus_plan_score(&best_m, &w) ? &best_d : &best_m;
            char l[64];
            printf("%6d %-18s %6d %10.2f %12.1f %14.1f %14.1f %8.2f\n", G, b->per_gpu > 0 ? layout_str(b, l, sizeof l) : "none",
                   b->batch, b->tpot_s * 1e3, b->per_gpu, best_m.per_gpu, best_d.per_gpu,
                   best_m.per_gpu > 0 ? best_d.per_gpu / best_m.per_gpu : 0.0);
            fprintf(f, "%s,%s,%d,%d,%.1f,%s,%d,%d,%d,%d,%.4f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%s\n", model, hw.name, G,
                    hw.gpus_per_node, slo_ms, b->moe ? "disaggregated" : "monolithic", b->attn, b->moe, b->micro, b->batch,
                    b->tpot_s * 1e3, b->tokens_per_s, b->per_gpu, best_m.per_gpu, best_d.per_gpu, b->job_per_gpu,
                    best_m.job_per_gpu, best_d.job_per_gpu, w.job ? "job" : "decode");
        }
        fclose(f);
        printf("# wrote %s (plot: tools/plot_simulation.py %s)\n", csv, csv);
        free(top);
        return 0;
    }
    if (ng != 1) janus_die(NULL, "--gpus: one number without --simulate");
    const int G = glist[0];
    int nf = janus_plan_search(&cfg, &hw, &w, G, slo_ms / 1e3, max_batch, false, top, ntop);
    printf("# janus plan: %s (%s), %d %s GPUs (%d per node), SLO %.0f ms per token, prompt %.0f, output %.0f, zipf %.2f\n",
           model, cfg.model_type, G, hw.name, hw.gpus_per_node, slo_ms, w.prompt_len, w.output_len, w.zipf);
    if (!nf) janus_die(NULL, "plan: no layout of at most %d %s GPUs meets %.0f ms per token in memory (try more GPUs or a looser SLO)",
                       G, hw.name, slo_ms);
    int shown = nf < ntop ? nf : ntop;
    print_table(top, shown);
    // Why: the winner against the best of the other mode, and what bounds its batch.
    janus_plan other = {0};
    for (int i = 1; i < shown; i++)
        if ((top[i].moe == 0) != (top[0].moe == 0)) { other = top[i]; break; }
    if (!other.per_gpu) { // not in the table: search the other mode alone
        janus_plan *all = xcalloc(256, sizeof(janus_plan));
        int na = janus_plan_search(&cfg, &hw, &w, G, slo_ms / 1e3, max_batch, false, all, 256);
        for (int i = 0; i < (na < 256 ? na : 256); i++)
            if ((all[i].moe == 0) != (top[0].moe == 0)) { other = all[i]; break; }
        free(all);
    }
    janus_plan nxt = top[0];
    nxt.batch++;
    janus_plan_eval(&cfg, &hw, &w, &nxt);
    char l1[64], l2[64];
    printf("# winner: %s, batch %d per attention GPU, %d micro-batch(es): %.1f tokens/s per GPU at %.1f ms per token"
           " (%.1f per GPU over the whole job, prefill %.2f s).\n",
           layout_str(&top[0], l1, sizeof l1), top[0].batch, top[0].micro, top[0].per_gpu, top[0].tpot_s * 1e3,
           top[0].job_per_gpu, top[0].prefill_s);
    if (other.per_gpu > 0)
        printf("# it gives %.2fx the %stokens/s per GPU of the best %s layout (%s, batch %d).\n",
               janus_plan_score(&top[0], &w) / janus_plan_score(&other, &w), w.job ? "whole job's " : "",
               other.moe ? "disaggregated" : "monolithic", layout_str(&other, l2, sizeof l2), other.batch);
    printf("# its batch is bound by %s; one layer: attention %.3f ms, exchange %.3f ms, experts %.3f ms (%.1f activated per MoE GPU).\n",
           !nxt.fits ? "memory" : (top[0].batch == max_batch ? "--max-batch" : "the TPOT SLO"), top[0].t_attn_s * 1e3,
           top[0].t_xchg_s * 1e3, top[0].t_moe_s * 1e3, top[0].act_per_moe_gpu);
    if (out) {
        char js[1024];
        janus_plan_json(&top[0], hw.name, slo_ms / 1e3, js, sizeof js);
        FILE *f = fopen(out, "w");
        if (!f) janus_die(out, "cannot open for writing");
        fprintf(f, "%s\n", js);
        fclose(f);
        printf("# plan written to %s\n", out);
    }
    if (sbatch) {
        const int g = top[0].attn + top[0].moe, nodes = (g + hw.gpus_per_node - 1) / hw.gpus_per_node;
        printf("#SBATCH --nodes=%d\n#SBATCH --ntasks=%d\n#SBATCH --gpus-per-node=%d\n", nodes, g,
               g < hw.gpus_per_node ? g : hw.gpus_per_node);
        if (top[0].moe)
            printf("srun --mpi=pmix janus generate --model %s --requests IN.h5 --out OUT.h5 --attn-ranks %d --moe-ranks %d "
                   "--micro-batches %d --max-batch %d\n",
                   model, top[0].attn, top[0].moe, top[0].micro, top[0].batch);
        else
            printf("srun --mpi=pmix janus generate --model %s --requests IN.h5 --out OUT.h5 --max-batch %d\n", model,
                   top[0].batch);
    }
    free(top);
    return 0;
}
