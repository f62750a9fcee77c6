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
order, as of commit CORPUS_COMMIT (read with `git show`, so later edits to the
docs do not change the result). Training is deterministic for a given corpus
(the script prints the corpus' sha256), so rerunning it gives the committed
tokenizer.json byte for byte (checked with tokenizers 0.23.3; another version of
the library may order ties differently). --worktree trains on the files as they are now
instead (a different but equally valid tokenizer; nothing depends on
particular ids beyond the four special tokens).

Needs git and the `tokenizers` package (python3 -m pip install tokenizers).
"""
import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECIAL = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>"]
CORPUS_COMMIT = "433c11d2afefc21ef4e316a98455fc45952cd15d"


def git(*args):
    return subprocess.run(["git", "-C", ROOT, *args], check=True, capture_output=True).stdout


def corpus(worktree):
    """[(relative path, text)]: README.md, then docs/*.md in name order."""
    if worktree:
        files = ["README.md"] + sorted(os.path.relpath(f, ROOT) for f in glob.glob(os.path.join(ROOT, "docs", "*.md")))
        out = []
        for f in files:
            if os.path.isfile(os.path.join(ROOT, f)):
                with open(os.path.join(ROOT, f), encoding="utf-8") as fh:
                    out.append((f, fh.read()))
        return out
    try:
        names = git("ls-tree", "--name-only", CORPUS_COMMIT, "docs/").decode().split()
        files = ["README.md"] + sorted(n for n in names if n.endswith(".md"))
        return [(f, git("show", f"{CORPUS_COMMIT}:{f}").decode("utf-8")) for f in files]
    except (OSError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", b"") or b""
        sys.exit(f"make_tokenizer: cannot read the corpus at commit {CORPUS_COMMIT[:12]} with git "
                 f"({err.decode(errors='replace').strip() or e}); --worktree uses the files as they are")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "inputs", "model", "tokenizer.json"),
                    help="where to write tokenizer.json (default inputs/model/tokenizer.json)")
    ap.add_argument("--vocab-size", type=int, default=512, help="exact vocabulary size (default 512)")
    ap.add_argument("--worktree", action="store_true",
                    help="train on README.md and docs/*.md as they are now, not as of CORPUS_COMMIT")
    a = ap.parse_args(argv)

    docs = corpus(a.worktree)
    if not docs:
        sys.exit("make_tokenizer: no corpus (README.md, docs/*.md) found under " + ROOT)
    texts = [t for _, t in docs]
    h = hashlib.sha256()
    for t in texts:
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
    rel = [f for f, _ in docs]
    where = "working tree" if a.worktree else f"commit {CORPUS_COMMIT[:12]}"
    print(f"make_tokenizer: wrote {a.out}: {n} tokens (byte-level BPE, specials "
          f"{', '.join(f'{i} {s}' for i, s in enumerate(SPECIAL))}); corpus {' + '.join(rel)} ({where}), "
          f"sha256 {h.hexdigest()[:16]}; tokenizers {tokenizers.__version__}")


if __name__ == "__main__":
    main()
