"""tf.train.Example features: schema, fast batch serialization, atomic TFRecord shards, parsing.

Generic parts (reusable by GLUE / SQuAD feature writers): `int64_feature` / `float_feature`,
`serialize_examples` (a numpy batch -> serialized Examples without building protos),
`atomic_path` / `write_tfrecord` (never a half-written final file) and `read_tfrecord`.
Pretraining parts: `PRETRAINING_FEATURES`, `feature_spec`, `parse_pretraining_example`,
`instance_to_example` (one proto, for clarity) and `instances_to_records` (the fast path).

Feature schema (the original BERT names), one Example per instance, zero padded:
  input_ids, input_mask, segment_ids:             int64 [max_seq_length]
  masked_lm_positions, masked_lm_ids:             int64 [max_predictions_per_seq]
  masked_lm_weights:                              float [max_predictions_per_seq] (1.0 real)
  next_sentence_labels:                           int64 [1]  (1 = random next, 0 = actual next)
"""
from __future__ import annotations

from itertools import chain
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from data_prep.atomic_io import atomic_path  # noqa: F401  (re-exported)

PRETRAINING_FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                        "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")


def int64_feature(values: Iterable[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def float_feature(values: Iterable[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def bytes_feature(values: Iterable[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def feature_spec(max_seq_length: int, max_predictions_per_seq: int) -> dict:
    """tf.io.FixedLenFeature spec of a pretraining Example (int64 and float32)."""
    seq = [max_seq_length]
    pred = [max_predictions_per_seq]
    return {
        "input_ids": tf.io.FixedLenFeature(seq, tf.int64),
        "input_mask": tf.io.FixedLenFeature(seq, tf.int64),
        "segment_ids": tf.io.FixedLenFeature(seq, tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature(pred, tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature(pred, tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature(pred, tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    }


def parse_pretraining_example(serialized: tf.Tensor, max_seq_length: int,
                              max_predictions_per_seq: int,
                              int_dtype: tf.DType = tf.int32) -> dict[str, tf.Tensor]:
    """Parses one serialized Example (scalar string) or a batch ([batch] strings).

    Returns the schema above with a leading [batch] axis for a batch; int64 features are cast
    to `int_dtype` (int32 by default, what the model and TPUs take), weights stay float32.
    """
    spec = feature_spec(max_seq_length, max_predictions_per_seq)
    serialized = tf.convert_to_tensor(serialized, tf.string)
    if serialized.shape.rank == 0:
        parsed = tf.io.parse_single_example(serialized, spec)
    else:
        parsed = tf.io.parse_example(serialized, spec)
    return {name: tf.cast(t, int_dtype) if t.dtype == tf.int64 else t
            for name, t in parsed.items()}


def padded_pretraining_arrays(instances: Sequence, max_seq_length: int,
                              max_predictions_per_seq: int) -> dict[str, np.ndarray]:
    """Instances (data_prep.instances.TrainingInstance) -> zero-padded feature arrays.

    Returns int64 [n, max_seq_length] x3, int64 [n, max_predictions_per_seq] x2,
    float32 [n, max_predictions_per_seq] masked_lm_weights, int64 [n, 1] next_sentence_labels.
    """
    n = len(instances)
    lengths = np.fromiter((len(x.tokens) for x in instances), np.int64, n)
    num_a = np.fromiter((x.num_a for x in instances), np.int64, n)
    num_pred = np.fromiter((len(x.masked_lm_positions) for x in instances), np.int64, n)
    if n and (lengths.max() > max_seq_length or num_pred.max() > max_predictions_per_seq):
        raise ValueError("an instance exceeds max_seq_length or max_predictions_per_seq")
    col = np.arange(max_seq_length)[None, :]
    input_mask = col < lengths[:, None]
    input_ids = np.zeros((n, max_seq_length), np.int64)
    input_ids[input_mask] = np.fromiter(chain.from_iterable(x.tokens for x in instances),
                                        np.int64, int(lengths.sum()))  # row-major fill
    segment_ids = input_mask & (col >= (num_a + 2)[:, None])
    pred_mask = np.arange(max_predictions_per_seq)[None, :] < num_pred[:, None]
    positions = np.zeros((n, max_predictions_per_seq), np.int64)
    total = int(num_pred.sum())
    positions[pred_mask] = np.fromiter(
        chain.from_iterable(x.masked_lm_positions for x in instances), np.int64, total)
    ids = np.zeros((n, max_predictions_per_seq), np.int64)
    ids[pred_mask] = np.fromiter(chain.from_iterable(x.masked_lm_ids for x in instances),
                                 np.int64, total)
    labels = np.fromiter((x.is_random_next for x in instances), np.int64, n)[:, None]
    return {
        "input_ids": input_ids,
        "input_mask": input_mask.astype(np.int64),
        "segment_ids": segment_ids.astype(np.int64),
        "masked_lm_positions": positions,
        "masked_lm_ids": ids,
        "masked_lm_weights": pred_mask.astype(np.float32),
        "next_sentence_labels": labels,
    }


def instance_to_example(instance, max_seq_length: int,
                        max_predictions_per_seq: int) -> tf.train.Example:
    """One instance as a tf.train.Example proto (clear but slow: use instances_to_records)."""
    arrays = padded_pretraining_arrays([instance], max_seq_length, max_predictions_per_seq)
    feature = {name: (float_feature(a[0].tolist()) if a.dtype.kind == "f"
                      else int64_feature(a[0].tolist())) for name, a in arrays.items()}
    return tf.train.Example(features=tf.train.Features(feature=feature))


def instances_to_records(instances: Sequence, max_seq_length: int,
                         max_predictions_per_seq: int) -> list[bytes]:
    """Serialized Examples of many instances at once (same bytes as instance_to_example's
    proto serialized with deterministic=True)."""
    return serialize_examples(
        padded_pretraining_arrays(instances, max_seq_length, max_predictions_per_seq))


# --- Fast, generic Example serialization ------------------------------------------------------
# An Example is Features{map<string, Feature>}; each map entry is {1: key, 2: Feature}, a Feature
# holds Int64List (field 3) or FloatList (field 2), whose values are one packed field 1.  We
# emit exactly what protobuf's deterministic serialization does: entries sorted by key.

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varint_matrix(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """values [n, d] ints -> (bytes [n, d * w] uint8, valid [n, d * w] bool).

    Row r's varints are bytes[r][valid[r]] (w = the widest varint). Negative values take 10
    bytes (two's complement), as protobuf encodes int64.
    """
    v = np.asarray(values).astype(np.int64)
    small = v.size == 0 or (v.min() >= 0 and v.max() < 2**32)
    v = v.astype(np.uint32) if small else v.view(np.uint64)  # narrow ints: cheaper arithmetic
    nbytes = np.ones(v.shape, np.uint8)
    top = int(v.max()) if v.size else 0
    for shift in range(7, 64, 7):
        if top >> shift == 0:
            break
        nbytes += v >= v.dtype.type(1 << shift)
    width = int(nbytes.max()) if v.size else 1
    encoded = np.empty(v.shape + (width,), np.uint8)
    for b in range(width):
        group = ((v >> v.dtype.type(7 * b)) & v.dtype.type(0x7F)).astype(np.uint8)
        encoded[..., b] = group | ((nbytes > b + 1).view(np.uint8) << np.uint8(7))
    valid = np.arange(width) < nbytes[..., None]
    n = values.shape[0]
    return encoded.reshape(n, -1), valid.reshape(n, -1)


def _prefix_matrix(key: bytes, tag: bytes, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's map-entry bytes that come before its `sizes[r]` bytes of packed values."""
    unique, inverse = np.unique(sizes, return_inverse=True)
    prefixes = []
    for size in unique.tolist():
        value_list = b"\x0a" + _varint(size) if size else b""
        feature = tag + _varint(len(value_list) + size) + value_list
        entry = (b"\x0a" + _varint(len(key)) + key + b"\x12"
                 + _varint(len(feature) + size) + feature)
        prefixes.append(b"\x0a" + _varint(len(entry) + size) + entry)
    width = max(len(p) for p in prefixes)
    table = np.zeros((len(prefixes), width), np.uint8)
    for row, prefix in enumerate(prefixes):
        table[row, :len(prefix)] = np.frombuffer(prefix, np.uint8)
    lengths = np.array([len(p) for p in prefixes])[inverse.reshape(-1)]
    return table[inverse.reshape(-1)], np.arange(width) < lengths[:, None]


def serialize_examples(features: Mapping[str, np.ndarray]) -> list[bytes]:
    """Row i of every array -> one serialized tf.train.Example.

    features: name -> [n, d] (or [n]) array; floating dtypes become FloatList (float32), all
      others Int64List. Returns n byte strings, parseable by tf.io.parse_example, equal to
      protobuf's deterministic serialization. All byte assembly is vectorized: each row's
      record is the row-major selection of valid bytes from side-by-side blocks.
    """
    arrays = {}
    for name in sorted(features):
        array = np.asarray(features[name])
        arrays[name] = array[:, None] if array.ndim == 1 else array
    rows = {a.shape[0] for a in arrays.values()}
    if len(rows) > 1:
        raise ValueError(f"features have different numbers of rows: "
                         f"{ {k: a.shape[0] for k, a in arrays.items()} }")
    n = rows.pop() if rows else 0
    if not n:
        return []
    blocks = []  # (bytes [n, w] uint8, valid [n, w] bool), in record order after the header
    for name, array in arrays.items():
        if array.dtype.kind == "f":
            data = np.ascontiguousarray(array, "<f4").view(np.uint8).reshape(n, -1)
            payload = (data, np.ones(data.shape, bool))
            tag = b"\x12"
        else:
            payload = _varint_matrix(array) if array.shape[1] else (
                np.zeros((n, 0), np.uint8), np.zeros((n, 0), bool))
            tag = b"\x1a"
        blocks.append(_prefix_matrix(name.encode(), tag, payload[1].sum(axis=1)))
        blocks.append(payload)
    body_sizes = sum(valid.sum(axis=1) for _, valid in blocks)
    header = _varint_matrix(body_sizes[:, None])
    blocks = [(np.full((n, 1), 0x0A, np.uint8), np.ones((n, 1), bool)), header] + blocks
    data = np.concatenate([b for b, _ in blocks], axis=1)
    valid = np.concatenate([v for _, v in blocks], axis=1)
    buffer = data[valid].tobytes()
    ends = np.cumsum(valid.sum(axis=1)).tolist()
    starts = [0] + ends[:-1]
    return [buffer[a:b] for a, b in zip(starts, ends)]


# --- Atomic TFRecord files --------------------------------------------------------------------

def tfrecord_options(gzip: bool) -> tf.io.TFRecordOptions:
    return tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")


def write_tfrecord(path: str, records: Iterable[bytes], gzip: bool = False,
                   before_commit: Callable[[], None] | None = None) -> int:
    """Writes serialized records to `path` atomically; returns how many were written.

    before_commit runs after the data is complete and before the rename (e.g. to write a
    manifest, so that a final file never exists without it).
    """
    count = 0
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(tmp, tfrecord_options(gzip)) as writer:
            for record in records:
                writer.write(record)
                count += 1
        if before_commit is not None:
            before_commit()
    return count


def read_tfrecord(path: str, gzip: bool | None = None) -> list[bytes]:
    """All records of one file; gzip=None guesses from a `.gz` suffix."""
    if gzip is None:
        gzip = path.endswith(".gz")
    dataset = tf.data.TFRecordDataset(path, compression_type="GZIP" if gzip else "")
    return [record.numpy() for record in dataset]
