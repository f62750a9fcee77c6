#!/usr/bin/env python3
"""test_bad_input.py: bad input of every kind gets one clear message and a
non-zero exit (DESIGN section 8, last paragraph).

usage: python3 tests/test_bad_input.py build/janus

Every broken input is built in a temporary directory from good fixtures
(tests/fixtures/dev/mixtral, tests/fixtures/dev/qwen2_moe and, for sharding,
tests/fixtures/holdout/qwen2_moe_gqa3_sparse2), then

  janus generate --model M --requests R --out OUT --quiet

is run directly and, for a few representative cases, under
  mpirun --oversubscribe --allow-run-as-root -np 2 --mca btl self,vader,tcp

For each case: the exit status is non-zero; stderr has exactly one line that
starts with "janus:" (Open MPI's own banner lines are ignored) and that line
holds every substring the case expects (the file and the field / tensor /
dataset at fault); no file exists at OUT and no OUT.tmp.* is left; and the run
ends within 60 s. One positive control (the unbroken fixture) must exit 0.
"""
import glob
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import janus_h5  # noqa: E402

FIX_MIXTRAL = os.path.join(ROOT, "tests", "fixtures", "dev", "mixtral")
FIX_QWEN2 = os.path.join(ROOT, "tests", "fixtures", "dev", "qwen2_moe")
FIX_SHARDED = os.path.join(ROOT, "tests", "fixtures", "holdout", "qwen2_moe_gqa3_sparse2")
TIMEOUT_S = 60
VERBOSE = os.environ.get("VERBOSE") == "1"  # also print each case's message
MPI = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", "2", "--mca", "btl", "self,vader,tcp"]


# ---- safetensors helpers ---------------------------------------------------

