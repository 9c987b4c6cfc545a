"""tf.train.Example features: schema, fast batch serialization, atomic TFRecord shards, parsing.

Generic parts (reusable by GLUE / SQuAD feature writers): `int64_feature` / `float_feature`,
`serialize_examples` (a numpy batch -> serialized Examples without building protos; its
vectorized core `encode_examples` gives them as one buffer plus record ends),
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
#
# A batch of records is laid out as a sequence of parts that every record has, in record order:
#   * fixed parts: the same number of bytes in every row -- constant bytes (keys, tags), 0/1 or
#     other small ints (1 byte each), float32 values, varints that have one width throughout
#     the batch (e.g. a length always in [128, 16384)). Adjacent ones are joined into one
#     [n, c] byte matrix;
#   * varint parts: int matrices whose varints differ in width (token ids), kept as their bytes
#     [n, c, widest] (with continuation bits) and widths [n, c].
# Each row's record starts at its offset in one flat buffer. A fixed part is written there by
# one scatter; a varint part by one scatter per byte position k (the k-th bytes of all its
# values at once), at offsets from one cumulative sum of the widths. So the cost is a few numpy
# passes over the output bytes, and no per-row Python work.

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


_TABLE_BITS = 16
_VARINT_TABLE: list = []  # [uint32 [2**16]]: bytes 0-2 = the varint, byte 3 = its width


def _varint_table() -> np.ndarray:
    """Varint bytes and width of every value below 2**16, little-endian in a uint32."""
    if not _VARINT_TABLE:
        v = np.arange(1 << _TABLE_BITS, dtype=np.uint32)
        widths = 1 + (v >= 1 << 7).astype(np.uint32) + (v >= 1 << 14)
        table = widths << 24
        for k in range(3):
            byte = (v >> (7 * k)) & 0x7F
            byte |= (widths > k + 1).astype(np.uint32) << 7
            table |= byte << (8 * k)
        _VARINT_TABLE.append(table)
    return _VARINT_TABLE[0]


def _varint_bytes(values: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """values [n, c] (non-negative ints, or uint64; top = their maximum) ->
    (bytes [n, c, >= widest] uint8 with continuation bits, widths [n, c] uint8).

    Bytes at k >= a value's width are unspecified."""
    n, c = values.shape
    if top < 1 << _TABLE_BITS:  # (token ids): one table lookup per value
        packed = np.take(_varint_table(), values).view(np.uint8).reshape(n, c, 4)
        return packed[:, :, :3], packed[:, :, 3]
    widths = np.ones((n, c), np.uint8)
    for shift in range(7, 64, 7):
        if top >> shift == 0:
            break
        widths += values >= values.dtype.type(1 << shift)
    widest = int(widths.max())
    out = np.empty((n, c, widest), np.uint8)
    for k in range(widest):
        byte = out[:, :, k]
        np.copyto(byte, values >> values.dtype.type(7 * k) if k else values, casting="unsafe")
        byte &= 0x7F  # (the cast above kept the low 8 bits)
        byte |= (widths > k + 1).view(np.uint8) << np.uint8(7)
    return out, widths


def _varint_sizes(values: np.ndarray) -> np.ndarray:
    """Varint byte counts of non-negative int64 values (lengths)."""
    sizes = np.ones(values.shape, np.int64)
    top = int(values.max()) if values.size else 0
    for shift in range(7, 64, 7):
        if top >> shift == 0:
            break
        sizes += values >= 1 << shift
    return sizes


class _Layout:
    """The parts of a batch of records, in record order (see the comment above)."""

    def __init__(self, n: int):
        self.n = n
        self.parts: list = []  # bytes | uint8 [n, c] | (bytes [n, c, w], widths [n, c], widest)

    def const(self, data: bytes) -> None:
        if data:
            self.parts.append(data)

    def raw(self, matrix: np.ndarray) -> None:
        if matrix.shape[1]:
            self.parts.append(matrix)

    def varints(self, values: np.ndarray) -> np.ndarray | int:
        """Appends the varints of values [n, c] (non-negative ints, or uint64 for int64's
        two's complement); returns each row's byte count (an int if all rows agree)."""
        n, c = values.shape
        if not c:
            return 0
        top = int(values.max())
        if top < 128 and int(values.min()) >= 0:  # one byte each (uint64 has no negatives)
            self.parts.append(values.astype(np.uint8))
            return c
        data, widths = _varint_bytes(values, top)
        widest, narrowest = int(widths.max()), int(widths.min())
        if widest == narrowest:  # one width: a fixed part
            self.parts.append(data[:, :, :widest].reshape(n, c * widest))
            return c * widest
        self.parts.append((data, widths, widest))
        return widths.sum(axis=1, dtype=np.int64)

    def length(self, values: np.ndarray | int) -> np.ndarray | int:
        """A varint per row (int: the same in all rows); returns its byte count(s)."""
        if isinstance(values, (int, np.integer)):
            encoded = _varint(int(values))
            self.const(encoded)
            return len(encoded)
        return self.varints(values[:, None])

    def encode(self) -> tuple[np.ndarray, np.ndarray]:
        """-> (buffer uint8 [total], ends int64 [n]): row i is buffer[ends[i-1]:ends[i]]."""
        n = self.n
        blocks: list = []  # uint8 [n, c] (joined fixed parts) | varint tuples
        fixed: list = []
        for part in self.parts + [None]:
            if part is None or isinstance(part, tuple):
                if fixed:  # join the fixed parts before this one
                    mats = [np.broadcast_to(np.frombuffer(p, np.uint8), (n, len(p)))
                            if isinstance(p, bytes) else p for p in fixed]
                    blocks.append(mats[0] if len(mats) == 1
                                  else np.concatenate(mats, axis=1))
                    fixed = []
                if part is not None:
                    blocks.append(part)
            else:
                fixed.append(part)
        # Each block's start within its row, and each varint's start within its block (from
        # one flat cumulative sum: the block's bytes of row r end where row r + 1's begin).
        lengths = np.zeros(n, np.int64)
        starts, firsts = [], []
        for block in blocks:
            starts.append(lengths.copy())
            if isinstance(block, tuple):
                widths = block[1]
                flat = np.cumsum(widths.reshape(-1), dtype=np.int64)
                size = np.diff(flat[widths.shape[1] - 1::widths.shape[1]], prepend=0)
                flat -= widths.reshape(-1)
                first = flat.reshape(widths.shape)
                first -= first[:, :1]  # relative to the row's first value
                firsts.append(first)
                lengths += size
            else:
                firsts.append(None)
                lengths += block.shape[1]
        ends = np.cumsum(lengths)
        total = int(ends[-1])
        record_start = ends - lengths
        # The bytes at k >= a value's width are written too, and overwritten: pass k writes
        # the k-th byte of every value, passes run from the widest down, so such a byte lands
        # either on byte k' < k of a later value of the same block (written by a later pass)
        # or, past the block's end, on the fixed block after it (written after all varint
        # blocks). Where no fixed block that long follows, they go to a scratch byte instead.
        buffer = np.empty(total + 1, np.uint8)
        for i, (block, first) in enumerate(zip(blocks, firsts)):
            if first is None:
                continue
            data, widths, widest = block
            following = blocks[i + 1] if i + 1 < len(blocks) else None
            spills = not isinstance(following, np.ndarray) or following.shape[1] < widest - 1
            first += (record_start + starts[i])[:, None]
            dest = first + (widest - 1)
            for k in range(widest - 1, -1, -1):
                if k and spills:
                    buffer[np.where(widths > k, dest, total)] = data[:, :, k]
                else:
                    buffer[dest] = data[:, :, k]
                dest -= 1
        for block, start in zip(blocks, starts):
            if isinstance(block, np.ndarray):
                index = (record_start + start)[:, None] + np.arange(block.shape[1])
                buffer[index] = block
        return buffer[:total], ends


