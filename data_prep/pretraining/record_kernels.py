"""Compiled loops (numba) behind data_prep.files.tfrecords: Example fields, varints, TFRecord framing.

Why numba: a serialized Example is a few hundred varints and a handful of length prefixes.
Written one row at a time in compiled code this costs ~0.3 us per record, where the best
numpy formulation (a scatter per byte position over a batch) cost ~2.5 us and
`tf.io.TFRecordWriter.write` adds ~1.5 us of per-call overhead. The kernels are compiled once
and cached next to this file (`cache=True`), so a later process loads them in milliseconds.

Conventions: `buf` is a uint8 array written in place; `pos` int64 [n] holds each row's write
position and is advanced past what a kernel writes. Integers are int64; a negative value is
written as the varint of its 64-bit two's complement (10 bytes), as protobuf does.
"""
from __future__ import annotations

import platform

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir

from data_prep.compiled import numba
from numba import types  # noqa: E402  (after data_prep.compiled: see there)
from numba.extending import intrinsic

_CRC32C_POLY = 0x82F63B78  # Castagnoli, bit-reversed: TFRecord's checksum
_MASK_DELTA = 0xA282EAD8


def _crc32c_tables() -> np.ndarray:
    """int64 [8, 256]: slicing-by-8 tables, table[k][b] = CRC of byte b followed by k zeros."""
    tables = np.zeros((8, 256), np.int64)
    for b in range(256):
        crc = b
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC32C_POLY if crc & 1 else 0)
        tables[0, b] = crc
    for k in range(1, 8):
        prev = tables[k - 1]
        tables[k] = (prev >> 8) ^ tables[0][prev & 0xFF]
    return tables


CRC32C_TABLES = _crc32c_tables()


@numba.njit(cache=True, nogil=True)
def _crc32c_table(buf: np.ndarray, start: int, stop: int) -> int:
    """CRC-32C of buf[start:stop] (uint8) from lookup tables, eight bytes per step."""
    tables = CRC32C_TABLES
    crc = 0xFFFFFFFF
    i = start
    while i + 8 <= stop:
        low = crc ^ (np.int64(buf[i]) | (np.int64(buf[i + 1]) << 8)
                     | (np.int64(buf[i + 2]) << 16) | (np.int64(buf[i + 3]) << 24))
        crc = (tables[7, low & 0xFF] ^ tables[6, (low >> 8) & 0xFF]
               ^ tables[5, (low >> 16) & 0xFF] ^ tables[4, low >> 24]
               ^ tables[3, buf[i + 4]] ^ tables[2, buf[i + 5]]
               ^ tables[1, buf[i + 6]] ^ tables[0, buf[i + 7]])
        i += 8
    while i < stop:
        crc = tables[0, (crc ^ buf[i]) & 0xFF] ^ (crc >> 8)
        i += 1
    return crc ^ 0xFFFFFFFF


@intrinsic
def _sse42_crc32_u64(typingctx, crc, data):
    """The x86 SSE4.2 `crc32` instruction on 8 bytes (it computes CRC-32C)."""
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fn = builder.module.declare_intrinsic("llvm.x86.sse42.crc32.64.64",
                                              fnty=ir.FunctionType(i64, [i64, i64]))
        return builder.call(fn, args)
    return types.uint64(types.uint64, types.uint64), codegen


@numba.njit(cache=True, nogil=True)
def _crc32c_sse42(buf: np.ndarray, start: int, stop: int) -> int:
    """CRC-32C of buf[start:stop] (uint8) with the CPU's crc32 instruction (~5x the tables)."""
    crc = np.uint64(0xFFFFFFFF)
    i = start + (stop - start) // 8 * 8
    for word in buf[start:i].view(np.uint64):  # (unaligned 8-byte loads are fine on x86)
        crc = _sse42_crc32_u64(crc, word)
    value = np.int64(crc)
    while i < stop:
        value = CRC32C_TABLES[0, (value ^ buf[i]) & 0xFF] ^ (value >> 8)
        i += 1
    return value ^ 0xFFFFFFFF


def _has_sse42() -> bool:
    return (platform.machine().lower() in ("x86_64", "amd64")
            and "sse4.2" in llvm.get_host_cpu_features().flatten())


# Chosen once per process; frame_records compiles against the one chosen.
crc32c = _crc32c_sse42 if _has_sse42() else _crc32c_table


