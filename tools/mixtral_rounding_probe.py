#!/usr/bin/env python3
"""Numpy emulation of the mixtral_gqa6_bf16 holdout fixture with bf16 rounding
modes applied only inside the expert FFN.  numpy + json + struct only.

usage: python3 tools/mixtral_rounding_probe.py [fixture_dir]

Why that fixture is sensitive (docs/gpu.md, "Prefill expert GEMM"): it
reproduces the oracle in f32 (logprobs within 4e-6), then rounds like the GPU
paths (decode/fused, loop, grouped; prompt rows only or all rows), counts
router top-2 flips against f32, and flips single near-tied expert choices in
the f32 model to see what one flip costs.
"""
import json
import struct
import sys

import numpy as np

FIX = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/holdout/mixtral_gqa6_bf16"


# ---------------------------------------------------------------- loading
def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        base = 8 + n
        data = f.read()
    out = {}
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        dt = info["dtype"]
        if dt == "BF16":
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32)
            arr = (u16 << 16).view(np.float32)
        elif dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        else:
            raise ValueError(dt)
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def bf16(x):
    """round-to-nearest-even to bf16, back to f32"""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


cfg = json.load(open(f"{FIX}/config.json"))
W = load_safetensors(f"{FIX}/model.safetensors")
EXP = json.load(open(f"{FIX}/expected.json"))
EOS = set(EXP.get("eos", [cfg["eos_token_id"]]))

H = cfg["hidden_size"]
NL = cfg["num_hidden_layers"]
NH = cfg["num_attention_heads"]
NKV = cfg["num_key_value_heads"]
HD = cfg.get("head_dim") or H // NH
NE = cfg["num_local_experts"]
TOPK = cfg["num_experts_per_tok"]
EPS = np.float32(cfg["rms_norm_eps"])
THETA = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10000.0))

P = "model.layers.{}."
LAY = []
for l in range(NL):
    p = P.format(l)
    d = {k: W[p + "self_attn." + k + ".weight"] for k in ("q_proj", "k_proj", "v_proj", "o_proj")}
    d["ln1"] = W[p + "input_layernorm.weight"]
    d["ln2"] = W[p + "post_attention_layernorm.weight"]
    d["gate"] = W[p + "block_sparse_moe.gate.weight"]  # [NE, H]
    d["w1"] = [W[p + f"block_sparse_moe.experts.{e}.w1.weight"] for e in range(NE)]  # [I, H]
    d["w2"] = [W[p + f"block_sparse_moe.experts.{e}.w2.weight"] for e in range(NE)]  # [H, I]
    d["w3"] = [W[p + f"block_sparse_moe.experts.{e}.w3.weight"] for e in range(NE)]  # [I, H]
    LAY.append(d)
EMB = W["model.embed_tokens.weight"]
NORM = W["model.norm.weight"]
LM = W["lm_head.weight"]


# ---------------------------------------------------------------- model
def rmsnorm(x, w):
    var = np.mean(x * x, axis=-1, keepdims=True, dtype=np.float32)
    return (w * (x / np.sqrt(var + EPS))).astype(np.float32)


