#!/usr/bin/env python3
"""test_layouts.py: the result file does not depend on the layout.

usage: test_layouts.py JANUS [FIXTURE_DIR ...]

For every fixture, runs janus generate under a list of layouts (monolithic
-np 1 and -np 3 expert-parallel; disaggregated 1+1, 1+2, 2+3; 2+2 with every
expert replicated twice; 1, 2, 3 micro-batches; the hierarchical path with
simulated nodes of 2 ranks) and compares each result file with the
single-rank one: tokens and finish reasons exact, logprobs within 1e-4,
/stats/expert_counts equal. The single-rank run itself is checked against
transformers' greedy tokens (expected.json), so the baseline is not assumed.
Also checks that the result attributes record the layout.

The host payload (comm/exchange.c): by default rows go out once per (token,
MoE rank) and the outputs come back summed on the MoE ranks. PAYLOAD runs
each mode (default, JANUS_XCHG_SUMS=0, JANUS_XCHG_DEDUP=0) on a few layouts
and checks the rank-0 payload line of the log: pairs P, rows out R, rows back
B, rows of pair indices and weights S (1+1: R = B = P / k; summed: B = R <=
P; SUMS=0: B = P; DEDUP=0: R = B = P, S = 0), two of them with the MoE
ranks' sums through the expert hook the GPU backend uses
(JANUS_XCHG_SUMS_HOOK=cpu: its tables, the CPU's experts). Where the sum cannot change the
arithmetic (one MoE rank; a row per pair back) the logprobs must equal the
single-rank ones bit for bit, and at top-k 2 in every run (a token's two
outputs add in one order whoever sums them); a summed run on several MoE
ranks at top-k > 2 adds each rank's part of a token's sum in another order,
so it gets the same tolerance as the layouts above (meson adds a top-k 4
fixture for that). With several MoE ranks, rows once per (token, MoE rank)
must be fewer than the pairs (R < P).
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import janus_h5  # noqa: E402
from golden import mpirun_prefix  # noqa: E402

LAYOUTS = [
    ("monolithic np3 m2", 3, ["--micro-batches", "2"]),
    ("1+1", 2, ["--attn-ranks", "1", "--moe-ranks", "1"]),
    ("1+2", 3, ["--attn-ranks", "1", "--moe-ranks", "2"]),
    ("2+3", 5, ["--attn-ranks", "2", "--moe-ranks", "3"]),
    ("2+2 replicas 2", 4, ["--attn-ranks", "2", "--moe-ranks", "2", "--expert-replicas", "2"]),
    ("1+2 m2", 3, ["--attn-ranks", "1", "--moe-ranks", "2", "--micro-batches", "2"]),
    ("2+3 m3 chunks", 5, ["--attn-ranks", "2", "--moe-ranks", "3", "--micro-batches", "3",
                          "--max-step-tokens", "24", "--max-batch", "3"]),
    ("2+2 hierarchical node 2", 4, ["--attn-ranks", "2", "--moe-ranks", "2", "--exchange", "hierarchical",
                                    "--node-size", "2", "--micro-batches", "2"]),
    ("1+3 replicate-hot 3 (stats of the single-rank run)", 4,
     ["--attn-ranks", "1", "--moe-ranks", "3", "--replicate-hot", "3", "--stats", "@BASE"]),
    ("plan auto on 3 ranks", 3, ["--plan", "auto"]),
    ("1+3 expert-slots from stats", 4,
     ["--attn-ranks", "1", "--moe-ranks", "3", "--expert-slots", "5", "--stats", "@BASE"]),
    ("3+3 hierarchical node 2 replicas 2", 6, ["--attn-ranks", "3", "--moe-ranks", "3", "--node-size", "2",
                                               "--exchange", "hierarchical", "--expert-replicas", "2"]),
]

# (label, np, args, env, exact, relation of (P, R, B, S, k)). Several MoE
# ranks with rows once per (token, MoE rank): R < P (some token has two pairs
# on one MoE rank in every fixture), so a silent fallback to a row per pair
# fails. exact: bit for bit at any top-k; at top-k 2 every row is (a token's
# two outputs add in one order whoever sums them).
PAYLOAD = [
    ("1+1 summed", 2, ["--attn-ranks", "1", "--moe-ranks", "1"], {}, True,
     lambda P, R, B, S, k: R == B == P // k and S > 0),
    ("1+2 summed", 3, ["--attn-ranks", "1", "--moe-ranks", "2"], {}, False,
     lambda P, R, B, S, k: B == R and P // k <= R < P and S > 0),
    ("1+2 JANUS_XCHG_SUMS=0", 3, ["--attn-ranks", "1", "--moe-ranks", "2"], {"JANUS_XCHG_SUMS": "0"}, True,
     lambda P, R, B, S, k: B == P and P // k <= R < P and S > 0),
    ("1+2 JANUS_XCHG_DEDUP=0", 3, ["--attn-ranks", "1", "--moe-ranks", "2"], {"JANUS_XCHG_DEDUP": "0"}, True,
     lambda P, R, B, S, k: R == B == P and S == 0),
    ("2+2 replicas 2 m2 summed", 4, ["--attn-ranks", "2", "--moe-ranks", "2", "--expert-replicas", "2",
                                     "--micro-batches", "2"], {}, False,
     lambda P, R, B, S, k: B == R and P // k <= R < P and S > 0),
    ("2+2 hierarchical node 2 summed", 4, ["--attn-ranks", "2", "--moe-ranks", "2", "--exchange", "hierarchical",
                                           "--node-size", "2"], {}, False,
     lambda P, R, B, S, k: B == R and P // k <= R < P and S > 0),
    # The GPU's expert hook's tables (token rows packed, each pair's row
    # gathered, the sums' CSR) through the CPU experts (JANUS_XCHG_SUMS_HOOK=
    # cpu, a test hook); 1-token steps on 4 MoE ranks leave ranks without
    # pairs on their first steps.
    ("1+1 summed through the experts hook", 2, ["--attn-ranks", "1", "--moe-ranks", "1"],
     {"JANUS_XCHG_SUMS_HOOK": "cpu"}, True, lambda P, R, B, S, k: R == B == P // k and S > 0),
    ("1+4 summed through the experts hook, 1-token steps", 5,
     ["--attn-ranks", "1", "--moe-ranks", "4", "--max-step-tokens", "1"], {"JANUS_XCHG_SUMS_HOOK": "cpu"}, False,
     lambda P, R, B, S, k: B == R and P // k <= R <= P and S > 0),
    # (payload() also runs one 1-token prompt through the hook on 4 MoE
    # ranks: at top-k < 4 some MoE rank has no pairs on its very first step.)
    ("3+3 hierarchical node 2 replicas 2 JANUS_XCHG_SUMS=0", 6,
     ["--attn-ranks", "3", "--moe-ranks", "3", "--node-size", "2", "--exchange", "hierarchical",
      "--expert-replicas", "2"], {"JANUS_XCHG_SUMS": "0"}, True,
     lambda P, R, B, S, k: B == P and R < P and S > 0),
]
PAYLOAD_RE = re.compile(r"host MPI exchange: (\d+) \(token, expert\) pairs went out as (\d+) rows and came back as "
                        r"(\d+) rows .*?; (\d+) rows of pair indices and weights")

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print("ok  ", what, flush=True)
    else:
        failed += 1
        print("FAIL", what, flush=True)


def run(janus, model, req, out, np_, extra, env=None, log=False):
    cmd = mpirun_prefix(np_) + [janus, "generate", "--model", model, "--requests", req, "--out", out] + \
        ([] if log else ["--quiet"]) + extra
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, **(env or {})))
    if p.returncode:
        return None, p.stderr[-1500:]
    return janus_h5.read_results(out), p.stderr


def payload(janus, name, fx, req, tmp, base, k):
    one = os.path.join(tmp, "one.h5")
    janus_h5.write_requests(one, [janus_h5.read_requests(req)["prompts"][0][:1]], [4])
    b1, err = run(janus, fx, one, os.path.join(tmp, "one_base.h5"), 0, [])
    r1, err1 = run(janus, fx, one, os.path.join(tmp, "one_hook.h5"), 5, ["--attn-ranks", "1", "--moe-ranks", "4"],
                   {"JANUS_XCHG_SUMS_HOOK": "cpu"})
    why = [f"janus failed: {(err if b1 is None else err1)[-300:]}"] if b1 is None or r1 is None else same(r1, b1)
    check(not why, f"{name}: payload 1+4 through the experts hook, one 1-token prompt (MoE ranks without pairs "
          "on the first step): result equals the single-rank one" + (": " + "; ".join(why[:3]) if why else ""))
    for label, np_, extra, env, exact, rel in PAYLOAD:
        res, err = run(janus, fx, req, os.path.join(tmp, "p.h5"), np_, extra, env, log=True)
        if res is None:
            check(False, f"{name}: payload {label}: janus failed: {err}")
            continue
        v = PAYLOAD_RE.search(err)
        if not v:
            check(False, f"{name}: payload {label}: no payload line in the log")
            continue
        P, R, B, S = (int(g) for g in v.groups())
        check(P > 0 and rel(P, R, B, S, k), f"{name}: payload {label}: {P} pairs, {R} rows out (+{S}), {B} back")
        why = same(res, base)
        if exact or k == 2:
            d = max([float(np.max(np.abs(x - y))) for x, y in zip(res["logprobs"], base["logprobs"]) if len(x)] or [0.0])
            if d != 0.0:
                why.append(f"logprobs differ by {d:.2e}, not bit for bit")
        check(not why, f"{name}: payload {label}: result equals the single-rank one"
              + (" bit for bit" if exact or k == 2 else "") + (": " + "; ".join(why[:3]) if why else ""))


def same(a, b):
    why = []
    if list(a["ids"]) != list(b["ids"]):
        why.append("ids differ")
    for i, (x, y) in enumerate(zip(a["tokens"], b["tokens"])):
        if not np.array_equal(x, y):
            why.append(f"request {i}: tokens {list(x)} != {list(y)}")
    d = max([float(np.max(np.abs(x - y))) for x, y in zip(a["logprobs"], b["logprobs"]) if len(x)] or [0.0])
    if d > 1e-4:
        why.append(f"logprobs differ by {d:.2e}")
    if not np.array_equal(a["finish_reason"], b["finish_reason"]):
        why.append("finish reasons differ")
    if not np.array_equal(a["expert_counts"], b["expert_counts"]):
        why.append("expert counts differ")
    return why


def main():
    janus = sys.argv[1]
    fixtures = sys.argv[2:] or [os.path.join(HERE, "fixtures", "dev", d)
                                for d in ("mixtral", "olmoe", "qwen2_moe", "qwen3_moe")]
    for fx in fixtures:
        name = os.path.basename(os.path.normpath(fx))
        exp = json.load(open(os.path.join(fx, "expected.json")))["requests"]
        with tempfile.TemporaryDirectory() as tmp:
            req = os.path.join(tmp, "r.h5")
            janus_h5.write_requests(req, [r["prompt"] for r in exp], [r["max_new_tokens"] for r in exp],
                                    ids=[r["id"] for r in exp])
            base, err = run(janus, fx, req, os.path.join(tmp, "base.h5"), 0, [])
            if base is None:
                check(False, f"{name}: single rank run: {err}")
                continue
            check(all([int(t) for t in x] == r["tokens"] for x, r in zip(base["tokens"], exp)),
                  f"{name}: single-rank baseline equals transformers' greedy tokens")
            k = json.load(open(os.path.join(fx, "config.json")))["num_experts_per_tok"]
            payload(janus, name, fx, req, tmp, base, k)
            for label, np_, extra in LAYOUTS:
                extra = [os.path.join(tmp, "base.h5") if x == "@BASE" else x for x in extra]
                res, err = run(janus, fx, req, os.path.join(tmp, "o.h5"), np_, extra)
                if res is None:
                    check(False, f"{name}: {label}: janus failed: {err}")
                    continue
                why = same(res, base)
                check(not why, f"{name}: {label} equals the single-rank result" + (": " + "; ".join(why[:3]) if why else ""))
                if label == "2+3":
                    plan = json.loads(res["attrs"]["plan"])
                    check(plan["mode"] == "disaggregated" and plan["attn_ranks"] == 2 and plan["moe_ranks"] == 3,
                          f"{name}: {label}: the plan attribute records the layout ({res['attrs']['plan']})")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
