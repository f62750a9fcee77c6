#!/usr/bin/env python3
"""test_sampling_layout.py: sampled generations do not depend on batching or
the rank layout, and degenerate sampling settings reduce to transformers'
greedy tokens.

usage: test_sampling_layout.py JANUS

Uses the bundled default model (inputs/model) and its transformers oracle
(inputs/expected.json).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import janus_h5  # noqa: E402
from golden import mpirun_prefix  # noqa: E402

MODEL = os.path.join(ROOT, "inputs", "model")
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print("ok  ", what)
    else:
        failed += 1
        print("FAIL", what)


def run(janus, req, out, np_=0, extra=(), env=None):
    cmd = mpirun_prefix(np_) + [janus, "generate", "--model", MODEL, "--requests", req, "--out", out, "--quiet", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, **(env or {})))
    if p.returncode:
        print(p.stderr)
        raise SystemExit(f"janus failed: {' '.join(cmd)}")
    return janus_h5.read_results(out)


def main():
    janus = sys.argv[1]
    exp = json.load(open(os.path.join(ROOT, "inputs", "expected.json")))["requests"]
    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory() as tmp:
        # 1. Sampled requests (varied temperature / top-k / top-p / seed) under
        #    several layouts and batch shapes give identical results.
        prompts = [rng.integers(0, 512, size=int(rng.integers(1, 90))).tolist() for _ in range(20)]
        n = len(prompts)
        req = os.path.join(tmp, "sampled.h5")
        janus_h5.write_requests(req, prompts, [int(rng.integers(1, 20)) for _ in range(n)],
                                temperature=[0.0 if i % 5 == 0 else 0.5 + 0.1 * (i % 7) for i in range(n)],
                                top_k=[[0, 5, 40][i % 3] for i in range(n)],
                                top_p=[[1.0, 0.9, 0.6][i % 3] for i in range(n)],
                                seed=[1000 + i for i in range(n)])
        # Several ranks sum a token's expert outputs per MoE rank first (the
        # exchange's default), another order than one rank's: logprobs within
        # 1e-4 (the layouts' contract) and the same tokens; with a row per
        # pair back (JANUS_XCHG_SUMS=0) every bit is the same.
        layouts = [(0, (), {}, 0), (2, ("--max-batch", "3", "--max-step-tokens", "16"), {}, 1e-4),
                   (3, ("--block-size", "4", "--max-batch", "2", "--max-step-tokens", "5"), {}, 1e-4),
                   (3, ("--block-size", "4", "--max-batch", "2", "--max-step-tokens", "5"), {"JANUS_XCHG_SUMS": "0"}, 0)]
        res = [run(janus, req, os.path.join(tmp, f"o{i}.h5"), np_, ex, env) for i, (np_, ex, env, _) in enumerate(layouts)]
        base = res[0]
        for (np_, ex, env, tol), r in zip(layouts[1:], res[1:]):
            same_tok = all(np.array_equal(a, b) for a, b in zip(base["tokens"], r["tokens"]))
            same_lp = all(np.allclose(a, b, atol=tol, rtol=0) for a, b in zip(base["logprobs"], r["logprobs"]))
            how = " ".join([f"{k}={v}" for k, v in env.items()] + list(ex))
            check(same_tok and same_lp, f"sampled results equal under np={np_} {how}" + (" bit for bit" if tol == 0 else ""))
        # 2. The sampler is exercised: greedy on the same prompts differs somewhere.
        req_g = os.path.join(tmp, "greedy.h5")
        janus_h5.write_requests(req_g, prompts, [len(t) for t in base["tokens"]])
        g = run(janus, req_g, os.path.join(tmp, "g.h5"))
        differ = sum(not np.array_equal(a, b) for a, b in zip(base["tokens"], g["tokens"]))
        check(differ >= 3, f"sampling changes the tokens of {differ} of {n} requests")
        # 3. top_k = 1 at temperature 1, and a tiny top_p, reduce to transformers' greedy tokens.
        ps = [r["prompt"] for r in exp]
        mx = [r["max_new_tokens"] for r in exp]
        for name, kw in [("top_k=1", dict(temperature=[1.0] * len(ps), top_k=[1] * len(ps))),
                         ("top_p=1e-6", dict(temperature=[0.7] * len(ps), top_p=[1e-6] * len(ps)))]:
            req_o = os.path.join(tmp, "o.h5")
            janus_h5.write_requests(req_o, ps, mx, seed=list(range(len(ps))), **kw)
            r = run(janus, req_o, os.path.join(tmp, "oo.h5"), 2)
            ok = all([int(t) for t in a] == b["tokens"] for a, b in zip(r["tokens"], exp))
            check(ok, f"{name} sampling gives transformers' greedy tokens")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
