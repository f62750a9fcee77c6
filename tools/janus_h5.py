"""janus_h5.py: the janus requests and results files (DESIGN section 7) from
Python, with h5py + numpy only. Used by the tests and the tools.

Requests (root attrs format="janus-requests", version=1), CSR layout:
  /requests/ids int64 [N], /requests/offsets int64 [N+1], /requests/tokens int32 [T],
  /requests/max_new_tokens int32 [N]; optional /requests/temperature float32 [N],
  /requests/top_p float32 [N], /requests/top_k int32 [N], /requests/seed int64 [N].
Results (root attrs format="janus-results", version=1, plus the run's attributes):
  /results/ids, offsets, tokens, logprobs, finish_reason, ttft_s, tpot_s and
  /stats/expert_counts int64 [layers, experts].
"""
import os

import h5py
import numpy as np

REQUESTS_FORMAT = "janus-requests"
RESULTS_FORMAT = "janus-results"
VERSION = 1


def _per_request(value, n, dtype, name):
    """A scalar broadcast to [n], or a sequence of exactly n values, as dtype."""
    a = np.asarray(value, dtype=dtype)
    if a.ndim == 0:
        return np.full(n, a, dtype=dtype)
    if a.shape != (n,):
        raise ValueError(f"{name}: {a.shape[0] if a.ndim == 1 else a.shape} values for {n} prompts")
    return a


def write_requests(path, prompts, max_new_tokens, ids=None, temperature=None, top_p=None, top_k=None, seed=None):
    """Write a requests file.

    prompts: a list of token-id sequences. max_new_tokens: an int or one per
    prompt. ids: default 0..N-1. temperature, top_p, top_k, seed: optional, an
    int/float or one per prompt; left out of the file when None (the engine then
    uses 0, 1, 0, 0). Written to a temporary file and renamed, so path is never
    half written.
    """
    prompts = [np.asarray(p, dtype=np.int64).reshape(-1) for p in prompts]
    n = len(prompts)
    lens = np.array([len(p) for p in prompts], dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    tokens = np.concatenate(prompts) if n else np.zeros(0, dtype=np.int64)
    if tokens.size and (tokens.min() < np.iinfo(np.int32).min or tokens.max() > np.iinfo(np.int32).max):
        raise ValueError("prompts: token ids must fit in int32")
    ids = np.arange(n, dtype=np.int64) if ids is None else _per_request(ids, n, np.int64, "ids")
    if len(np.unique(ids)) != n:
        raise ValueError("ids: not unique")
    arrays = {
        "ids": ids,
        "offsets": offsets,
        "tokens": tokens.astype(np.int32),
        "max_new_tokens": _per_request(max_new_tokens, n, np.int32, "max_new_tokens"),
    }
    for name, value, dtype in (("temperature", temperature, np.float32), ("top_p", top_p, np.float32),
                               ("top_k", top_k, np.int32), ("seed", seed, np.int64)):
        if value is not None:
            arrays[name] = _per_request(value, n, dtype, name)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = REQUESTS_FORMAT
            f.attrs["version"] = np.int64(VERSION)
            g = f.create_group("requests")
            for name, a in arrays.items():
                g.create_dataset(name, data=a)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _attr_value(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    return v


def _check_format(f, path, want):
    fmt = _attr_value(f.attrs.get("format"))
    if fmt != want:
        raise ValueError(f"{path}: root attribute format: is {fmt!r}, expected {want!r}")


def read_requests(path):
    """Read a requests file: dict with ids (int64 [N]), prompts (list of int32
    arrays), max_new_tokens, and temperature / top_p / top_k / seed (defaults
    0, 1, 0, 0 when absent)."""
    with h5py.File(path, "r") as f:
        _check_format(f, path, REQUESTS_FORMAT)
        g = f["requests"]
        ids = g["ids"][...].astype(np.int64)
        offsets = g["offsets"][...].astype(np.int64)
        tokens = g["tokens"][...].astype(np.int32)
        n = len(ids)
        out = {
            "ids": ids,
            "offsets": offsets,
            "prompts": [tokens[offsets[i]:offsets[i + 1]] for i in range(n)],
            "max_new_tokens": g["max_new_tokens"][...].astype(np.int32),
        }
        for name, default, dtype in (("temperature", 0.0, np.float32), ("top_p", 1.0, np.float32),
                                     ("top_k", 0, np.int32), ("seed", 0, np.int64)):
            out[name] = g[name][...].astype(dtype) if name in g else np.full(n, default, dtype=dtype)
        return out


def read_results(path):
    """Read a results file: dict with ids (int64 [N]), tokens and logprobs (lists
    of N arrays, int32 / float32), finish_reason (uint8 [N], 0 length 1 stop),
    ttft_s, tpot_s (float64 [N]), expert_counts (int64 [layers, experts]) and
    attrs (the root attributes besides format and version, as Python values)."""
    with h5py.File(path, "r") as f:
        _check_format(f, path, RESULTS_FORMAT)
        g = f["results"]
        ids = g["ids"][...].astype(np.int64)
        offsets = g["offsets"][...].astype(np.int64)
        tokens = g["tokens"][...].astype(np.int32)
        logprobs = g["logprobs"][...].astype(np.float32)
        n = len(ids)
        if "stats/expert_counts" in f:
            counts = f["stats/expert_counts"][...].astype(np.int64)
        else:
            counts = np.zeros((0, 0), dtype=np.int64)
        return {
            "ids": ids,
            "offsets": offsets,
            "tokens": [tokens[offsets[i]:offsets[i + 1]] for i in range(n)],
            "logprobs": [logprobs[offsets[i]:offsets[i + 1]] for i in range(n)],
            "finish_reason": g["finish_reason"][...].astype(np.uint8),
            "ttft_s": g["ttft_s"][...].astype(np.float64),
            "tpot_s": g["tpot_s"][...].astype(np.float64),
            "expert_counts": counts,
            "attrs": {k: _attr_value(v) for k, v in f.attrs.items() if k not in ("format", "version")},
        }
