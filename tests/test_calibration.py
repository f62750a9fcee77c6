#!/usr/bin/env python3
"""test_calibration.py: `janus bench decode --calibration FILE` writes a
calibration file that `janus plan --hardware FILE` reads, and the plan's
prediction for the 1-rank layout is the fit's: for every measured batch size,
`janus plan --eval 1,0,B,1` (prompt = the bench's context, output = its steps
- 1: the same mean context) gives the predicted step time the file records,
and that lies within the fit's stated residual of the measured step time.
Also: too few batch sizes and a malformed file are refused with one message.
No timing is asserted: the figures are whatever this machine measures.

usage: test_calibration.py JANUS
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "inputs", "model")
passed = failed = 0


def check(cond, what):
    global passed, failed
    passed, failed = passed + bool(cond), failed + (not cond)
    print(("ok   " if cond else "FAIL ") + what, flush=True)


def main():
    janus = sys.argv[1]
    context, steps = 16, 16
    with tempfile.TemporaryDirectory() as tmp:
        cal = os.path.join(tmp, "cal.json")
        p = subprocess.run([janus, "bench", "decode", "--model", MODEL, "--batch", "1,4,16,32", "--steps", str(steps),
                            "--context", str(context), "--threads", "1", "--calibration", cal],
                           capture_output=True, text=True, timeout=120)
        print(p.stdout, p.stderr, flush=True)
        check(p.returncode == 0 and "# calibration:" in p.stdout and "fit residual" in p.stdout,
              "bench decode --calibration runs and prints the fit")
        j = json.load(open(cal)) if os.path.exists(cal) else {}
        fields = ("hbm_Bps", "eff", "flops", "layer_overhead_s")
        check(j.get("base") == "cpu" and all(isinstance(j.get(k), (int, float)) and j[k] >= 0 for k in fields) and
              j["eff"] > 0 and j["flops"] > 0, f"calibration file: base cpu and the fitted fields {fields}")
        fit = j.get("fitted_on", {})
        pts = fit.get("points", [])
        check([q.get("batch") for q in pts] == [1, 4, 16, 32] and "janus bench decode" in fit.get("what", ""),
              "calibration file says what it was fitted on (command, every point measured and predicted)")
        resid = fit.get("max_rel_err", -1)
        for q in pts:
            e = subprocess.run([janus, "plan", "--model", MODEL, "--hardware", cal, "--eval", f"1,0,{q['batch']},1",
                                "--prompt-len", str(context), "--output-len", str(steps - 1), "--json"],
                               capture_output=True, text=True, timeout=60)
            pred = json.loads(e.stdout)["predicted_tpot_ms"] if e.returncode == 0 else -1
            check(abs(pred - q["predicted_ms"]) <= 1e-3 * q["predicted_ms"] + 1e-4,
                  f"batch {q['batch']}: janus plan --hardware FILE predicts the fit's {q['predicted_ms']:.4f} ms ({pred:.4f})")
            check(abs(pred - q["measured_ms"]) <= (resid + 1e-3) * q["measured_ms"],
                  f"batch {q['batch']}: prediction {pred:.4f} ms within the stated residual {100 * resid:.1f}% "
                  f"of the measured {q['measured_ms']:.4f} ms")
        s = subprocess.run([janus, "plan", "--model", MODEL, "--gpus", "2", "--hardware", cal, "--slo-tpot-ms", "1000"],
                           capture_output=True, text=True, timeout=60)
        check(s.returncode == 0 and "calibrated" in s.stdout and "# winner:" in s.stdout,
              "janus plan searches with the calibration file as its hardware")
        q = subprocess.run([janus, "bench", "decode", "--model", MODEL, "--batch", "1,8", "--steps", "2",
                            "--calibration", os.path.join(tmp, "x.json")], capture_output=True, text=True, timeout=60)
        check(q.returncode == 2 and "at least 3 batch sizes" in q.stderr and not os.path.exists(os.path.join(tmp, "x.json")),
              "--calibration with two batch sizes is refused before measuring, no file left")
        bad = os.path.join(tmp, "bad.json")
        with open(bad, "w") as f:
            json.dump({"base": "cpu", "eff": -1}, f)
        q = subprocess.run([janus, "plan", "--model", MODEL, "--gpus", "2", "--hardware", bad], capture_output=True,
                           text=True, timeout=60)
        check(q.returncode == 2 and "eff" in q.stderr and bad in q.stderr, "a negative eff in a calibration file is named")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
