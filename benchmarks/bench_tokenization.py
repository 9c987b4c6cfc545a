"""Throughput of our tokenizers vs Hugging Face `tokenizers`, same vocab, same text.

    python benchmarks/bench_tokenization.py [--batch_size=4096] [--repeats=7]

Three inputs: the shipped corpus lines (English, ASCII); a "messy" set (each
corpus line with one of ten multilingual snippets appended: accents, German,
Greek capitals with final sigma, CJK, kana, Hangul, emoji with ZWJ, control,
zero-width and no-break space characters); and "messy + Thai" (the messy lines
with a 90-character Thai sentence appended: no spaces, so one word of over 200
bytes per line, which BertTextTokenizer's fast route has to measure in
characters). The share of lines on BertTextTokenizer's fast route is printed
for each. Before timing, our ids are checked equal to the reference
implementation of the original rules (tests/data_prep/reference_tokenizer.py)
on every benchmarked sentence.

Rows:
  tf graph       BertTextTokenizer.tokenize on pre-built string tensors
                 (what a tf.data pipeline or SavedModel sees), one call at a
                 time, or from one Python thread per core;
  tf graph, general route forced  the same, but every line through the
                 general route, which only lines with characters the fast
                 route cannot take exactly use (invalid UTF-8, a few that NFD
                 reorders, punctuation newer than Python's Unicode tables);
  tf batch_tokenize  Python list in, Python lists out (threads by default);
  python FullTokenizer  pure Python, memoised;
  hf tokenizers  BertWordPieceTokenizer.encode_batch (Rust, all cores), ids read;
  hf BertTokenizerFast  transformers' wrapper of the same Rust tokenizer.
The HF rows are skipped if the packages are missing (pip install tokenizers
transformers).

--mode=process (or both, the default) also times each tokenizer as a whole process
of its own (benchmarks/tokenize_process.py: start Python, import, build the tokenizer
from the vocab, tokenize every line to ids), the way a script pays for it:
  original     google-research/bert's bert/tokenization.py FullTokenizer (PyPI
               bert-tensorflow==1.0.4, pip install --no-deps), line by line;
  ours_python  data_prep.tokenizer.tokenization.FullTokenizer, line by line;
  ours_lines   the batch tokenizer create_pretraining_data uses;
  ours_tf      BertTextTokenizer.batch_tokenize;
  hf           tokenizers' BertWordPieceTokenizer.encode_batch.
Each runs --process_repeats times, interleaved in a rotating order; medians of the
process's wall and CPU seconds (os.wait4: user + sys, all threads), its peak RSS (this
process does not import TensorFlow in --mode=process: Linux reports a child's RSS as at
least its parent's), and
of the tokenizing alone as the child timed it. Ratios are against the original in the
same run; the ids of every contender are checked against the original's (a hash of
all ids per line).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


from data_prep.tokenizer import tokenization  # noqa: E402
from tests.data_prep import reference_tokenizer as ref  # noqa: E402

VOCAB = os.path.join(REPO, "tests", "data", "vocab_uncased.txt")
MESS = ["Café naïve ÉCOLE", "Straße ΟΔΥΣΣΕΥΣ", "中文分词，你好！", "ひらがなとカタカナ",
        "한국어 텍스트", "👨\u200d👩\u200d👧 👍🏽", "a\x00b\x07c\ufffd", "zero\u200bwidth\u00ad",
        "nbsp\u00a0ideo\u3000", "Привет, МИР!"]


def corpus_lines() -> list[str]:
    lines = []
    for path in sorted(glob.glob(os.path.join(REPO, "data", "corpus", "*.txt"))):
        with open(path, encoding="utf-8") as f:
            lines.extend(line for line in f.read().split("\n") if line.strip())
    return lines


def messy(lines: list[str]) -> list[str]:
    return [f"{line} {MESS[i % len(MESS)]}" for i, line in enumerate(lines)]


THAI = "ภาษาไทยเป็นภาษาที่ไม่มีการเว้นวรรคระหว่างคำซึ่งทำให้การตัดคำเป็นเรื่องยากสำหรับคอมพิวเตอร์"


def with_thai(lines: list[str]) -> list[str]:
    return [f"{line} {THAI}" for line in messy(lines)]


def median_rates(fns: dict, n: int, repeats: int) -> dict:
    """name -> (sentences per wall second, per CPU second), medians of `repeats`.

    Runs are interleaved round-robin after a warm-up, so load from other
    processes on a shared machine hits every tokenizer alike. CPU time is
    this process's, all threads (TF's and the Rust tokenizers' included): it
    is the steadier figure when the machine is shared.
    """
    for fn in fns.values():
        fn()
    wall: dict = {name: [] for name in fns}
    cpu: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (n / statistics.median(wall[name]), n / statistics.median(cpu[name]))
            for name in fns}


def runners(lines: list[str], batch_size: int):
    """name -> (zero-arg function tokenizing all lines, function returning ids)."""
    import tensorflow as tf  # here, so that --mode=process keeps this process small
    from data_prep.tokenizer import text_tokenizer
    bert = text_tokenizer.BertTextTokenizer(VOCAB, do_lower_case=True)
    tensors = [tf.constant(lines[i:i + batch_size]) for i in range(0, len(lines), batch_size)]
    full = tokenization.FullTokenizer(VOCAB, do_lower_case=True)
    pool = concurrent.futures.ThreadPoolExecutor(os.cpu_count())
    general = tf.function(lambda s: bert._general_ids(s), autograph=False,
                          input_signature=[tf.TensorSpec([None], tf.string)])

    def general_lists():
        out = []
        for values, splits in map(general, tensors):
            values, splits = values.numpy().tolist(), splits.numpy().tolist()
            out += [values[a:b] for a, b in zip(splits[:-1], splits[1:])]
        return out
    out = {
        "tf graph (tensors)": lambda: [bert.tokenize(t) for t in tensors],
        "tf graph, general route forced": lambda: [general(t) for t in tensors],
        "tf graph (tensors, threads)": lambda: list(pool.map(bert.tokenize, tensors)),
        "tf batch_tokenize (lists)": lambda: bert.batch_tokenize(lines, batch_size),
        "python FullTokenizer": lambda: [
            full.convert_tokens_to_ids(full.tokenize(s)) for s in lines],
    }
    checks = {"tf batch_tokenize (lists)": out["tf batch_tokenize (lists)"],
              "tf general route forced": general_lists,
              "python FullTokenizer": out["python FullTokenizer"]}
    try:
        from tokenizers import BertWordPieceTokenizer
        hf = BertWordPieceTokenizer(VOCAB, lowercase=True)
        out["hf tokenizers"] = lambda: [
            e.ids for e in hf.encode_batch(lines, add_special_tokens=False)]
    except ImportError:
        print("(hf tokenizers not installed: row skipped)")
    try:
        from transformers import BertTokenizerFast
        hft = BertTokenizerFast(VOCAB, do_lower_case=True)
        out["hf BertTokenizerFast"] = lambda: hft(lines, add_special_tokens=False)["input_ids"]
    except ImportError:
        print("(transformers not installed: row skipped)")
    return out, checks, bert


def bench(title: str, lines: list[str], batch_size: int, repeats: int) -> None:
    import tensorflow as tf
    print(f"\n== {title}: {len(lines)} sentences, "
          f"{sum(map(len, lines)) / len(lines):.0f} chars on average ==")
    fns, checks, bert = runners(lines, batch_size)
    fast = 0
    for i in range(0, len(lines), batch_size):
        strings = tf.constant(lines[i:i + batch_size])
        fast += int(tf.reduce_sum(tf.cast(
            bert._second_chance(strings, bert._is_fast(strings))[1], tf.int32)))
    print(f"on BertTextTokenizer's fast route: {fast}/{len(lines)} sentences")
    reference = ref.ReferenceTokenizer(VOCAB, do_lower_case=True)
    expected = [reference.ids(s) for s in lines]
    for name, fn in checks.items():
        ok = fn() == expected
        print(f"ids == reference on all {len(lines)} sentences ({name}): {ok}")
        if not ok:
            raise SystemExit(f"{name}: ids differ from the reference")
    if "hf tokenizers" in fns:
        same = sum(a == b for a, b in zip(fns["hf tokenizers"](), expected))
        print(f"(hf tokenizers agrees with the reference on {same}/{len(lines)})")
    rates = median_rates(fns, len(lines), repeats)
    peer = rates.get("hf tokenizers", (None, None))
    print(f"{'tokenizer':32s} {'sentences/s':>12s} {'vs hf':>8s} "
          f"{'per CPU-s':>12s} {'vs hf':>8s}")
    for name, (rate, cpu_rate) in rates.items():
        ratios = [f"{r / p:7.2f}x" if p else "       -"
                  for r, p in ((rate, peer[0]), (cpu_rate, peer[1]))]
        print(f"{name:32s} {rate:12,.0f} {ratios[0]} {cpu_rate:12,.0f} {ratios[1]}")


def process_contenders() -> list[str]:
    from importlib import metadata
    names = []
    for name, dist in (("original", "bert-tensorflow"), ("ours_python", None),
                       ("ours_lines", None), ("ours_tf", None), ("hf", "tokenizers")):
        try:
            if dist:
                metadata.version(dist)
            names.append(name)
        except metadata.PackageNotFoundError:
            print(f"({dist} not installed: whole-process row {name} skipped)")
    return names


def bench_processes(title: str, lines: list[str], repeats: int,
                    contenders: list[str]) -> None:
    """Each contender as a whole process of its own, interleaved; table vs the original."""
    import json
    import tempfile
    from benchmarks.bench_create_pretraining_data import run_process

    print(f"\n== whole processes, {title}: {len(lines)} sentences ==")
    runs: dict = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lines.txt")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("".join(line + "\n" for line in lines))
        for r in range(repeats):
            for name in contenders[r % len(contenders):] + contenders[:r % len(contenders)]:
                log = os.path.join(tmp, f"{name}.log")
                usage = run_process([sys.executable, "-m", "benchmarks.tokenize_process",
                                     f"--contender={name}", f"--lines={path}",
                                     f"--vocab={VOCAB}"], log)
                with open(log, encoding="utf-8", errors="replace") as f:
                    child = json.loads(f.read().strip().splitlines()[-1])
                runs[name].append({**usage, **child})
    med = {name: {k: statistics.median(r[k] for r in rs)
                  for k in ("wall", "cpu", "rss", "setup_s", "tokenize_wall_s",
                            "tokenize_cpu_s")} for name, rs in runs.items()}
    base = med.get("original")
    ref_hash = runs["original"][0]["sha256"] if "original" in runs else None
    n = len(lines)
    print("| tokenizer | process wall s | process CPU s | RSS MB | set-up s | "
          "tokenize lines/s (wall / CPU) | x original, process CPU | "
          "x original, tokenize CPU | ids == original |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m in med.items():
        same = {r["sha256"] for r in runs[name]} == {ref_hash} if ref_hash else None
        ratios = "- | -"
        if base:
            ratios = (f"{base['cpu'] / m['cpu']:.2f}x | "
                      f"{base['tokenize_cpu_s'] / m['tokenize_cpu_s']:.2f}x")
        print(f"| {name} | {m['wall']:.2f} | {m['cpu']:.2f} | {m['rss']:.0f} | "
              f"{m['setup_s']:.2f} | {n / m['tokenize_wall_s']:,.0f} / "
              f"{n / m['tokenize_cpu_s']:,.0f} | {ratios} | {same} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--mode", default="both", choices=("inprocess", "process", "both"))
    parser.add_argument("--process_repeats", type=int, default=3)
    parser.add_argument("--inputs", default="corpus,messy,thai",
                        help="comma-separated: corpus, messy, thai")
    args = parser.parse_args()
    from importlib import metadata
    print(f"TF {metadata.version('tensorflow')}, {os.cpu_count()} CPU cores, "
          f"batch {args.batch_size}")
    lines = corpus_lines()
    inputs = {"corpus": ("corpus (ASCII English)", lines),
              "messy": ("messy multilingual", messy(lines)),
              "thai": ("messy + Thai", with_thai(lines))}
    chosen = [inputs[k] for k in args.inputs.split(",") if k]
    if args.mode in ("inprocess", "both"):
        for title, texts in chosen:
            bench(title, texts, args.batch_size, args.repeats)
    if args.mode in ("process", "both"):
        contenders = process_contenders()
        for title, texts in chosen:
            bench_processes(title, texts, args.process_repeats, contenders)


if __name__ == "__main__":
    main()
