"""In-process comparison: data_prep.create_pretraining_data vs the original algorithm.

  python benchmarks/bench_create_pretraining_data.py --mode=inprocess [--repeat=2] [--dupe_factor=10]

(The default mode of bench_create_pretraining_data.py runs the real original and ours as
separate processes; this one times library calls in one warm process, and serves as an
oracle-style comparison with tests/data_prep/reference_pretraining_data.py.)

Same input, same run: the shipped corpus (data/corpus_sentences, 1.4 MB) copied --repeat
times as separate files. Rows:
  ours, rng=original / rng=vectorized, 1 worker / 2 workers: create_pretraining_data end to
    end (read, tokenize, instances, encode, write shards), wall clock including tokenizer
    set-up and worker start-up. rng=original reproduces the original's draws; rng=vectorized
    (data_prep/pretraining/instances_vectorized.py) keeps its rules and probabilities, not its draws.
  reference: tests/data_prep/reference_pretraining_data.py (the original script's algorithm
    on token strings, one process, one tf.train.Example per instance) with
    data_prep.tokenizer.tokenization.FullTokenizer -- the stand-in for the original script.
  reference, literal tokenizer (--literal_tokenizer): the same with
    tests/data_prep/reference_tokenizer.py, the original's tokenizer rules one character at a
    time, closer to the original tokenizer's speed.
Per-core rate = instances / seconds / workers. Ratios are per core against the reference, from
the median over --trials runs of each row (the rows interleaved, so that other load on the
machine hits them alike; the load average is printed with the table), by wall time and by CPU
time. CPU time is the process's own (time.process_time) for the one-process rows; for 2
workers it is the shards' CPU time as the workers measured it (summary "shard_seconds" "cpu")
plus this process's, so it leaves out worker start-up. On a busy machine CPU time is the
steadier measure. A second table splits our rows' time by stage (the shards' own wall-clock
timers, summed over shards, in microseconds per instance, medians): read+tokenize,
instances, encode (tf.train.Example bytes), write, and the shards' total and CPU time.
Worker processes come from a fork server that imports TensorFlow once per process (~4 s): the
first 2-worker trial pays it, the later ones reuse it. Every run includes building the
tokenizer and reading the vocabulary.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import logging  # noqa: E402

from data_prep.pretraining import shards as cpd  # noqa: E402
from data_prep.pretraining import instances as inst  # noqa: E402
from data_prep.tokenizer import tokenization  # noqa: E402
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
    """-> (instances, wall seconds, CPU seconds, the shards' summed stage seconds)."""
    cpd._TOKENIZE_FNS.clear()  # count tokenizer and vocabulary set-up, as a fresh run would
    cpd._VOCAB_IDS.clear()
    cpd._VOCABS.clear()
    settings = cpd.Settings(VOCAB, options=inst.InstanceOptions(), dupe_factor=dupe_factor,
                            tokenizer=tokenizer, rng=rng)
    outputs = [cpd.shard_file_name(out_dir, k, len(files), False) for k in range(len(files))]
    start, cpu = time.perf_counter(), time.process_time()
    summary = cpd.create_pretraining_data(files, outputs, settings, num_workers=workers)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    stages = summary["shard_seconds"]
    if workers > 1:  # the shards ran in worker processes: add their CPU time
        cpu += stages["cpu"]
    return summary["counts"]["instances"], wall, cpu, stages


def run_reference(files, out_dir, dupe_factor, make_tokenizer):
    start, cpu = time.perf_counter(), time.process_time()  # the original also builds its
    count = ref.run(files, make_tokenizer(),                 # tokenizer in main()
                    [os.path.join(out_dir, "reference.tfrecord")], dupe_factor=dupe_factor)
    return count, time.perf_counter() - start, time.process_time() - cpu, None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench_create_pretraining_data.py --mode=inprocess",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="corpus copies (input size)")
    parser.add_argument("--dupe_factor", type=int, default=10)
    parser.add_argument("--literal_tokenizer", action="store_true",
                        help="also time the reference with the literal (slow) tokenizer")
    parser.add_argument("--tokenizer", default="python", choices=cpd.TOKENIZERS)
    parser.add_argument("--trials", type=int, default=3, help="runs per row (medians)")
    parser.add_argument("--rng", default="original,vectorized",
                        help="comma-separated --rng modes of ours to time")
    args = parser.parse_args(argv)
    logging.set_verbosity(logging.WARNING)
    runs: dict = {}  # row name -> (workers, [(instances, wall s, CPU s, stage seconds)])

    def keep(name, workers, *result):
        runs.setdefault(name, (workers, []))[1].append(result)

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
    median = statistics.median
    rows = []
    for name, (workers, results) in runs.items():
        count = results[0][0]
        wall = median(r[1] for r in results)
        cpu = median(r[2] for r in results)
        stages = None
        if results[0][3]:
            stages = {k: median(r[3].get(k, 0.0) for r in results) for k in results[0][3]}
        rows.append((name, workers, count, wall, min(r[1] for r in results), cpu, stages))
    base_wall = rows[0][2] / rows[0][3]
    base_cpu = rows[0][2] / rows[0][5]
    print(f"\ninput: {len(files)} files, {size_mb:.2f} MB; dupe_factor={args.dupe_factor}, "
          f"max_seq_length=128; cpu cores: {os.cpu_count()}; trials: {args.trials} (medians); "
          f"load avg: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'implementation':48s} {'workers':>7s} {'instances':>9s} {'wall s':>7s} "
          f"{'best s':>7s} {'inst/s/core':>11s} {'x ref/core':>10s} {'CPU us/inst':>11s} "
          f"{'x ref CPU':>9s}")
    for name, workers, count, wall, best, cpu, _ in rows:
        rate = count / wall / workers
        print(f"{name:48s} {workers:7d} {count:9d} {wall:7.2f} {best:7.2f} {rate:11.0f} "
              f"{rate / base_wall:10.2f} {cpu / count * 1e6:11.2f} "
              f"{count / cpu / base_cpu:9.2f}")
    print(f"\nstage time inside the shards, us per instance (summed over shards, medians):\n"
          f"{'implementation':48s} {'workers':>7s} {'read+tok':>9s} {'instances':>9s} "
          f"{'encode':>9s} {'write':>9s} {'shards':>9s} {'shard CPU':>9s} {'wall/core':>9s}")
    for name, workers, count, wall, _, _, stages in rows:
        if stages:
            us = {k: v / count * 1e6 for k, v in stages.items()}
            print(f"{name:48s} {workers:7d} {us['read_tokenize']:9.2f} {us['instances']:9.2f} "
                  f"{us['encode']:9.2f} {us['write']:9.2f} {us['total']:9.2f} "
                  f"{us.get('cpu', 0.0):9.2f} {wall * workers / count * 1e6:9.2f}")


if __name__ == "__main__":
    main()
