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

With CUDA IPC, decode-sized steps are scheduled and routed on every rank's
GPU (JANUS_XCHG_SCHED=gpu, the default); the layouts in SCHED_SAME run again
with JANUS_XCHG_SCHED=host (the C scheduler and host-built routing) and must
give identical result files (tokens, finish reasons, expert counts, logprobs
bit for bit), and the log must show that the default run did route on the
GPUs and the host run did not. Those steps send each token's row once per MoE
rank; the layouts in DEDUP_SAME run again with JANUS_XCHG_DEDUP=0 (a row per
pair) and must give identical result files too. Decode outputs come back
once per (token, MoE rank), summed on the MoE rank (JANUS_XCHG_SUMS): 1+1,
one MoE rank, gets the combine's own sum and stays exact and equal to its
host-routed run (whose sums are built from the host's tables); the layouts in SUMS_OFF (several MoE
ranks) run their exact and same-file checks with JANUS_XCHG_SUMS=0 and once
more with the default, checked as reshaped, and that default run must equal
its host-routed run (JANUS_XCHG_SCHED=host: the sums' headers built on the
host) bit for bit. The host-staged payload (--transport mpi) sends rows once
per (token, MoE rank) and sums on the MoE ranks' hosts the same way: 1+1
host-staged is exact, 1+2 host-staged is in SUMS_OFF, and every host-staged
run's payload line must say what it moved.

Where the machine has at least as many GPUs as a layout has ranks, the
layouts in NCCL_EXACT and NCCL_RESHAPED run too, one GPU per rank with the
payload over NCCL (--transport nccl: NCCL refuses two ranks on one GPU), with
the same checks; on fewer GPUs each prints a "skip" line naming the GPUs it
needs.

The CUDA-aware MPI transport (--transport cuda-mpi, the layouts in CMPI)
runs with JANUS_CUDA_MPI_MANAGED=1 (its buffers in managed memory, which an
MPI that is not CUDA-aware reads and writes from the host), exact or
reshaped like the others, and must say it ran; asked for where the MPI is not
CUDA-aware (JANUS_CUDA_AWARE_MPI=0) without that hook, it must stop with one
clear error.

Skips (exit 77) where no GPU is visible.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import janus_h5  # noqa: E402
from golden import mpirun_prefix  # noqa: E402

