#!/usr/bin/env python3
"""test_rank_failure.py: a rank that dies mid-run ends the whole job.

usage: test_rank_failure.py JANUS

Runs the bundled model in a 1 attention + 2 MoE layout and kills one MoE rank
(SIGKILL, through the JANUS_FAULT=RANK:STEP testing hook) a few steps in; the
job must exit non-zero within 30 s, name the rank that died, and leave no
result file (the finished requests stay in OUT.parts/ for --resume). Then the same for the attention rank.
"""
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from golden import mpirun_prefix  # noqa: E402

MODEL = os.path.join(HERE, "..", "inputs", "model")
REQ = os.path.join(HERE, "..", "inputs", "requests.h5")


def main():
    janus = sys.argv[1]
    passed = failed = 0
    for rank, step in [(2, 6), (0, 4)]:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "out.h5")
            env = dict(os.environ, JANUS_FAULT=f"{rank}:{step}")
            cmd = mpirun_prefix(3)[:1] + ["-x", "JANUS_FAULT"] + mpirun_prefix(3)[1:] + [
                janus, "generate", "--model", MODEL, "--requests", REQ, "--out", out, "--quiet",
                "--attn-ranks", "1", "--moe-ranks", "2"]
            t0 = time.time()
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
                rc, err = p.returncode, p.stderr + p.stdout
            except subprocess.TimeoutExpired:
                rc, err = None, "timed out after 60 s (hung)"
            dt = time.time() - t0
            # No result file (nor a temporary one); OUT.parts/ stays, for --resume.
            left = [f for f in os.listdir(tmp) if f == "out.h5" or f.startswith("out.h5.tmp")]
            ok = rc not in (None, 0) and dt < 30 and f"rank {rank}" in err and not left
            print(("ok   " if ok else "FAIL ") + f"rank {rank} killed at step {step}: exit {rc} after {dt:.1f} s, "
                  f"names the rank: {f'rank {rank}' in err}, files left: {left}")
            if not ok:
                print(err[-1500:])
            passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