def st_read(path):
    """(header dict, data bytes) of a safetensors file."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def st_write_raw(path, header, data):
    """Write header + data as they are (the header may lie)."""
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        f.write(data)


def st_rewrite_without(path, drop):
    """Rewrite a safetensors file with tensor `drop` left out (a valid file)."""
    header, data = st_read(path)
    out_h, chunks, at = {}, [], 0
    for name, v in header.items():
        if name == "__metadata__":
            out_h[name] = v
            continue
        if name == drop:
            continue
        b, e = v["data_offsets"]
        chunks.append(data[b:e])
        out_h[name] = dict(v, data_offsets=[at, at + (e - b)])
        at += e - b
    assert drop in header, drop
    st_write_raw(path, out_h, b"".join(chunks))


# ---- building the cases ----------------------------------------------------

class Env:
    def __init__(self, tmp):
        self.tmp = tmp
        self.n = 0
        # Good requests for mixtral / qwen2_moe (vocab 256, context 512).
        self.good_req = os.path.join(tmp, "good_requests.h5")
        janus_h5.write_requests(self.good_req, [[1, 2, 3, 4, 5], [7, 8, 9], [10, 11, 12, 13]], 3, ids=[100, 101, 102])

    def case_dir(self, name):
        d = os.path.join(self.tmp, f"{self.n:02d}_{name}")
        self.n += 1
        os.makedirs(os.path.join(d, "out"))
        return d

    def model_copy(self, d, fixture=FIX_MIXTRAL):
        m = os.path.join(d, "model_" + os.path.basename(fixture))
        shutil.copytree(fixture, m)
        for p in glob.glob(os.path.join(m, "*")):
            os.chmod(p, 0o644)
        return m


def edit_config(model, **changes):
    p = os.path.join(model, "config.json")
    with open(p) as f:
        c = json.load(f)
    for k, v in changes.items():
        if v is DELETE:
            c.pop(k, None)
        else:
            c[k] = v
    with open(p, "w") as f:
        json.dump(c, f, indent=2)
    return p


DELETE = object()


def build_cases(env):
    """Each case: dict(name, model, requests, argv (optional, replaces the
    usual args), expect (list of substrings; a tuple means any one of them),
    out, mpi (bool: also run under mpirun), ok (positive control))."""
    cases = []

    def add(name, model=None, requests=None, expect=(), argv=None, mpi=False, ok=False, d=None, out=None):
        d = d or env.case_dir(name)
        out = out or os.path.join(d, "out", "out.h5")
        cases.append(dict(name=name, model=model, requests=requests or env.good_req, expect=list(expect),
                          argv=argv, mpi=mpi, ok=ok, out=out))

    # -- positive control
    add("control_mixtral", model=FIX_MIXTRAL, ok=True, mpi=True)
    add("control_sharded", model=FIX_SHARDED, ok=True)
    d = env.case_dir("control_use_sliding_window_without_window")
    m = env.model_copy(d, FIX_QWEN2)
    edit_config(m, use_sliding_window=True, sliding_window=None)  # no window: full attention
    add("control_use_sliding_window_without_window", model=m, ok=True, d=d)

    # -- model directory and config.json
    d = env.case_dir("model_dir_missing")
    missing = os.path.join(d, "no_such_model")
    add("model_dir_missing", model=missing, expect=[missing, "model directory"], d=d)

    d = env.case_dir("model_dir_is_a_file")
    notdir = os.path.join(d, "model_file")
    with open(notdir, "w") as f:
        f.write("{}")
    add("model_dir_is_a_file", model=notdir, expect=[notdir, "model directory"], d=d)

    d = env.case_dir("config_missing")
    m = env.model_copy(d)
    os.unlink(os.path.join(m, "config.json"))
    add("config_missing", model=m, expect=[os.path.join(m, "config.json")], d=d)

    d = env.case_dir("config_invalid_json")
    m = env.model_copy(d)
    p = os.path.join(m, "config.json")
    with open(p) as f:
        text = f.read()
    with open(p, "w") as f:
        f.write(text.replace('"hidden_size": 64,', '"hidden_size": 64,,', 1))
    add("config_invalid_json", model=m, expect=[p, "JSON"], d=d)

    d = env.case_dir("config_model_type")
    m = env.model_copy(d)
    p = edit_config(m, model_type="deepseek_v3")
    add("config_model_type", model=m, expect=[p, "model_type", "deepseek_v3"], d=d, mpi=True)

    d = env.case_dir("config_sliding_window")
    m = env.model_copy(d)
    p = edit_config(m, sliding_window=4096)
    add("config_sliding_window", model=m, expect=[p, "sliding_window"], d=d)

    d = env.case_dir("config_sliding_window_qwen2")
    m = env.model_copy(d, FIX_QWEN2)
    p = edit_config(m, sliding_window=4096, use_sliding_window=True)
    add("config_sliding_window_qwen2", model=m, expect=[p, "sliding_window"], d=d)

    d = env.case_dir("config_rope_yarn")
    m = env.model_copy(d)
    p = edit_config(m, rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128})
    add("config_rope_yarn", model=m, expect=[p, "rope", "yarn"], d=d)

    d = env.case_dir("config_rope_parameters_yarn")
    m = env.model_copy(d, FIX_QWEN2)
    p = edit_config(m, rope_parameters={"rope_theta": 1000000.0, "rope_type": "yarn", "factor": 4.0})
    add("config_rope_parameters_yarn", model=m, expect=[p, "rope", "yarn"], d=d)

    d = env.case_dir("config_hidden_act")
    m = env.model_copy(d)
    p = edit_config(m, hidden_act="gelu")
    add("config_hidden_act", model=m, expect=[p, "hidden_act", "gelu"], d=d)

    d = env.case_dir("config_top_k_gt_experts")
    m = env.model_copy(d)
    p = edit_config(m, num_experts_per_tok=9)
    add("config_top_k_gt_experts", model=m, expect=[p, "num_experts_per_tok"], d=d)

    d = env.case_dir("config_hidden_act_not_string")
    m = env.model_copy(d)
    p = edit_config(m, hidden_act=5)
    add("config_hidden_act_not_string", model=m, expect=[p, "hidden_act"], d=d)

    d = env.case_dir("config_zero_experts")
    m = env.model_copy(d)
    p = edit_config(m, num_local_experts=0)
    add("config_zero_experts", model=m, expect=[p, "num_local_experts"], d=d)

    d = env.case_dir("config_eos_outside_int32")
    m = env.model_copy(d)
    os.unlink(os.path.join(m, "generation_config.json"))
    p = edit_config(m, eos_token_id=2**32 + 5)  # would wrap to 5 when cast to int32
    add("config_eos_outside_int32", model=m, expect=[p, "eos_token_id"], d=d)

    d = env.case_dir("config_missing_field")
    m = env.model_copy(d, FIX_QWEN2)
    p = edit_config(m, moe_intermediate_size=DELETE)
    add("config_missing_field", model=m, expect=[p, "moe_intermediate_size"], d=d)

    d = env.case_dir("generation_config_invalid")
    m = env.model_copy(d)
    p = os.path.join(m, "generation_config.json")
    with open(p, "w") as f:
        f.write("{ not json")
    add("generation_config_invalid", model=m, expect=[p, "JSON"], d=d)

    # -- safetensors
    d = env.case_dir("st_truncated")
    m = env.model_copy(d)
    p = os.path.join(m, "model.safetensors")
    header, data = st_read(p)
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.truncate(size - 1000)
    cut = len(data) - 1000
    beyond = tuple("tensor " + k for k, v in header.items() if k != "__metadata__" and v["data_offsets"][1] > cut)
    add("st_truncated", model=m, expect=[p, beyond], d=d, mpi=True)

    d = env.case_dir("st_header_lies")
    m = env.model_copy(d)
    p = os.path.join(m, "model.safetensors")
    header, data = st_read(p)
    victim = "model.layers.0.self_attn.q_proj.weight"
    b, e = header[victim]["data_offsets"]
    header[victim]["data_offsets"] = [b, e - 256]  # inside the file, but not shape x dtype
    st_write_raw(p, header, data)
    add("st_header_lies", model=m, expect=[p, victim], d=d)

    d = env.case_dir("st_header_length_too_big")
    m = env.model_copy(d)
    p = os.path.join(m, "model.safetensors")
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.write(struct.pack("<Q", size + 100))
    add("st_header_length_too_big", model=m, expect=[p, "header"], d=d)

    d = env.case_dir("st_header_not_json")
    m = env.model_copy(d)
    p = os.path.join(m, "model.safetensors")
    with open(p, "r+b") as f:
        f.seek(8)
        f.write(b"[[[[")
    add("st_header_not_json", model=m, expect=[p, "header"], d=d)

    d = env.case_dir("st_header_json_array")
    m = env.model_copy(d)
    p = os.path.join(m, "model.safetensors")
    header, data = st_read(p)
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", 8) + b"[1]     " + data)
    add("st_header_json_array", model=m, expect=[p, "header", "not an object"], d=d)

    d = env.case_dir("st_shape_overflow")  # 2^32 x 2^32 x 4 bytes wraps to 0 in 64 bits
    m = env.model_copy(d)
    p = os.path.join(m, "model.safetensors")
    header, data = st_read(p)
    header["model.extra.weight"] = {"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 0]}
    st_write_raw(p, header, data)
    add("st_shape_overflow", model=m, expect=[p, "model.extra.weight", "shape"], d=d)

    d = env.case_dir("st_missing_tensor")
    m = env.model_copy(d)
    victim = "model.layers.1.block_sparse_moe.experts.3.w2.weight"
    st_rewrite_without(os.path.join(m, "model.safetensors"), victim)
    add("st_missing_tensor", model=m, expect=[m, victim], d=d)

    d = env.case_dir("st_missing_expert0_w1")  # the tensor the naming scheme was guessed from
    m = env.model_copy(d)
    victim = "model.layers.0.block_sparse_moe.experts.0.w1.weight"
    st_rewrite_without(os.path.join(m, "model.safetensors"), victim)
    add("st_missing_expert0_w1", model=m, expect=[m, victim], d=d)

    d = env.case_dir("st_missing_router")  # the tensor the block prefix was guessed from
    m = env.model_copy(d)
    victim = "model.layers.1.block_sparse_moe.gate.weight"
    st_rewrite_without(os.path.join(m, "model.safetensors"), victim)
    add("st_missing_router", model=m, expect=[m, victim], d=d)

    d = env.case_dir("st_missing_fused_gate_up")
    m = env.model_copy(d, FIX_QWEN2)
    victim = "model.layers.0.mlp.experts.gate_up_proj"
    st_rewrite_without(os.path.join(m, "model.safetensors"), victim)
    add("st_missing_fused_gate_up", model=m, expect=[m, victim], d=d)

    d = env.case_dir("st_missing_fused_experts")
    m = env.model_copy(d, FIX_QWEN2)
    victim = "model.layers.2.mlp.experts.down_proj"
    st_rewrite_without(os.path.join(m, "model.safetensors"), victim)
    add("st_missing_fused_experts", model=m, expect=[m, victim], d=d)

    d = env.case_dir("st_wrong_shape")
    m = env.model_copy(d)
    p = os.path.join(m, "model.safetensors")
    header, data = st_read(p)
    victim = "model.layers.0.self_attn.k_proj.weight"
    header[victim]["shape"] = header[victim]["shape"][::-1]  # same size, transposed
    st_write_raw(p, header, data)
    add("st_wrong_shape", model=m, expect=[p, victim, "shape"], d=d)

    d = env.case_dir("st_wrong_shape_fused")
    m = env.model_copy(d, FIX_QWEN2)
    p = os.path.join(m, "model.safetensors")
    header, data = st_read(p)
    victim = "model.layers.0.mlp.experts.gate_up_proj"
    E, I2, H = header[victim]["shape"]
    header[victim]["shape"] = [E, 2 * I2, H // 2]  # same size, wrong shape
    st_write_raw(p, header, data)
    add("st_wrong_shape_fused", model=m, expect=[p, victim, "shape"], d=d)

    d = env.case_dir("st_unsupported_dtype")
    m = env.model_copy(d)
    p = os.path.join(m, "model.safetensors")
    header, data = st_read(p)
    victim = "model.norm.weight"
    header[victim]["dtype"] = "I32"  # same size as F32
    st_write_raw(p, header, data)
    add("st_unsupported_dtype", model=m, expect=[p, victim, "I32"], d=d)

    d = env.case_dir("sharded_missing_shard")
    m = env.model_copy(d, FIX_SHARDED)
    shard = "model-00003-of-00006.safetensors"
    os.unlink(os.path.join(m, shard))
    add("sharded_missing_shard", model=m, expect=["model.safetensors.index.json", "weight_map", shard], d=d, mpi=True)

    d = env.case_dir("sharded_index_names_unknown_file")
    m = env.model_copy(d, FIX_SHARDED)
    p = os.path.join(m, "model.safetensors.index.json")
    with open(p) as f:
        idx = json.load(f)
    victim = "model.layers.1.mlp.experts.0.up_proj.weight"
    idx["weight_map"][victim] = "model-00007-of-00006.safetensors"
    with open(p, "w") as f:
        json.dump(idx, f, indent=2)
    add("sharded_index_names_unknown_file", model=m,
        expect=["model.safetensors.index.json", victim, "model-00007-of-00006.safetensors"], d=d)

    d = env.case_dir("sharded_index_names_directory")
    m = env.model_copy(d, FIX_SHARDED)
    p = os.path.join(m, "model.safetensors.index.json")
    with open(p) as f:
        idx = json.load(f)
    victim = "model.norm.weight"
    idx["weight_map"][victim] = ".."
    with open(p, "w") as f:
        json.dump(idx, f, indent=2)
    add("sharded_index_names_directory", model=m, expect=["model.safetensors.index.json", victim], d=d)

    d = env.case_dir("sharded_truncated_shard")
    m = env.model_copy(d, FIX_SHARDED)
    p = os.path.join(m, "model-00004-of-00006.safetensors")
    header, data = st_read(p)
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) - 1000)
    cut = len(data) - 1000
    beyond = tuple("tensor " + k for k, v in header.items() if k != "__metadata__" and v["data_offsets"][1] > cut)
    add("sharded_truncated_shard", model=m, expect=[p, beyond], d=d)

    # -- requests file
    d = env.case_dir("req_missing")
    r = os.path.join(d, "no_such_requests.h5")
    add("req_missing", model=FIX_MIXTRAL, requests=r, expect=[r], d=d)

    d = env.case_dir("req_not_hdf5")
    r = os.path.join(d, "requests.h5")
    with open(r, "w") as f:
        f.write("this is not an HDF5 file\n" * 100)
    add("req_not_hdf5", model=FIX_MIXTRAL, requests=r, expect=[r, "HDF5"], d=d)

    def req_file(d, prompts, max_new, ids=None, edit=None):
        r = os.path.join(d, "requests.h5")
        janus_h5.write_requests(r, prompts, max_new, ids=ids)
        if edit:
            with h5py.File(r, "r+") as f:
                edit(f)
        return r

    d = env.case_dir("req_no_tokens")
    r = req_file(d, [[1, 2, 3], [4, 5]], 3, edit=lambda f: f.__delitem__("requests/tokens"))
    add("req_no_tokens", model=FIX_MIXTRAL, requests=r, expect=[r, "/requests/tokens"], d=d, mpi=True)

    def tokens_float(f):
        t = f["requests/tokens"][...]
        del f["requests/tokens"]
        f["requests"].create_dataset("tokens", data=t.astype(np.float32))

    d = env.case_dir("req_tokens_float")
    r = req_file(d, [[1, 2, 3], [4, 5]], 3, edit=tokens_float)
    add("req_tokens_float", model=FIX_MIXTRAL, requests=r, expect=[r, "/requests/tokens", "float"], d=d)

    def offsets_bad(f):
        f["requests/offsets"][...] = np.array([0, 5, 3, 7], dtype=np.int64)

    d = env.case_dir("req_offsets_not_monotone")
    r = req_file(d, [[1, 2, 3], [4, 5], [6, 7]], 3, edit=offsets_bad)
    add("req_offsets_not_monotone", model=FIX_MIXTRAL, requests=r, expect=[r, "/requests/offsets"], d=d)

    d = env.case_dir("req_token_ge_vocab")
    r = req_file(d, [[1, 2, 3], [4, 256, 5], [6]], 3, ids=[40, 41, 42])
    add("req_token_ge_vocab", model=FIX_MIXTRAL, requests=r, expect=[r, "/requests/tokens", "request id 41"], d=d,
        mpi=True)

    d = env.case_dir("req_token_negative")
    r = req_file(d, [[1, 2, 3], [4, 5], [-1]], 3, ids=[40, 41, 42])
    add("req_token_negative", model=FIX_MIXTRAL, requests=r, expect=[r, "/requests/tokens", "request id 42"], d=d)

    d = env.case_dir("req_empty_prompt")
    r = req_file(d, [[1, 2, 3], [], [6]], 3, ids=[7, 8, 9])
    add("req_empty_prompt", model=FIX_MIXTRAL, requests=r, expect=[r, "request id 8", "empty"], d=d)

    d = env.case_dir("req_longer_than_context")
    r = req_file(d, [[1, 2, 3], list(np.arange(500) % 200)], [3, 13], ids=[3, 4])
    add("req_longer_than_context", model=FIX_MIXTRAL, requests=r,
        expect=[r, "/requests/max_new_tokens", "request id 4", "512"], d=d)

    d = env.case_dir("req_max_new_zero")
    r = req_file(d, [[1, 2, 3], [4, 5]], [3, 0], ids=[20, 21])
    add("req_max_new_zero", model=FIX_MIXTRAL, requests=r, expect=[r, "/requests/max_new_tokens", "request id 21"],
        d=d)

    d = env.case_dir("req_wrong_format_attr")
    r = req_file(d, [[1, 2, 3]], 3, edit=lambda f: f.attrs.__setitem__("format", "janus-results"))
    add("req_wrong_format_attr", model=FIX_MIXTRAL, requests=r, expect=[r, "format"], d=d)

    d = env.case_dir("req_duplicate_ids")
    r = req_file(d, [[1, 2, 3], [4]], 3, ids=[5, 6], edit=lambda f: f["requests/ids"].__setitem__(1, 5))
    add("req_duplicate_ids", model=FIX_MIXTRAL, requests=r, expect=[r, "/requests/ids", "duplicate"], d=d)

    # -- command line
    d = env.case_dir("out_dir_missing")
    out = os.path.join(d, "no_such_dir", "out.h5")
    add("out_dir_missing", model=FIX_MIXTRAL, expect=[os.path.join(d, "no_such_dir")], d=d, out=out, mpi=True)

    d = env.case_dir("unknown_option")
    out = os.path.join(d, "out", "out.h5")
    add("unknown_option", argv=["--model", FIX_MIXTRAL, "--requests", env.good_req, "--out", out, "--quiet",
                                "--frobnicate"], expect=["--frobnicate"], d=d, out=out, mpi=True)

    d = env.case_dir("missing_model_option")
    out = os.path.join(d, "out", "out.h5")
    add("missing_model_option", argv=["--requests", env.good_req, "--out", out, "--quiet"], expect=["--model"], d=d,
        out=out)

    d = env.case_dir("bad_option_value")
    out = os.path.join(d, "out", "out.h5")
    add("bad_option_value", argv=["--model", FIX_MIXTRAL, "--requests", env.good_req, "--out", out, "--quiet",
                                  "--max-batch", "lots"], expect=["--max-batch", "lots"], d=d, out=out)
    return cases


# ---- running and judging ---------------------------------------------------

def run(cmd):
    """(rc, stderr, seconds) or (None, why, seconds) on a hang."""
    t0 = time.monotonic()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")  # as tests/meson.build (containers)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=env)
    try:
        _, err = p.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the session this run started, nothing else
        p.communicate()
        return None, f"no exit within {TIMEOUT_S} s", time.monotonic() - t0
    return p.returncode, err.decode("utf-8", "replace"), time.monotonic() - t0


def judge(case, rc, err):
    """None when the run behaved, else why not."""
    out = case["out"]
    if rc is None:
        return err
    leftovers = glob.glob(glob.escape(out) + ".tmp.*")
    if case["ok"]:
        if rc != 0:
            return f"exit {rc} on a good input; stderr: {err.strip()[-400:]!r}"
        if not os.path.isfile(out):
            return f"exit 0 but no {out}"
        if leftovers:
            return f"temporary files left: {leftovers}"
        return None
    lines = [ln for ln in err.splitlines() if ln.startswith("janus:")]
    why = []
    if rc == 0:
        why.append("exit status 0")
    if len(lines) != 1:
        why.append(f"{len(lines)} 'janus:' lines on stderr, expected 1: {lines!r}")
    if lines:
        line = lines[0]
        for want in case["expect"]:
            alts = want if isinstance(want, tuple) else (want,)
            if not any(a in line for a in alts):
                why.append(f"message lacks {want!r}")
    if os.path.lexists(out):
        why.append(f"{out} exists")
    if leftovers:
        why.append(f"temporary files left: {leftovers}")
    if why and lines:
        why.append(f"message: {lines[0]!r}")
    if why and not lines:
        why.append(f"stderr: {err.strip()[-400:]!r}")
    return "; ".join(why) if why else None


def main():
    if len(sys.argv) != 2:
        print("usage: python3 tests/test_bad_input.py build/janus", file=sys.stderr)
        return 2
    janus = os.path.abspath(sys.argv[1])
    if not os.access(janus, os.X_OK):
        print(f"{janus}: not an executable", file=sys.stderr)
        return 2
    have_mpi = shutil.which("mpirun") is not None
    passed = failed = 0
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="janus_bad_input_") as tmp:
        env = Env(tmp)
        cases = build_cases(env)
        for case in cases:
            if case["argv"] is not None:
                args = case["argv"]
            else:
                args = ["--model", case["model"], "--requests", case["requests"], "--out", case["out"], "--quiet"]
            modes = [("", [janus, "generate"] + args)]
            if case["mpi"]:
                if have_mpi:
                    modes.append((" [mpirun -np 2]", MPI + [janus, "generate"] + args))
                else:
                    print(f"skip {case['name']} [mpirun -np 2]: no mpirun")
            for tag, cmd in modes:
                for p in glob.glob(glob.escape(case["out"]) + "*"):  # a control run before this one
                    os.unlink(p)
                rc, err, _ = run(cmd)
                why = judge(case, rc, err)
                if why is None:
                    passed += 1
                    msg = [ln for ln in (err or "").splitlines() if ln.startswith("janus:")]
                    print(f"ok {case['name']}{tag}" + (f"  {msg[0]}" if VERBOSE and msg else ""))
                else:
                    failed += 1
                    print(f"FAIL {case['name']}{tag}: {why}")
                sys.stdout.flush()
    print(f"{passed} passed, {failed} failed ({time.monotonic() - t0:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
