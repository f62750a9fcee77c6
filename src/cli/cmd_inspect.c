// cli/cmd_inspect.c: `janus inspect PATH [--json]`: a summary of a model
// directory, a requests file or a results file, as aligned lines for a human
// (a Slurm log) or as one JSON object on stdout. Reads only; no MPI.
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "io/h5util.h"
#include "io/requests.h"
#include "io/results.h"
#include "model/model.h"

static const char *HELP =
    "usage: janus inspect PATH [--json]\n"
    "\n"
    "Summarises PATH, which is one of:\n"
    "  a model directory    config.json + *.safetensors: architecture, layer kinds,\n"
    "                       sizes, tensors and dtypes, total and per-token active\n"
    "                       parameters, bytes of one expert and of all weights\n"
    "  a requests file      HDF5, root attribute format=\"janus-requests\": count,\n"
    "                       prompt lengths, max_new_tokens, sampled vs greedy\n"
    "  a results file       HDF5, root attribute format=\"janus-results\": count,\n"
    "                       generated tokens, finish reasons, latency (ttft, tpot),\n"
    "                       the run's attributes and the expert load per layer\n"
    "\n"
    "options:\n"
    "  --json       print one JSON object on stdout instead of text\n"
    "  -h, --help   this text\n"
    "\n"
    "Percentiles interpolate linearly between order statistics (as numpy).\n"
    "exit status: 0 success, 2 bad input (the message names the path).\n";

static const char *NOT_JANUS =
    "not a model directory (no config.json), a janus requests file or a janus results file";

// ---- small helpers ----------------------------------------------------------

// A JSON number, or null when not finite (JSON has no NaN/inf).
static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }
static json_t *jint(int64_t x) { return json_integer((json_int_t)x); }

static void jset(json_t *o, const char *key, json_t *v) { json_object_set_new(o, key, v); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Summary of n values (sorted in place): min, mean, max and percentiles.
typedef struct {
    int64_t n;
    double min, mean, p50, p99, max, sum;
} stats;

static double pct_sorted(const double *v, int64_t n, double q) {
    if (n <= 0) return NAN;
    double pos = q * (double)(n - 1);
    int64_t lo = (int64_t)floor(pos);
    int64_t hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (v[hi] - v[lo]) * (pos - (double)lo);
}

static stats stats_of(double *v, int64_t n) {
    stats s = {.n = n, .min = NAN, .mean = NAN, .p50 = NAN, .p99 = NAN, .max = NAN, .sum = 0};
    if (n <= 0) return s;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    for (int64_t i = 0; i < n; i++) s.sum += v[i];
    s.min = v[0];
    s.max = v[n - 1];
    s.mean = s.sum / (double)n;
    s.p50 = pct_sorted(v, n, 0.50);
    s.p99 = pct_sorted(v, n, 0.99);
    return s;
}

// {"min", "mean", "p50", "p99", "max"} as selected by the flags string ("m" min,
// "a" mean, "5" p50, "9" p99, "x" max).
static json_t *jstats(const stats *s, const char *which) {
    json_t *o = json_object();
    for (const char *c = which; *c; c++) {
        switch (*c) {
        case 'm': jset(o, "min", jnum(s->min)); break;
        case 'a': jset(o, "mean", jnum(s->mean)); break;
        case '5': jset(o, "p50", jnum(s->p50)); break;
        case '9': jset(o, "p99", jnum(s->p99)); break;
        case 'x': jset(o, "max", jnum(s->max)); break;
        }
    }
    return o;
}

// "1234567 (1.23 M)": a count with a short human scale.
static const char *count_str(char *buf, size_t n, int64_t x) {
    double v = (double)x;
    if (v >= 1e12) snprintf(buf, n, "%lld (%.2f T)", (long long)x, v / 1e12);
    else if (v >= 1e9) snprintf(buf, n, "%lld (%.2f B)", (long long)x, v / 1e9);
    else if (v >= 1e6) snprintf(buf, n, "%lld (%.2f M)", (long long)x, v / 1e6);
    else if (v >= 1e3) snprintf(buf, n, "%lld (%.2f K)", (long long)x, v / 1e3);
    else snprintf(buf, n, "%lld", (long long)x);
    return buf;
}

// "123456789 B (117.7 MiB)".
static const char *bytes_str(char *buf, size_t n, double b) {
    if (b >= 1024.0 * 1024 * 1024) snprintf(buf, n, "%.0f B (%.2f GiB)", b, b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) snprintf(buf, n, "%.0f B (%.2f MiB)", b, b / (1024.0 * 1024));
    else if (b >= 1024.0) snprintf(buf, n, "%.0f B (%.2f KiB)", b, b / 1024.0);
    else snprintf(buf, n, "%.0f B", b);
    return buf;
}

// A number for text output: "-" when not finite.
static const char *num_str(char *buf, size_t n, double x, const char *fmt) {
    if (!isfinite(x)) snprintf(buf, n, "-");
    else snprintf(buf, n, fmt, x);
    return buf;
}

static void emit_json(json_t *o) {
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!s) janus_die(NULL, "inspect: cannot format the JSON output");
    fputs(s, stdout);
    fputc('\n', stdout);
    free(s);
    json_decref(o);
}

