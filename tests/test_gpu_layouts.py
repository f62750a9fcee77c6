#!/usr/bin/env python3
"""test_gpu_layouts.py: GPU runs of several ranks give the tokens of one GPU rank.

usage: test_gpu_layouts.py JANUS FIXTURE_DIR [FIXTURE_DIR ...]

With --backend cuda, every rank takes a GPU (node-local rank mod visible GPUs),
so on a machine of one GPU all ranks share it and the exchange payload is
moved GPU to GPU through CUDA IPC (--transport auto on one node; the
hierarchical path and --transport mpi stage it through host MPI). For every fixture, the single-rank GPU run is the
baseline (itself checked against transformers by
gpu_greedy_matches_transformers_all_fixtures); then:

- layouts with one attention rank and one micro-batch (1+1, 1+2, 1+3 with
  every expert on two replicas) see the same batches, the same kernel variants
  and the same summation order as the baseline: tokens, finish reasons and
  expert counts exact, logprobs within 1e-5;
- layouts that reshape the batches (2 attention ranks, micro-batches,
  monolithic expert parallelism, the hierarchical path) change cuBLAS's shapes
  and so round differently: tokens exact wherever transformers' top-2 margin
  exceeds 0.05 along the request (expected.json's min_margin), logprobs within
  0.02 (a router near-tie may flip in a reshaped batch, so their expert
  counts are not compared).

Skips (exit 77) where no GPU is visible.
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import janus_h5  # noqa: E402
from golden import mpirun_prefix  # noqa: E402

EXACT = [
    ("1+1", 2, ["--attn-ranks", "1", "--moe-ranks", "1"]),
    ("1+2 host-staged", 3, ["--attn-ranks", "1", "--moe-ranks", "2", "--transport", "mpi"]),
    ("1+2", 3, ["--attn-ranks", "1", "--moe-ranks", "2"]),
    ("1+3 replicas 2", 4, ["--attn-ranks", "1", "--moe-ranks", "3", "--expert-replicas", "2"]),
]
RESHAPED = [
    ("1+2 m2", 3, ["--attn-ranks", "1", "--moe-ranks", "2", "--micro-batches", "2"]),
    ("2+2 replicas 2 m2", 4, ["--attn-ranks", "2", "--moe-ranks", "2", "--expert-replicas", "2",
                              "--micro-batches", "2"]),
    ("monolithic np2", 2, []),
    ("2+2 hierarchical node 2", 4, ["--attn-ranks", "2", "--moe-ranks", "2", "--exchange", "hierarchical",
                                    "--node-size", "2"]),
]


def gpu_visible():
    try:
        p = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0 and "GPU" in p.stdout


def run(janus, fixture, np_, extra, tmp, name):
    out = os.path.join(tmp, name.replace(" ", "_").replace("+", "p") + ".h5")
    cmd = mpirun_prefix(np_) + [janus, "generate", "--model", fixture, "--requests", os.path.join(tmp, "req.h5"),
                                "--out", out, "--quiet", "--backend", "cuda"] + extra
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        return None, f"janus exited {p.returncode}: {p.stderr.strip()[-1500:]}"
    return janus_h5.read_results(out), None


def compare(base, res, reqs, exact):
    errs = []
    if list(res["ids"]) != list(base["ids"]):
        return ["ids differ"]
    for i, r in enumerate(reqs):
        safe = exact or r["min_margin"] > 0.05
        a, b = [int(t) for t in res["tokens"][i]], [int(t) for t in base["tokens"][i]]
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        if safe and (a != b or int(res["finish_reason"][i]) != int(base["finish_reason"][i])):
            errs.append(f"request {r['id']}: tokens {a} != one-rank {b}")
            continue
        tol = 1e-5 if exact else 0.02
        d = max([abs(float(x) - float(y)) for x, y in zip(res["logprobs"][i][:n], base["logprobs"][i][:n])] or [0.0])
        if d > tol:
            errs.append(f"request {r['id']}: logprob differs by {d:.2e} > {tol:g}")
    # Reshaped batches may tip a router near-tie (the margins above are the
    # lm_head's), so only same-shape layouts must route identically.
    if exact and (res["expert_counts"] != base["expert_counts"]).any():
        errs.append("/stats/expert_counts differ")
    return errs


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    if not gpu_visible():
        print("SKIP: no GPU visible")
        return 77
    janus, fixtures = sys.argv[1], sys.argv[2:]
    passed = failed = 0
    for fx in fixtures:
        exp = json.load(open(os.path.join(fx, "expected.json")))
        reqs = exp["requests"]
        with tempfile.TemporaryDirectory() as tmp:
            janus_h5.write_requests(os.path.join(tmp, "req.h5"), [r["prompt"] for r in reqs],
                                    [r["max_new_tokens"] for r in reqs], ids=[r["id"] for r in reqs])
            base, err = run(janus, fx, 1, [], tmp, "base")
            if err:
                print(f"FAIL {os.path.basename(fx)} one rank: {err}")
                failed += 1
                continue
            for layouts, exact in ((EXACT, True), (RESHAPED, False)):
                for name, np_, extra in layouts:
                    res, err = run(janus, fx, np_, extra, tmp, name)
                    errs = [err] if err else compare(base, res, reqs, exact)
                    tag = f"{os.path.basename(fx)} {name} ({np_} ranks on the GPU{'s' if np_ > 1 else ''})"
                    if errs:
                        failed += 1
                        print(f"FAIL {tag}: " + "; ".join(errs[:4]))
                    else:
                        passed += 1
                        print(f"ok   {tag}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
