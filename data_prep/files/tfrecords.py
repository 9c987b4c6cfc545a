"""tf.train.Example features: schema, fast batch serialization, atomic TFRecord shards, parsing.

Generic parts (reusable by GLUE / SQuAD feature writers): `int64_feature` / `float_feature`,
`serialize_examples` (a numpy batch -> serialized Examples without building protos; its core
`encode_examples` gives them as one buffer plus record ends, and `encode_tfrecords` as the
bytes of a TFRecord file: compiled loops in data_prep/pretraining/record_kernels.py), `frame_tfrecords`,
`atomic_path` / `write_tfrecord` / `write_tfrecord_chunks` (the file tf.io.TFRecordWriter
writes, never half-written) and `read_tfrecord`.
Pretraining parts: `PRETRAINING_FEATURES`, `feature_spec`, `parse_pretraining_example`,
`instance_to_example` (one proto, for clarity) and `instances_to_records` (the fast path).

Feature schema (the original BERT names), one Example per instance, zero padded:
  input_ids, input_mask, segment_ids:             int64 [max_seq_length]
  masked_lm_positions, masked_lm_ids:             int64 [max_predictions_per_seq]
  masked_lm_weights:                              float [max_predictions_per_seq] (1.0 real)
  next_sentence_labels:                           int64 [1]  (1 = random next, 0 = actual next)
create_pretraining_data --masking=none records lack the three masked_lm_* features and
--task=none records lack next_sentence_labels (bert_tf/training/dynamic_masking.py reads them all).
"""
from __future__ import annotations

import zlib
from itertools import chain, islice
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from data_prep.pretraining import record_kernels
from data_prep.files.atomic_io import atomic_path  # noqa: F401  (re-exported)

# TensorFlow (~3 s to import) is imported inside the functions that build protos, parse or read
# records: encoding and writing TFRecords (create_pretraining_data, the feature writers) is
# numpy and compiled code and does not need it.

PRETRAINING_FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                        "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")


def int64_feature(values: Iterable[int]) -> tf.train.Feature:
    import tensorflow as tf
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def float_feature(values: Iterable[float]) -> tf.train.Feature:
    import tensorflow as tf
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def bytes_feature(values: Iterable[bytes]) -> tf.train.Feature:
    import tensorflow as tf
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def feature_spec(max_seq_length: int, max_predictions_per_seq: int) -> dict:
    """tf.io.FixedLenFeature spec of a pretraining Example (int64 and float32)."""
    import tensorflow as tf
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
                              int_dtype: tf.DType | None = None) -> dict[str, tf.Tensor]:
    """Parses one serialized Example (scalar string) or a batch ([batch] strings).

    Returns the schema above with a leading [batch] axis for a batch; int64 features are cast
    to `int_dtype` (None: tf.int32, what the model and TPUs take), weights stay float32.
    """
    import tensorflow as tf
    if int_dtype is None:
        int_dtype = tf.int32
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
    """Instances (data_prep.pretraining.instances.TrainingInstance) -> zero-padded feature arrays.

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
    import tensorflow as tf
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
#   record = 0x0A len(body) entry...
#   entry  = 0x0A len(entry) {0x0A len(key) key 0x12 len(feature) {tag len(list)
#            {0x0A len(values) values}}}        (an empty list is just `tag 0`)
# The sizes of every row come first, in numpy (a few passes over [n] arrays per feature); the
# bytes are then written row by row by the compiled loops of data_prep/pretraining/record_kernels.py.

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


def _varint_sizes(values: np.ndarray) -> np.ndarray:
    """Varint byte counts of non-negative int64 values (lengths)."""
    sizes = np.ones(values.shape, np.int64)
    top = int(values.max()) if values.size else 0
    for shift in range(7, 64, 7):
        if top >> shift == 0:
            break
        sizes += values >= 1 << shift
    return sizes


def _feature_columns(features: Mapping[str, np.ndarray]) -> tuple[int, list]:
    """-> (rows, [(key, tag, values, payload sizes int64 [n])]) in key order.

    values: uint8 [n, w], bytes to copy as they are (FloatList: the float32 bytes; Int64List of
    values in [0, 128): each is its own varint), or int64 [n, d] to write as varints (uint64
    viewed as int64: the same varint bytes)."""
    columns, rows = [], {}
    for name in sorted(features):
        array = np.asarray(features[name])
        array = array[:, None] if array.ndim == 1 else array
        rows[name] = n = array.shape[0]
        if array.dtype.kind == "f":
            values = np.ascontiguousarray(array, "<f4").view(np.uint8).reshape(n, 4 * array.shape[1])
            columns.append((name, b"\x12", values, np.full(n, values.shape[1], np.int64)))
        elif array.size and 0 <= array.min() and array.max() < 128:  # 1-byte varints: bytes
            values = np.ascontiguousarray(array, np.uint8)
            columns.append((name, b"\x1a", values, np.full(n, values.shape[1], np.int64)))
        else:
            values = np.ascontiguousarray(
                array.view(np.int64) if array.dtype == np.uint64 else array.astype(np.int64))
            columns.append((name, b"\x1a", values, record_kernels.varint_sizes(values)))
    if len(set(rows.values())) > 1:
        raise ValueError(f"features have different numbers of rows: {rows}")
    return (rows.popitem()[1] if rows else 0), columns


def _encode(features: Mapping[str, np.ndarray], framed: bool
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (buffer uint8, starts int64 [n], lengths int64 [n]): record i's serialized Example
    is buffer[starts[i] + h : starts[i] + h + lengths[i]], h = 12 if framed else 0; framed,
    each record also has its TFRecord frame around it (16 bytes more)."""
    n, columns = _feature_columns(features)
    heads, sizes = [], []
    body = np.zeros(n, np.int64)
    for name, tag, _, payload in columns:
        key = name.encode()
        head = b"\x0a" + _varint(len(key)) + key + b"\x12"
        list_size = np.where(payload > 0, 1 + _varint_sizes(payload) + payload, 0)
        feature_size = 1 + _varint_sizes(list_size) + list_size
        entry_size = len(head) + _varint_sizes(feature_size) + feature_size
        body += 1 + _varint_sizes(entry_size) + entry_size
        heads.append(np.frombuffer(head, np.uint8))
        sizes.append((entry_size, feature_size, list_size))
    lengths = 1 + _varint_sizes(body) + body
    header, trailer = (12, 4) if framed else (0, 0)
    ends = np.cumsum(lengths + (header + trailer))
    starts = ends - (lengths + (header + trailer))
    buffer = np.empty(int(ends[-1]) if n else 0, np.uint8)
    if not n:
        return buffer, starts, lengths
    pos = starts + header
    buffer[pos] = 0x0A
    pos += 1
    record_kernels.put_lengths(buffer, pos, body)
    for (_, tag, values, payload), head, (entry, feature, list_size) in zip(columns, heads,
                                                                             sizes):
        record_kernels.put_feature_entry(buffer, pos, head, tag[0], entry, feature, list_size,
                                         payload)
        if values.dtype == np.uint8:
            record_kernels.put_bytes(buffer, pos, values)
        else:
            record_kernels.put_varints(buffer, pos, values)
    if framed:
        record_kernels.frame_records(buffer, starts, lengths)
    return buffer, starts, lengths