// ---- model directory --------------------------------------------------------

static int64_t w_numel(const janus_w *w) { return w->p ? w->rows * w->cols : 0; }

static int64_t t_numel(const janus_tensor *t) {
    int64_t k = 1;
    for (int d = 0; d < t->ndim; d++) k *= t->shape[d];
    return k;
}

// Parameter counts of the weights the engine binds, by part of the model.
typedef struct {
    int64_t embed, lm_head, attention, norms, router, shared, dense, experts;
    int64_t one_expert; // parameters of one routed expert (gate + up + down)
} param_parts;

static param_parts count_parts(const janus_model *m) {
    const janus_config *c = &m->cfg;
    param_parts p = {0};
    p.embed = w_numel(&m->embed);
    p.lm_head = (m->lm_head.p && m->lm_head.p != m->embed.p) ? w_numel(&m->lm_head) : 0;
    p.norms = w_numel(&m->final_norm);
    p.one_expert = 3 * (int64_t)c->hidden * c->moe_inter;
    for (int l = 0; l < c->n_layers; l++) {
        const janus_layer *L = &m->layers[l];
        p.attention += w_numel(&L->wq) + w_numel(&L->wk) + w_numel(&L->wv) + w_numel(&L->wo) + w_numel(&L->bq) +
                       w_numel(&L->bk) + w_numel(&L->bv) + w_numel(&L->q_norm) + w_numel(&L->k_norm);
        p.norms += w_numel(&L->attn_norm) + w_numel(&L->ffn_norm);
        p.router += w_numel(&L->router);
        p.shared += w_numel(&L->sh_gate) + w_numel(&L->sh_up) + w_numel(&L->sh_down) + w_numel(&L->sh_expert_gate);
        p.dense += w_numel(&L->mlp_gate) + w_numel(&L->mlp_up) + w_numel(&L->mlp_down);
        if (L->moe && L->gate)
            for (int x = 0; x < c->n_experts; x++)
                p.experts += w_numel(&L->gate[x]) + w_numel(&L->up[x]) + w_numel(&L->down[x]);
    }
    return p;
}

// The dtype of the routed experts' weights (first MoE layer), for their bytes.
static bool expert_dtype(const janus_model *m, janus_dtype *dt) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const janus_layer *L = &m->layers[l];
        if (L->moe && L->gate && L->gate[0].p) {
            *dt = L->gate[0].dt;
            return true;
        }
    }
    return false;
}

