#!/usr/bin/env python3
"""test_inspect.py: `janus inspect` on a model directory, a requests file, a
results file and on bad paths, checked against independent oracles (config.json,
the safetensors headers read here, janus_h5).

usage: python3 tests/test_inspect.py JANUS_BINARY
Prints one line per check and ends with "N passed, N failed"; exits 1 on failure.
"""
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import janus_h5  # noqa: E402

QWEN2 = os.path.join(ROOT, "tests", "fixtures", "dev", "qwen2_moe")
MIXTRAL = os.path.join(ROOT, "tests", "fixtures", "dev", "mixtral")

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name}{': ' + detail if detail else ''}")


def run(janus, *args):
    p = subprocess.run([janus, *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def inspect_json(janus, path, what):
    rc, out, err = run(janus, "inspect", path, "--json")
    check(f"{what}: inspect --json exits 0", rc == 0, f"rc {rc}, stderr {err.strip()!r}")
    try:
        obj = json.loads(out)
    except ValueError as ex:
        check(f"{what}: stdout is one JSON object", False, f"{ex}; stdout {out[:200]!r}")
        return None
    check(f"{what}: stdout is one JSON object", isinstance(obj, dict))
    rc, out, err = run(janus, "inspect", path)
    check(f"{what}: human output exits 0 and is non-empty", rc == 0 and len(out.strip().splitlines()) > 3,
          f"rc {rc}, stderr {err.strip()!r}")
    return obj


def safetensors_numel(model_dir):
    """Sum of numel over every tensor of every *.safetensors file (headers only)."""
    total = 0
    files = sorted(glob.glob(os.path.join(model_dir, "*.safetensors")))
    for path in files:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        for name, t in header.items():
            if name == "__metadata__":
                continue
            total += int(np.prod(t["shape"], dtype=np.int64))
    return total, len(files)


def dense_layers_of(cfg):
    """Layers without routed experts, by Hugging Face's rule (mlp_only_layers,
    decoder_sparse_step)."""
    n = cfg["num_hidden_layers"]
    only = set(cfg.get("mlp_only_layers") or [])
    step = cfg.get("decoder_sparse_step") or 1
    return [l for l in range(n) if l in only or (l + 1) % step != 0]


def test_model(janus):
    with open(os.path.join(QWEN2, "config.json")) as f:
        cfg = json.load(f)
    obj = inspect_json(janus, QWEN2, "model qwen2_moe")
    if obj is None:
        return
    dense = dense_layers_of(cfg)
    total, n_files = safetensors_numel(QWEN2)
    experts = cfg.get("num_experts", cfg.get("num_local_experts"))
    for key, want in (("kind", "model"), ("model_type", cfg["model_type"]), ("layers", cfg["num_hidden_layers"]),
                      ("experts", experts), ("top_k", cfg["num_experts_per_tok"]), ("dense_layers", len(dense)),
                      ("moe_layers", cfg["num_hidden_layers"] - len(dense)), ("dense_layer_ids", dense),
                      ("hidden", cfg["hidden_size"]), ("vocab", cfg["vocab_size"]),
                      ("moe_intermediate", cfg["moe_intermediate_size"]),
                      ("shared_intermediate", cfg["shared_expert_intermediate_size"]),
                      ("safetensors_files", n_files), ("parameters", total)):
        check(f"model qwen2_moe: {key} == {want}", obj.get(key) == want, f"got {obj.get(key)!r}")
    # Active per token: all but the (experts - top_k) routed experts a token skips.
    one = 3 * cfg["hidden_size"] * cfg["moe_intermediate_size"]
    active = total - (cfg["num_hidden_layers"] - len(dense)) * (experts - cfg["num_experts_per_tok"]) * one
    check(f"model qwen2_moe: active_parameters == {active}", obj.get("active_parameters") == active,
          f"got {obj.get('active_parameters')!r}")
    parts = obj.get("parameters_by_part", {})
    check("model qwen2_moe: parameters_by_part sums to parameters", sum(parts.values()) == total,
          f"{parts}")


def test_requests(janus, tmp):
    rng = np.random.default_rng(7)
    lens = [3, 9, 1, 17, 5, 12]
    prompts = [rng.integers(0, 200, size=k) for k in lens]
    max_new = [4, 8, 2, 6, 10, 3]
    temperature = [0.0, 0.7, 0.0, 1.0, 0.0, 0.0]
    path = os.path.join(tmp, "requests.h5")
    janus_h5.write_requests(path, prompts, max_new, temperature=temperature, seed=1)
    obj = inspect_json(janus, path, "requests")
    if obj is None:
        return
    pl = obj.get("prompt_len", {})
    mn = obj.get("max_new_tokens", {})
    for name, got, want in (("kind", obj.get("kind"), "requests"), ("n", obj.get("n"), len(prompts)),
                            ("prompt_tokens", obj.get("prompt_tokens"), sum(lens)),
                            ("prompt_len.min", pl.get("min"), min(lens)), ("prompt_len.max", pl.get("max"), max(lens)),
                            ("prompt_len.p50", pl.get("p50"), float(np.median(lens))),
                            ("max_new_tokens.total", mn.get("total"), sum(max_new)),
                            ("max_new_tokens.min", mn.get("min"), min(max_new)),
                            ("max_new_tokens.max", mn.get("max"), max(max_new)),
                            ("sampled", obj.get("sampled"), 2), ("greedy", obj.get("greedy"), 4)):
        check(f"requests: {name} == {want}", got == want, f"got {got!r}")
    mean = pl.get("mean")
    check("requests: prompt_len.mean", mean is not None and abs(mean - np.mean(lens)) < 1e-9, f"got {mean!r}")


def test_results(janus, tmp):
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8], [9], [10, 11, 12, 13]]
    max_new = [5, 7, 3, 6]
    req = os.path.join(tmp, "gen_requests.h5")
    out = os.path.join(tmp, "gen_results.h5")
    janus_h5.write_requests(req, prompts, max_new)
    rc, _, err = run(janus, "generate", "--model", MIXTRAL, "--requests", req, "--out", out, "--quiet")
    check("results: janus generate on mixtral exits 0", rc == 0, f"rc {rc}, stderr {err.strip()!r}")
    if rc != 0:
        return
    ref = janus_h5.read_results(out)
    obj = inspect_json(janus, out, "results")
    if obj is None:
        return
    gen = [len(t) for t in ref["tokens"]]
    fr = obj.get("finish_reason", {})
    per = obj.get("per_request", {})
    attrs = obj.get("attrs", {})
    for name, got, want in (("kind", obj.get("kind"), "results"), ("n", obj.get("n"), len(ref["ids"])),
                            ("generated_tokens", obj.get("generated_tokens"), sum(gen)),
                            ("per_request.min", per.get("min"), min(gen)),
                            ("per_request.max", per.get("max"), max(gen)),
                            ("finish_reason.eos", fr.get("eos"), int((ref["finish_reason"] == 1).sum())),
                            ("finish_reason.length", fr.get("length"), int((ref["finish_reason"] == 0).sum())),
                            ("attrs.model_type", attrs.get("model_type"), ref["attrs"].get("model_type")),
                            ("attrs.format", attrs.get("format"), "janus-results")):
        check(f"results: {name} == {want!r}", got == want, f"got {got!r}")
    check("results: every root attribute is reported", all(k in attrs for k in ref["attrs"]),
          f"missing {[k for k in ref['attrs'] if k not in attrs]}")
    counts = ref["expert_counts"]
    layers = obj.get("expert_load", {}).get("per_layer", [])
    ok = len(layers) == counts.shape[0]
    for l, row in enumerate(layers[:counts.shape[0]]):
        c = counts[l]
        ok = ok and row.get("distinct") == int((c > 0).sum())
        if c.sum() > 0:
            ok = ok and abs(row.get("max_over_mean") - c.max() / c.mean()) < 1e-9
    check("results: per-layer distinct experts and max/mean load match /stats/expert_counts", ok, f"{layers}")
    ttft = obj.get("ttft_s", {})
    check("results: ttft_s.mean", ttft.get("mean") is not None and abs(ttft["mean"] - ref["ttft_s"].mean()) < 1e-12,
          f"got {ttft!r}")


