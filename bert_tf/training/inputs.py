"""tf.data pipelines over TFRecord shards: per-worker sharding, parallel reads, resumable order."""
from __future__ import annotations

import glob
import os
import re
from typing import Callable

import tensorflow as tf

from data_prep.files.tfrecords import parse_pretraining_example

AUTOTUNE = tf.data.AUTOTUNE


def list_files(patterns: str, flag_name: str = "input_file") -> list[str]:
    """Expands comma-separated globs into a sorted, de-duplicated file list.

    Raises `ValueError` naming `flag_name` when nothing matches, so a typo is not an empty run.
    """
    files: list[str] = []
    for pattern in [p.strip() for p in patterns.split(",") if p.strip()]:
        matched = sorted(tf.io.gfile.glob(pattern)) if "://" in pattern else sorted(
            glob.glob(os.path.expanduser(pattern)))
        files.extend(matched)
    files = sorted(dict.fromkeys(files))
    if not files:
        raise ValueError(f"--{flag_name}={patterns!r} matched no files.")
    return files


def _compression(files: list[str]) -> str:
    gz = [f.endswith(".gz") for f in files]
    if any(gz) and not all(gz):
        raise ValueError("Mixing gzip (*.gz) and plain TFRecord shards in one input is not "
                         "supported; convert them to one kind.")
    return "GZIP" if all(gz) else ""


def list_flag_files(*file_flags: tuple[str | None, str]) -> list[str]:
    """`list_files` of each (patterns, flag name) pair whose patterns are set, concatenated."""
    return [f for patterns, flag in file_flags if patterns for f in list_files(patterns, flag)]


def find_corrupt_record(files: list[str]) -> str | None:
    """"<file>: <TensorFlow's reason>" for the first of `files` whose records do not read.

    TensorFlow's DataLossError (e.g. "truncated record at 299932") names no file when the
    files are interleaved; this reads each file alone to find it. A full pass over the data,
    so it runs only after a read has already failed. None when every file reads.
    """
    compression = _compression(files)
    for file in files:
        try:
            tf.data.TFRecordDataset(file, compression_type=compression).reduce(
                tf.constant(0, tf.int64), lambda n, _: n + 1)
        except tf.errors.DataLossError as e:
            return f"{file}: {data_loss_reason(e)}"
    return None


def data_loss_reason(error: tf.errors.DataLossError) -> str:
    """"truncated record at 299932" (or "corrupted record at N") out of TensorFlow's message,
    which wraps it in function-node and op names; else the message's first line."""
    found = re.search(r"(truncated|corrupted) record at \d+", error.message)
    return found.group(0) if found else error.message.strip().splitlines()[0]


def one_pass(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds`, a finite eval or predict pass, with tf.data's autotuning off.

    With autotuning on, dropping a finished iterator sometimes waits seconds for the tuner
    (4-5 s at the end of 3 of 8 SST-2 eval passes that compute in ~5 s, 2-core VM); off, it
    never did. AUTOTUNE parallelism then means one thread per core.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def record_dataset(files: list[str], batch_size: int, is_training: bool,
                   parse_fn: Callable[[tf.Tensor], dict], input_context=None,
                   skip_batches: int = 0, seed: int = 12345,
                   shuffle_buffer: int = 10000) -> tf.data.Dataset:
    """Batched, parsed records from TFRecord shards.

    Training: files sharded per input pipeline (worker), shuffled and repeated with a fixed
    seed, records shuffled, batches of `batch_size` with drop_remainder (static shapes for TPU
    and XLA); the first `skip_batches` batches are skipped before parsing (cheap), which puts a
    resumed run at the same data position. Eval: one pass in order, last batch kept.
    `parse_fn` maps a [batch] string tensor to a dict of tensors.
    """
    compression = _compression(files)
    ds = tf.data.Dataset.from_tensor_slices(files)
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    shard_records = num_pipelines > 1 and len(files) < num_pipelines
    if num_pipelines > 1 and not shard_records:
        ds = ds.shard(num_pipelines, pipeline_id)
    if is_training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
                       cycle_length=min(len(files), 8), num_parallel_calls=AUTOTUNE,
                       deterministic=True)
    if shard_records:
        # Fewer files than workers: every worker reads all files and keeps every n-th record.
        ds = ds.shard(num_pipelines, pipeline_id)
    if is_training:
        ds = ds.shuffle(shuffle_buffer, seed=seed + pipeline_id, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=is_training)
    if skip_batches:
        ds = ds.skip(skip_batches)
    ds = ds.map(parse_fn, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def pretraining_dataset(input_file: str, batch_size: int, max_seq_length: int,
                        max_predictions_per_seq: int, is_training: bool, input_context=None,
                        skip_batches: int = 0, seed: int = 12345,
                        flag_name: str = "input_file") -> tf.data.Dataset:
    """Batches of the pretraining features (original names) from data_prep's TFRecords.

    Each batch: int32 `input_ids, input_mask, segment_ids` [batch, max_seq_length],
    `masked_lm_positions, masked_lm_ids` [batch, max_predictions_per_seq], float32
    `masked_lm_weights` [batch, max_predictions_per_seq], int32 `next_sentence_labels` [batch, 1].
    """
    files = list_files(input_file, flag_name)
    return record_dataset(
        files, batch_size, is_training,
        lambda s: parse_pretraining_example(s, max_seq_length, max_predictions_per_seq),
        input_context, skip_batches, seed)
