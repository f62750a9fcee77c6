#!/usr/bin/env python3
"""test_plan_cli.py: `janus plan` end to end: the table and the plan JSON
(whose predicted TPOT meets the SLO and whose layout fits the budget), the
sbatch geometry, clear errors, --objective job (the winner has the table's
most whole-job tokens/s per GPU), and --simulate's CSV (one row per GPU
count) and its PNG plot.

usage: test_plan_cli.py JANUS
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
QWEN = os.path.join(ROOT, "inputs", "configs", "qwen3-30b-a3b")
passed = failed = 0


def check(cond, what):
    global passed, failed
    passed, failed = passed + bool(cond), failed + (not cond)
    print(("ok   " if cond else "FAIL ") + what, flush=True)


def main():
    janus = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        plan = os.path.join(tmp, "plan.json")
        p = subprocess.run([janus, "plan", "--model", QWEN, "--gpus", "16", "--slo-tpot-ms", "50", "--out", plan,
                            "--sbatch", "--requests", os.path.join(ROOT, "inputs", "requests.h5")],
                           capture_output=True, text=True, timeout=120)
        check(p.returncode == 0 and "# winner:" in p.stdout and "tok/s/GPU" in p.stdout, "plan prints a table and the winner")
        j = json.load(open(plan)) if os.path.exists(plan) else {}
        check(j.get("predicted_tpot_ms", 1e9) <= 50 and j.get("attn_ranks", 0) + j.get("moe_ranks", 0) <= 16 and j.get("max_batch", 0) >= 1,
              f"plan JSON meets the SLO within the budget: {j}")
        check("#SBATCH --ntasks=" in p.stdout and "srun --mpi=pmix janus generate" in p.stdout, "sbatch geometry printed")
        q = subprocess.run([janus, "plan", "--model", QWEN, "--gpus", "4", "--hardware", "tpu"], capture_output=True, text=True)
        check(q.returncode == 2 and "--hardware" in q.stderr, "unknown hardware refused by name")
        q = subprocess.run([janus, "plan", "--model", QWEN, "--gpus", "2", "--slo-tpot-ms", "0.01"], capture_output=True, text=True)
        check(q.returncode == 2 and "no layout" in q.stderr, "an SLO nothing meets is reported, exit 2")
        # --objective job: the winner is the table's best job/GPU (the last column), and the JSON carries it.
        plan_j = os.path.join(tmp, "plan_job.json")
        q = subprocess.run([janus, "plan", "--model", QWEN, "--gpus", "4", "--hardware", "h200", "--objective", "job",
                            "--top", "50", "--out", plan_j], capture_output=True, text=True, timeout=120)
        rows = [ln.split() for ln in q.stdout.splitlines() if ln.strip() and ln.split()[0].isdigit()]
        jobs = [float(r[-1]) for r in rows]
        jj = json.load(open(plan_j)) if os.path.exists(plan_j) else {}
        check(q.returncode == 0 and jobs and jobs[0] == max(jobs) and "whole job" in q.stdout and
              abs(jj.get("predicted_job_tokens_per_s_per_gpu", 0) - jobs[0]) <= 0.05 + 1e-6 * jobs[0],
              f"--objective job: the winner has the most job tok/s per GPU of the table ({jobs[:3]}), in the JSON")
        q = subprocess.run([janus, "plan", "--model", QWEN, "--gpus", "4", "--objective", "throughput"],
                           capture_output=True, text=True)
        check(q.returncode == 2 and "--objective" in q.stderr, "an unknown --objective is refused by name")
        sim = os.path.join(tmp, "sim.csv")
        q = subprocess.run([janus, "plan", "--model", QWEN, "--gpus", "8,16,64,512", "--simulate", "--hardware", "h200",
                            "--csv", sim], capture_output=True, text=True, timeout=300)
        rows = list(csv.DictReader(open(sim))) if os.path.exists(sim) else []
        check(q.returncode == 0 and [int(r["gpus"]) for r in rows] == [8, 16, 64, 512] and
              all(float(r["tokens_per_s_per_gpu"]) == max(float(r["best_monolithic_per_gpu"]), float(r["best_disaggregated_per_gpu"]))
                  for r in rows), "simulate: one CSV row per GPU count, best = max of the two modes")
        png = os.path.join(tmp, "sim.png")
        q = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "plot_simulation.py"), sim, "--out", png],
                           capture_output=True, text=True, timeout=120)
        ok = q.returncode == 0 and os.path.exists(png) and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(png) > 10000
        check(ok, "simulation plot written as a PNG")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
