#!/usr/bin/env python3
"""tools/plan_fit_shared.py: fits the planner's shared-GPU model (every rank on
one GPU, docs/plan.md) to measured decode TPOTs of a few CALIBRATION layouts,
writes the calibration JSON, and predicts every layout with `janus plan --eval
--hardware` on it: calibration layouts are fitted, VALIDATION layouts are
predictions (they play no part in the fit).

  plan_fit_shared.py --janus J --model CFG --batch 64 --prompt-len 64 --output-len 64 \\
      --calib np1=8.71 1+1=13.73 2+2=27.82 --valid 1+2=16.16 1+3=17.60 mono2=27.75 \\
      [--out calib.json] [--json table.json]

A layout is "np1" (one rank), "monoN" (N monolithic ranks) or "A+M" (A
attention + M MoE ranks), with "/mK" for K micro-batches; --batch is the
number of requests, split evenly over the attention ranks (tools/gpu-layout-
timing's BATCH). A measurement of "-" (a layout that failed) is listed, not
fitted. Needs numpy.

The fit: janus_plan_eval's TPOT on a shared GPU is linear in the numbers it
fits, so their coefficients come from the planner itself (each evaluated alone
at a unit value, through `janus plan --eval`): the model here can never drift
from the one janus plan computes. Fitted, all >= 0, by least squares of the
relative error (exact with as many calibration layouts as numbers):
  layer_overhead_s       launches and gaps per layer and micro-batch (2 per layer)
  shared_handoff_s       one context hand-off (pool crossing: M + 1 per layer)
  shared_attn_handoff_s  one attention-side process's hand-offs per layer when
                         several share the GPU
with the expert/attention work at the base profile's bandwidth x eff. Where
layer_overhead_s would come out negative (the engine faster than the data
sheet's eff), it is held at 0 and eff is fitted instead (so the one-rank
point is still met).
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

PARAMS = ["layer_overhead_s", "shared_handoff_s", "shared_attn_handoff_s"]


def parse_layout(name, batch):
    """'1+2/m2' -> (A, M, B per attention rank, m)."""
    micro = 1
    if "/m" in name:
        name, mk = name.split("/m")
        micro = int(mk)
    if name == "np1":
        a, m = 1, 0
    elif name.startswith("mono"):
        a, m = int(name[4:]), 0
    elif "+" in name:
        a, m = (int(x) for x in name.split("+"))
    else:
        raise ValueError(f"bad layout {name}")
    if m == 0 and micro != 1:
        raise ValueError(f"{name}: monolithic layouts take one micro-batch")
    return a, m, max(1, batch // a), micro


class Planner:
    def __init__(self, janus, model, prompt, output, base):
        self.janus, self.model, self.prompt, self.output, self.base = janus, model, prompt, output, base
        self.tmp = tempfile.mkdtemp(prefix="plan-fit-")
        self.n = 0

    def hw_file(self, fields):
        self.n += 1
        path = os.path.join(self.tmp, f"hw{self.n}.json")
        with open(path, "w") as f:
            json.dump(dict({"name": "plan-fit", "base": self.base, "ranks_share_gpu": 1}, **fields), f)
        return path

    def tpot_ms(self, spec, hw_path):
        a, m, b, k = spec
        out = subprocess.run([self.janus, "plan", "--model", self.model, "--eval", f"{a},{m},{b},{k}", "--hardware",
                              hw_path, "--prompt-len", str(self.prompt), "--output-len", str(self.output), "--json"],
                             capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"janus plan --eval {a},{m},{b},{k}: {out.stderr.strip()}")
        return json.loads(out.stdout)["predicted_tpot_ms"]


def fit(planner, calib, eff0):
    """calib: list of (spec, measured ms). Returns (params dict, eff, note)."""
    zero = {p: 0.0 for p in PARAMS}
    unit = 1e-3  # 1 ms: coefficients are (TPOT(unit) - TPOT(0)) / unit
    rows, rest, bwpart = [], [], []
    f0 = planner.hw_file(dict(zero, eff=eff0))
    fh = planner.hw_file(dict(zero, eff=eff0 / 2))
    fu = [planner.hw_file(dict(zero, eff=eff0, **{p: unit})) for p in PARAMS]
    for spec, _ in calib:
        t0 = planner.tpot_ms(spec, f0)
        rows.append([(planner.tpot_ms(spec, f) - t0) / unit for f in fu])  # ms of TPOT per second
        bwpart.append(planner.tpot_ms(spec, fh) - t0)  # the bandwidth-bound part of t0 (it doubles at eff / 2)
        rest.append(t0)
    C, W, Bw = np.array(rows), np.array(rest), np.array(bwpart)
    y = np.array([v for _, v in calib])

    def solve(cols, scale_bw):
        # Unknowns: the chosen parameters (s), plus, if scale_bw, a factor on
        # the bandwidth-bound part (eff = eff0 / factor); relative error.
        X = C[:, cols]  # ms of TPOT per second of each parameter
        rhs = y - W
        if scale_bw:
            X = np.column_stack([X, Bw])
            rhs = y - (W - Bw)
        wgt = 1.0 / y
        if X.shape[1] == 0:
            return np.zeros(0), np.sqrt(np.mean((rhs * wgt) ** 2))
        sol = np.linalg.lstsq(X * wgt[:, None], rhs * wgt, rcond=None)[0]
        res = np.sqrt(np.mean(((X @ sol - rhs) * wgt) ** 2))
        return sol, res

    # First choice: eff of the base profile, the three numbers free.
    best = None
    for scale_bw in (False, True):
        for r in range(len(PARAMS), -1, -1):
            for cols in itertools.combinations(range(len(PARAMS)), r):
                if scale_bw and 0 in cols:
                    continue  # eff fitted only with the overhead held at 0
                sol, res = solve(list(cols), scale_bw)
                if np.any(sol < 0):
                    continue
                if best is None or res < best[0] - 1e-12:
                    best = (res, cols, sol, scale_bw)
        if best is not None and len(best[1]) == len(PARAMS):
            break  # every number free and non-negative: done
    res, cols, sol, scale_bw = best
    params = {p: 0.0 for p in PARAMS}
    for j, c in enumerate(cols):
        params[PARAMS[c]] = float(sol[j])
    eff = eff0 / float(sol[-1]) if scale_bw and sol[-1] > 0 else eff0
    free = [p for i, p in enumerate(PARAMS) if not np.any(C[:, i])]  # no calibration layout depends on it
    held = [p for i, p in enumerate(PARAMS) if i not in cols and p not in free]
    note = "all fitted" if not held and not free else "; ".join(
        ([("held at 0: " + ", ".join(held))] if held else []) +
        ([("no calibration layout determines (0): " + ", ".join(free))] if free else []))
    if scale_bw:
        note += f"; eff fitted ({eff:.3f}, base {eff0:.3f})"
    return params, eff, note


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--janus", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt-len", type=float, default=64)
    ap.add_argument("--output-len", type=float, default=64)
    ap.add_argument("--base", default="h100")
    ap.add_argument("--eff", type=float, default=0.65, help="the base profile's eff (h100, h200: 0.65)")
    ap.add_argument("--calib", nargs="+", required=True, metavar="LAYOUT=MS")
    ap.add_argument("--valid", nargs="*", default=[], metavar="LAYOUT=MS")
    ap.add_argument("--out", help="calibration JSON to write")
    ap.add_argument("--json", help="the table as JSON")
    ap.add_argument("--name", default="shared-gpu-fit", help="the profile's name in the calibration file")
    ap.add_argument("--source", default="", help="what was measured (free text, into the calibration file)")
    a = ap.parse_args()

    def points(items, role):
        pts = []
        for it in items:
            name, _, ms = it.partition("=")
            v = None if ms in ("", "-", "nan") else float(ms)
            pts.append((name, parse_layout(name, a.batch), v, role))
        return pts

    pts = points(a.calib, "calibration") + points(a.valid, "validation")
    pl = Planner(a.janus, a.model, a.prompt_len, a.output_len, a.base)
    calib = [(spec, v) for _, spec, v, role in pts if role == "calibration" and v is not None]
    if len(calib) < 1:
        sys.exit("plan_fit_shared: no calibration layout was measured")
    params, eff, note = fit(pl, calib, a.eff)
    hw = dict({"name": a.name, "base": a.base, "ranks_share_gpu": 1, "eff": eff}, **params)
    hw_path = pl.hw_file({k: v for k, v in hw.items() if k not in ("name", "base", "ranks_share_gpu")})
    table = []
    for name, spec, v, role in pts:
        pred = pl.tpot_ms(spec, hw_path)
        err = (pred - v) / v * 100 if v else None
        table.append({"layout": name, "eval": ",".join(map(str, spec)), "role": role, "measured_ms": v,
                      "predicted_ms": round(pred, 4), "error_pct": None if err is None else round(err, 2)})
    if a.out:
        doc = dict(hw, fitted_on={
            "what": a.source or "decode TPOT of layouts with every rank on one GPU (tools/gpu-layout-timing)",
            "how": "tools/plan_fit_shared.py: least squares of the relative error over the calibration layouts; "
                   "the validation layouts are predictions. " + note,
            "model": a.model, "batch": a.batch, "prompt_len": a.prompt_len, "output_len": a.output_len,
            "points": table})
        with open(a.out, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(table, f, indent=2)
    print(f"# fit ({note}): layer_overhead_s {params['layer_overhead_s'] * 1e6:.1f} us, shared_handoff_s "
          f"{params['shared_handoff_s'] * 1e6:.1f} us, shared_attn_handoff_s {params['shared_attn_handoff_s'] * 1e6:.1f} us"
          + (f" ({params['shared_attn_handoff_s'] / params['shared_handoff_s']:.2f} hand-offs per attention process)"
             if params["shared_handoff_s"] > 0 else "") + f", eff {eff:.3f}")
    print(f"{'layout':<10} {'A,M,B,m':<12} {'measured ms':>12} {'predicted ms':>13} {'error':>8}  role")
    worst = 0.0
    nval = nok = 0
    for r in table:
        meas = f"{r['measured_ms']:.2f}" if r["measured_ms"] is not None else "failed"
        err = f"{r['error_pct']:+.1f}%" if r["error_pct"] is not None else "-"
        print(f"{r['layout']:<10} {r['eval']:<12} {meas:>12} {r['predicted_ms']:>13.2f} {err:>8}  {r['role']}")
        if r["role"] == "validation" and r["error_pct"] is not None:
            nval += 1
            nok += abs(r["error_pct"]) <= 25
            worst = max(worst, abs(r["error_pct"]))
    print(f"# validation: {nok} of {nval} layouts within 25% (worst {worst:.1f}%)")


if __name__ == "__main__":
    main()
