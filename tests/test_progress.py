#!/usr/bin/env python3
"""test_progress.py: rank 0 prints whole progress lines (requests done/total,
tokens, tokens/s, batch, ETA) at --progress-interval, under mpirun too; --quiet
prints nothing on success.

usage: test_progress.py JANUS
"""
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from golden import mpirun_prefix  # noqa: E402

MODEL = os.path.join(HERE, "..", "inputs", "model")
REQ = os.path.join(HERE, "..", "inputs", "requests.h5")
LINE = re.compile(r"^janus: progress: (\d+)/(\d+) requests, (\d+) tokens, [\d.]+ tokens/s, batch \d+ on rank 0, eta \d+ s$")


def main():
    janus = sys.argv[1]
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for np_, extra in [(0, []), (3, ["--attn-ranks", "2", "--moe-ranks", "1"])]:
            out = os.path.join(tmp, "o.h5")
            p = subprocess.run(mpirun_prefix(np_) + [janus, "generate", "--model", MODEL, "--requests", REQ, "--out", out,
                                                     "--max-batch", "1", "--progress-interval", "0.05", *extra],
                               capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
            prog = [l for l in p.stderr.splitlines() if "progress:" in l]
            good = [LINE.match(l) for l in prog]
            done = [int(m.group(1)) for m in good if m]
            ok = (p.returncode == 0 and len(prog) >= 2 and all(good) and all(int(m.group(2)) == 32 for m in good)
                  and done == sorted(done))
            print(("ok   " if ok else "FAIL ") + f"np={np_}: {len(prog)} progress lines, well formed, totals 32, done never decreasing")
            if not ok:
                print(p.stderr[-1500:])
            passed, failed = passed + ok, failed + (not ok)
        q = subprocess.run([janus, "generate", "--model", MODEL, "--requests", REQ, "--out", os.path.join(tmp, "q.h5"),
                            "--quiet", "--progress-interval", "0.01"], capture_output=True, text=True, timeout=300)
        ok = q.returncode == 0 and q.stderr.strip() == "" and q.stdout.strip() == ""
        print(("ok   " if ok else "FAIL ") + "--quiet prints nothing on success")
        passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
