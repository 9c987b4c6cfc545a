"""Length-bucketed input pipelines: every batch is padded only as far as its own examples need.

Fine-tuning features are written at one width (`max_seq_length`), but most examples are far
shorter (SST-2 sentences are ~10-25 WordPieces of 128), and a padding position costs the same
matmuls as a real token. Here each batch is cut to its *bucket length*: the smallest of a few
fixed lengths (`bucket_lengths`, e.g. 16, 32, ..., 128) that holds its longest example, so a
jit-compiled step sees at most `len(bucket_lengths)` sequence shapes. The length of an example
is sum(input_mask). Feature TFRecords keep their fixed-width format: records are parsed at full
width and the all-padding tail is sliced off, after a check that it holds no token (so a file
whose padding is not at the end fails with its name instead of being misread).

Training: the record stream is shuffled (seeded; each epoch a complete pass, reshuffled every
epoch), cut into windows of `window_batches * batch_size` records; each window is sorted by
length (stable, so equal lengths keep their shuffled order), cut into `window_batches` full
batches of similar lengths, and the batches of a window are put in an order drawn from
(seed, window number). Nothing is dropped or repeated: every window is exactly
`window_batches` batches, so each epoch's examples appear once, an epoch boundary moving at
most one window's examples into the next epoch. The stream is a pure function of the seed:
`skip_batches` skips whole batches of it (before the full parse), which puts a resumed run
on the same batches as one that never stopped.

Eval / predict: records in the unbucketed order, windows sorted by length, batches cut from
them (the last may be short). Every batch carries int64 `example_index` [batch]: the record's
position in the unbucketed order (made unique across input pipelines). `restore_order` puts
gathered per-example outputs back in that order, and `pad_to_length` pads sequence outputs
back to `max_seq_length` so that batches of different lengths concatenate.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from bert_tf.training import inputs

AUTOTUNE = tf.data.AUTOTUNE

# Batch key of each record's position in the unbucketed order (eval/predict batches only).
EXAMPLE_INDEX = "example_index"

# Bucket lengths are multiples of FINE_STEP up to FINE_LIMIT, then of COARSE_STEP: short
# sequences (where most fine-tuning examples are) waste at most 15 positions, long ones at
# most 63, and max_seq_length=512 needs 14 compiled shapes instead of 32.
FINE_STEP, FINE_LIMIT, COARSE_STEP = 16, 128, 64

DEFAULT_WINDOW_BATCHES = 64


def default_bucket_lengths(max_seq_length: int) -> tuple[int, ...]:
    """Multiples of 16 up to 128, then multiples of 64, and always `max_seq_length` last.

    E.g. 128 -> (16, 32, ..., 128); 384 -> (16, ..., 128, 192, 256, 320, 384).
    """
    if max_seq_length < 1:
        raise ValueError(f"max_seq_length must be >= 1, got {max_seq_length}.")
    fine = range(FINE_STEP, min(FINE_LIMIT, max_seq_length - 1) + 1, FINE_STEP)
    coarse = range(FINE_LIMIT + COARSE_STEP, max_seq_length, COARSE_STEP)
    return tuple(sorted({*fine, *coarse, max_seq_length}))


def parse_bucket_lengths(text: str | None, max_seq_length: int,
                         flag_name: str = "bucket_boundaries") -> tuple[int, ...]:
    """Bucket lengths from "16,32,64" (None or "": `default_bucket_lengths`).

    `max_seq_length` is appended when missing (every example must fit a bucket). ValueError
    naming `flag_name` for anything that is not increasing integers in [1, max_seq_length].
    """
    if not text or not text.strip():
        return default_bucket_lengths(max_seq_length)
    try:
        lengths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--{flag_name}={text!r}: expected comma-separated integers, "
                         f"e.g. 32,64,128.") from None
    if any(b <= a for a, b in zip(lengths, lengths[1:])):
        raise ValueError(f"--{flag_name}={text!r}: lengths must be strictly increasing.")
    if not lengths or lengths[0] < 1 or lengths[-1] > max_seq_length:
        raise ValueError(f"--{flag_name}={text!r}: lengths must lie in [1, max_seq_length="
                         f"{max_seq_length}].")
    if lengths[-1] != max_seq_length:
        lengths.append(max_seq_length)
    return tuple(lengths)


def example_lengths(serialized: tf.Tensor, max_seq_length: int) -> tf.Tensor:
    """int32 [n] sum(input_mask) of [n] serialized Examples (only input_mask is parsed)."""
    spec = {"input_mask": tf.io.FixedLenFeature([max_seq_length], tf.int64)}
    mask = tf.io.parse_example(serialized, spec)["input_mask"]
    return tf.cast(tf.reduce_sum(mask, axis=1), tf.int32)


def bucket_length(lengths: tf.Tensor, bucket_lengths: Sequence[int]) -> tf.Tensor:
    """int32 scalar: the smallest of `bucket_lengths` >= max(lengths) (the last if none)."""
    table = tf.constant(bucket_lengths, tf.int32)
    longest = tf.reduce_max(tf.concat([tf.cast(lengths, tf.int32), [0]], 0))
    index = tf.minimum(tf.searchsorted(table, [longest], side="left")[0],
                       len(bucket_lengths) - 1)
    return table[index]


def slice_to_length(batch: dict[str, tf.Tensor], length: tf.Tensor, max_seq_length: int,
                    source: str = "") -> dict[str, tf.Tensor]:
    """Cuts every [batch, max_seq_length] tensor of `batch` to [batch, length].

    Fails (InvalidArgumentError naming `source`) when input_mask has a token at or beyond
    `length`: the features would not be padded at the end, and slicing would lose tokens.
    """
    mask = batch["input_mask"]
    check = tf.debugging.assert_equal(
        tf.reduce_sum(tf.cast(mask[:, length:], tf.int64)), tf.constant(0, tf.int64),
        message=f"{source}: input_mask has tokens after its first sum(input_mask) positions; "
                "length bucketing needs the padding at the end of each record (turn length "
                "bucketing off to read these features).")
    with tf.control_dependencies([check]):
        return {k: (v[:, :length] if v.shape.rank == 2 and v.shape[1] == max_seq_length
                    else tf.identity(v)) for k, v in batch.items()}


def pad_to_length(values: tf.Tensor, length: int, value: float | int = 0) -> tf.Tensor:
    """Pads axis 1 of `values` [batch, seq, ...] with `value` up to `length` (static)."""
    missing = length - tf.shape(values)[1]
    paddings = tf.concat([[[0, 0], [0, missing]],
                          tf.zeros([tf.rank(values) - 2, 2], tf.int32)], 0)
    padded = tf.pad(values, paddings, constant_values=tf.cast(value, values.dtype))
    return tf.ensure_shape(padded, [None, length] + values.shape[2:].as_list())


def with_example_index(batch: dict, outputs: dict) -> dict:
    """`outputs` plus the batch's `example_index` when it has one (bucketed eval batches)."""
    if EXAMPLE_INDEX in batch:
        return {**outputs, EXAMPLE_INDEX: batch[EXAMPLE_INDEX]}
    return outputs


