"""Encoder inference throughput: bert_tf's BertEncoder vs keras-hub's BertBackbone.

    python -m benchmarks.bench_inference      # tiny,mini,base, seq 128, both dtypes, XLA on+off
    python -m benchmarks.bench_inference --configs=base --batch=32 --seq=512

Each side runs its encoder on the same int32 batch (`training=False`) inside a
`tf.function` (with and without `jit_compile`), returns the sequence and pooled outputs, and
is called `--calls` times per timed repetition from Python, as a serving loop would. Our
encoder also returns every layer's output (`encoder_outputs`); those are computed anyway.
All contenders of one (config, dtype) are built in one process and timed interleaved
(`benchmarks/common.py`).
"""
from __future__ import annotations

import argparse
import sys

from benchmarks import common

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

DEFAULT_BATCH = {"tiny": 32, "mini": 32, "small": 32, "medium": 16, "base": 8}


def synthetic_inputs(batch: int, seq: int, vocab: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, (batch, seq)).astype(np.int32)
    mask = np.zeros((batch, seq), np.int32)
    segments = np.zeros((batch, seq), np.int32)
    for i in range(batch):
        length = int(rng.integers(int(seq * 0.85), seq + 1))
        mask[i, :length] = 1
        segments[i, length // 2:length] = 1
    return {"input_ids": ids, "input_mask": mask, "segment_ids": segments}


def _runner(fn, inputs: dict, calls: int):
    def run():
        out = None
        for _ in range(calls):
            out = fn(inputs)
        return float(out[0][0, 0, 0])  # blocks until the last call is done
    return run


def build_ours(size: str, data: dict, dtype: str, xla: bool, calls: int):
    from bert_tf.config import BertConfig
    from bert_tf.models import BertEncoder

    encoder = BertEncoder.from_bert_config(
        BertConfig.from_preset(size, vocab_size=common.VOCAB_SIZE), dtype=dtype)
    inputs = {k: tf.constant(v) for k, v in data.items()}

    @tf.function(jit_compile=xla)
    def forward(batch):
        out = encoder(batch, training=False)
        return out["sequence_output"], out["pooled_output"]

    return _runner(forward, inputs, calls)


def build_keras_hub(size: str, data: dict, dtype: str, xla: bool, calls: int):
    backbone = common.keras_hub_backbone(size, dtype)
    inputs = {"token_ids": tf.constant(data["input_ids"]),
              "padding_mask": tf.constant(data["input_mask"]),
              "segment_ids": tf.constant(data["segment_ids"])}

    @tf.function(jit_compile=xla)
    def forward(batch):
        out = backbone(batch, training=False)
        return out["sequence_output"], out["pooled_output"]

    return _runner(forward, inputs, calls)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="tiny,mini,base")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=None,
                        help="sequences per call (default per config: %s)" % DEFAULT_BATCH)
    parser.add_argument("--dtype", default="float32,mixed_bfloat16")
    parser.add_argument("--xla", default="both", choices=("both", "on", "off"))
    parser.add_argument("--peers", default="keras_hub", help="keras_hub or empty")
    parser.add_argument("--calls", type=int, default=5, help="encoder calls per repetition")
    parser.add_argument("--repetitions", type=int, default=7)
    args = parser.parse_args(argv)

    xla_modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.xla]
    with_peer = "keras_hub" in common.parse_list(args.peers)
    print("\n".join(common.environment_lines(["tensorflow", "keras", "keras-hub"])))
    rows, summary = [], []
    for size in common.parse_list(args.configs):
        batch = args.batch or DEFAULT_BATCH[size]
        data = synthetic_inputs(batch, args.seq, common.VOCAB_SIZE)
        for dtype in common.parse_list(args.dtype):
            print(f"\n== {size} seq {args.seq} batch {batch} {dtype}")
            contenders = {}
            for xla in xla_modes:
                tag = "xla" if xla else "no-xla"
                items = batch * args.calls
                contenders[("ours", tag)] = common.Contender(
                    f"ours/{tag}", build_ours(size, data, dtype, xla, args.calls), items)
                if with_peer:
                    contenders[("keras_hub", tag)] = common.Contender(
                        f"keras_hub/{tag}", build_keras_hub(size, data, dtype, xla, args.calls),
                        items)
            common.interleave(list(contenders.values()), args.repetitions)
            for (side, tag), c in contenders.items():
                if c.error:
                    rows.append([size, dtype, side, tag, "failed", "", "", "", c.error[:60]])
                    continue
                rows.append([size, dtype, side, tag, f"{c.rate:.1f}",
                             f"{c.items / c.fastest:.1f}",
                             f"{1000 * c.median / args.calls:.1f}",
                             f"{1000 * c.cpu_median / args.calls:.1f}", f"{100 * c.spread:.0f}%"])
            ours = common.best([c for (s, _), c in contenders.items() if s == "ours"])
            peer = common.best([c for (s, _), c in contenders.items() if s == "keras_hub"])
            if ours and peer:
                summary.append([size, dtype, ours.name, f"{ours.rate:.1f}", peer.name,
                                f"{peer.rate:.1f}", f"{ours.rate / peer.rate:.2f}x"])
            del contenders
            keras.backend.clear_session()
    print(f"\n### Encoder inference, seq {args.seq} (median of {args.repetitions} repetitions "
          f"of {args.calls} calls)\n")
    print(common.format_table(["config", "dtype", "model", "mode", "seq/s (median)",
                               "seq/s (best rep)", "ms/call", "cpu-ms/call", "spread"], rows))
    if summary:
        print("\n### Best of each side (ours / keras-hub)\n")
        print(common.format_table(["config", "dtype", "ours (best)", "seq/s", "keras-hub (best)",
                                   "seq/s", "ours/keras-hub"], summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
