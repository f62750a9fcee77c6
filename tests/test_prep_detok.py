#!/usr/bin/env python3
"""test_prep_detok.py: the text workflow, tools/prep -> janus generate -> tools/detok
(docs/prompts.md), on the bundled model and its tokenizer (inputs/model).

usage: python3 tests/test_prep_detok.py build/janus

In a temporary directory:
  - a JSONL file (plain prompts, chat "messages", non-ASCII text, ids out of
    order, per-request max_new_tokens / temperature / top_p / top_k / seed) and
    a .txt file (blank and CRLF lines; --text --chat --add-bos) go through
    tools/prep, `janus generate --model inputs/model --requests R --out O
    --quiet`, and tools/detok; checked: the requests file holds the ids in file
    order, the prompt tokens the tokenizer gives for the (templated) text, and
    every sampling field (read back with janus_h5.read_requests); detok writes
    every id in order with exactly the result file's tokens, finish_reason,
    logprob sum and latencies; "text" is the tokenizer's decoding of those
    tokens and re-encodes to the same text (and to the same tokens where the
    tokenizer round-trips: always for the prompts, whose "prompt_text" must
    give back the prompt tokens exactly);
  - --max-prompt-tokens with --truncate keeps the last tokens (and the BOS);
  - bad inputs (invalid JSON, missing prompt, duplicate id, over-long prompt,
    mistyped field, empty prompt, a text line too long) exit 2 with a message
    naming FILE:LINE, and leave no output file and no temporary file;
  - detok on a missing file, a requests file, or with a wrong tokenizer
    exits 2 naming the file.
One line per check, then "N passed, N failed"; exit status 1 if any failed.
The tools run under this test's Python (sys.executable), which needs h5py,
numpy and tokenizers.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import janus_h5  # noqa: E402

MODEL = os.path.join(ROOT, "inputs", "model")
PREP = os.path.join(ROOT, "tools", "prep")
DETOK = os.path.join(ROOT, "tools", "detok")
TIMEOUT_S = 120

passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name}" + (f": {detail}" if detail else ""))
    return ok


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    return p.returncode, p.stdout, p.stderr


def chat(messages):
    """The template docs/prompts.md documents (written out here independently)."""
    return "".join("<|%s|>\n%s\n" % (m["role"], m["content"]) for m in messages) + "<|assistant|>\n"


def write(path, text, newline=None):
    with open(path, "w", encoding="utf-8", newline=newline) as f:
        f.write(text)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def no_output(out):
    left = [p for p in glob.glob(out + "*")]
    return not left, f"left behind: {left}"


def generate_and_detok(tag, janus, tmp, req, with_prompts):
    """janus generate + detok; returns (results dict, detok records) or None."""
    out = os.path.join(tmp, f"{tag}.out.h5")
    rc, so, se = run([janus, "generate", "--model", MODEL, "--requests", req, "--out", out, "--quiet"])
    if not check(f"{tag}: janus generate exits 0", rc == 0, se.strip()[-400:]):
        return None
    jl = os.path.join(tmp, f"{tag}.jsonl")
    cmd = [sys.executable, DETOK, out, "--model", MODEL, "-o", jl] + (["--prompts", req] if with_prompts else [])
    rc, so, se = run(cmd)
    if not check(f"{tag}: detok exits 0", rc == 0 and os.path.isfile(jl), se.strip()):
        return None
    return janus_h5.read_results(out), read_jsonl(jl)


def check_detok(tag, tok, req, res, recs, prompt_texts):
    """The detok records against the requests and results files."""
    ids = [int(i) for i in req["ids"]]
    check(f"{tag}: detok writes every id once, in the requests' order",
          [r.get("id") for r in recs] == ids == [int(i) for i in res["ids"]],
          f"detok {[r.get('id') for r in recs]}, requests {ids}")
    keys = {"id", "text", "tokens", "finish_reason", "logprob_sum", "ttft_s", "tpot_s"}
    if prompt_texts is not None:
        keys.add("prompt_text")
    bad = [r.get("id") for r in recs if set(r) != keys]
    check(f"{tag}: every record has exactly the keys {sorted(keys)}", not bad, f"ids {bad}")
    n = min(len(recs), len(ids))
    bad = [ids[i] for i in range(n) if recs[i].get("tokens") != [int(t) for t in res["tokens"][i]]]
    check(f"{tag}: tokens equal the results file's", not bad and len(recs) == len(ids), f"ids {bad}")
    bad = []
    for i in range(n):
        r, want_fr = recs[i], {0: "length", 1: "stop"}[int(res["finish_reason"][i])]
        lp = float(res["logprobs"][i].astype("float64").sum())
        if (r.get("finish_reason") != want_fr or not isinstance(r.get("logprob_sum"), float)
                or abs(r["logprob_sum"] - lp) > 1e-6 * max(1.0, abs(lp))
                or r.get("ttft_s") != float(res["ttft_s"][i]) or r.get("tpot_s") != float(res["tpot_s"][i])):
            bad.append(ids[i])
    check(f"{tag}: finish_reason, logprob_sum, ttft_s, tpot_s match the results file", not bad, f"ids {bad}")
    bad = [ids[i] for i in range(n) if not 1 <= len(recs[i]["tokens"]) <= int(req["max_new_tokens"][i])]
    check(f"{tag}: each request got 1..max_new_tokens tokens", not bad, f"ids {bad}")
    bad = [ids[i] for i in range(n) if recs[i]["text"] != tok.decode(recs[i]["tokens"], skip_special_tokens=False)]
    check(f"{tag}: text is the tokenizer's decoding of the tokens", not bad, f"ids {bad}")
    # Re-encoding: the text always comes back (byte-level BPE); the same tokens
    # only where the model emitted the tokenizer's own (canonical) split, which
    # a random-weight model rarely does, so those are counted, not required.
    bad, same = [], 0
    for i in range(n):
        t = recs[i]["text"]
        again = tok.encode(t, add_special_tokens=False).ids
        if tok.decode(again, skip_special_tokens=False) != t:
            bad.append(ids[i])
        same += again == recs[i]["tokens"]
    check(f"{tag}: text re-encodes to the same text ({same}/{n} to the very same tokens)", not bad, f"ids {bad}")
    if prompt_texts is None:
        return
    bad = [ids[i] for i in range(n) if recs[i].get("prompt_text") != prompt_texts[i]]
    check(f"{tag}: prompt_text is the (templated) prompt text", not bad,
          f"ids {bad}" + (f": {recs[ids.index(bad[0])].get('prompt_text')!r}" if bad else ""))
    bad = [ids[i] for i in range(n)
           if tok.encode(recs[i].get("prompt_text", ""), add_special_tokens=False).ids != list(req["prompts"][i])]
    check(f"{tag}: prompt_text re-encodes to exactly the prompt tokens", not bad, f"ids {bad}")


def bad_case(name, tmp, content, line, want, extra_args=(), text=False, suffix=".jsonl"):
    path = os.path.join(tmp, f"bad_{name.replace(' ', '_')}{suffix}")
    write(path, content)
    out = os.path.join(tmp, f"bad_{name.replace(' ', '_')}.h5")
    cmd = [sys.executable, PREP, path, "--model", MODEL, "-o", out] + (["--text"] if text else []) + list(extra_args)
    rc, so, se = run(cmd)
    msg = se.strip()
    ok = (rc == 2 and f"{path}:{line}:" in msg and want in msg and len(msg.splitlines()) == 1
          and not glob.glob(out + "*"))
    check(f"bad input ({name}): exit 2, one message naming {os.path.basename(path)}:{line}, no output",
          ok, f"rc {rc}, stderr {msg!r}, files {glob.glob(out + '*')}")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python3 tests/test_prep_detok.py JANUS_BINARY")
    janus = os.path.abspath(sys.argv[1])
    if not os.access(janus, os.X_OK):
        sys.exit(f"test_prep_detok: {janus}: not an executable (build with: ninja -C build)")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        sys.exit("test_prep_detok: needs the Python package tokenizers (python3 -m pip install tokenizers)")

    # ---- the fixture ----------------------------------------------------------
    tok_path = os.path.join(MODEL, "tokenizer.json")
    tok = Tokenizer.from_file(tok_path)
    with open(os.path.join(MODEL, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    check(f"fixture: inputs/model/tokenizer.json has exactly the model's vocab_size {vocab}",
          tok.get_vocab_size(with_added_tokens=True) == vocab, f"{tok.get_vocab_size(with_added_tokens=True)}")
    specials = {s: tok.token_to_id(s) for s in ("<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>")}
    check("fixture: special tokens <|endoftext|> 0, <|user|>, <|assistant|>, <|system|>",
          specials["<|endoftext|>"] == 0 and all(v is not None for v in specials.values()), str(specials))

    with tempfile.TemporaryDirectory(prefix="janus-prep-") as tmp:
        # ---- JSONL: prompts, chats, sampling fields ---------------------------
        lines = [
            {"id": 41, "prompt": "The attention ranks and the MoE ranks exchange activations."},
            {"id": 7, "messages": [{"role": "system", "content": "You are terse."},
                                   {"role": "user", "content": "What does the planner do?"}],
             "temperature": 0.8, "top_p": 0.9, "seed": 1234},
            {"id": 3, "prompt": "Ünïcödé — “quotes”, emoji 🙂 and 漢字.", "max_new_tokens": 3},
            {"id": 100, "messages": [{"role": "user", "content": "Hi"},
                                     {"role": "assistant", "content": "Hello."},
                                     {"role": "user", "content": "Tell me about experts."}],
             "top_k": 5, "temperature": 1.0, "seed": 9, "max_new_tokens": 6},
            {"id": 0, "prompt": "  leading and trailing spaces  "},
        ]
        texts = [chat(o["messages"]) if "messages" in o else o["prompt"] for o in lines]
        src = os.path.join(tmp, "prompts.jsonl")
        write(src, "".join(json.dumps(o, ensure_ascii=False) + "\n" + ("\n" if i == 1 else "")
                           for i, o in enumerate(lines)))  # a blank line after line 2
        req_path = os.path.join(tmp, "prompts.h5")
        rc, so, se = run([sys.executable, PREP, src, "--model", MODEL, "-o", req_path, "--max-new-tokens", "8"])
        total = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)
        check("jsonl: prep exits 0 and prints one summary line (requests, tokens, longest)",
              rc == 0 and len(so.strip().splitlines()) == 1 and f"{len(lines)} requests" in so
              and f"{total} prompt tokens" in so and "longest prompt" in so, f"rc {rc}, {so!r} {se!r}")
        if rc == 0:
            req = janus_h5.read_requests(req_path)
            check("jsonl: requests ids are the file's, in file order",
                  [int(i) for i in req["ids"]] == [o["id"] for o in lines], str(req["ids"]))
            bad = [o["id"] for o, t, p in zip(lines, texts, req["prompts"])
                   if list(p) != tok.encode(t, add_special_tokens=False).ids]
            check("jsonl: prompt tokens are the tokenizer's encoding of the (templated) text", not bad, f"ids {bad}")
            check("jsonl: chat lines start with <|system|>/<|user|> and end with <|assistant|> \\n",
                  all(int(p[0]) in (specials["<|system|>"], specials["<|user|>"])
                      and int(p[-2]) == specials["<|assistant|>"]
                      for o, p in zip(lines, req["prompts"]) if "messages" in o))
            want = {"max_new_tokens": [o.get("max_new_tokens", 8) for o in lines],
                    "temperature": [o.get("temperature", 0.0) for o in lines],
                    "top_p": [o.get("top_p", 1.0) for o in lines],
                    "top_k": [o.get("top_k", 0) for o in lines],
                    "seed": [o.get("seed", 0) for o in lines]}
            for k, v in want.items():
                got = [float(x) for x in req[k]]
                check(f"jsonl: per-request {k} in the requests file",
                      all(abs(g - w) < 1e-6 for g, w in zip(got, v)) and len(got) == len(v), f"{got} != {v}")
            r = generate_and_detok("jsonl", janus, tmp, req_path, with_prompts=True)
            if r:
                check_detok("jsonl", tok, req, r[0], r[1], texts)

        # ---- plain text: --text --chat --add-bos + defaults ----------------------
        txt_lines = ["Write a haiku about experts.", "", "Second prompt with a CRLF end.", "   ",
                     "Last line, no newline at the end"]
        txt = os.path.join(tmp, "prompts.txt")
        write(txt, txt_lines[0] + "\n\n" + txt_lines[2] + "\r\n   \n" + txt_lines[4], newline="")
        prompts = [s for s in txt_lines if s.strip()]
        treq_path = os.path.join(tmp, "text.h5")
        rc, so, se = run([sys.executable, PREP, txt, "--text", "--chat", "--add-bos", "--model", MODEL, "-o", treq_path,
                          "--max-new-tokens", "5", "--temperature", "0.5", "--seed", "77"])
        check("text: prep exits 0", rc == 0 and f"{len(prompts)} requests" in so, f"rc {rc}, {so!r} {se!r}")
        if rc == 0:
            treq = janus_h5.read_requests(treq_path)
            check("text: ids 0..N-1 for the non-blank lines",
                  [int(i) for i in treq["ids"]] == list(range(len(prompts))),
                  str(treq["ids"]))
            bad = [i for i, (s, p) in enumerate(zip(prompts, treq["prompts"]))
                   if list(p) != [0] + tok.encode(chat([{"role": "user", "content": s}]), add_special_tokens=False).ids]
            check("text: --add-bos puts id 0 first, then the templated line (no CR kept)", not bad, f"ids {bad}")
            check("text: --max-new-tokens/--temperature/--seed defaults written, top_k left at 0",
                  list(treq["max_new_tokens"]) == [5] * len(prompts)
                  and all(abs(float(t) - 0.5) < 1e-6 for t in treq["temperature"])
                  and list(treq["seed"]) == [77] * len(prompts)
                  and list(treq["top_k"]) == [0] * len(prompts), str(treq))
            r = generate_and_detok("text", janus, tmp, treq_path, with_prompts=False)
            if r:
                check_detok("text", tok, treq, r[0], r[1], None)

        # ---- truncation -----------------------------------------------------------
        tr_path = os.path.join(tmp, "trunc.h5")
        rc, so, se = run([sys.executable, PREP, txt, "--text", "--add-bos", "--model", MODEL, "-o", tr_path,
                          "--max-prompt-tokens", "4", "--truncate"])
        if check("truncate: prep exits 0", rc == 0, se.strip()):
            tr = janus_h5.read_requests(tr_path)
            bad = [i for i, (s, p) in enumerate(zip(prompts, tr["prompts"]))
                   if list(p) != [0] + tok.encode(s, add_special_tokens=False).ids[-3:]]
            check("truncate: BOS + the last 3 tokens kept (cut from the left, BOS counts in N)", not bad, f"ids {bad}")

        # ---- bad input --------------------------------------------------------------
        good = '{"id": 1, "prompt": "one"}\n{"id": 2, "prompt": "two"}\n'
        bad_case("invalid JSON", tmp, good + '{"id": 3, "prompt": "three"\n', 3, "invalid JSON")
        bad_case("missing prompt", tmp, '{"id": 1, "prompt": "one"}\n\n{"id": 2}\n' + good.replace("1", "8"), 3,
                 "missing field prompt")
        bad_case("duplicate id", tmp, good + '{"id": 5, "prompt": "x"}\n{"id": 1, "prompt": "again"}\n', 4,
                 "duplicate id 1 (first on line 1)")
        bad_case("over-long prompt", tmp, good + '{"id": 3, "prompt": "' + "many words here " * 10 + '"}\n', 3,
                 "--max-prompt-tokens 8", extra_args=["--max-prompt-tokens", "8"])
        bad_case("mistyped field", tmp, good + '{"id": 3, "prompt": "x", "max_new_tokens": "ten"}\n', 3,
                 'field max_new_tokens: expected an integer, got "ten"')
        bad_case("empty prompt", tmp, '{"id": 1, "prompt": ""}\n', 1, "empty prompt")
        bad_case("text line too long", tmp, "short\n\n" + "a much longer line of text " * 5 + "\n", 3,
                 "--max-prompt-tokens 6", extra_args=["--max-prompt-tokens", "6"], text=True, suffix=".txt")

        # ---- detok errors -------------------------------------------------------------
        missing = os.path.join(tmp, "nope.h5")
        rc, so, se = run([sys.executable, DETOK, missing, "--model", MODEL])
        check("detok: missing results file -> exit 2 naming it", rc == 2 and missing in se and "no such file" in se,
              f"rc {rc} {se!r}")
        if os.path.isfile(req_path):
            rc, so, se = run([sys.executable, DETOK, req_path, "--model", MODEL])
            check("detok: a requests file given as results -> exit 2 naming it and the format",
                  rc == 2 and req_path in se and "janus-results" in se and not so, f"rc {rc} {se!r}")
            rc, so, se = run([sys.executable, DETOK, req_path, "--tokenizer", src])
            check("detok: a file that is no tokenizer.json -> exit 2 naming it",
                  rc == 2 and src in se, f"rc {rc} {se!r}")

    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