@numba.njit(cache=True, nogil=True, inline="always")
def _masked(crc: int) -> int:
    """TFRecord's masked CRC: rotate right by 15, add a constant (mod 2**32)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


@numba.njit(cache=True, nogil=True, inline="always")
def _put_uint32(buf, p, value):
    for k in range(4):
        buf[p + k] = (value >> (8 * k)) & 0xFF


@numba.njit(cache=True, nogil=True)
def frame_records(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
    """Fills the TFRecord framing around records already in place.

    Record i's data is buf[starts[i] + 12 : starts[i] + 12 + lengths[i]]; its frame is
    uint64 length, uint32 masked CRC of those 8 bytes, the data, uint32 masked CRC of the data
    (all little-endian), so 16 bytes more than the data.
    """
    for i in range(starts.shape[0]):
        s, n = starts[i], lengths[i]
        for k in range(8):
            buf[s + k] = (n >> (8 * k)) & 0xFF
        _put_uint32(buf, s + 8, _masked(crc32c(buf, s, s + 8)))
        _put_uint32(buf, s + 12 + n, _masked(crc32c(buf, s + 12, s + 12 + n)))


@numba.njit(cache=True, nogil=True, inline="always")
def _varint_size(value):
    # Comparisons instead of a loop: no branches, so a row's sizes are summed in SIMD lanes.
    # (A negative value is below every bound and gets the 10 bytes of its two's complement.)
    return (1 + (value >= 1 << 7) + (value >= 1 << 14) + (value >= 1 << 21)
            + (value >= 1 << 28) + (value >= 1 << 35) + (value >= 1 << 42)
            + (value >= 1 << 49) + (value >= 1 << 56) + 9 * (value < 0))


@numba.njit(cache=True, nogil=True, inline="always")
def _put_varint(buf, p, value):
    if value < 0:  # two's complement: the low 63 bits in 9 groups, then the sign bit
        for k in range(9):
            buf[p + k] = ((value >> (7 * k)) & 0x7F) | 0x80
        buf[p + 9] = 1
        return p + 10
    while value >= 128:
        buf[p] = (value & 0x7F) | 0x80
        value >>= 7
        p += 1
    buf[p] = value
    return p + 1


@numba.njit(cache=True, nogil=True)
def varint_sizes(values: np.ndarray) -> np.ndarray:
    """int64 [n, d] -> int64 [n]: each row's total varint bytes."""
    n, d = values.shape
    out = np.zeros(n, np.int64)
    for r in range(n):
        size = 0
        for c in range(d):
            size += _varint_size(values[r, c])
        out[r] = size
    return out


@numba.njit(cache=True, nogil=True)
def put_lengths(buf: np.ndarray, pos: np.ndarray, lengths: np.ndarray) -> None:
    """Writes one varint per row (lengths int64 [n]) at pos."""
    for r in range(pos.shape[0]):
        pos[r] = _put_varint(buf, pos[r], lengths[r])


@numba.njit(cache=True, nogil=True)
def put_feature_entry(buf: np.ndarray, pos: np.ndarray, head: np.ndarray, tag: int,
                      entry_size: np.ndarray, feature_size: np.ndarray,
                      list_size: np.ndarray, payload_size: np.ndarray) -> None:
    """Writes each row's map entry up to its values (see tfrecords.encode_examples):
    0x0A len(entry) head len(feature) tag len(list) [0x0A len(values)].

    head uint8 [k]: 0x0A len(key) key 0x12; the sizes are int64 [n]; an empty list
    (payload_size 0) has no inner field."""
    k = head.shape[0]
    for r in range(pos.shape[0]):
        p = pos[r]
        buf[p] = 0x0A
        p = _put_varint(buf, p + 1, entry_size[r])
        buf[p:p + k] = head
        p = _put_varint(buf, p + k, feature_size[r])
        buf[p] = tag
        p = _put_varint(buf, p + 1, list_size[r])
        if payload_size[r]:
            buf[p] = 0x0A
            p = _put_varint(buf, p + 1, payload_size[r])
        pos[r] = p


@numba.njit(cache=True, nogil=True)
def put_varints(buf: np.ndarray, pos: np.ndarray, values: np.ndarray) -> None:
    """Writes row r of values (int64 [n, d]) as d varints at pos[r]."""
    n, d = values.shape
    for r in range(n):
        p = pos[r]
        for c in range(d):
            p = _put_varint(buf, p, values[r, c])
        pos[r] = p


@numba.njit(cache=True, nogil=True)
def put_bytes(buf: np.ndarray, pos: np.ndarray, data: np.ndarray) -> None:
    """Copies row r of data (uint8 [n, w]) to pos[r]."""
    w = data.shape[1]
    for r in range(pos.shape[0]):
        p = pos[r]
        buf[p:p + w] = data[r]
        pos[r] = p + w


def warm_up() -> None:
    """Compiles (or loads from the cache) every kernel with the types tfrecords passes.

    The first call of a kernel in a process costs ~0.3 s (numba's code generator starts);
    a process that forks workers calls this first, so the workers start with them ready.
    """
    buf = np.zeros(64, np.uint8)
    pos = np.zeros(1, np.int64)
    ones = np.ones(1, np.int64)
    varint_sizes(np.ones((1, 1), np.int64))
    put_lengths(buf, pos, ones)
    put_feature_entry(buf, pos, np.zeros(2, np.uint8), 0x1A, ones, ones, ones, ones)
    put_varints(buf, pos, np.ones((1, 1), np.int64))
    put_bytes(buf, pos, np.ones((1, 1), np.uint8))
    frame_records(buf, np.zeros(1, np.int64), ones)
