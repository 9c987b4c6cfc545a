"""Timing helpers shared by the benchmarks.

The benchmark machines are shared and small, so absolute numbers drift while a run goes on.
Every comparison here therefore runs all contenders in ONE process and interleaves them: each
repetition calls every contender once (in a rotating order), and the reported figure is the
median over repetitions. Ratios between contenders measured this way are far steadier than
numbers from separate runs.
"""
from __future__ import annotations

import os

# Quiet TensorFlow and pin the Keras backend before anything imports them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import dataclasses  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402

# (num_hidden_layers, hidden_size, num_attention_heads); intermediate = 4 * hidden.
# The same numbers as bert_tf.config.PRESETS, repeated here so the peers need no bert_tf import.
SIZES = {
    "tiny": (2, 128, 2),
    "mini": (4, 256, 4),
    "small": (4, 512, 8),
    "medium": (8, 512, 8),
    "base": (12, 768, 12),
}
VOCAB_SIZE = 30522


def keras_hub_backbone(size: str, dtype: str):
    """keras-hub's BertBackbone with the sizes of bert_tf's preset `size` (the peer's encoder)."""
    import keras_hub

    layers, hidden, heads = SIZES[size]
    return keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB_SIZE, num_layers=layers, num_heads=heads, hidden_dim=hidden,
        intermediate_dim=4 * hidden, dropout=0.1, max_sequence_length=512, num_segments=2,
        dtype=dtype)


def pretraining_flops_per_sequence(size: str, seq: int, max_predictions: int,
                                   vocab: int = VOCAB_SIZE,
                                   last_block_rows: int | None = None) -> float:
    """FLOPs of one pretraining step per sequence (forward + backward = 3 x forward), a float.

    `size` is a key of `SIZES`. Forward, counting 2 FLOPs per multiply-add of the matrix
    products only:
      encoder, per layer and token: 24 h^2 (QKV 6h^2, output 2h^2, FFN 16h^2 with
        intermediate 4h) + 4 s h (scores QK^T and the weighted sum of V)
      masked-LM head, per predicted slot (all `max_predictions`, padded ones too, since they
        are computed): 2 h^2 (transform) + 2 h V (decoder tied to the word embeddings)
      pooler + next-sentence head, per sequence: 2 h^2 + 4 h
    That is the usual 6 x params x tokens over the matrix weights each token meets, plus the
    attention products; embedding lookups, LayerNorm, softmax and dropout are not counted.

    With `last_block_rows=None` this is the *model* FLOPs of a plain BERT pretrainer, the
    figure MFU is defined on and charged to every side alike (keras-hub's BertMaskedLM has no
    pooler or NSP head: <0.1% of the count at base). `last_block_rows=r` gives what bert_tf
    executes instead: its last block computes keys and values for all rows but queries, the
    output projection and the FFN only for the r rows the heads read (1 + max_predictions;
    docs/design.md), 5.6% fewer FLOPs at base seq 128.
    """
    layers, h, _ = SIZES[size]
    full_block = seq * (24 * h * h + 4 * seq * h)
    last_block = full_block
    if last_block_rows is not None:
        last_block = seq * 4 * h * h + last_block_rows * (20 * h * h + 4 * seq * h)
    forward = ((layers - 1) * full_block + last_block
               + max_predictions * (2 * h * h + 2 * h * vocab)
               + 2 * h * h + 4 * h)
    return 3.0 * forward