static int inspect_model(const char *path, bool as_json) {
    janus_model m;
    janus_err e = {{0}};
    memset(&m, 0, sizeof m);
    if (janus_model_load(path, &m, JANUS_LOAD_ALL, NULL, &e) != 0) janus_die(NULL, "%s", e.msg);
    const janus_config *c = &m.cfg;
    const janus_st *st = &m.st;

    // Tensors as stored: parameters, bytes, dtypes present.
    int64_t total = 0;
    double tensor_bytes = 0;
    enum { MAX_DT = 16 };
    char dt_name[MAX_DT][12];
    int64_t dt_count[MAX_DT], dt_params[MAX_DT];
    int n_dt = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const janus_tensor *t = &st->tensors[i];
        int64_t k = t_numel(t);
        total += k;
        tensor_bytes += (double)t->nbytes;
        int d = 0;
        while (d < n_dt && strcmp(dt_name[d], t->dtype_name) != 0) d++;
        if (d == n_dt && n_dt < MAX_DT) {
            snprintf(dt_name[n_dt], sizeof dt_name[n_dt], "%s", t->dtype_name);
            dt_count[n_dt] = dt_params[n_dt] = 0;
            n_dt++;
        }
        if (d < n_dt) {
            dt_count[d]++;
            dt_params[d] += k;
        }
    }

    param_parts p = count_parts(&m);
    int n_moe = janus_n_moe_layers(c);
    int n_dense = c->n_layers - n_moe;
    int64_t bound = p.embed + p.lm_head + p.attention + p.norms + p.router + p.shared + p.dense + p.experts;
    // Per token: everything but the routed experts a token does not visit.
    int64_t inactive = (int64_t)n_moe * (int64_t)(c->n_experts - c->top_k) * p.one_expert;
    int64_t active = total - inactive;
    janus_dtype edt = JANUS_F32;
    bool have_edt = expert_dtype(&m, &edt);
    size_t one_expert_bytes = have_edt ? janus_expert_bytes(c, janus_dtype_size(edt)) : 0;

    if (as_json) {
        json_t *o = json_object();
        jset(o, "kind", json_string("model"));
        jset(o, "path", json_string(path));
        jset(o, "model_type", json_string(c->model_type));
        jset(o, "layers", json_integer(c->n_layers));
        jset(o, "moe_layers", json_integer(n_moe));
        jset(o, "dense_layers", json_integer(n_dense));
        json_t *dl = json_array();
        for (int l = 0; l < c->n_layers; l++)
            if (!c->layer_moe[l]) json_array_append_new(dl, json_integer(l));
        jset(o, "dense_layer_ids", dl);
        jset(o, "hidden", json_integer(c->hidden));
        jset(o, "heads", json_integer(c->n_heads));
        jset(o, "kv_heads", json_integer(c->n_kv_heads));
        jset(o, "head_dim", json_integer(c->head_dim));
        jset(o, "vocab", json_integer(c->vocab));
        jset(o, "context", json_integer(c->max_ctx));
        jset(o, "experts", json_integer(c->n_experts));
        jset(o, "top_k", json_integer(c->top_k));
        jset(o, "moe_intermediate", json_integer(c->moe_inter));
        jset(o, "dense_intermediate", json_integer(c->dense_inter));
        jset(o, "shared_intermediate", json_integer(c->shared_inter));
        jset(o, "norm_topk", json_boolean(c->norm_topk));
        jset(o, "tied_embeddings", json_boolean(c->tie_embed));
        jset(o, "rope_theta", jnum(c->rope_theta));
        jset(o, "rms_eps", jnum(c->rms_eps));
        json_t *eos = json_array();
        for (int i = 0; i < c->n_eos; i++) json_array_append_new(eos, json_integer(c->eos[i]));
        jset(o, "eos", eos);
        jset(o, "safetensors_files", json_integer(st->n_files));
        jset(o, "tensors", json_integer(st->n_tensors));
        json_t *dts = json_object();
        for (int d = 0; d < n_dt; d++) {
            json_t *x = json_object();
            jset(x, "tensors", jint(dt_count[d]));
            jset(x, "parameters", jint(dt_params[d]));
            jset(dts, dt_name[d], x);
        }
        jset(o, "dtypes", dts);
        jset(o, "parameters", jint(total));
        jset(o, "active_parameters", jint(active));
        json_t *parts = json_object();
        jset(parts, "embedding", jint(p.embed));
        jset(parts, "lm_head", jint(p.lm_head));
        jset(parts, "attention", jint(p.attention));
        jset(parts, "norms", jint(p.norms));
        jset(parts, "router", jint(p.router));
        jset(parts, "shared_experts", jint(p.shared));
        jset(parts, "dense_ffn", jint(p.dense));
        jset(parts, "routed_experts", jint(p.experts));
        jset(parts, "unused_tensors", jint(total - bound));
        jset(o, "parameters_by_part", parts);
        jset(o, "expert_parameters", jint(p.one_expert));
        jset(o, "expert_dtype", have_edt ? json_string(janus_dtype_name(edt)) : json_null());
        jset(o, "expert_bytes", jint((int64_t)one_expert_bytes));
        jset(o, "weight_bytes", jint((int64_t)m.weight_bytes));
        jset(o, "tensor_bytes", jint((int64_t)tensor_bytes));
        emit_json(o);
    } else {
        char b1[64], b2[64];
        printf("model %s\n", path);
        printf("  model_type          %s\n", c->model_type);
        printf("  layers              %d (%d MoE, %d dense", c->n_layers, n_moe, n_dense);
        if (n_dense > 0) {
            printf(":");
            int shown = 0;
            for (int l = 0; l < c->n_layers && shown < 16; l++)
                if (!c->layer_moe[l]) printf(" %d", l), shown++;
            if (n_dense > shown) printf(" ...");
        }
        printf(")\n");
        printf("  hidden              %d\n", c->hidden);
        printf("  attention           %d heads, %d kv heads, head_dim %d\n", c->n_heads, c->n_kv_heads, c->head_dim);
        printf("  vocab               %d\n", c->vocab);
        printf("  context             %d\n", c->max_ctx);
        printf("  experts             %d routed, top-%d%s\n", c->n_experts, c->top_k,
               c->shared_inter > 0 ? ", + 1 shared" : "");
        printf("  intermediate        expert %d, dense %d, shared %d\n", c->moe_inter, c->dense_inter, c->shared_inter);
        printf("  norm_topk           %s\n", c->norm_topk ? "yes" : "no");
        printf("  tied embeddings     %s\n", c->tie_embed ? "yes" : "no");
        printf("  rope theta          %.10g\n", c->rope_theta);
        printf("  eos ids            ");
        if (c->n_eos == 0) printf(" (none)");
        for (int i = 0; i < c->n_eos; i++) printf(" %d", c->eos[i]);
        printf("\n");
        printf("  safetensors         %d file%s, %d tensors\n", st->n_files, st->n_files == 1 ? "" : "s", st->n_tensors);
        printf("  dtypes             ");
        for (int d = 0; d < n_dt; d++) printf("%s %s (%lld tensors)", d ? "," : "", dt_name[d], (long long)dt_count[d]);
        printf("\n");
        printf("  parameters          %s\n", count_str(b1, sizeof b1, total));
        printf("  active per token    %s (%.1f%%: attention, norms, router, shared and dense FFN,\n"
               "                      %d of %d experts per MoE layer, embedding and lm_head)\n",
               count_str(b2, sizeof b2, active), total ? 100.0 * (double)active / (double)total : 0.0, c->top_k,
               c->n_experts);
        printf("  by part             embedding %s", count_str(b1, sizeof b1, p.embed));
        printf(", lm_head %s\n", p.lm_head ? count_str(b1, sizeof b1, p.lm_head) : "tied");
        printf("                      attention %s", count_str(b1, sizeof b1, p.attention));
        printf(", routed experts %s\n", count_str(b1, sizeof b1, p.experts));
        printf("                      shared experts %s", count_str(b1, sizeof b1, p.shared));
        printf(", dense FFN %s", count_str(b1, sizeof b1, p.dense));
        printf(", router %s", count_str(b1, sizeof b1, p.router));
        printf(", norms %s\n", count_str(b1, sizeof b1, p.norms));
        if (total != bound) printf("                      not used by janus %s\n", count_str(b1, sizeof b1, total - bound));
        printf("  one expert          %s parameters, %s%s%s\n", count_str(b1, sizeof b1, p.one_expert),
               bytes_str(b2, sizeof b2, (double)one_expert_bytes), have_edt ? " in " : "",
               have_edt ? janus_dtype_name(edt) : "");
        printf("  weight bytes        %s\n", bytes_str(b1, sizeof b1, (double)m.weight_bytes));
    }
    janus_model_free(&m);
    return 0;
}