def encode_examples(features: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Row i of every array -> one serialized tf.train.Example, all in one buffer.

    features: name -> [n, d] (or [n]) array; floating dtypes become FloatList (float32), all
      others Int64List. Returns (buffer uint8 [total], ends int64 [n]): record i is
      buffer[ends[i - 1]:ends[i]] (from 0 for i = 0), equal to protobuf's deterministic
      serialization of the Example.
    Entries are in Python's sorted key order, which is protobuf's unless one key is a prefix of
    another (upb, protobuf's Python backend, then puts the longer key first); any order parses
    the same, and no schema here has such keys.
    """
    buffer, starts, lengths = _encode(features, framed=False)
    return buffer, starts + lengths


def encode_tfrecords(features: Mapping[str, np.ndarray]) -> np.ndarray:
    """Row i of every array -> one Example (as encode_examples), framed as a TFRecord.

    Returns uint8 [total]: the bytes a .tfrecord file of these records holds, in row order
    (what tf.io.TFRecordWriter writes for them); write it with write_tfrecord_chunks.
    """
    return _encode(features, framed=True)[0]


def frame_tfrecords(records: Sequence[bytes]) -> np.ndarray:
    """Serialized records -> their TFRecord file bytes (uint8), as tf.io.TFRecordWriter."""
    lengths = np.fromiter(map(len, records), np.int64, len(records))
    ends = np.cumsum(lengths + 16)
    starts = ends - (lengths + 16)
    buffer = np.empty(int(ends[-1]) if len(records) else 0, np.uint8)
    data = memoryview(buffer)
    for start, length, record in zip((starts + 12).tolist(), lengths.tolist(), records):
        data[start:start + length] = record
    record_kernels.frame_records(buffer, starts, lengths)
    return buffer


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

_FRAME_BATCH = 4096  # records framed per call by write_tfrecord


def write_tfrecord_chunks(path: str, chunks: Iterable, gzip: bool = False,
                          before_commit: Callable[[], None] | None = None) -> None:
    """Writes TFRecord file bytes (chunks of encode_tfrecords / frame_tfrecords output, in
    order) to `path` atomically.

    gzip: one gzip stream over all of it (zlib, default level, header without a time stamp,
    so equal inputs give equal files), which tf.data reads with compression_type="GZIP".
    before_commit runs after the data is complete and before the rename (e.g. to write a
    manifest, so that a final file never exists without it).
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED,
                                          16 + zlib.MAX_WBITS) if gzip else None
            for chunk in chunks:
                f.write(compressor.compress(chunk) if compressor else chunk)
            if compressor:
                f.write(compressor.flush())
        if before_commit is not None:
            before_commit()


def write_tfrecord(path: str, records: Iterable[bytes], gzip: bool = False,
                   before_commit: Callable[[], None] | None = None) -> int:
    """Writes serialized records to `path` atomically; returns how many were written.

    The file is what tf.io.TFRecordWriter writes (gzip: see write_tfrecord_chunks).
    before_commit runs after the data is complete and before the rename.
    """
    count = 0

    def chunks():
        nonlocal count
        iterator = iter(records)
        while batch := list(islice(iterator, _FRAME_BATCH)):
            count += len(batch)
            yield frame_tfrecords(batch)

    write_tfrecord_chunks(path, chunks(), gzip, before_commit)
    return count


def read_tfrecord(path: str, gzip: bool | None = None) -> list[bytes]:
    """All records of one file; gzip=None guesses from a `.gz` suffix."""
    import tensorflow as tf
    if gzip is None:
        gzip = path.endswith(".gz")
    dataset = tf.data.TFRecordDataset(path, compression_type="GZIP" if gzip else "")
    return [record.numpy() for record in dataset]
