"""One tokenizer in a process of its own: the child side of bench_tokenization --mode=process.

    python -m benchmarks.tokenize_process --contender=NAME --lines=FILE --vocab=VOCAB

Reads FILE (one text a line, UTF-8), builds the tokenizer, turns every line into WordPiece
ids (lower-casing, no special tokens) and prints one JSON line: seconds to import and build
the tokenizer, wall and CPU seconds of tokenizing all lines, the number of lines and ids,
and a SHA-256 of the ids (every line's ids and its id count) so that the parent can check
that contenders agree. Contenders:
  original     bert/tokenization.py FullTokenizer from bert-tensorflow==1.0.4 (the TF1 names
               it needs are checked by benchmarks/run_original.py), tokenize +
               convert_tokens_to_ids line by line
  ours_python  data_prep.tokenizer.tokenization.FullTokenizer, line by line (pure Python, memoised)
  ours_lines   data_prep.pretraining.shards.batch_tokenizer("python"): what
               create_pretraining_data tokenizes with (compiled table of distinct tokens)
  ours_tf      data_prep.tokenizer.text_tokenizer.BertTextTokenizer.batch_tokenize (in-graph, TF)
  hf           Hugging Face tokenizers BertWordPieceTokenizer.encode_batch (Rust, all cores)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

START = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTENDERS = ("original", "ours_python", "ours_lines", "ours_tf", "hf")


def build(contender: str, vocab: str):
    """-> a function from a list of texts to (flat ids, ids per text), as Python lists."""
    if contender == "original":
        from benchmarks import run_original
        run_original.patch_tensorflow()
        from absl import flags
        from bert import tokenization
        flags.FLAGS([sys.argv[0]])  # its flag --preserve_unused_tokens (default False) is read
        tok = tokenization.FullTokenizer(vocab_file=vocab, do_lower_case=True)
        return _per_line(lambda s: tok.convert_tokens_to_ids(tok.tokenize(s)))
    if contender == "ours_python":
        from data_prep.tokenizer import tokenization
        tok = tokenization.FullTokenizer(vocab, do_lower_case=True)
        return _per_line(lambda s: tok.convert_tokens_to_ids(tok.tokenize(s)))
    if contender == "ours_lines":
        from data_prep.pretraining import shards
        tok = shards.batch_tokenizer("python", vocab, True)

        def lines(texts):
            flat, counts = tok.flat(texts)
            return flat.tolist(), counts.tolist()
        return lines
    if contender == "ours_tf":
        from data_prep.tokenizer import text_tokenizer
        tok = text_tokenizer.BertTextTokenizer(vocab, do_lower_case=True)
        return _lists(lambda texts: tok.batch_tokenize(texts, 4096))
    if contender == "hf":
        from tokenizers import BertWordPieceTokenizer
        tok = BertWordPieceTokenizer(vocab, lowercase=True)
        return _lists(lambda texts: [e.ids for e in tok.encode_batch(
            texts, add_special_tokens=False)])
    raise SystemExit(f"--contender must be one of {CONTENDERS}, got {contender!r}")


def _per_line(ids_of):
    def run(texts):
        flat, counts = [], []
        for text in texts:
            ids = ids_of(text)
            flat += ids
            counts.append(len(ids))
        return flat, counts
    return run


def _lists(batch):
    def run(texts):
        flat, counts = [], []
        for ids in batch(texts):
            flat += ids
            counts.append(len(ids))
        return flat, counts
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contender", required=True, choices=CONTENDERS)
    parser.add_argument("--lines", required=True)
    parser.add_argument("--vocab", required=True)
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    with open(args.lines, encoding="utf-8", newline="") as f:
        texts = f.read().split("\n")
    if texts and texts[-1] == "":
        texts.pop()
    tokenize = build(args.contender, args.vocab)
    ready = time.perf_counter()
    wall, cpu = time.perf_counter(), time.process_time()
    flat, counts = tokenize(texts)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    digest = hashlib.sha256(json.dumps([flat, counts]).encode()).hexdigest()
    print(json.dumps({"contender": args.contender, "setup_s": ready - START,
                      "tokenize_wall_s": wall, "tokenize_cpu_s": cpu, "lines": len(texts),
                      "ids": len(flat), "sha256": digest}))


if __name__ == "__main__":
    main()
