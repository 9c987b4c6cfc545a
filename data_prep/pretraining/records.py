"""Rows of an instances_compiled.InstanceTable -> TFRecord bytes of pretraining Examples.

The bytes are those of `tfrecords.encode_tfrecords(padded_batch(...).features)` (tested
equal), written straight from the table by one compiled loop per batch: no padded arrays, no
per-feature passes. Each record is sized first (its payload varints), then written: the map
entries in key order (`tfrecords`' comment gives the layout), then its TFRecord frame.
"""
from __future__ import annotations

import random

from data_prep.compiled import numba
import numpy as np

from data_prep.pretraining import record_kernels as rk
from data_prep.pretraining.instances import InstanceOptions, VocabIds

# The schema's keys in protobuf's (sorted) order, and which payload each one has.
_KEYS = ("input_ids", "input_mask", "masked_lm_ids", "masked_lm_positions",
         "masked_lm_weights", "next_sentence_labels", "segment_ids")
_IDS, _MASK, _MASKED_IDS, _POSITIONS, _WEIGHTS, _LABEL, _SEGMENTS = range(7)


def _heads() -> tuple[np.ndarray, np.ndarray]:
    """-> (uint8 bytes of every `0x0A len(key) key 0x12`, int64 [8] offsets)."""
    heads = [b"\x0a" + bytes([len(k)]) + k.encode() + b"\x12" for k in _KEYS]
    offsets = np.cumsum([0] + [len(h) for h in heads])
    return np.frombuffer(b"".join(heads), np.uint8), offsets


_HEAD_BYTES, _HEAD_OFFSETS = _heads()


@numba.njit(cache=True, nogil=True, inline="always")
def _length_prefixed(size):
    """Bytes of a field holding `size` bytes: its length varint plus the size."""
    return rk._varint_size(size) + size


@numba.njit(cache=True, nogil=True)
def _encode(rows, positions, new_ids, order, tokens, seq_len, pred, cls_id, sep_id, heads,
            head_offsets, out):
    """Writes the framed records of rows order[0], order[1], ... to out (large enough);
    returns the bytes used."""
    ids = np.zeros(seq_len, np.int64)
    masked = np.zeros((2, pred), np.int64)  # the record's positions and original ids
    payload = np.zeros(7, np.int64)
    entry = np.zeros(7, np.int64)
    feature = np.zeros(7, np.int64)
    value_list = np.zeros(7, np.int64)
    q = 0
    for i_row in range(order.shape[0]):
        r = order[i_row]
        a_start, a_len, b_start, b_len = rows[r, 0], rows[r, 1], rows[r, 2], rows[r, 3]
        n = a_len + b_len + 3
        m = rows[r, 6]
        ids[0] = cls_id
        ids[1:a_len + 1] = tokens[a_start:a_start + a_len]
        ids[a_len + 1] = sep_id
        ids[a_len + 2:n - 1] = tokens[b_start:b_start + b_len]
        ids[n - 1] = sep_id
        ids[n:] = 0
        for k in range(m):
            p = positions[r, k]
            masked[0, k] = p
            masked[1, k] = ids[p]  # (distinct positions: still the original id)
            ids[p] = new_ids[r, k]
        # Payload sizes: varints (zeros and 0/1 values are one byte each), floats 4 bytes.
        size = seq_len - n
        for i in range(n):
            size += rk._varint_size(ids[i])
        payload[_IDS] = size
        payload[_MASK] = seq_len
        size = pred - m
        for k in range(m):
            size += rk._varint_size(masked[1, k])
        payload[_MASKED_IDS] = size
        size = pred - m
        for k in range(m):
            size += rk._varint_size(masked[0, k])
        payload[_POSITIONS] = size
        payload[_WEIGHTS] = 4 * pred
        payload[_LABEL] = 1
        payload[_SEGMENTS] = seq_len
        body = 0
        for f in range(7):
            value_list[f] = 1 + _length_prefixed(payload[f])
            feature[f] = 1 + _length_prefixed(value_list[f])
            entry[f] = head_offsets[f + 1] - head_offsets[f] + _length_prefixed(feature[f])
            body += 1 + _length_prefixed(entry[f])
        length = 1 + _length_prefixed(body)
        # The record: frame header, then 0x0A len(body) and the entries, then the data CRC.
        start = q
        q += 12
        out[q] = 0x0A
        q = rk._put_varint(out, q + 1, body)
        for f in range(7):
            out[q] = 0x0A
            q = rk._put_varint(out, q + 1, entry[f])
            for b in range(head_offsets[f], head_offsets[f + 1]):
                out[q] = heads[b]
                q += 1
            q = rk._put_varint(out, q, feature[f])
            out[q] = 0x12 if f == _WEIGHTS else 0x1A
            q = rk._put_varint(out, q + 1, value_list[f])
            out[q] = 0x0A
            q = rk._put_varint(out, q + 1, payload[f])
            if f == _IDS:
                for i in range(seq_len):
                    q = rk._put_varint(out, q, ids[i])
            elif f == _MASK or f == _SEGMENTS:  # 1s over [0, n) / [a_len + 2, n), else 0s
                ones = 0 if f == _MASK else a_len + 2
                for i in range(seq_len):
                    out[q + i] = 1 if ones <= i < n else 0
                q += seq_len
            elif f == _MASKED_IDS or f == _POSITIONS:
                row = 1 if f == _MASKED_IDS else 0
                for k in range(m):
                    q = rk._put_varint(out, q, masked[row, k])
                for k in range(pred - m):
                    out[q + k] = 0
                q += pred - m
            elif f == _WEIGHTS:  # 1.0 (0x3F800000, little-endian) for the m real ones, else 0.0
                for k in range(pred):
                    out[q], out[q + 1] = 0, 0
                    out[q + 2], out[q + 3] = (0x80, 0x3F) if k < m else (0, 0)
                    q += 4
            else:
                out[q] = rows[r, 4]
                q += 1
        for k in range(8):
            out[start + k] = (length >> (8 * k)) & 0xFF
        rk._put_uint32(out, start + 8, rk._masked(rk.crc32c(out, start, start + 8)))
        rk._put_uint32(out, q, rk._masked(rk.crc32c(out, start + 12, q)))
        q += 4
    return q


