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
    flags = {k: os.environ[k] for k in ("TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS", "XLA_FLAGS",
                                        "OMP_NUM_THREADS") if k in os.environ}
    if flags:
        lines.append("env: " + ", ".join(f"{k}={v}" for k, v in flags.items()))
    return lines


def parse_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]
