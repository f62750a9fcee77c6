#!/usr/bin/env python3
"""make_fixtures.py: tiny random-weight MoE checkpoints made by HF transformers,
with the greedy tokens and logprobs transformers computes for them (the oracle
the C engine is tested against).

Run on a machine with torch + transformers (the GPU machine has both in
/opt/torch/.venv); it computes on the CPU in float32 so the oracle is exact f32:

    python3 tools/make_fixtures.py --out tests/fixtures

For every model it writes DIR/NAME/: config.json, generation_config.json,
*.safetensors (+ index when sharded), requests.h5 (janus-requests format) and
expected.json (per request: id,: prompt, greedy tokens, logprobs, finish reason, the
smallest top-1/top-2 logit margin and the smallest router top-k gap seen;
router_gaps: per generated token, the smallest router top-k gap over the layers
at the position that picked it). `--annotate DIR...` adds router_gaps to
existing fixtures without remaking them (the oracle is recomputed and must agree).

Sets:
  dev/      the fixtures the engine is developed against (tests use them freely)
  holdout/  other shapes (head_dim != hidden/heads, GQA 1..6, bf16/f16, sharded,
            fused expert tensors, dense layers): used only by the held-out test
  bf16/     one bf16 checkpoint per family (the GPU backend's parity set)
  inputs/   the bundled default model of inputs/ (slightly larger, bf16)
"""
import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))

