#!/usr/bin/env python3
"""make_tokenizer.py: train the bundled model's tokenizer (inputs/model/tokenizer.json).

    python3 tools/make_tokenizer.py [--out inputs/model/tokenizer.json] [--vocab-size 512]

The bundled model (inputs/model) has random weights and vocab_size 512, so any
tokenizer with exactly 512 entries fits it; this one exists so that the text
workflow (tools/prep -> janus generate -> tools/detok, docs/prompts.md) can be
run and tested end to end on it.

What it makes: a byte-level BPE (GPT-2 style: ByteLevel pre-tokenizer without a
prefix space, ByteLevel decoder, no normalizer), so every string encodes without
unknown tokens and decode(encode(text)) == text exactly. Ids:
  0 <|endoftext|>, 1 <|user|>, 2 <|assistant|>, 3 <|system|>  (special tokens)
  4..259   the 256 byte symbols
  260..511 BPE merges learnt from the corpus
The corpus is the repository's own prose: README.md, then docs/*.md in name
order, read from the repository this script sits in. Training is deterministic
for a given corpus (the script prints the corpus' sha256), so rerunning it on the
same files gives the same tokenizer.json byte for byte; after the docs change it
gives a different but equally valid one (nothing depends on particular ids
beyond the four special tokens).

Needs the `tokenizers` package (python3 -m pip install tokenizers).
"""
import argparse
import glob
import hashlib
import json
import os
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECIAL = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>"]


def corpus_files():
    files = [os.path.join(ROOT, "README.md")]
    files += sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    return [f for f in files if os.path.isfile(f)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "inputs", "model", "tokenizer.json"),
                    help="where to write tokenizer.json (default inputs/model/tokenizer.json)")
    ap.add_argument("--vocab-size", type=int, default=512, help="exact vocabulary size (default 512)")
    a = ap.parse_args(argv)

    files = corpus_files()
    if not files:
        sys.exit("make_tokenizer: no corpus (README.md, docs/*.md) found under " + ROOT)
    texts = []
    h = hashlib.sha256()
    for f in files:
        with open(f, encoding="utf-8") as fh:
            t = fh.read()
        texts.append(t)
        h.update(t.encode("utf-8"))

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=a.vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  min_frequency=2, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)

    n = tok.get_vocab_size(with_added_tokens=True)
    if n != a.vocab_size:
        sys.exit(f"make_tokenizer: trained {n} tokens, expected exactly {a.vocab_size} "
                 "(corpus too small for that many merges?)")
    for i, s in enumerate(SPECIAL):
        if tok.token_to_id(s) != i:
            sys.exit(f"make_tokenizer: special token {s} got id {tok.token_to_id(s)}, expected {i}")
    sample = "janus: MoE inference — ünïcödé ✓ 🙂\n<|user|>\nhi\n<|assistant|>\n"
    if tok.decode(tok.encode(sample).ids, skip_special_tokens=False) != sample:
        sys.exit("make_tokenizer: the trained tokenizer does not round-trip text")

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = f"{a.out}.tmp.{os.getpid()}"
    tok.save(tmp, pretty=True)
    # Reload to make sure what was written parses.
    with open(tmp, encoding="utf-8") as fh:
        json.load(fh)
    os.replace(tmp, a.out)
    rel = [os.path.relpath(f, ROOT) for f in files]
    print(f"make_tokenizer: wrote {a.out}: {n} tokens (byte-level BPE, specials "
          f"{', '.join(f'{i} {s}' for i, s in enumerate(SPECIAL))}); corpus {' + '.join(rel)}, "
          f"sha256 {h.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