def encode_examples(features: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Row i of every array -> one serialized tf.train.Example, all in one buffer.

    features: name -> [n, d] (or [n]) array; floating dtypes become FloatList (float32), all
      others Int64List. Returns (buffer uint8 [total], ends int64 [n]): record i is
      buffer[ends[i - 1]:ends[i]] (from 0 for i = 0), equal to protobuf's deterministic
      serialization of the Example. Vectorized: no per-row Python work.
    Entries are in Python's sorted key order, which is protobuf's unless one key is a prefix of
    another (upb, protobuf's Python backend, then puts the longer key first); any order parses
    the same, and no schema here has such keys.
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
        return np.zeros(0, np.uint8), np.zeros(0, np.int64)
    entries = _Layout(n)  # everything after the record's own tag and length
    body = 0  # each row's byte count of `entries`
    for name, array in arrays.items():
        key = name.encode()
        payload = _Layout(n)
        if array.dtype.kind == "f":
            tag = b"\x12"
            payload.raw(np.ascontiguousarray(array, "<f4").view(np.uint8).reshape(n, -1))
            size = 4 * array.shape[1]
        else:
            tag = b"\x1a"
            if array.dtype.kind not in "iu":
                array = array.astype(np.int64)
            if array.dtype.kind == "i" and array.size and int(array.min()) < 0:
                array = array.astype(np.int64).view(np.uint64)  # 10-byte two's complement
            size = payload.varints(array)
        # entry = 0x0A len(entry) {0x0A len(key) key 0x12 len(feature) {tag len(list)
        #         {0x0A len(values) values}}}; an empty list is just `tag 0`.
        head = b"\x0a" + _varint(len(key)) + key + b"\x12"
        if isinstance(size, int):
            value_list = b"\x0a" + _varint(size) if size else b""
            feature = tag + _varint(len(value_list) + size) + value_list
            feature_size = len(feature) + size
            entry_size = len(head) + len(_varint(feature_size)) + feature_size
            entries.const(b"\x0a" + _varint(entry_size) + head + _varint(feature_size)
                          + feature)
        else:
            list_size = 1 + _varint_sizes(size) + size
            feature_size = 1 + _varint_sizes(list_size) + list_size
            entry_size = len(head) + _varint_sizes(feature_size) + feature_size
            entries.const(b"\x0a")
            entries.length(entry_size)
            entries.const(head)
            entries.length(feature_size)
            entries.const(tag)
            entries.length(list_size)
            entries.const(b"\x0a")
            entries.length(size)
        body = body + 1 + (len(_varint(entry_size)) if isinstance(entry_size, int)
                           else _varint_sizes(entry_size)) + entry_size
        entries.parts.extend(payload.parts)
    record = _Layout(n)
    record.const(b"\x0a")
    record.length(body)
    record.parts.extend(entries.parts)
    return record.encode()


def split_records(buffer: np.ndarray, ends: np.ndarray) -> list[bytes]:
    """encode_examples' (buffer, ends) -> one bytes object per record."""
    data = buffer.tobytes()
    ends = ends.tolist()
    return [data[a:b] for a, b in zip([0] + ends[:-1], ends)]


def serialize_examples(features: Mapping[str, np.ndarray]) -> list[bytes]:
    """Row i of every array -> one serialized tf.train.Example (see encode_examples).

    features: name -> [n, d] (or [n]) array; floating dtypes become FloatList (float32), all
      others Int64List. Returns n byte strings, parseable by tf.io.parse_example, equal to
      protobuf's deterministic serialization.
    """
    return split_records(*encode_examples(features))


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