def rope_cos_sin(n):
    inv = (1.0 / (THETA ** (np.arange(0, HD, 2, dtype=np.int64).astype(np.float32) / HD))).astype(np.float32)
    fr = np.arange(n, dtype=np.float32)[:, None] * inv[None, :]
    emb = np.concatenate([fr, fr], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def rot_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def attention(x, d):
    n = x.shape[0]
    q = (x @ d["q_proj"].T).reshape(n, NH, HD).transpose(1, 0, 2)
    k = (x @ d["k_proj"].T).reshape(n, NKV, HD).transpose(1, 0, 2)
    v = (x @ d["v_proj"].T).reshape(n, NKV, HD).transpose(1, 0, 2)
    c, s = rope_cos_sin(n)
    q = q * c + rot_half(q) * s
    k = k * c + rot_half(k) * s
    rep = NH // NKV
    k = np.repeat(k, rep, axis=0)
    v = np.repeat(v, rep, axis=0)
    sc = (q @ k.transpose(0, 2, 1)) * np.float32(HD ** -0.5)
    sc = np.where(np.tril(np.ones((n, n), bool))[None], sc, np.float32(-np.inf))
    sc = sc - sc.max(-1, keepdims=True)
    pr = np.exp(sc)
    pr = (pr / pr.sum(-1, keepdims=True)).astype(np.float32)
    o = (pr @ v).transpose(1, 0, 2).reshape(n, NH * HD)
    return (o @ d["o_proj"].T).astype(np.float32)


def expert(x, w1, w2, w3, kind):
    """kind in f32 / decode / fused / loop / grouped"""
    if kind == "f32":
        g = x @ w1.T
        u = x @ w3.T
        act = (g / (1 + np.exp(-g))) * u
        return (act @ w2.T).astype(np.float32)
    xin = bf16(x)
    g = (xin @ w1.T).astype(np.float32)
    u = (xin @ w3.T).astype(np.float32)
    if kind in ("loop", "grouped"):
        g, u = bf16(g), bf16(u)
    act = bf16((g / (np.float32(1) + np.exp(-g))) * u)
    y = (act @ w2.T).astype(np.float32)
    if kind == "grouped":
        y = bf16(y)
    return y


MODES = ["f32", "decode", "fused", "loop", "grouped", "pf-fused", "pf-loop", "pf-grouped"]


def row_kinds(mode, n, plen):
    """expert-FFN rounding kind for each row"""
    if mode.startswith("pf-"):
        k = mode[3:]
        return np.array([k if i < plen else "decode" for i in range(n)], dtype=object)
    return np.array([mode] * n, dtype=object)


def moe(x, d, kinds, force=None):
    n = x.shape[0]
    logits = (x @ d["gate"].T).astype(np.float32)
    z = logits - logits.max(-1, keepdims=True)
    pr = np.exp(z)
    pr = (pr / pr.sum(-1, keepdims=True)).astype(np.float32)
    if force is None:
        idx = np.argsort(-pr, axis=-1, kind="stable")[:, :TOPK]
    else:
        idx = force
    wts = np.take_along_axis(pr, idx, -1)
    wts = (wts / wts.sum(-1, keepdims=True)).astype(np.float32)
    out = np.zeros_like(x)
    for e in range(NE):
        for kind in set(kinds):
            rows, slot = np.nonzero((idx == e) & (kinds == kind)[:, None])
            if len(rows) == 0:
                continue
            y = expert(x[rows], d["w1"][e], d["w2"][e], d["w3"][e], kind)
            out[rows] += wts[rows, slot][:, None] * y
    return out, logits, idx


def forward(ids, plen, mode, force=None):
    n = len(ids)
    kinds = row_kinds(mode, n, plen)
    x = EMB[np.asarray(ids)].astype(np.float32)
    rl, ri = [], []
    for l, d in enumerate(LAY):
        h = x + attention(rmsnorm(x, d["ln1"]), d)
        m, lg, idx = moe(rmsnorm(h, d["ln2"]), d, kinds, None if force is None else force[l])
        x = (h + m).astype(np.float32)
        rl.append(lg)
        ri.append(idx)
    logits = (rmsnorm(x, NORM) @ LM.T).astype(np.float32)
    return logits, rl, ri


def logsoftmax64(v):
    v = v.astype(np.float64)
    v = v - v.max()
    return v - np.log(np.exp(v).sum())


def generate(prompt, max_new, mode):
    seq = list(prompt)
    toks, lps = [], []
    for _ in range(max_new):
        lg, _, _ = forward(seq, len(prompt), mode)
        ls = logsoftmax64(lg[-1])
        t = int(np.argmax(ls))
        toks.append(t)
        lps.append(float(ls[t]))
        seq.append(t)
        if t in EOS:
            break
    return toks, lps


def max_err_prefix(toks, lps, r):
    err = 0.0
    for t, lp, et, el in zip(toks, lps, r["tokens"], r["logprobs"]):
        if t != et:
            break
        err = max(err, abs(lp - el))
    return err


def teacher_lp(r, mode, force=None):
    """logprobs of expected tokens (teacher forced), per step"""
    seq = r["prompt"] + r["tokens"][:-1]
    plen = len(r["prompt"])
    lg, rl, ri = forward(seq, plen, mode, force)
    lps = [float(logsoftmax64(lg[plen - 1 + i])[t]) for i, t in enumerate(r["tokens"])]
    return np.array(lps), rl, ri


# ---------------------------------------------------------------- main
def main():
    reqs = EXP["requests"]
    # ---- step 1: verify f32
    print("== f32 verification vs expected.json (HF f32 CPU oracle)")
    ok_all = True
    for r in reqs:
        toks, lps = generate(r["prompt"], r["max_new_tokens"], "f32")
        same = toks == r["tokens"]
        err = max_err_prefix(toks, lps, r)
        ok_all &= same and err < 1e-4
        print(f"  req {r['id']}: P={len(r['prompt'])} G={len(r['tokens'])} tokens_equal={same} max|dlp|={err:.2e}")
    if not ok_all:
        print("f32 verification FAILED")
        sys.exit(1)

    # ---- f32 reference routing on expected sequence
    ref = {}
    print("\n== f32 router: smallest (2nd-3rd) router-logit gap per layer [pos(P=prompt,G=gen), gap]; "
          "also same on softmax probs")
    for r in reqs:
        lp, rl, ri = teacher_lp(r, "f32")
        ref[r["id"]] = (lp, rl, ri)
        plen = len(r["prompt"])
        parts, gmin, gminp = [], 1e9, 1e9
        for l in range(NL):
            s = np.sort(rl[l], -1)[:, ::-1]
            gap = s[:, 1] - s[:, 2]
            p = int(np.argmin(gap))
            pr = np.exp(rl[l].astype(np.float64) - rl[l].max(-1, keepdims=True))
            pr /= pr.sum(-1, keepdims=True)
            sp = np.sort(pr, -1)[:, ::-1]
            gp = (sp[:, 1] - sp[:, 2]).min()
            gmin, gminp = min(gmin, gap[p]), min(gminp, gp)
            parts.append(f"L{l}: pos {p}{'P' if p < plen else 'G'} {gap[p]:.4f}")
        print(f"  req {r['id']}: " + " | ".join(parts)
              + f"   (min logit gap {gmin:.5f}, prob gap {gminp:.5f}; expected.json min_router_gap "
              f"{r.get('min_router_gap', float('nan')):.5f})")

    # ---- step 2/3: modes
    print("\n== modes (rounding only inside expert FFN).  per request: tok=generated tokens equal expected, "
          "err=max|lp-exp| over matching prefix,\n   flips=#positions with top-2 set != f32 per layer "
          "(teacher-forced on prompt+expected[:-1]), tf=teacher-forced max err, forced=tf err with f32 routing forced")
    hdr = f"{'mode':11s} {'req':>5s} {'tok':>4s} {'err':>9s} {'flips L0/L1/L2':>15s} {'tf':>9s} {'forced':>9s}  flip sites (layer:pos f32gap)"
    print(hdr)
    summary = {}
    for mode in MODES:
        worst = 0.0
        for r in reqs:
            plen = len(r["prompt"])
            toks, lps = generate(r["prompt"], r["max_new_tokens"], mode)
            same = toks == r["tokens"]
            err = max_err_prefix(toks, lps, r)
            worst = max(worst, err)
            rlp, rrl, rri = ref[r["id"]]
            tlp, rl, ri = teacher_lp(r, mode)
            flips, sites = [], []
            for l in range(NL):
                a = np.sort(ri[l], -1)
                b = np.sort(rri[l], -1)
                bad = np.nonzero((a != b).any(-1))[0]
                flips.append(len(bad))
                for p in bad:
                    s = np.sort(rrl[l][p])[::-1]
                    sites.append(f"L{l}:{p}{'P' if p < plen else 'G'} {s[1]-s[2]:.4f}")
            exp_lp = np.array(r["logprobs"])
            tf = float(np.abs(tlp - exp_lp).max())
            flp, _, _ = teacher_lp(r, mode, force=rri)
            fe = float(np.abs(flp - exp_lp).max())
            fl = "/".join(map(str, flips))
            print(f"{mode:11s} {r['id']:5d} {('yes' if same else 'NO'):>4s} {err:9.2e} {fl:>15s} {tf:9.2e} {fe:9.2e}  "
                  + ", ".join(sites[:6]) + (" ..." if len(sites) > 6 else ""))
        summary[mode] = worst
    # ---- single-site attribution: f32 everywhere, but swap 2nd<->3rd expert at ONE (layer,pos)
    print("\n== sensitivity: f32 model, top-2 forced to swap 2nd<->3rd expert at a single (layer,pos) with f32 gap<0.02;"
          "\n   max teacher-forced |dlp| over generated steps (step of max). Sites with err>0.05 listed, plus counts")
    for r in reqs:
        plen = len(r["prompt"])
        rlp, rrl, rri = ref[r["id"]]
        exp_lp = np.array(r["logprobs"])
        big, n = [], 0
        for l in range(NL):
            order = np.argsort(-rrl[l], -1, kind="stable")
            gap = np.take_along_axis(rrl[l], order[:, 1:2], -1)[:, 0] - np.take_along_axis(rrl[l], order[:, 2:3], -1)[:, 0]
            for p in np.nonzero(gap < 0.02)[0]:
                n += 1
                force = [x.copy() for x in rri]
                force[l][p] = [order[p, 0], order[p, 2]]
                flp, _, _ = teacher_lp(r, "f32", force=force)
                d = np.abs(flp - exp_lp)
                if d.max() > 0.05:
                    big.append(f"L{l}:{p}{'P' if p < plen else 'G'} gap {gap[p]:.4f} -> {d.max():.3f} @step {int(d.argmax())}")
        print(f"  req {r['id']}: {n} sites with gap<0.02; {len(big)} give err>0.05: " + "; ".join(big))

    # ---- signed gap at the critical sites under each mode (negative = flipped vs f32)
    crit = [(1014, 1, 50), (1021, 1, 302)]
    print("\n== signed router gap (f32's 2nd - f32's 3rd expert logit) at critical sites, teacher-forced; <0 means flipped")
    print("  " + " ".join(f"{m:>10s}" for m in MODES))
    for rid, l, p in crit:
        r = [q for q in reqs if q["id"] == rid][0]
        order = np.argsort(-ref[rid][1][l][p], kind="stable")
        row = []
        for m in MODES:
            _, rl, _ = teacher_lp(r, m)
            row.append(f"{rl[l][p][order[1]] - rl[l][p][order[2]]:10.4f}")
        print("  " + " ".join(row) + f"   req {rid} L{l} pos {p}")

    print("\n== max logprob error over all requests (generation, matching prefix)")
    for m in MODES:
        print(f"  {m:11s} {summary[m]:.4f}")


if __name__ == "__main__":
    main()
