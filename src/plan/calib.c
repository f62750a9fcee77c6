// plan/calib.c: fitting the performance model to measured decode step times
// and writing the calibration file (see calib.h).
//
// For the 1-rank monolithic layout janus_plan_eval's TPOT is
//   bytes x u + FLOPs x v + overhead terms x o,
//   u = 1 / (hbm_Bps eff), v = 1 / flops, o = layer_overhead_s,
// with bytes, FLOPs and the count of overhead terms fixed by the model, the
// batch and the context. Evaluating the model on three unit profiles gives
// those coefficients for each point; the fit minimises
//   sum_i ((pred_i - t_i) / t_i)^2
// (relative: step times span two orders of magnitude over the batches) with
// u, v > 0 and o >= 0: a number whose free fit would break that is held (u
// and v at the base profile's values, o at 0) and the file says so.
#include "plan/calib.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>

static double eval_tpot(const janus_config *c, const janus_hw *hw, const janus_calib_point *p) {
    // Context at the timed steps: context .. context + steps - 1, whose mean the
    // model's prompt_len + output_len / 2 gives.
    janus_workload w = {p->context, p->steps - 1, 0, 0};
    janus_plan pl = {.attn = 1, .moe = 0, .batch = p->batch, .micro = 1};
    janus_plan_eval(c, hw, &w, &pl);
    return pl.tpot_s;
}

// Solves the k x k system A x = b (k <= 3) by Gaussian elimination with
// partial pivoting; -1 when singular.
static int solve(int k, double A[3][3], double *b, double *x) {
    for (int i = 0; i < k; i++) {
        int piv = i;
        for (int r = i + 1; r < k; r++)
            if (fabs(A[r][i]) > fabs(A[piv][i])) piv = r;
        if (fabs(A[piv][i]) < 1e-300) return -1;
        for (int j = 0; j < k; j++) {
            double t = A[i][j];
            A[i][j] = A[piv][j], A[piv][j] = t;
        }
        double t = b[i];
        b[i] = b[piv], b[piv] = t;
        for (int r = i + 1; r < k; r++) {
            double f = A[r][i] / A[i][i];
            for (int j = i; j < k; j++) A[r][j] -= f * A[i][j];
            b[r] -= f * b[i];
        }
    }
    for (int i = k - 1; i >= 0; i--) {
        double s = b[i];
        for (int j = i + 1; j < k; j++) s -= A[i][j] * x[j];
        x[i] = s / A[i][i];
    }
    return 0;
}