// ---- requests file ----------------------------------------------------------

static int inspect_requests(const char *path, bool as_json) {
    janus_requests r;
    janus_err e = {{0}};
    memset(&r, 0, sizeof r);
    if (janus_requests_read(path, &r, &e) != 0) janus_die(NULL, "%s", e.msg);
    int64_t n = r.n;
    double *len = xmalloc(sizeof(double) * (size_t)(n ? n : 1));
    double *mnt = xmalloc(sizeof(double) * (size_t)(n ? n : 1));
    int64_t sampled = 0, max_total = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t pl = r.offsets[i + 1] - r.offsets[i];
        len[i] = (double)pl;
        mnt[i] = (double)r.max_new[i];
        if (r.temperature[i] > 0) sampled++;
        if (pl + r.max_new[i] > max_total) max_total = pl + r.max_new[i];
    }
    int64_t prompt_tokens = n ? r.offsets[n] : 0;
    stats ls = stats_of(len, n), ms = stats_of(mnt, n);

    if (as_json) {
        json_t *o = json_object();
        jset(o, "kind", json_string("requests"));
        jset(o, "path", json_string(path));
        jset(o, "n", jint(n));
        jset(o, "prompt_tokens", jint(prompt_tokens));
        jset(o, "prompt_len", jstats(&ls, "ma5x"));
        json_t *mo = jstats(&ms, "max");
        jset(mo, "total", jint((int64_t)ms.sum));
        jset(o, "max_new_tokens", mo);
        jset(o, "max_total_len", jint(max_total));
        jset(o, "sampled", jint(sampled));
        jset(o, "greedy", jint(n - sampled));
        emit_json(o);
    } else {
        char a[32], b[32], c[32], d[32];
        printf("requests %s\n", path);
        printf("  requests            %lld\n", (long long)n);
        printf("  prompt tokens       %lld\n", (long long)prompt_tokens);
        printf("  prompt length       min %s, mean %s, p50 %s, max %s\n", num_str(a, sizeof a, ls.min, "%.0f"),
               num_str(b, sizeof b, ls.mean, "%.1f"), num_str(c, sizeof c, ls.p50, "%g"),
               num_str(d, sizeof d, ls.max, "%.0f"));
        printf("  max_new_tokens      min %s, mean %s, max %s (total %.0f)\n", num_str(a, sizeof a, ms.min, "%.0f"),
               num_str(b, sizeof b, ms.mean, "%.1f"), num_str(c, sizeof c, ms.max, "%.0f"), ms.sum);
        printf("  longest sequence    %lld (prompt + max_new_tokens; must fit the model's context)\n",
               (long long)max_total);
        printf("  sampling            %lld sampled (temperature > 0), %lld greedy\n", (long long)sampled,
               (long long)(n - sampled));
    }
    free(len);
    free(mnt);
    janus_requests_free(&r);
    return 0;
}