def synthetic_batch(batch: int, seq: int, vocab: int = VOCAB_SIZE,
                    max_predictions: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """A random batch in BERT's input schema, as numpy arrays; the same for the same arguments.

    Each row is 85-100% real tokens, then padding; the second half of its real tokens is
    segment 1. Always there, each int32 [batch, seq]:
      input_ids    uniform in [5, vocab), so no special-token ids
      input_mask   1 on real tokens, 0 on padding
      segment_ids  0 or 1
    With `max_predictions` (the pretraining schema), also:
      masked_lm_positions   int32 [batch, max_predictions]: 15% of the row's real tokens
                            (at least 1, at most max_predictions), sorted, never its first or
                            last real token; 0 after them
      masked_lm_ids         int32 [batch, max_predictions]: input_ids at those positions
      masked_lm_weights     float32 [batch, max_predictions]: 1.0 on real predictions, else 0
      next_sentence_labels  int32 [batch, 1]: 0 or 1
    """
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, (batch, seq)).astype(np.int32)
    mask = np.zeros((batch, seq), np.int32)
    segments = np.zeros((batch, seq), np.int32)
    pretraining = max_predictions is not None
    positions = np.zeros((batch, max_predictions or 0), np.int32)
    weights = np.zeros((batch, max_predictions or 0), np.float32)
    for i in range(batch):
        length = int(rng.integers(int(seq * 0.85), seq + 1))
        mask[i, :length] = 1
        segments[i, length // 2:length] = 1
        # Each row's positions are drawn right after its length, and only for pretraining:
        # that keeps both schemas' batches for a seed what they have always been.
        if pretraining:
            count = min(max_predictions, max(1, int(round(length * 0.15))))
            positions[i, :count] = np.sort(rng.choice(np.arange(1, length - 1), count,
                                                      replace=False))
            weights[i, :count] = 1.0
    inputs = {"input_ids": ids, "input_mask": mask, "segment_ids": segments}
    if not pretraining:
        return inputs
    return inputs | {
        "masked_lm_positions": positions,
        "masked_lm_ids": np.take_along_axis(ids, positions, axis=1).astype(np.int32),
        "masked_lm_weights": weights,
        "next_sentence_labels": rng.integers(0, 2, (batch, 1)).astype(np.int32)}


@dataclasses.dataclass
class Contender:
    """One thing to time: `run()` does `items` units of work (sequences) and blocks until done."""

    name: str
    run: Callable[[], object]
    items: int
    times: list[float] = dataclasses.field(default_factory=list)
    cpu_times: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    @property
    def fastest(self) -> float:
        return min(self.times) if self.times else float("nan")

    @property
    def cpu_median(self) -> float:
        """Median process CPU seconds (all threads) per repetition: the work done, which
        other load on the machine disturbs much less than wall time."""
        return statistics.median(self.cpu_times) if self.cpu_times else float("nan")

    @property
    def spread(self) -> float:
        """(max - min) / median of the repetitions: a rough noise figure."""
        if len(self.times) < 2:
            return 0.0
        return (max(self.times) - min(self.times)) / self.median

    @property
    def rate(self) -> float:
        """Items per second at the median repetition time."""
        return self.items / self.median if self.times else float("nan")


def interleave(contenders: Sequence[Contender], repetitions: int, warmup: int = 1,
               log: Callable[[str], None] | None = print) -> None:
    """Times every contender `repetitions` times, alternating between them.

    Each contender first runs `warmup` untimed calls (tracing, XLA compilation, oneDNN
    primitive caches). Then repetition r calls the contenders in an order rotated by r, so no
    contender always runs right after the same neighbour. A contender that raises is marked
    with its error and left out of later repetitions.
    """
    live = list(contenders)
    for c in live:
        t0 = time.perf_counter()
        try:
            for _ in range(warmup):
                c.run()
        except Exception as e:  # noqa: BLE001 - a failing contender is reported, not fatal
            c.error = f"{type(e).__name__}: {e}"[:300]
        if log:
            status = f"failed: {c.error}" if c.error else f"{time.perf_counter() - t0:.1f}s"
            log(f"  warmup {c.name}: {status}")
    live = [c for c in live if c.error is None]
    for r in range(repetitions):
        shift = r % max(len(live), 1)
        for c in live[shift:] + live[:shift]:
            if c.error is not None:
                continue
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                c.run()
            except Exception as e:  # noqa: BLE001
                c.error = f"{type(e).__name__}: {e}"[:300]
                continue
            c.times.append(time.perf_counter() - t0)
            c.cpu_times.append(time.process_time() - c0)
        if log:
            log(f"  rep {r + 1}/{repetitions}: " + "  ".join(
                f"{c.name} {c.times[-1]:.3f}s" for c in live if c.times and c.error is None))


def best(contenders: Sequence[Contender]) -> Contender | None:
    """The contender with the highest rate (ignoring failed ones)."""
    ok = [c for c in contenders if c.times and c.error is None]
    return max(ok, key=lambda c: c.rate) if ok else None


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table."""
    cells = [[str(x) for x in header]] + [[str(x) for x in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """`format_table(header, rows)` under the markdown heading `### title`."""
    print(f"\n### {title}\n")
    print(format_table(header, rows))


def timing_columns(item: str, per: str, tokens: bool = False) -> list[str]:
    """Headers of the cells `timing_cells` writes. `item` names what a contender counts
    ("seq", "sent"), `per` what its times are divided by ("call", "step"); `tokens` adds the
    tok/s column that `timing_cells(..., seq=...)` fills."""
    rates = [f"{item}/s (median)", f"{item}/s (best rep)"] + (["tok/s (median)"] if tokens else [])
    return rates + [f"ms/{per}", f"cpu-ms/{per}", "spread"]


def timing_cells(c: Contender, per_run: int, seq: int | None = None) -> list[str]:
    """A contender's figures as table cells, under `timing_columns`' headers.

    `per_run` is how many calls (or steps) one `run()` makes, so that the ms columns are per
    call; `seq` (tokens per item) adds tok/s. A failed contender gets "failed", blanks, and the
    start of its error in the last column (all of it would widen that column in every row).
    """
    if c.error:
        return ["failed"] + [""] * (3 if seq is None else 4) + [c.error[:60]]
    rates = [f"{c.rate:.1f}", f"{c.items / c.fastest:.1f}"]
    if seq is not None:
        rates.append(f"{c.rate * seq:.0f}")
    return rates + [f"{1000 * c.median / per_run:.1f}", f"{1000 * c.cpu_median / per_run:.1f}",
                    f"{100 * c.spread:.0f}%"]


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions(packages: Sequence[str]) -> dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def environment_lines(packages: Sequence[str]) -> list[str]:
    """Machine and version facts, to print above a table."""
    lines = [f"cpu: {cpu_model()}, {os.cpu_count()} logical cores",
             f"python {platform.python_version()}; " + ", ".join(
                 f"{k} {v}" for k, v in versions(packages).items())]
    lines += accelerator_lines()
    flags = {k: os.environ[k] for k in ("TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS", "XLA_FLAGS",
                                        "OMP_NUM_THREADS") if k in os.environ}
    if flags:
        lines.append("env: " + ", ".join(f"{k}={v}" for k, v in flags.items()))
    return lines


def accelerator_lines() -> list[str]:
    """One line per GPU TensorFlow sees (none on a CPU-only machine)."""
    import tensorflow as tf

    lines = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        lines.append(f"gpu: {details.get('device_name', gpu.name)}, compute capability "
                     f"{details.get('compute_capability')}")
    return lines


def add_allocator_argument(parser) -> None:
    parser.add_argument("--cpu_allocator", default="bfc", choices=("bfc", "default"),
                        help="TensorFlow's host allocator for every contender in the run: "
                             "bfc (what the bert_tf scripts use) or malloc (TensorFlow's "
                             "default); TF_CPU_ALLOCATOR_USE_BFC in the environment wins")


def choose_allocator(choice: str) -> str:
    """Applies --cpu_allocator before any tensor exists; returns a line for the header."""
    from bert_tf.training import cpu_allocator

    active = cpu_allocator.use_bfc_cpu_allocator(choice == "bfc")
    return f"cpu allocator: {'bfc' if active else 'default (malloc)'}, for every contender"


def parse_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]
