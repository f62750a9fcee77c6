#!/usr/bin/env python3
"""make_requests.py: write a janus requests file (DESIGN section 7).

    make_requests.py OUT.h5 --prompts-json FILE [--max-new K]
    make_requests.py OUT.h5 --random N --vocab V --min-len A --max-len B --max-new K [--seed S]

--prompts-json FILE: a JSON list whose items are either a list of token ids or
an object {"tokens": [...], and optionally "id", "max_new_tokens",
"temperature", "top_p", "top_k", "seed"}. --max-new is the default
max_new_tokens for items that do not give one. Sampling fields are written only
when some item gives them (the others then get 0, 1, 0, 0).

--random N: N prompts of uniform length in [A, B] with uniform token ids in
[0, V), generated from --seed S (numpy default_rng). --temperature T also writes
temperature T and a per-request sampling seed for every request.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import janus_h5  # noqa: E402

SAMPLING = (("temperature", 0.0), ("top_p", 1.0), ("top_k", 0), ("seed", 0))


def from_json(path, default_max_new):
    with open(path) as f:
        items = json.load(f)
    if not isinstance(items, list):
        raise SystemExit(f"{path}: expected a JSON list of prompts")
    prompts, max_new, ids = [], [], []
    sampling = {name: [] for name, _ in SAMPLING}
    any_sampling = set()
    for i, it in enumerate(items):
        if isinstance(it, dict):
            if "tokens" not in it:
                raise SystemExit(f"{path}: item {i}: no \"tokens\"")
            toks = it["tokens"]
        else:
            toks, it = it, {}
        if not isinstance(toks, list) or not all(isinstance(t, int) for t in toks):
            raise SystemExit(f"{path}: item {i}: tokens must be a list of integers")
        prompts.append(toks)
        mn = it.get("max_new_tokens", default_max_new)
        if mn is None:
            raise SystemExit(f"{path}: item {i}: no max_new_tokens and no --max-new")
        max_new.append(int(mn))
        ids.append(int(it.get("id", i)))
        for name, default in SAMPLING:
            if name in it:
                any_sampling.add(name)
            sampling[name].append(it.get(name, default))
    kw = {name: sampling[name] for name in any_sampling}
    return prompts, max_new, ids, kw


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="the requests file to write (.h5)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts-json", metavar="FILE", help="prompts as JSON (see above)")
    src.add_argument("--random", type=int, metavar="N", help="N random prompts")
    ap.add_argument("--vocab", type=int, help="vocabulary size (token ids in [0, V))")
    ap.add_argument("--min-len", type=int, default=1, help="shortest random prompt (default 1)")
    ap.add_argument("--max-len", type=int, help="longest random prompt")
    ap.add_argument("--max-new", type=int, help="max_new_tokens per request")
    ap.add_argument("--seed", type=int, default=0, help="random generator seed (default 0)")
    ap.add_argument("--temperature", type=float, help="random prompts: sample at this temperature")
    a = ap.parse_args(argv)

    if a.prompts_json:
        prompts, max_new, ids, kw = from_json(a.prompts_json, a.max_new)
    else:
        if a.random < 0:
            ap.error("--random must be >= 0")
        if a.vocab is None or a.max_len is None or a.max_new is None:
            ap.error("--random needs --vocab, --max-len and --max-new")
        if a.vocab < 1 or a.min_len < 1 or a.max_len < a.min_len or a.max_new < 1:
            ap.error("need --vocab >= 1, 1 <= --min-len <= --max-len, --max-new >= 1")
        rng = np.random.default_rng(a.seed)
        lens = rng.integers(a.min_len, a.max_len + 1, size=a.random)
        prompts = [rng.integers(0, a.vocab, size=int(n)).tolist() for n in lens]
        max_new, ids, kw = a.max_new, None, {}
        if a.temperature is not None:
            kw = {"temperature": a.temperature,
                  "seed": rng.integers(0, 2**62, size=a.random, dtype=np.int64)}
    janus_h5.write_requests(a.out, prompts, max_new, ids=ids, **kw)
    print(f"{a.out}: {len(prompts)} requests, {sum(len(p) for p in prompts)} prompt tokens")


if __name__ == "__main__":
    main()