// ---- results file -----------------------------------------------------------

static int inspect_results(const char *path, bool as_json) {
    janus_results r;
    janus_err e = {{0}};
    memset(&r, 0, sizeof r);
    if (janus_results_read(path, &r, &e) != 0) janus_die(NULL, "%s", e.msg);
    int64_t n = r.n;
    size_t cap = (size_t)(n ? n : 1);
    double *gen = xmalloc(sizeof(double) * cap), *ttft = xmalloc(sizeof(double) * cap),
           *tpot = xmalloc(sizeof(double) * cap);
    int64_t n_length = 0, n_eos = 0, n_other = 0, n_tpot = 0, n_ttft = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t g = r.offsets[i + 1] - r.offsets[i];
        gen[i] = (double)g;
        if (r.finish_reason[i] == 0) n_length++;
        else if (r.finish_reason[i] == 1) n_eos++;
        else n_other++;
        if (isfinite(r.ttft_s[i])) ttft[n_ttft++] = r.ttft_s[i];
        // Time per output token is defined only from the second token on.
        if (g >= 2 && isfinite(r.tpot_s[i])) tpot[n_tpot++] = r.tpot_s[i];
    }
    int64_t generated = n ? r.offsets[n] : 0;
    stats gs = stats_of(gen, n), fs = stats_of(ttft, n_ttft), ps = stats_of(tpot, n_tpot);

    // Expert load per layer: distinct experts seen, max / mean activations.
    int L = r.expert_counts ? r.n_layers : 0, E = r.n_experts;
    int *distinct = xcalloc((size_t)(L ? L : 1), sizeof(int));
    int64_t *acts = xcalloc((size_t)(L ? L : 1), sizeof(int64_t));
    double *ratio = xmalloc(sizeof(double) * (size_t)(L ? L : 1));
    for (int l = 0; l < L; l++) {
        int64_t mx = 0;
        for (int x = 0; x < E; x++) {
            int64_t k = r.expert_counts[(size_t)l * E + x];
            if (k > 0) distinct[l]++;
            if (k > mx) mx = k;
            acts[l] += k;
        }
        ratio[l] = (acts[l] > 0 && E > 0) ? (double)mx / ((double)acts[l] / E) : NAN;
    }

    int64_t version = 0;
    hid_t f = h5u_open_file(path, &e);
    if (f >= 0) {
        if (h5u_attr_read_i64(f, path, "version", &version, &e) != 1) version = 0;
        H5Fclose(f);
    }

    if (as_json) {
        json_t *o = json_object();
        jset(o, "kind", json_string("results"));
        jset(o, "path", json_string(path));
        jset(o, "n", jint(n));
        jset(o, "generated_tokens", jint(generated));
        jset(o, "per_request", jstats(&gs, "max"));
        json_t *fr = json_object();
        jset(fr, "length", jint(n_length));
        jset(fr, "eos", jint(n_eos));
        if (n_other) jset(fr, "other", jint(n_other));
        jset(o, "finish_reason", fr);
        jset(o, "ttft_s", jstats(&fs, "a59"));
        json_t *tp = jstats(&ps, "a59");
        jset(tp, "requests", jint(n_tpot));
        jset(o, "tpot_s", tp);
        json_t *at = json_object();
        jset(at, "format", json_string("janus-results"));
        jset(at, "version", jint(version));
        for (int i = 0; i < r.n_attrs; i++)
            jset(at, r.attrs[i].name, r.attrs[i].str ? json_string(r.attrs[i].str) : jnum(r.attrs[i].num));
        jset(o, "attrs", at);
        json_t *el = json_object();
        jset(el, "layers", json_integer(L));
        jset(el, "experts", json_integer(E));
        json_t *pl = json_array();
        for (int l = 0; l < L; l++) {
            json_t *x = json_object();
            jset(x, "layer", json_integer(l));
            jset(x, "activations", jint(acts[l]));
            jset(x, "distinct", json_integer(distinct[l]));
            jset(x, "max_over_mean", jnum(ratio[l]));
            json_array_append_new(pl, x);
        }
        jset(el, "per_layer", pl);
        jset(o, "expert_load", el);
        emit_json(o);
    } else {
        char a[32], b[32], c[32];
        printf("results %s\n", path);
        printf("  requests            %lld\n", (long long)n);
        printf("  generated tokens    %lld (per request: mean %s, min %s, max %s)\n", (long long)generated,
               num_str(a, sizeof a, gs.mean, "%.1f"), num_str(b, sizeof b, gs.min, "%.0f"),
               num_str(c, sizeof c, gs.max, "%.0f"));
        printf("  finish reasons      %lld length, %lld eos", (long long)n_length, (long long)n_eos);
        if (n_other) printf(", %lld other", (long long)n_other);
        printf("\n");
        printf("  ttft_s              mean %s, p50 %s, p99 %s\n", num_str(a, sizeof a, fs.mean, "%.4g"),
               num_str(b, sizeof b, fs.p50, "%.4g"), num_str(c, sizeof c, fs.p99, "%.4g"));
        printf("  tpot_s              mean %s, p50 %s, p99 %s (%lld requests with 2+ tokens)\n",
               num_str(a, sizeof a, ps.mean, "%.4g"), num_str(b, sizeof b, ps.p50, "%.4g"),
               num_str(c, sizeof c, ps.p99, "%.4g"), (long long)n_tpot);
        printf("  attributes\n");
        printf("    %-22s %s\n", "format", "janus-results");
        printf("    %-22s %lld\n", "version", (long long)version);
        for (int i = 0; i < r.n_attrs; i++) {
            if (r.attrs[i].str) printf("    %-22s %s\n", r.attrs[i].name, r.attrs[i].str);
            else printf("    %-22s %.10g\n", r.attrs[i].name, r.attrs[i].num);
        }
        if (L > 0) {
            printf("  expert load         %d layers x %d experts (distinct experts used, max/mean load)\n", L, E);
            for (int l = 0; l < L; l++) {
                if (acts[l] == 0) printf("    layer %-4d        no activations (dense layer or no tokens)\n", l);
                else
                    printf("    layer %-4d        %d/%d distinct, max/mean %.2f, %lld activations\n", l, distinct[l], E,
                           ratio[l], (long long)acts[l]);
            }
        } else {
            printf("  expert load         (no /stats/expert_counts)\n");
        }
    }
    free(gen);
    free(ttft);
    free(tpot);
    free(distinct);
    free(acts);
    free(ratio);
    janus_results_free(&r);
    return 0;
}

