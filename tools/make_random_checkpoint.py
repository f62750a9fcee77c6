#!/usr/bin/env python3
"""make_random_checkpoint.py: a qwen3_moe checkpoint of random bf16 weights of
any size (config.json + model.safetensors), with numpy only (no torch).

    make_random_checkpoint.py OUTDIR [--hidden 1024] [--layers 4] [--experts 32]
        [--top-k 4] [--moe-inter 256] [--heads 16] [--kv-heads 4] [--head-dim 64]
        [--vocab 8192] [--context 2048] [--seed 0]

For timing runs that must stream real bytes (planner calibration,
tools/check_plan.py): the bundled inputs/model (4 MiB) lives in the CPU's
caches, so its step times say little about memory bandwidth. The tensor names
are those of Hugging Face's Qwen3MoeForCausalLM with per-expert tensors, as
inputs/model has them; the weights are N(0, 0.02) (norms 1), so the outputs
are meaningless but finite and the routing is close to uniform. Generate it
into build/ or /tmp, never into the repository: the defaults give ~250 MB.
"""
import argparse
import json
import os
import struct

import numpy as np


def bf16(a):
    """float32 array -> bf16 bytes (round to nearest even)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2").tobytes()


def tensors(cfg):
    """(name, shape, kind) in file order; kind: 'w' random, 'n' a norm (ones)."""
    H, I, E = cfg["hidden_size"], cfg["moe_intermediate_size"], cfg["num_experts"]
    nq, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    out = [("model.embed_tokens.weight", (cfg["vocab_size"], H), "w")]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (H,), "n"), (p + "post_attention_layernorm.weight", (H,), "n"),
                (p + "self_attn.q_proj.weight", (nq * hd, H), "w"), (p + "self_attn.k_proj.weight", (nkv * hd, H), "w"),
                (p + "self_attn.v_proj.weight", (nkv * hd, H), "w"), (p + "self_attn.o_proj.weight", (H, nq * hd), "w"),
                (p + "self_attn.q_norm.weight", (hd,), "n"), (p + "self_attn.k_norm.weight", (hd,), "n"),
                (p + "mlp.gate.weight", (E, H), "w")]
        for e in range(E):
            q = f"{p}mlp.experts.{e}."
            out += [(q + "gate_proj.weight", (I, H), "w"), (q + "up_proj.weight", (I, H), "w"),
                    (q + "down_proj.weight", (H, I), "w")]
    out += [("model.norm.weight", (H,), "n"), ("lm_head.weight", (cfg["vocab_size"], H), "w")]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="checkpoint directory to write")
    for name, default in (("hidden", 1024), ("layers", 4), ("experts", 32), ("top-k", 4), ("moe-inter", 256),
                          ("heads", 16), ("kv-heads", 4), ("head-dim", 64), ("vocab", 8192), ("context", 2048),
                          ("seed", 0)):
        ap.add_argument("--" + name, type=int, default=default, help=f"(default {default})")
    a = ap.parse_args(argv)
    if min(a.hidden, a.layers, a.experts, a.top_k, a.moe_inter, a.heads, a.kv_heads, a.head_dim, a.vocab) < 1 or \
            a.top_k > a.experts or a.heads % a.kv_heads or a.head_dim % 2:
        ap.error("sizes must be >= 1, --top-k <= --experts, --heads a multiple of --kv-heads, --head-dim even")
    cfg = {
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "attention_bias": False,
        "bos_token_id": 0, "eos_token_id": None, "decoder_sparse_step": 1, "dtype": "bfloat16",
        "head_dim": a.head_dim, "hidden_act": "silu", "hidden_size": a.hidden, "intermediate_size": 4 * a.moe_inter,
        "max_position_embeddings": a.context, "mlp_only_layers": [], "moe_intermediate_size": a.moe_inter,
        "norm_topk_prob": True, "num_attention_heads": a.heads, "num_experts": a.experts,
        "num_experts_per_tok": a.top_k, "num_hidden_layers": a.layers, "num_key_value_heads": a.kv_heads,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "sliding_window": None, "tie_word_embeddings": False,
        "use_sliding_window": False, "vocab_size": a.vocab,
    }
    os.makedirs(a.out, exist_ok=True)
    ts = tensors(cfg)
    header, at = {"__metadata__": {"format": "pt", "janus": "random weights, tools/make_random_checkpoint.py"}}, 0
    for name, shape, _ in ts:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [at, at + n]}
        at += n
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    rng = np.random.default_rng(a.seed)
    path = os.path.join(a.out, "model.safetensors")
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, shape, kind in ts:
            x = np.ones(shape, np.float32) if kind == "n" else rng.standard_normal(shape, np.float32) * 0.02
            f.write(bf16(x))
    os.replace(path + ".tmp", path)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    print(f"{a.out}: {len(ts)} tensors, {at / 1e6:.1f} MB of bf16 weights")


if __name__ == "__main__":
    main()