def encode(table, start: int, stop: int, vocab: VocabIds, options: InstanceOptions
           ) -> np.ndarray:
    """Rows start..stop-1 of an InstanceTable -> their TFRecord file bytes (uint8)."""
    seq, pred = options.max_seq_length, options.max_predictions_per_seq
    # Upper bound per record: frame and entry headers, 5 bytes per id (ids < 2**32 here), 3
    # per position (seq <= 2**16), 4 per weight.
    bound = 16 + 11 + 7 * 40 + len(_HEAD_BYTES) + 7 * seq + 12 * pred
    out = np.empty((stop - start) * bound, np.uint8)
    used = _encode(table.rows, table.positions, table.new_ids, table.order[start:stop],
                   table.tokens, seq, pred, vocab.cls_id, vocab.sep_id, _HEAD_BYTES,
                   _HEAD_OFFSETS, out)
    return out[:used]


def table_stats(table, vocab: VocabIds, options: InstanceOptions) -> dict:
    """The counts create_pretraining_data's summary adds up (those of its _batch_stats on the
    padded arrays), from a whole table at once (a few bytes of temporaries per instance)."""
    rows = table.rows
    lengths = rows[:, 1].astype(np.int64) + rows[:, 3] + 3
    uncapped = np.rint(lengths * options.masked_lm_prob)  # half to even, like Python's round
    return {
        "instances": len(rows),
        "tokens": int(lengths.sum()),
        "maskable_tokens": int((lengths - 3).sum()),
        "masked_tokens": int(rows[:, 6].sum(dtype=np.int64)),
        "masked_as_mask": int(table.mask_counts[0]),
        "masked_kept": int(table.mask_counts[1]),
        "random_next": int(rows[:, 4].sum(dtype=np.int64)),
        "short_target_instances": int((rows[:, 5] < options.max_seq_length - 3).sum()),
        "capped_instances": int((uncapped > options.max_predictions_per_seq).sum()),
    }


def warm_up() -> None:
    """Compiles (or loads from the cache) the kernel (see record_kernels.warm_up)."""
    from data_prep.pretraining import instances_compiled
    vocab = VocabIds(2, 3, 4, tuple(range(300)), (False,) * 300)  # (uint16 new ids)
    options = InstanceOptions(max_seq_length=8, max_predictions_per_seq=2)
    table = instances_compiled.create_table([[[5, 6, 7], [8, 9]], [[10, 11]]], vocab, options,
                                            1, random.Random(0))
    encode(table, 0, len(table), vocab, options)
