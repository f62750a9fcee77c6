#!/usr/bin/env python3
"""test_resume.py: an interrupted run, resumed with --resume, gives the same
final file as an uninterrupted run, request for request.

usage: test_resume.py JANUS

Interruptions: SIGTERM (exit 3, clean stop) and SIGKILL (nothing flushed by
janus itself) at seeded-random steps through the JANUS_FAULT testing hook, on
one rank, monolithic 2 ranks and a 1 attention + 2 MoE layout; chains of
several interruptions before the final resume; a real SIGTERM and a real
SIGKILL sent from outside at a random time. Also: without --resume an
existing parts directory is refused, and the parts directory is gone once
the final file is written.
"""
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.path.insert(0, HERE)
import janus_h5  # noqa: E402
from golden import mpirun_prefix  # noqa: E402

MODEL = os.path.join(HERE, "..", "inputs", "model")
REQ = os.path.join(HERE, "..", "inputs", "requests.h5")
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print("ok  ", what, flush=True)
    else:
        failed += 1
        print("FAIL", what, flush=True)


def cmd(janus, out, np_, layout, extra=()):
    pre = mpirun_prefix(np_)
    if pre:
        pre = pre[:1] + ["-x", "JANUS_FAULT"] + pre[1:]
    return pre + [janus, "generate", "--model", MODEL, "--requests", REQ, "--out", out, "--quiet",
                  "--max-batch", "4", *layout, *extra]


def same(a, b):
    return (list(a["ids"]) == list(b["ids"]) and
            all(np.array_equal(x, y) for x, y in zip(a["tokens"], b["tokens"])) and
            all(np.array_equal(x, y) for x, y in zip(a["logprobs"], b["logprobs"])) and
            np.array_equal(a["finish_reason"], b["finish_reason"]))


def main():
    janus = sys.argv[1]
    rng = random.Random(2026)
    layouts = [("1 rank", 0, []), ("monolithic np2", 2, []),
               ("1 attention + 2 MoE", 3, ["--attn-ranks", "1", "--moe-ranks", "2"])]
    with tempfile.TemporaryDirectory() as tmp:
        for name, np_, layout in layouts:
            full = os.path.join(tmp, "full.h5")
            p = subprocess.run(cmd(janus, full, np_, layout), capture_output=True, text=True, timeout=300)
            if p.returncode:
                check(False, f"{name}: uninterrupted run: {p.stderr[-800:]}")
                continue
            ref = janus_h5.read_results(full)
            for trial in range(3):
                out = os.path.join(tmp, f"out-{trial}.h5")
                sigs = [rng.choice([signal.SIGTERM, signal.SIGKILL]) for _ in range(rng.randint(1, 3))]
                codes, first = [], True
                for sig in sigs:
                    victim = rng.randrange(max(np_, 1))
                    env = dict(os.environ, JANUS_FAULT=f"{victim}:{rng.randint(0, 40)}:{int(sig)}")
                    q = subprocess.run(cmd(janus, out, np_, layout, [] if first else ["--resume"]),
                                       capture_output=True, text=True, timeout=300, env=env)
                    codes.append(q.returncode)
                    first = False
                q = subprocess.run(cmd(janus, out, np_, layout, ["--resume"]), capture_output=True, text=True,
                                   timeout=300, env={k: v for k, v in os.environ.items() if k != "JANUS_FAULT"})
                ok = q.returncode == 0 and os.path.exists(out) and same(janus_h5.read_results(out), ref)
                check(ok and not os.path.exists(out + ".parts"),
                      f"{name}: interrupted by {[s.name for s in sigs]} (exits {codes}), resumed: same results as "
                      f"uninterrupted" + ("" if q.returncode == 0 else f" [resume failed: {q.stderr[-500:]}]"))
                if signal.SIGTERM in sigs and codes:
                    i = sigs.index(signal.SIGTERM)
                    check(codes[i] in (3, 0), f"{name}: SIGTERM exits 3 (or 0 if the run had already finished): {codes[i]}")
        # Real signals from outside, one rank, slowed down so the signal lands mid-run.
        full = os.path.join(tmp, "full1.h5")
        subprocess.run(cmd(janus, full, 0, [], ["--max-batch", "1"]), check=True, capture_output=True, timeout=300)
        ref = janus_h5.read_results(full)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            out = os.path.join(tmp, f"ext-{sig.name}.h5")
            env = dict(os.environ, OMP_NUM_THREADS="1")
            pr = subprocess.Popen(cmd(janus, out, 0, [], ["--max-batch", "1"]), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)
            time.sleep(rng.uniform(0.3, 0.8))
            pr.send_signal(sig)
            rc = pr.wait(timeout=120)
            q = subprocess.run(cmd(janus, out, 0, [], ["--max-batch", "1", "--resume"]), capture_output=True,
                               text=True, timeout=300)
            check(q.returncode == 0 and same(janus_h5.read_results(out), ref),
                  f"external {sig.name} (exit {rc}) then --resume: same results")
        # A parts directory without --resume is refused, naming it.
        out = os.path.join(tmp, "refuse.h5")
        env = dict(os.environ, JANUS_FAULT="0:3:15")
        subprocess.run(cmd(janus, out, 0, []), capture_output=True, timeout=300, env=env)
        q = subprocess.run(cmd(janus, out, 0, []), capture_output=True, text=True, timeout=300)
        check(q.returncode == 2 and "--resume" in q.stderr and ".parts" in q.stderr,
              f"existing parts without --resume refused: exit {q.returncode}, {q.stderr.strip()[:160]}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
