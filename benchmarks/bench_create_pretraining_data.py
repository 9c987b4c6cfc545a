"""Pretraining-data throughput: data_prep.create_pretraining_data vs the original algorithm.

  python benchmarks/bench_create_pretraining_data.py [--repeat=2] [--dupe_factor=10]

Same input, same run: the shipped corpus (data/corpus_sentences, 1.4 MB) copied --repeat
times as separate files. Rows:
  ours, rng=original / rng=vectorized, 1 worker / 2 workers: create_pretraining_data end to
    end (read, tokenize, instances, encode, write shards), wall clock including tokenizer
    set-up and worker start-up. rng=original reproduces the original's draws; rng=vectorized
    (data_prep/instances_vectorized.py) keeps its rules and probabilities, not its draws.
  reference: tests/data_prep/reference_pretraining_data.py (the original script's algorithm
    on token strings, one process, one tf.train.Example per instance) with
    data_prep.tokenization.FullTokenizer -- the stand-in for the original script.
  reference, literal tokenizer (--literal_tokenizer): the same with
    tests/data_prep/reference_tokenizer.py, the original's tokenizer rules one character at a
    time, closer to the original tokenizer's speed.
Per-core rate = instances / seconds / workers. Ratios are per core against the reference.
A second table splits our rows' time by stage (the shards' own timers, summed over shards, in
microseconds per instance): read+tokenize, instances, encode (tf.train.Example bytes), write.
Each row is the best of --trials runs, the rows interleaved, so that other load on the machine
hits them alike; the load average is printed with the table. Worker processes come from a fork
server that imports TensorFlow once per process (~4 s): the first 2-worker trial pays it, the
later ones reuse it. Every run includes building the tokenizer and reading the vocabulary.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import logging  # noqa: E402

from data_prep import create_pretraining_data as cpd  # noqa: E402
from data_prep import instances as inst  # noqa: E402
from data_prep import tokenization  # noqa: E402
from tests.data_prep import reference_pretraining_data as ref  # noqa: E402
from tests.data_prep import reference_tokenizer  # noqa: E402

VOCAB = os.path.join(REPO, "tests", "data", "vocab_uncased.txt")
CORPUS = os.path.join(REPO, "data", "corpus_sentences")


class LiteralTokenizer:
    """reference_tokenizer.ReferenceTokenizer with the FullTokenizer methods ref.run uses."""

    def __init__(self, vocab_file: str):
        self._tok = reference_tokenizer.ReferenceTokenizer(vocab_file, True)
        self.vocab = self._tok.vocab
        self.tokenize = self._tok.tokenize

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[t] for t in tokens]


def make_inputs(directory: str, repeat: int) -> list[str]:
    files = []
    for r in range(repeat):
        for name in sorted(os.listdir(CORPUS)):
            path = os.path.join(directory, f"r{r}-{name}")
            shutil.copy(os.path.join(CORPUS, name), path)
            files.append(path)
    return files


def run_ours(files, out_dir, workers, dupe_factor, tokenizer, rng):
    cpd._TOKENIZE_FNS.clear()  # count tokenizer and vocabulary set-up, as a fresh run would
    cpd._VOCAB_IDS.clear()
    settings = cpd.Settings(VOCAB, options=inst.InstanceOptions(), dupe_factor=dupe_factor,
                            tokenizer=tokenizer, rng=rng)
    outputs = [cpd.shard_file_name(out_dir, k, len(files), False) for k in range(len(files))]
    start = time.perf_counter()
    summary = cpd.create_pretraining_data(files, outputs, settings, num_workers=workers)
    return summary["counts"]["instances"], time.perf_counter() - start, summary["shard_seconds"]


def run_reference(files, out_dir, dupe_factor, make_tokenizer):
    start = time.perf_counter()  # the original script also builds its tokenizer in main()
    count = ref.run(files, make_tokenizer(), [os.path.join(out_dir, "reference.tfrecord")],
                    dupe_factor=dupe_factor)
    return count, time.perf_counter() - start, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="corpus copies (input size)")
    parser.add_argument("--dupe_factor", type=int, default=10)
    parser.add_argument("--literal_tokenizer", action="store_true",
                        help="also time the reference with the literal (slow) tokenizer")
    parser.add_argument("--tokenizer", default="python", choices=cpd.TOKENIZERS)
    parser.add_argument("--trials", type=int, default=2, help="best of N runs per row")
    parser.add_argument("--rng", default="original,vectorized",
                        help="comma-separated --rng modes of ours to time")
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)
    best: dict = {}  # row name -> (workers, instances, fastest seconds, stage seconds)

    def keep(name, workers, count, seconds, stages):
        if name not in best or seconds < best[name][2]:
            best[name] = (workers, count, seconds, stages)

    with tempfile.TemporaryDirectory() as tmp:
        inputs = os.path.join(tmp, "in")
        os.makedirs(inputs)
        files = make_inputs(inputs, args.repeat)
        size_mb = sum(os.path.getsize(f) for f in files) / 1e6
        for _ in range(args.trials):  # interleaved, so that load on the machine hits all rows
            keep("reference (original algorithm, FullTokenizer)", 1,
                 *run_reference(files, tmp, args.dupe_factor,
                                lambda: tokenization.FullTokenizer(VOCAB, True)))
            if args.literal_tokenizer:
                keep("reference, literal original tokenizer", 1,
                     *run_reference(files, tmp, args.dupe_factor,
                                    lambda: LiteralTokenizer(VOCAB)))
            for rng in args.rng.split(","):
                for workers in (1, 2):
                    out = os.path.join(tmp, f"ours{workers}")
                    shutil.rmtree(out, ignore_errors=True)  # no resume: build every shard
                    keep(f"ours, rng={rng} ({args.tokenizer} tok., {workers} worker(s))",
                         workers,
                         *run_ours(files, out, workers, args.dupe_factor, args.tokenizer, rng))
    rows = [(name, *values) for name, values in best.items()]
    base = rows[0][2] / rows[0][3]
    print(f"\ninput: {len(files)} files, {size_mb:.2f} MB; dupe_factor={args.dupe_factor}, "
          f"max_seq_length=128; cpu cores: {os.cpu_count()}; load avg: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'implementation':48s} {'workers':>7s} {'instances':>10s} {'seconds':>8s} "
          f"{'inst/s':>8s} {'inst/s/core':>11s} {'x ref/core':>10s}")
    for name, workers, count, seconds, _ in rows:
        rate = count / seconds
        print(f"{name:48s} {workers:7d} {count:10d} {seconds:8.2f} {rate:8.0f} "
              f"{rate / workers:11.0f} {rate / workers / base:10.2f}")
    print(f"\nstage time inside the shards, us per instance (summed over shards):\n"
          f"{'implementation':48s} {'workers':>7s} {'read+tok':>9s} {'instances':>9s} "
          f"{'encode':>9s} {'write':>9s} {'shards':>9s} {'wall/core':>9s}")
    for name, workers, count, seconds, stages in rows:
        if stages:
            us = {k: v / count * 1e6 for k, v in stages.items()}
            print(f"{name:48s} {workers:7d} {us['read_tokenize']:9.2f} {us['instances']:9.2f} "
                  f"{us['encode']:9.2f} {us['write']:9.2f} {us['total']:9.2f} "
                  f"{seconds * workers / count * 1e6:9.2f}")


if __name__ == "__main__":
    main()
