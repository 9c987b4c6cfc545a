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

import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

DEFAULT_BATCH = {"tiny": 32, "mini": 32, "small": 32, "medium": 16, "base": 8}


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
    common.add_allocator_argument(parser)
    args = parser.parse_args(argv)
    allocator_line = common.choose_allocator(args.cpu_allocator)

    xla_modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.xla]
    with_peer = "keras_hub" in common.parse_list(args.peers)
    print("\n".join(common.environment_lines(["tensorflow", "keras", "keras-hub"])))
    print(allocator_line)
    rows, summary = [], []
    for size in common.parse_list(args.configs):
        batch = args.batch or DEFAULT_BATCH[size]
        data = common.synthetic_batch(batch, args.seq)
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
                rows.append([size, dtype, side, tag] + common.timing_cells(c, args.calls))
            ours = common.best([c for (s, _), c in contenders.items() if s == "ours"])
            peer = common.best([c for (s, _), c in contenders.items() if s == "keras_hub"])
            if ours and peer:
                summary.append([size, dtype, ours.name, f"{ours.rate:.1f}", peer.name,
                                f"{peer.rate:.1f}", f"{ours.rate / peer.rate:.2f}x"])
            del contenders
            keras.backend.clear_session()
    common.print_table(f"Encoder inference, seq {args.seq} (median of {args.repetitions} "
                       f"repetitions of {args.calls} calls)",
                       ["config", "dtype", "model", "mode"] + common.timing_columns("seq", "call"),
                       rows)
    if summary:
        common.print_table("Best of each side (ours / keras-hub)",
                           ["config", "dtype", "ours (best)", "seq/s", "keras-hub (best)",
                            "seq/s", "ours/keras-hub"], summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