# name -> (set, config kwargs, checkpoint options)
# options: dtype (f32|bf16|f16), fmt (hf = save_pretrained, i.e. per-expert
# tensors; fused = the model's own stacked expert tensors), shard_kb (shard size
# for save_pretrained), prompt lengths, max_new, eos (pick an EOS the greedy run hits)
MODELS = {
    # ---------------- dev set
    "mixtral": ("dev", dict(model_type="mixtral", vocab_size=256, hidden_size=64, intermediate_size=48,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            num_local_experts=8, num_experts_per_tok=2, max_position_embeddings=512,
                            rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                            tie_word_embeddings=False, sliding_window=None),
                dict(dtype="f32", fmt="hf", lens=[1, 3, 9, 20, 33, 64, 130], max_new=[1, 8, 12, 16, 5, 10, 7], eos=True)),
    "qwen2_moe": ("dev", dict(model_type="qwen2_moe", vocab_size=256, hidden_size=64, intermediate_size=96,
                              moe_intermediate_size=32, shared_expert_intermediate_size=48,
                              num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                              num_experts=8, num_experts_per_tok=2, norm_topk_prob=False, qkv_bias=True,
                              mlp_only_layers=[1], decoder_sparse_step=1, max_position_embeddings=512,
                              rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                              tie_word_embeddings=False, use_sliding_window=False),
                  dict(dtype="f32", fmt="fused", lens=[2, 7, 16, 40, 77, 100], max_new=[6, 12, 1, 16, 9, 11], eos=True)),
    "qwen3_moe": ("dev", dict(model_type="qwen3_moe", vocab_size=256, hidden_size=64, head_dim=32,
                              intermediate_size=96, moe_intermediate_size=32,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                              num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, attention_bias=False,
                              max_position_embeddings=512, rms_norm_eps=1e-6,
                              rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                              tie_word_embeddings=True, use_sliding_window=False),
                  dict(dtype="f32", fmt="hf", lens=[1, 4, 11, 25, 50, 128], max_new=[9, 3, 14, 16, 8, 12], eos=True)),
    "olmoe": ("dev", dict(model_type="olmoe", vocab_size=256, hidden_size=64, intermediate_size=32,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                          num_experts=8, num_experts_per_tok=2, norm_topk_prob=False, clip_qkv=None,
                          max_position_embeddings=512, rms_norm_eps=1e-5,
                          rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                          tie_word_embeddings=False),
              dict(dtype="f32", fmt="hf", lens=[3, 8, 19, 31, 60, 90], max_new=[10, 4, 16, 7, 13, 2], eos=True)),
    # ---------------- held-out set: other shapes, dtypes and layouts
    "mixtral_gqa6_bf16": ("holdout", dict(model_type="mixtral", vocab_size=320, hidden_size=96, head_dim=24,
                                          intermediate_size=40, num_hidden_layers=3, num_attention_heads=6,
                                          num_key_value_heads=1, num_local_experts=6, num_experts_per_tok=2,
                                          max_position_embeddings=400, rms_norm_eps=1e-5,
                                          rope_parameters={"rope_type": "default", "rope_theta": 50000.0},
                                          tie_word_embeddings=False, sliding_window=None),
                          dict(dtype="bf16", fmt="hf", lens=[1, 6, 45, 300, 120], max_new=[24, 1, 10, 20, 17], eos=True)),
    "qwen2_moe_gqa3_sparse2": ("holdout", dict(model_type="qwen2_moe", vocab_size=300, hidden_size=72,
                                               intermediate_size=64, moe_intermediate_size=24,
                                               shared_expert_intermediate_size=40, num_hidden_layers=4,
                                               num_attention_heads=6, num_key_value_heads=2, num_experts=10,
                                               num_experts_per_tok=3, norm_topk_prob=True, qkv_bias=True,
                                               mlp_only_layers=[], decoder_sparse_step=2,
                                               max_position_embeddings=512, rms_norm_eps=1e-6,
                                               rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                                               tie_word_embeddings=True, use_sliding_window=False),
                               dict(dtype="f32", fmt="hf", shard_kb=200, lens=[1, 13, 88, 250, 299],
                                    max_new=[3, 24, 11, 6, 19], eos=True)),
    "qwen3_moe_hd16_f16": ("holdout", dict(model_type="qwen3_moe", vocab_size=288, hidden_size=48, head_dim=16,
                                           intermediate_size=64, moe_intermediate_size=24,
                                           num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=3,
                                           num_experts=12, num_experts_per_tok=4, norm_topk_prob=False,
                                           attention_bias=False, mlp_only_layers=[0], max_position_embeddings=384,
                                           rms_norm_eps=1e-6,
                                           rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                                           tie_word_embeddings=False, use_sliding_window=False),
                           dict(dtype="f16", fmt="fused", lens=[2, 30, 150, 280, 9], max_new=[12, 24, 5, 1, 22], eos=True)),
    "olmoe_mha_topk_norm": ("holdout", dict(model_type="olmoe", vocab_size=260, hidden_size=80, intermediate_size=40,
                                            num_hidden_layers=2, num_attention_heads=5, num_key_value_heads=5,
                                            num_experts=6, num_experts_per_tok=3, norm_topk_prob=True, clip_qkv=None,
                                            max_position_embeddings=512, rms_norm_eps=1e-5,
                                            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                                            tie_word_embeddings=True),
                            dict(dtype="bf16", fmt="hf", lens=[1, 17, 99, 300, 42], max_new=[20, 15, 24, 2, 9], eos=True)),
    # ---------------- bf16 checkpoints of every family (the GPU backend's parity
    # set: it computes with bf16 weights, so f32 checkpoints would be a different model)
    "mixtral_bf16": ("bf16", dict(model_type="mixtral", vocab_size=256, hidden_size=64, intermediate_size=48,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  num_local_experts=8, num_experts_per_tok=2, max_position_embeddings=512,
                                  rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                                  tie_word_embeddings=False, sliding_window=None),
                     dict(dtype="bf16", fmt="fused", lens=[1, 5, 12, 40, 90], max_new=[12, 16, 8, 10, 6], eos=True)),
    "qwen2_moe_bf16": ("bf16", dict(model_type="qwen2_moe", vocab_size=256, hidden_size=64, intermediate_size=96,
                                    moe_intermediate_size=32, shared_expert_intermediate_size=48,
                                    num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                    num_experts=8, num_experts_per_tok=2, norm_topk_prob=False, qkv_bias=True,
                                    mlp_only_layers=[1], decoder_sparse_step=1, max_position_embeddings=512,
                                    rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                                    tie_word_embeddings=False, use_sliding_window=False),
                       dict(dtype="bf16", fmt="hf", lens=[3, 9, 25, 64, 120], max_new=[10, 14, 16, 6, 9], eos=True)),
    "qwen3_moe_bf16": ("bf16", dict(model_type="qwen3_moe", vocab_size=256, hidden_size=64, head_dim=32,
                                    intermediate_size=96, moe_intermediate_size=32,
                                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                                    num_experts=16, num_experts_per_tok=4, norm_topk_prob=True, attention_bias=False,
                                    max_position_embeddings=512, rms_norm_eps=1e-6,
                                    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                                    tie_word_embeddings=True, use_sliding_window=False),
                       dict(dtype="bf16", fmt="hf", lens=[2, 7, 30, 77, 150], max_new=[16, 9, 12, 8, 14], eos=True)),
    "olmoe_bf16": ("bf16", dict(model_type="olmoe", vocab_size=256, hidden_size=64, intermediate_size=32,
                                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                num_experts=8, num_experts_per_tok=2, norm_topk_prob=False, clip_qkv=None,
                                max_position_embeddings=512, rms_norm_eps=1e-5,
                                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                                tie_word_embeddings=False),
                   dict(dtype="bf16", fmt="hf", lens=[4, 11, 33, 70, 100], max_new=[12, 5, 16, 9, 11], eos=True)),
    # ---------------- the bundled default model (inputs/model)
    "default": ("inputs", dict(model_type="qwen3_moe", vocab_size=512, hidden_size=128, head_dim=32,
                               intermediate_size=256, moe_intermediate_size=64,
                               num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                               num_experts=16, num_experts_per_tok=4, norm_topk_prob=True, attention_bias=False,
                               max_position_embeddings=1024, rms_norm_eps=1e-6,
                               rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                               tie_word_embeddings=False, use_sliding_window=False),
                dict(dtype="bf16", fmt="hf", lens=[5, 12, 33, 64, 100, 7, 48, 20], max_new=[16, 32, 24, 16, 32, 8, 24, 32],
                     eos=False)),
}

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def init_weights(model, seed):
    """Weights with enough spread that greedy choices and router choices have no
    near-ties: linear weights N(0, 1/fan_in), router N(0, 9/fan_in), norms 1 +
    N(0, 0.1^2), biases N(0, 0.1^2), embeddings N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("mlp.gate.weight") or name.endswith("block_sparse_moe.gate.weight"):
                p.copy_(3.0 * torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
            elif "shared_expert_gate" in name:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
            elif "lm_head" in name:
                p.copy_(2.0 * torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))


class RouterWatch:
    """Records the smallest gap between the k-th and (k+1)-th router logit
    (top-k of the softmax is top-k of the logits)."""

    def __init__(self, model, top_k):
        self.min_gap = float("inf")
        self.last_gap = float("inf")
        self.top_k = top_k
        self.hooks = []
        for name, mod in model.named_modules():
            if name.endswith("mlp.gate") or name.endswith("block_sparse_moe.gate"):
                if isinstance(mod, torch.nn.Linear) and mod.out_features == 1:
                    continue
                self.hooks.append(mod.register_forward_hook(self.hook))

    def hook(self, mod, inp, out):
        logits = out[0] if isinstance(out, tuple) else out
        s = torch.sort(logits.double(), dim=-1, descending=True).values
        g = s[..., self.top_k - 1] - s[..., self.top_k]
        self.min_gap = min(self.min_gap, g.min().item())
        # the last position (batch 1): the one whose logits pick the next token
        self.last_gap = min(self.last_gap, g.reshape(-1)[-1].item())


def greedy(model, prompt, max_new, eos, watch=None, gaps=None):
    """The oracle: full recomputation each step (no cache), f32, raw logits.
    With watch and gaps: appends each step's router gap at the position that
    picks the token (smallest over layers)."""
    ids = list(prompt)
    toks, lps, margins = [], [], []
    finish = 0
    for _ in range(max_new):
        if watch is not None:
            watch.last_gap = float("inf")
        with torch.no_grad():
            logits = model(torch.tensor([ids]), use_cache=False).logits[0, -1].double()
        lp = torch.log_softmax(logits, dim=-1)
        top2 = torch.topk(logits, 2)
        t = int(top2.indices[0])
        margins.append(float(top2.values[0] - top2.values[1]))
        if gaps is not None:
            gaps.append(watch.last_gap)
        toks.append(t)
        lps.append(float(lp[t]))
        ids.append(t)
        if eos is not None and t in eos:
            finish = 1
            break
    return toks, lps, finish, min(margins)


def save_checkpoint(model, cfg, outdir, opts):
    os.makedirs(outdir, exist_ok=True)
    dt = DTYPES[opts["dtype"]]
    m = model.to(dt)
    if opts["fmt"] == "hf":
        kw = {}
        if opts.get("shard_kb"):
            kw["max_shard_size"] = f"{opts['shard_kb']}KB"
        m.save_pretrained(outdir, safe_serialization=True, **kw)
    else:
        from safetensors.torch import save_file
        sd = {k: v.contiguous() for k, v in m.state_dict().items()}
        if cfg.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        save_file(sd, os.path.join(outdir, "model.safetensors"), metadata={"format": "pt"})
        cfg.save_pretrained(outdir)
        m.generation_config.save_pretrained(outdir)
    model.to(torch.float32)


def make(name, setname, kw, opts, outroot, seed):
    kw = dict(kw)
    model_type = kw.pop("model_type")
    cfg = AutoConfig.for_model(model_type, **kw)
    cfg.torch_dtype = "float32"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.eval()
    init_weights(model, seed)
    # Round the weights to the checkpoint's dtype so the f32 oracle sees exactly
    # what the engine will load.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(DTYPES[opts["dtype"]]).to(torch.float32))
    rng = np.random.default_rng(seed)
    top_k = kw["num_experts_per_tok"]
    watch = RouterWatch(model, top_k)

    prompts = []
    for L in opts["lens"]:
        # redraw a prompt until its greedy run has a clear margin everywhere
        for attempt in range(200):
            p = rng.integers(0, cfg.vocab_size, size=L).tolist()
            watch.min_gap = float("inf")
            toks, lps, fin, margin = greedy(model, p, opts["max_new"][len(prompts)], None)
            if margin > 1e-3 and watch.min_gap > 1e-3:
                break
        else:
            if setname != "inputs":
                raise SystemExit(f"{name}: no clear-margin prompt of length {L}")
        prompts.append(p)

    eos = None
    if opts["eos"]:
        # an EOS that request 0's greedy run reaches at step 2 or later
        toks, _, _, _ = greedy(model, prompts[0], opts["max_new"][0], None)
        if len(toks) < 3:
            # use the longest request instead
            i = int(np.argmax(opts["max_new"]))
            toks, _, _, _ = greedy(model, prompts[i], opts["max_new"][i], None)
        eos = [toks[min(2, len(toks) - 1)], cfg.vocab_size - 1]

    cfg.eos_token_id = eos[0] if eos and name.startswith(("mixtral", "olmoe")) else eos
    cfg.bos_token_id = 0
    model.config.eos_token_id = cfg.eos_token_id
    model.generation_config.eos_token_id = cfg.eos_token_id
    model.generation_config.bos_token_id = 0
    eos_set = None if eos is None else ([cfg.eos_token_id] if isinstance(cfg.eos_token_id, int) else eos)

    reqs = []
    for i, p in enumerate(prompts):
        watch.min_gap = float("inf")
        gaps = []
        toks, lps, fin, margin = greedy(model, p, opts["max_new"][i], eos_set, watch, gaps)
        reqs.append(dict(id=1000 + 7 * i, prompt=p, max_new_tokens=opts["max_new"][i], tokens=toks,
                         logprobs=lps, finish_reason=fin, min_margin=margin, min_router_gap=watch.min_gap,
                         router_gaps=[round(g, 6) for g in gaps]))

    if setname == "inputs":
        outdir = os.path.join(outroot, "model")
    else:
        outdir = os.path.join(outroot, setname, name)
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    save_checkpoint(model, cfg, outdir, opts)

    # The saved checkpoint must reproduce the oracle when transformers loads it.
    re = AutoModelForCausalLM.from_pretrained(outdir, dtype=torch.float32)
    re.eval()
    for r in reqs[:2]:
        t2, l2, _, _ = greedy(re, r["prompt"], r["max_new_tokens"], eos_set)
        assert t2 == r["tokens"], f"{name}: reloaded checkpoint disagrees"
        assert max(abs(a - b) for a, b in zip(l2, r["logprobs"])) < 1e-5, f"{name}: reloaded logprobs differ"

    exp = dict(model=name, family=model_type, dtype=opts["dtype"], format=opts["fmt"],
               transformers=transformers.__version__, torch=torch.__version__, eos=eos_set, requests=reqs)
    expfile = os.path.join(outroot, "expected.json") if setname == "inputs" else os.path.join(outdir, "expected.json")
    with open(expfile, "w") as f:
        json.dump(exp, f, indent=1)
    from safetensors import safe_open
    names = []
    for fn in sorted(os.listdir(outdir)):
        if fn.endswith(".safetensors"):
            with safe_open(os.path.join(outdir, fn), "pt") as sf:
                names += list(sf.keys())
    ex = [n for n in names if "layers.0." in n and ("expert" in n or "gate" in n)][:6]
    print(f"{name}: {len(reqs)} requests, eos={eos_set}, min margin "
          f"{min(r['min_margin'] for r in reqs):.4f}, min router gap {min(r['min_router_gap'] for r in reqs):.5f}, "
          f"finish={[r['finish_reason'] for r in reqs]}, files={sorted(os.listdir(outdir))}, names e.g. {ex}",
          flush=True)


def annotate(fixture):
    """Adds router_gaps to an existing fixture's expected.json: per generated
    token, the smallest gap between the k-th and (k+1)-th router logit over the
    layers at the position whose logits picked it (where bf16 rounding may
    route that position to another expert, and move its logprob). The oracle's
    tokens and logprobs are recomputed from the saved checkpoint and must agree."""
    path = os.path.join(fixture, "expected.json")
    if not os.path.exists(path):
        path = os.path.join(fixture, "..", "expected.json")
    exp = json.load(open(path))
    model = AutoModelForCausalLM.from_pretrained(fixture, dtype=torch.float32)
    model.eval()
    watch = RouterWatch(model, model.config.num_experts_per_tok)
    if not watch.hooks:
        raise SystemExit(f"{fixture}: no router modules found")
    worst = []
    for r in exp["requests"]:
        gaps = []
        toks, lps, _, _ = greedy(model, r["prompt"], r["max_new_tokens"], exp["eos"], watch, gaps)
        assert toks == r["tokens"], f"{fixture}: request {r['id']}: tokens {toks} != {r['tokens']}"
        assert max(abs(a - b) for a, b in zip(lps, r["logprobs"])) < 1e-5, f"{fixture}: request {r['id']}: logprobs differ"
        r["router_gaps"] = [round(g, 6) for g in gaps]
        worst.append(min(gaps))
    with open(path, "w") as f:
        json.dump(exp, f, indent=1)
    print(f"{fixture}: router gaps at the picking positions, smallest per request: "
          f"{' '.join(f'{g:.4f}' for g in worst)}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotate", nargs="+", metavar="DIR",
                    help="only add router_gaps to these existing fixtures' expected.json")
    ap.add_argument("--out", default="tests/fixtures", help="fixtures root (dev/ and holdout/ below it)")
    ap.add_argument("--inputs", default="inputs", help="where the bundled default model goes")
    ap.add_argument("--only", nargs="*", help="model names to make (default: all)")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}", flush=True)
    if a.annotate:
        for d in a.annotate:
            annotate(d)
        return
    for i, (name, (setname, kw, opts)) in enumerate(MODELS.items()):
        if a.only and name not in a.only:
            continue
        root = a.inputs if setname == "inputs" else a.out
        make(name, setname, kw, opts, root, a.seed + 17 * i)


if __name__ == "__main__":
    main()
