// plan/calib.h: calibration of the performance model (planner.h) from
// measured decode step times: least squares of the model's own predicted
// step time of the 1-rank monolithic layout against the measurements, and
// the calibration JSON file that `janus plan --hardware FILE` reads.
#ifndef JANUS_PLAN_CALIB_H
#define JANUS_PLAN_CALIB_H

#include "plan/planner.h"

// One measured point: mean decode step time of `batch` sequences whose KV
// cache holds `context` positions at the first timed step and grows by one
// per step over `steps` steps.
typedef struct {
    int batch;
    double context, steps;
    double step_s;
} janus_calib_point;

typedef struct {
    janus_hw hw;          // base with the fitted fields (hbm_Bps as given)
    double pred_s[64];    // janus_plan_eval's TPOT for each point with hw
    double rms_rel;       // sqrt(mean((pred - measured) / measured)^2)
    double max_rel;       // max |pred - measured| / measured
    int fitted;           // bit 0 eff, bit 1 flops, bit 2 layer_overhead_s: fitted (else held:
                          // eff and flops at the base profile's values, the overhead at 0)
} janus_calib_fit;

// Fits 1 / (hbm_Bps eff), 1 / flops and layer_overhead_s (all >= 0; eff and
// flops > 0) to n (3..64) points by least squares of the relative error of
// janus_plan_eval's 1-rank monolithic TPOT. The model is linear in those three
// numbers for that layout, so the fit is exact (normal equations, non-negative
// by active sets); hbm_Bps of `base` is kept (the measured copy bandwidth) and
// eff carries the rest.
int janus_calib_fit_decode(const janus_config *c, const janus_hw *base, const janus_calib_point *pts, int n,
                           janus_calib_fit *fit, janus_err *e);

// Writes the calibration JSON: "base", the fitted janus_hw fields, and
// "fitted_on" (what it was fitted on: the free text `source` and every point
// measured vs predicted). janus_hw_load reads it back.
int janus_calib_write(const char *path, const char *base_name, const janus_calib_fit *fit, const janus_calib_point *pts,
                      int n, const char *source, janus_err *e);

#endif
