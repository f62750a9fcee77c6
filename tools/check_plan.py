#!/usr/bin/env python3
"""check_plan.py: the planner's predicted TPOT against the TPOT measured by real
runs, layout by layout (issue 6: within 25%; docs/plan.md, "Calibration").

    check_plan.py --janus build/janus --model DIR --hardware CAL.json
                  [--layouts 1,0,8,1 2,0,8,1 1,1,16,1 ...] [--prompt-len 32]
                  [--output-len 17] [--threads 1] [--repeat 3] [--json OUT.json]

A layout is A,M,B,m as `janus plan --eval` takes it: A attention ranks, M MoE
ranks (0: monolithic on A ranks), B sequences per attention rank, m
micro-batches. For each layout it writes a requests file of A x B requests of
one prompt length and one max_new_tokens (so every attention rank holds B
sequences from the first step to the last, decoding in lockstep), runs

    mpirun --oversubscribe -np A+M --map-by core --bind-to core JANUS generate
           --model DIR --requests R --out O --max-batch B --max-step-tokens B x P
           [--attn-ranks A --moe-ranks M --micro-batches m]

with OMP_NUM_THREADS=--threads on every rank and rank r bound to core r mod
cores (where ranks outnumber cores they wrap around, so the two pools share
the cores; without micro-batches the pools take turns, so the ranks busy at one
time sit on distinct cores while each pool has at most one rank per core),
reads the measured TPOT (the mean of /results/tpot_s: seconds per output token
after the first, i.e. the decode step time) and asks `janus plan --model DIR
--eval A,M,B,m --hardware CAL --prompt-len P --output-len O --json` for the
prediction. It prints

    layout | ranks | batch | measured TPOT ms | predicted ms | error %

(error = (predicted - measured) / measured) and, with --json, writes the rows.
Each layout runs --repeat times and the median is kept. On a shared machine
other work steals cores: before each run the tool waits (up to --wait-idle
seconds) until the CPUs were less than 10% busy over one second, and after it
compares the CPU time the whole machine spent during the run (/proc/stat)
with the run's own (getrusage of the children): a run during which other
processes took more than 3% of a core is run again (up to --retries times);
the table marks layouts all of whose runs were disturbed. The calibration file
should come from a 1-rank `janus bench decode --calibration` on the same
machine, model and threads.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import janus_h5  # noqa: E402

DEFAULT_LAYOUTS = ["1,0,8,1", "2,0,8,1", "1,1,16,1", "1,2,16,1", "2,2,8,1", "1,1,16,2"]


def parse_layout(s):
    try:
        a, m, b, mb = (int(x) for x in s.split(","))
    except ValueError:
        raise SystemExit(f"layout \"{s}\": not A,M,B,m")
    if a < 1 or m < 0 or b < 1 or mb < 1 or (m == 0 and mb != 1) or mb > b:
        raise SystemExit(f"layout \"{s}\": need A >= 1, M >= 0, B >= m >= 1 (m = 1 when M = 0)")
    return a, m, b, mb


def name(a, m, b, mb):
    s = f"{a} monolithic" if m == 0 else f"{a} attn + {m} moe"
    return s + (f", {mb} micro" if mb > 1 else "")


def mpirun(n, args):
    mca = {"btl": "self,vader,tcp", "btl_vader_single_copy_mechanism": "none"}
    for kv in args.mca:
        k, _, v = kv.partition("=")
        mca[k] = v
    cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(n)]
    for k, v in mca.items():
        cmd += ["--mca", k, v]
    return cmd + (["--map-by", "core", "--bind-to", "core:overload-allowed"] if args.bind else [])


def cpu_busy_s():
    """CPU seconds all processes of the machine have spent busy (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def busy_share(interval=1.0):
    """Fraction of all CPUs busy over `interval` seconds, or None without /proc/stat."""
    try:
        b0 = cpu_busy_s()
        time.sleep(interval)
        return (cpu_busy_s() - b0) / (interval * os.cpu_count())
    except OSError:
        return None


def wait_idle(limit_s):
    """Wait until the CPUs are < 10% busy (at most limit_s seconds)."""
    t_end = time.time() + limit_s
    while True:
        b = busy_share()
        if b is None or b < 0.10 or time.time() >= t_end:
            return b


def measure(args, a, m, b, mb, tmp, vocab, rep):
    req = os.path.join(tmp, f"req_{a}_{m}_{b}_{mb}.h5")
    out = os.path.join(tmp, f"out_{a}_{m}_{b}_{mb}_{rep}.h5")
    rng = np.random.default_rng(1234 + rep)
    prompts = [rng.integers(0, vocab, size=args.prompt_len).tolist() for _ in range(a * b)]
    janus_h5.write_requests(req, prompts, args.output_len)
    cmd = mpirun(a + m, args) + [args.janus, "generate", "--model", args.model, "--requests", req, "--out", out,
                                 "--quiet", "--max-batch", str(b), "--max-step-tokens", str(max(512, b * args.prompt_len)),
                                 "--progress-interval", "0"]
    if m:
        cmd += ["--attn-ranks", str(a), "--moe-ranks", str(m), "--micro-batches", str(mb)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")
    for attempt in range(args.retries + 1):
        if args.wait_idle > 0:
            wait_idle(args.wait_idle)
        m0, c0, t0 = cpu_busy_s(), children_cpu_s(), time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
        wall = time.time() - t0
        other = max(0.0, (cpu_busy_s() - m0) - (children_cpu_s() - c0)) / wall  # cores taken by other work
        if p.returncode != 0 or other <= 0.03:
            break
        print(f"#   {name(a, m, b, mb)}: other processes took {100 * other:.0f}% of a core during the run; again",
              flush=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\nexited {p.returncode}: {p.stderr.strip()[-2000:]}")
    r = janus_h5.read_results(out)
    os.remove(out)
    tpot = r["tpot_s"]
    n_tok = [len(t) for t in r["tokens"]]
    if min(n_tok) != args.output_len:
        raise SystemExit(f"{name(a, m, b, mb)}: a request stopped early ({min(n_tok)} of {args.output_len} tokens): "
                         "an EOS token; the batch did not stay full")
    return float(np.mean(tpot)), " ".join(cmd), other


def predict(args, a, m, b, mb):
    cmd = [args.janus, "plan", "--model", args.model, "--eval", f"{a},{m},{b},{mb}", "--hardware", args.hardware,
           "--prompt-len", str(args.prompt_len), "--output-len", str(args.output_len), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\nexited {p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout), " ".join(cmd)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--janus", default="build/janus")
    ap.add_argument("--model", required=True)
    ap.add_argument("--hardware", required=True, help="calibration JSON (janus bench decode --calibration) or a preset")
    ap.add_argument("--layouts", nargs="+", default=DEFAULT_LAYOUTS, help="A,M,B,m ... (default: %(default)s)")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--output-len", type=int, default=17, help="max_new_tokens of every request (>= 2)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every rank (default 1)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per layout; the median TPOT is kept (default 3)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run")
    ap.add_argument("--no-bind", dest="bind", action="store_false",
                    help="let the OS place the ranks (default: mpirun --map-by core --bind-to core:overload-allowed, "
                         "rank r on core r mod cores)")
    ap.add_argument("--mca", action="append", default=[], metavar="KEY=VALUE",
                    help="an Open MPI MCA parameter for mpirun (default btl self,vader,tcp and "
                         "btl_vader_single_copy_mechanism none, as tools/bootstrap.sh sets)")
    ap.add_argument("--retries", type=int, default=4, help="runs disturbed by other processes are repeated (default 4)")
    ap.add_argument("--wait-idle", type=float, default=120,
                    help="before each run, wait up to this many seconds for the CPUs to be idle (0: do not wait)")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args(argv)
    if a.output_len < 2 or a.prompt_len < 1 or a.repeat < 1:
        ap.error("--output-len >= 2, --prompt-len >= 1, --repeat >= 1")
    with open(os.path.join(a.model, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    layouts = [parse_layout(s) for s in a.layouts]
    print(f"# check_plan: {a.model}, hardware {a.hardware}, prompt {a.prompt_len}, output {a.output_len}, "
          f"{a.threads} OpenMP thread(s) per rank, median of {a.repeat} run(s)", flush=True)
    hdr = f"{'layout':<26} {'ranks':>5} {'batch':>5} {'measured_ms':>12} {'predicted_ms':>13} {'error%':>7}"
    print(hdr, flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for (A, M, B, mb) in layouts:
            runs = [measure(a, A, M, B, mb, tmp, vocab, r) for r in range(a.repeat)]
            meas = float(np.median([r[0] for r in runs]))
            pred, pcmd = predict(a, A, M, B, mb)
            p_ms = pred["predicted_tpot_ms"]
            err = 100 * (p_ms - meas * 1e3) / (meas * 1e3)
            rows.append({"layout": f"{A},{M},{B},{mb}", "name": name(A, M, B, mb), "ranks": A + M, "batch": B,
                         "measured_tpot_ms": meas * 1e3, "runs_ms": [r[0] * 1e3 for r in runs],
                         "other_cores_during_runs": [r[2] for r in runs],
                         "predicted_tpot_ms": p_ms, "error_pct": err, "run_command": runs[0][1],
                         "plan_command": pcmd, "prediction": pred})
            flag = "  (disturbed)" if min(r[2] for r in runs) > 0.03 else ""
            print(f"{name(A, M, B, mb):<26} {A + M:>5} {B:>5} {meas * 1e3:>12.2f} {p_ms:>13.2f} {err:>6.1f}%{flag}",
                  flush=True)
    within = sum(abs(r["error_pct"]) <= 25 for r in rows)
    print(f"# {within} of {len(rows)} layouts predicted within 25% of the measured TPOT")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "hardware": a.hardware, "prompt_len": a.prompt_len, "output_len": a.output_len,
                       "threads": a.threads, "repeat": a.repeat, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