EXACT = [
    ("1+1", 2, ["--attn-ranks", "1", "--moe-ranks", "1"]),
    ("1+1 host-staged", 2, ["--attn-ranks", "1", "--moe-ranks", "1", "--transport", "mpi"]),
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
# One GPU per rank (the test's GPU count decides which run).
NCCL_EXACT = [
    ("1+1 nccl", 2, ["--attn-ranks", "1", "--moe-ranks", "1", "--transport", "nccl"]),
    ("1+3 nccl", 4, ["--attn-ranks", "1", "--moe-ranks", "3", "--transport", "nccl"]),
    ("1+3 replicas 2 nccl", 4, ["--attn-ranks", "1", "--moe-ranks", "3", "--expert-replicas", "2",
                                "--transport", "nccl"]),
]
NCCL_RESHAPED = [
    ("monolithic np2 nccl", 2, ["--transport", "nccl"]),
    ("1+1 m2 nccl", 2, ["--attn-ranks", "1", "--moe-ranks", "1", "--micro-batches", "2", "--transport", "nccl"]),
    ("2+2 nccl", 4, ["--attn-ranks", "2", "--moe-ranks", "2", "--transport", "nccl"]),
    ("2+2 m2 nccl", 4, ["--attn-ranks", "2", "--moe-ranks", "2", "--micro-batches", "2", "--transport", "nccl"]),
    ("monolithic np4 nccl", 4, ["--transport", "nccl"]),
]
SCHED_SAME = ["1+1", "1+2", "1+3 replicas 2", "2+2 replicas 2 m2"]
# Rows sent once per (token, MoE rank) (the default) against once per
# pair (JANUS_XCHG_DEDUP=0): identical result files.
DEDUP_SAME = ["1+2", "2+2 replicas 2 m2"]
# The CUDA-aware MPI transport (--transport cuda-mpi) on an MPI that is not
# CUDA-aware: JANUS_CUDA_MPI_MANAGED=1 puts its buffers in managed memory,
# which host MPI reads and writes, so the transport's code runs here. It sums
# the outputs per (token, MoE rank) as CUDA IPC does (JANUS_XCHG_SUMS=0: a
# row per pair each way): exact where the batches keep their shape and one
# MoE rank holds a token's pairs (or per pair), reshaped otherwise; each
# run's payload line must match (name, ranks, args, exact, JANUS_XCHG_SUMS).
_1P2 = ["--attn-ranks", "1", "--moe-ranks", "2", "--transport", "cuda-mpi"]
CMPI = [
    ("1+1 cuda-mpi", 2, ["--attn-ranks", "1", "--moe-ranks", "1", "--transport", "cuda-mpi"], True, None),
    ("1+2 cuda-mpi per pair", 3, _1P2, True, 0),
    ("1+2 cuda-mpi", 3, _1P2, False, None),
    ("2+2 m2 cuda-mpi", 4, ["--attn-ranks", "2", "--moe-ranks", "2", "--micro-batches", "2", "--transport", "cuda-mpi"],
     False, None),
    ("monolithic np2 cuda-mpi", 2, ["--transport", "cuda-mpi"], False, None),
]
# Decode outputs come back summed per (token, MoE rank) (JANUS_XCHG_SUMS,
# default 1). With one MoE rank the sum is the combine's own, to the bit (1+1
# above: exact, and equal to its host-routed run); with several a token's sum
# is cut at the MoE ranks, so these
# layouts' exact and same-file checks run with JANUS_XCHG_SUMS=0, and a
# default run is checked as a reshaped layout.
SUMS_OFF = ["1+2", "1+3 replicas 2", "2+2 replicas 2 m2", "1+2 host-staged"]


def gpus_visible():
    """The number of GPUs this process may use (CUDA_VISIBLE_DEVICES, else nvidia-smi -L)."""
    try:
        p = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    n = sum(line.startswith("GPU ") for line in p.stdout.splitlines()) if p.returncode == 0 else 0
    vis = os.environ.get("CUDA_VISIBLE_DEVICES")
    if vis is not None and n:
        n = min(n, len([d for d in vis.split(",") if d.strip()]))
    return n


def run(janus, fixture, np_, extra, tmp, name, sched=None, dedup=None, sums=None, env_extra=None, log=False):
    """Results of one layout, or None and the error, and what its log says;
    sched: JANUS_XCHG_SCHED for the run (then it logs: info["gpu"] the
    (layer, micro-batch)s routed on the GPUs, info["summed"] whether its
    outputs came back summed on the MoE ranks, info["payload"] rank 0's
    (pairs, rows out, rows back)); dedup: JANUS_XCHG_DEDUP; sums:
    JANUS_XCHG_SUMS."""
    tag = (f"_{sched}" if sched else "") + (f"_dedup{dedup}" if dedup is not None else "") + \
        (f"_sums{sums}" if sums is not None else "")
    out = os.path.join(tmp, name.replace(" ", "_").replace("+", "p") + tag + ".h5")
    env = dict(os.environ)
    for var in ("JANUS_XCHG_SCHED", "JANUS_XCHG_DEDUP", "JANUS_XCHG_SUMS"):
        env.pop(var, None)
    if sched:
        env["JANUS_XCHG_SCHED"] = sched
    if dedup is not None:
        env["JANUS_XCHG_DEDUP"] = str(dedup)
    if sums is not None:
        env["JANUS_XCHG_SUMS"] = str(sums)
    env.update(env_extra or {})
    cmd = mpirun_prefix(np_) + [janus, "generate", "--model", fixture, "--requests", os.path.join(tmp, "req.h5"),
                                "--out", out, "--backend", "cuda"] + ([] if sched or env_extra or log else ["--quiet"]) + extra
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if p.returncode != 0:
        return None, f"janus exited {p.returncode}: {p.stderr.strip()[-1500:]}", {}
    m = re.search(r"exchange: (\d+) of (\d+) \(layer, micro-batch\)s scheduled and routed on the GPUs", p.stderr)
    v = re.search(r"exchange: (\d+) \(token, expert\) pairs went out as (\d+) rows and came back as (\d+) rows",
                  p.stderr)
    info = {"gpu": int(m.group(1)) if m else None, "log": p.stderr,
            "summed": "outputs back once per (token, MoE rank), summed there" in p.stderr,
            "payload": tuple(int(g) for g in v.groups()) if v else None}
    return janus_h5.read_results(out), None, info


def payload_errs(info, k, want):
    """Rank 0's payload against what the run should move: want "sums" (rows
    out = rows back <= pairs; one MoE rank: pairs = k x rows), "dedup" (rows
    out <= pairs, a row per pair back) or "pairs" (a row per pair both ways)."""
    if not info.get("payload"):
        return ["the log gave no payload line"]
    pairs, out, back = info["payload"]
    ok = pairs > 0 and {"sums": out == back <= pairs and (k is None or pairs == k * out),
                        "dedup": out <= pairs and back == pairs,
                        "pairs": out == back == pairs}[want]
    return [] if ok else [f"payload {pairs} pairs, {out} rows out, {back} back: not {want}"]


def identical(a, b):
    """Differences between two result files that must be the same, bit for bit."""
    errs = []
    for key in ("ids", "finish_reason", "expert_counts"):
        if a[key].shape != b[key].shape or (a[key] != b[key]).any():
            errs.append(f"{key} differ")
    for key in ("tokens", "logprobs"):
        if len(a[key]) != len(b[key]) or any(x.shape != y.shape or (x.view("u4") != y.view("u4")).any()
                                             for x, y in zip(a[key], b[key])):
            errs.append(f"{key} differ")
    return errs


def tally(tag, errs):
    """Prints one check's line; True when it passed."""
    if errs:
        print(f"FAIL {tag}: " + "; ".join(errs[:4]))
        return False
    print(f"ok   {tag}")
    return True


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
    n_gpus = gpus_visible()
    if not n_gpus:
        print("SKIP: no GPU visible")
        return 77
    janus, fixtures = sys.argv[1], sys.argv[2:]
    print(f"{n_gpus} GPU{'s' if n_gpus > 1 else ''} visible")
    passed = failed = 0
    for fx in fixtures:
        exp = json.load(open(os.path.join(fx, "expected.json")))
        reqs = exp["requests"]
        with tempfile.TemporaryDirectory() as tmp:
            janus_h5.write_requests(os.path.join(tmp, "req.h5"), [r["prompt"] for r in reqs],
                                    [r["max_new_tokens"] for r in reqs], ids=[r["id"] for r in reqs])
            base, err, _ = run(janus, fx, 1, [], tmp, "base")
            top_k = json.load(open(os.path.join(fx, "config.json"))).get("num_experts_per_tok")
            if err:
                print(f"FAIL {os.path.basename(fx)} one rank: {err}")
                failed += 1
                continue
            for layouts, exact in ((EXACT, True), (RESHAPED, False), (NCCL_EXACT, True), (NCCL_RESHAPED, False)):
                for name, np_, extra in layouts:
                    if "nccl" in extra and np_ > n_gpus:
                        print(f"skip {os.path.basename(fx)} {name}: needs {np_} GPUs, {n_gpus} visible")
                        continue
                    same = name in SCHED_SAME
                    sums = 0 if name in SUMS_OFF else None
                    staged = "mpi" in extra or "hierarchical" in extra # the host-staged payload
                    res, err, info = run(janus, fx, np_, extra, tmp, name, "gpu" if same else None, sums=sums, log=staged)
                    errs = [err] if err else compare(base, res, reqs, exact)
                    if staged and not err:
                        if "host MPI exchange:" not in info["log"]:
                            errs.append("the log gives no host MPI payload line")
                        one = "--moe-ranks" in extra and extra[extra.index("--moe-ranks") + 1] == "1"
                        errs += payload_errs(info, top_k if one else None, "dedup" if sums == 0 else "sums")
                    where = (f"{np_} ranks, one per GPU" if "nccl" in extra
                             else f"{np_} ranks on {min(np_, n_gpus)} GPU{'s' if min(np_, n_gpus) > 1 else ''}")
                    ok = tally(f"{os.path.basename(fx)} {name} ({where})", errs)
                    passed, failed = passed + ok, failed + (not ok)
                    if sums == 0 and not err:
                        res_sums, err2, _ = run(janus, fx, np_, extra, tmp, name)
                        ok = tally(f"{os.path.basename(fx)} {name}: outputs summed on the MoE ranks (as reshaped)",
                                   [err2] if err2 else compare(base, res_sums, reqs, False))
                        passed, failed = passed + ok, failed + (not ok)
                        if not err2: # summed on the host's routing: the same sums, the same bits
                            host_sums, err3, hinfo = run(janus, fx, np_, extra, tmp, name, "host")
                            errs = [err3] if err3 else identical(res_sums, host_sums) + payload_errs(hinfo, None, "sums")
                            if not err3 and not hinfo["summed"]:
                                errs.append("the host-routed run did not say its outputs came back summed")
                            ok = tally(f"{os.path.basename(fx)} {name}: outputs summed, host-routed = GPU-routed", errs)
                            passed, failed = passed + ok, failed + (not ok)
                    if not same or err:
                        continue
                    host, err, hinfo = run(janus, fx, np_, extra, tmp, name, "host", sums=sums)
                    errs = [err] if err else identical(res, host)
                    n_gpu = info["gpu"]
                    if not err and not n_gpu:
                        errs.append(f"the default run routed {n_gpu} (layer, micro-batch)s on the GPUs")
                    if not err and info["summed"] != (sums is None):
                        errs.append(f"the GPU-routed run {'did not say' if sums is None else 'said'} its outputs "
                                    "came back summed on the MoE ranks")
                    if not err and hinfo["gpu"] != 0:
                        errs.append(f"the JANUS_XCHG_SCHED=host run routed {hinfo['gpu']} on the GPUs")
                    if not err: # rank 0's payload: summed (one MoE rank: a row per token) or rows out once, back per pair
                        one = extra[extra.index("--moe-ranks") + 1] == "1" if "--moe-ranks" in extra else False
                        want = "sums" if sums is None else "dedup"
                        errs += payload_errs(info, top_k if one else None, want)
                        errs += payload_errs(hinfo, top_k if one else None, want)
                    ok = tally(f"{os.path.basename(fx)} {name}: schedule on the GPUs ({n_gpu} routed there) = on the host", errs)
                    passed, failed = passed + ok, failed + (not ok)
                    if name not in DEDUP_SAME:
                        continue
                    per_pair, err, pinfo = run(janus, fx, np_, extra, tmp, name, "gpu", dedup=0, sums=sums)
                    errs = [err] if err else identical(res, per_pair) + payload_errs(pinfo, None, "pairs")
                    ok = tally(f"{os.path.basename(fx)} {name}: rows once per (token, MoE rank) = once per pair", errs)
                    passed, failed = passed + ok, failed + (not ok)
            for name, np_, extra, exact, sums in CMPI:
                res, err, info = run(janus, fx, np_, extra, tmp, name, sums=sums,
                                     env_extra={"JANUS_CUDA_MPI_MANAGED": "1"})
                errs = [err] if err else compare(base, res, reqs, exact)
                if not err and "exchange payload GPU to GPU through a CUDA-aware MPI" not in info["log"]:
                    errs.append("the log does not name the CUDA-aware MPI transport")
                if not err:
                    one = "--moe-ranks" in extra and extra[extra.index("--moe-ranks") + 1] == "1"
                    errs += payload_errs(info, top_k if one else None, "pairs" if sums == 0 else "sums")
                ok = tally(f"{os.path.basename(fx)} {name} (managed buffers, {np_} ranks on {min(np_, n_gpus)} GPU"
                           f"{'s' if min(np_, n_gpus) > 1 else ''})", errs)
                passed, failed = passed + ok, failed + (not ok)
            # Asked for on an MPI that does not say it is CUDA-aware, without the test hook: one clear error.
            if fx == fixtures[0]:
                _, err, _ = run(janus, fx, 3, _1P2, tmp, "cmpi refused",
                                env_extra={"JANUS_CUDA_AWARE_MPI": "0", "JANUS_CUDA_MPI_MANAGED": "0"})
                ok = tally(f"{os.path.basename(fx)} --transport cuda-mpi refused where the MPI is not CUDA-aware",
                           [] if err and "not CUDA-aware" in err else [f"not refused clearly: {err}"])
                passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