def test_errors(janus, tmp):
    other = os.path.join(tmp, "other.h5")
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something-else"
        f.create_dataset("x", data=np.arange(3))
    missing = os.path.join(tmp, "does_not_exist.h5")
    text = os.path.join(tmp, "notes.txt")
    with open(text, "w") as f:
        f.write("not hdf5\n")
    for what, path in (("non-janus HDF5 file", other), ("missing path", missing), ("text file", text),
                       ("directory without config.json", tmp)):
        for extra in ([], ["--json"]):
            rc, out, err = run(janus, "inspect", path, *extra)
            label = f"error: {what}{' --json' if extra else ''}"
            check(f"{label}: exit 2", rc == 2, f"rc {rc}")
            check(f"{label}: message names the path", f"janus: {path}:" in err, f"stderr {err.strip()!r}")
    rc, out, _ = run(janus, "inspect", "--help")
    check("inspect --help: exit 0 and usage on stdout", rc == 0 and "usage: janus inspect" in out, f"rc {rc}")
    rc, _, err = run(janus, "inspect")
    check("inspect without PATH: exit 2", rc == 2 and "janus:" in err, f"rc {rc}, stderr {err.strip()!r}")


def main():
    if len(sys.argv) != 2:
        print("usage: python3 tests/test_inspect.py JANUS_BINARY", file=sys.stderr)
        return 2
    janus = os.path.abspath(sys.argv[1])
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory(prefix="janus_inspect_") as tmp:
        test_model(janus)
        test_requests(janus, tmp)
        test_results(janus, tmp)
        test_errors(janus, tmp)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