def restore_order(outputs: dict) -> dict:
    """Per-example arrays [n, ...] sorted back by `example_index` (which is removed).

    Scalars and anything without the batch axis are kept as they are. No `example_index`:
    returned unchanged.
    """
    if EXAMPLE_INDEX not in outputs:
        return outputs
    index = np.asarray(outputs[EXAMPLE_INDEX]).reshape(-1)
    order = np.argsort(index, kind="stable")
    return {k: (np.asarray(v)[order] if np.ndim(v) and len(v) == len(index) else v)
            for k, v in outputs.items() if k != EXAMPLE_INDEX}


def bucketed_record_dataset(files: list[str], batch_size: int, is_training: bool,
                            parse_fn: Callable[[tf.Tensor], dict], max_seq_length: int,
                            bucket_lengths: Sequence[int], input_context=None,
                            skip_batches: int = 0, seed: int = 12345,
                            shuffle_buffer: int = 10000,
                            window_batches: int = DEFAULT_WINDOW_BATCHES,
                            max_batches: int | None = None) -> tf.data.Dataset:
    """Parsed batches of fixed-width feature TFRecords, each cut to its bucket length.

    The same sharding as `inputs.record_dataset` (files per input pipeline, or every n-th
    record when there are fewer files than pipelines). Training: repeated, full batches of
    `batch_size` (see the module docstring for the order). Eval: one pass, every record once,
    the last batch possibly short, plus int64 `example_index` [batch]; with `max_batches`,
    only the pipeline's first max_batches x batch_size records (in file order, as a capped
    unbucketed eval), so a capped eval scores the same examples either way.
    `parse_fn` maps [batch] serialized Examples to a dict with [batch, max_seq_length] sequence
    features (input_mask among them); those come out [batch, bucket length].
    """
    if not bucket_lengths or bucket_lengths[-1] != max_seq_length:
        raise ValueError(f"bucket_lengths {tuple(bucket_lengths)} must end at max_seq_length "
                         f"({max_seq_length}).")
    if window_batches < 1:
        raise ValueError(f"window_batches must be >= 1, got {window_batches}.")
    compression = inputs._compression(files)  # noqa: SLF001 (same package)
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    shard_records = num_pipelines > 1 and len(files) < num_pipelines
    ds = tf.data.Dataset.from_tensor_slices(files)
    if num_pipelines > 1 and not shard_records:
        ds = ds.shard(num_pipelines, pipeline_id)
    if is_training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
                       cycle_length=min(len(files), 8), num_parallel_calls=AUTOTUNE,
                       deterministic=True)
    if not is_training:
        # Positions in the unbucketed order, unique across pipelines: global record numbers
        # when records are sharded, else local number * pipelines + pipeline id.
        ds = ds.enumerate()
        if shard_records:
            ds = ds.shard(num_pipelines, pipeline_id)
        elif num_pipelines > 1:
            ds = ds.map(lambda i, r: (i * num_pipelines + pipeline_id, r))
        if max_batches:
            ds = ds.take(max_batches * batch_size)
    elif shard_records:
        ds = ds.shard(num_pipelines, pipeline_id)
    window = window_batches * batch_size
    source = ", ".join(files[:3]) + (" ..." if len(files) > 3 else "")
    if is_training:
        # Shuffle before repeat: every epoch is one complete pass over the records.
        ds = ds.shuffle(shuffle_buffer, seed=seed + pipeline_id,
                        reshuffle_each_iteration=True).repeat()
        ds = ds.batch(window, drop_remainder=True).enumerate()
        order_seed = seed + pipeline_id

        def sort_window(number, records):
            lengths = example_lengths(records, max_seq_length)
            by_length = tf.argsort(lengths, stable=True)
            # The window's batches in a random order drawn from (seed, window number), so the
            # model does not see lengths in a rising sequence and a resumed run draws the same.
            draw = tf.random.stateless_uniform(
                [window_batches], seed=tf.stack([tf.constant(order_seed, tf.int64), number]))
            blocks = tf.reshape(by_length, [window_batches, batch_size])
            order = tf.reshape(tf.gather(blocks, tf.argsort(draw)), [-1])
            return tf.gather(records, order), tf.gather(lengths, order)

        ds = ds.map(sort_window, num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.unbatch().batch(batch_size, drop_remainder=True)
        if skip_batches:
            ds = ds.skip(skip_batches)

        def parse(records, lengths):
            return slice_to_length(parse_fn(records), bucket_length(lengths, bucket_lengths),
                                   max_seq_length, source)
    else:
        ds = ds.batch(window)

        def sort_window(index, records):
            lengths = example_lengths(records, max_seq_length)
            order = tf.argsort(lengths, stable=True)
            return tf.gather(index, order), tf.gather(records, order), tf.gather(lengths, order)

        ds = ds.map(sort_window, num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.unbatch().batch(batch_size)

        def parse(index, records, lengths):
            batch = slice_to_length(parse_fn(records), bucket_length(lengths, bucket_lengths),
                                    max_seq_length, source)
            return {**batch, EXAMPLE_INDEX: index}
    ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.prefetch(AUTOTUNE)


def padding_stats(dataset: tf.data.Dataset, max_batches: int | None = None) -> dict[str, float]:
    """Tokens a pass over `dataset` feeds the model: `real_tokens` (sum of input_mask),
    `processed_tokens` (batch x its length, summed) and `real_fraction` (their ratio)."""
    real = processed = 0
    for i, batch in enumerate(dataset):
        if max_batches is not None and i >= max_batches:
            break
        mask = batch["input_mask"].numpy()
        real += int(mask.sum())
        processed += int(mask.size)
    return {"real_tokens": float(real), "processed_tokens": float(processed),
            "real_fraction": real / processed if processed else 0.0}