int janus_calib_fit_decode(const janus_config *c, const janus_hw *base, const janus_calib_point *pts, int n,
                           janus_calib_fit *fit, janus_err *e) {
    if (n < 3 || n > 64) return janus_errf(e, "calibration: %d measured batch sizes; the fit needs 3 to 64", n);
    for (int i = 0; i < n; i++)
        if (!(pts[i].step_s > 0) || pts[i].batch < 1)
            return janus_errf(e, "calibration: point %d: batch %d, step time %g s is not a measurement", i, pts[i].batch,
                              pts[i].step_s);
    // Coefficients of u, v, o for each point, from the model itself.
    double X[64][3];
    for (int k = 0; k < 3; k++) {
        janus_hw h = *base;
        h.hbm_Bps = k == 0 ? 1 : INFINITY, h.eff = 1;
        h.flops = k == 1 ? 1 : INFINITY;
        h.layer_overhead_s = k == 2 ? 1 : 0;
        for (int i = 0; i < n; i++) X[i][k] = eval_tpot(c, &h, &pts[i]);
    }
    // Non-negative least squares by its active sets: every subset of the three
    // numbers is fitted with the others held (u and v at the base profile's
    // values, o at 0); the feasible solution (free numbers >= 0, u and v > 0)
    // of least residual wins. All three free comes first in a tie.
    const double held[3] = {1.0 / (base->hbm_Bps * base->eff), 1.0 / base->flops, 0};
    double best_x[3] = {0}, best_r = INFINITY;
    int best_mask = 0;
    for (int mask = 7; mask >= 1; mask--) {
        int idx[3], k = 0;
        for (int j = 0; j < 3; j++)
            if (mask >> j & 1) idx[k++] = j;
        double A[3][3] = {{0}}, b[3] = {0}, x[3] = {0};
        for (int i = 0; i < n; i++) {
            const double wt = 1.0 / (pts[i].step_s * pts[i].step_s);
            double rhs = pts[i].step_s;
            for (int j = 0; j < 3; j++)
                if (!(mask >> j & 1)) rhs -= X[i][j] * held[j];
            for (int r = 0; r < k; r++) {
                for (int q = 0; q < k; q++) A[r][q] += wt * X[i][idx[r]] * X[i][idx[q]];
                b[r] += wt * X[i][idx[r]] * rhs;
            }
        }
        // Scale to O(1) so the elimination is well conditioned.
        double sc[3] = {1, 1, 1};
        for (int r = 0; r < k; r++) sc[r] = A[r][r] > 0 ? 1.0 / sqrt(A[r][r]) : 1;
        for (int r = 0; r < k; r++) {
            for (int q = 0; q < k; q++) A[r][q] *= sc[r] * sc[q];
            b[r] *= sc[r];
        }
        if (solve(k, A, b, x)) continue;
        double full[3] = {held[0], held[1], held[2]};
        bool feasible = true;
        for (int r = 0; r < k; r++) {
            full[idx[r]] = x[r] * sc[r];
            if (!(full[idx[r]] >= 0)) feasible = false;
        }
        if (!feasible || !(full[0] > 0) || !(full[1] > 0)) continue;
        double res = 0;
        for (int i = 0; i < n; i++) {
            const double d = (X[i][0] * full[0] + X[i][1] * full[1] + X[i][2] * full[2] - pts[i].step_s) / pts[i].step_s;
            res += d * d;
        }
        if (res < best_r * (1 - 1e-12)) best_r = res, best_mask = mask, memcpy(best_x, full, sizeof full);
    }
    if (!best_mask)
        return janus_errf(e, "calibration: no fit with positive bandwidth and FLOP/s: the measured step times do not "
                             "grow with the bytes and FLOPs the model counts (use more steps, wider-spaced batch sizes)");
    fit->hw = *base;
    fit->hw.eff = 1.0 / (best_x[0] * base->hbm_Bps);
    fit->hw.flops = 1.0 / best_x[1];
    fit->hw.layer_overhead_s = best_x[2];
    fit->fitted = best_mask;
    fit->rms_rel = fit->max_rel = 0;
    for (int i = 0; i < n; i++) {
        fit->pred_s[i] = eval_tpot(c, &fit->hw, &pts[i]);
        const double r = fabs(fit->pred_s[i] - pts[i].step_s) / pts[i].step_s;
        fit->rms_rel += r * r / n;
        if (r > fit->max_rel) fit->max_rel = r;
    }
    fit->rms_rel = sqrt(fit->rms_rel);
    return 0;
}

int janus_calib_write(const char *path, const char *base_name, const janus_calib_fit *fit, const janus_calib_point *pts,
                      int n, const char *source, janus_err *e) {
    const janus_hw *h = &fit->hw;
    json_t *points = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(points, json_pack("{s:i, s:f, s:f, s:f, s:f}", "batch", pts[i].batch, "context",
                                                pts[i].context, "steps", pts[i].steps, "measured_ms", pts[i].step_s * 1e3,
                                                "predicted_ms", fit->pred_s[i] * 1e3));
    json_t *r = json_pack("{s:s, s:s, s:f, s:f, s:f, s:f, s:f}", "name", "calibrated", "base", base_name, "hbm_Bps",
                          h->hbm_Bps, "eff", h->eff, "flops", h->flops, "layer_overhead_s", h->layer_overhead_s,
                          "act_bytes", h->act_bytes);
    json_object_set_new(r, "overlap_max_bytes", json_real(h->overlap_max_bytes));
    json_object_set_new(r, "gpus_per_node", json_integer(h->gpus_per_node));
    json_object_set_new(r, "fitted_on",
                        json_pack("{s:s, s:s, s:o, s:f, s:f}", "what", source,
                                  "how", "least squares of the relative error of janus_plan_eval's 1-rank monolithic "
                                         "TPOT against the measured (median) decode step times; hbm_Bps is the measured "
                                         "copy bandwidth, eff, flops and layer_overhead_s are fitted, gpus_per_node is "
                                         "ranks per node (cores / threads), the rest comes from base",
                                  "points", points, "rms_rel_err", fit->rms_rel, "max_rel_err", fit->max_rel));
    json_t *held = json_array();
    const char *names[3] = {"eff", "flops", "layer_overhead_s"};
    for (int j = 0; j < 3; j++)
        if (!(fit->fitted >> j & 1)) json_array_append_new(held, json_string(names[j]));
    json_object_set_new(json_object_get(r, "fitted_on"), "held_not_fitted", held);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = json_dump_file(r, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(r);
    if (rc || rename(tmp, path)) {
        remove(tmp);
        return janus_errf(e, "%s: cannot write the calibration file", path);
    }
    return 0;
}