// ---- what PATH is -----------------------------------------------------------

typedef enum { KIND_MODEL, KIND_REQUESTS, KIND_RESULTS } path_kind;

static path_kind detect(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        janus_die(path, "%s", errno == ENOENT ? "no such file or directory" : strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path) + sizeof "/config.json";
        char *cfg = xmalloc(n);
        snprintf(cfg, n, "%s/config.json", path);
        int have = stat(cfg, &sb) == 0;
        free(cfg);
        if (!have) janus_die(path, "%s", NOT_JANUS);
        return KIND_MODEL;
    }
    janus_err e = {{0}};
    hid_t f = h5u_open_file(path, &e);
    if (f < 0) janus_die(path, "%s (not an HDF5 file)", NOT_JANUS);
    char *fmt = NULL;
    int got = h5u_attr_read_str(f, path, "format", &fmt, &e);
    H5Fclose(f);
    path_kind k = KIND_MODEL;
    if (got == 1 && !strcmp(fmt, "janus-requests")) k = KIND_REQUESTS;
    else if (got == 1 && !strcmp(fmt, "janus-results")) k = KIND_RESULTS;
    else if (got == 1) janus_die(path, "%s (root attribute format is \"%s\")", NOT_JANUS, fmt);
    else if (got == 0) janus_die(path, "%s (an HDF5 file without a root attribute format)", NOT_JANUS);
    else janus_die(path, "%s (root attribute format is not a string)", NOT_JANUS);
    free(fmt);
    return k;
}

int cmd_inspect(int argc, char **argv) {
    bool as_json = false;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(HELP, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            as_json = true;
        } else if (!strcmp(a, "--")) {
            if (i + 1 < argc && !path) path = argv[++i];
            if (i + 1 < argc) janus_die(NULL, "inspect: unexpected argument \"%s\" (one PATH)", argv[i + 1]);
        } else if (a[0] == '-' && a[1]) {
            janus_die(NULL, "inspect: unknown option \"%s\" (janus inspect --help)", a);
        } else if (path) {
            janus_die(NULL, "inspect: unexpected argument \"%s\" (one PATH; janus inspect --help)", a);
        } else {
            path = a;
        }
    }
    if (!path) janus_die(NULL, "inspect: PATH is required (janus inspect --help)");
    if (!*path) janus_die(NULL, "inspect: PATH is empty");
    h5u_quiet();
    switch (detect(path)) {
    case KIND_MODEL: return inspect_model(path, as_json);
    case KIND_REQUESTS: return inspect_requests(path, as_json);
    case KIND_RESULTS: return inspect_results(path, as_json);
    }
    return 2;
}
