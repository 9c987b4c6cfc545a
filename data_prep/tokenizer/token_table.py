"""Whitespace tokens -> WordPiece ids, looked up in compiled code (numba).

line_tokenizer.LineTokenizer maps each whitespace token of cleaned text to its ids through a
Python dict; per token that is a string object, a hash and a dict probe, ~180 ns, which made
tokenizing the largest part of create_pretraining_data's time. `TokenTable` holds the same
memo (token -> ids) as a hash table over UTF-8 bytes, and `TokenTable.tokenize` splits a whole
batch of lines and looks every token up in one compiled loop (~25 ns a token). Tokens it has
not seen are handed back; the caller computes their ids (with the Python rules) and `add`s
them, so the ids are always those of the Python tokenizer.

Keys are compared byte for byte (the hash only picks the slot), so a hash collision can never
give a token another token's ids.
"""
from __future__ import annotations

from data_prep.compiled import numba
import numpy as np

_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)


@numba.njit(cache=True, nogil=True, inline="always")
def _hash(data, start, stop):
    """FNV-1a over data[start:stop] (uint8), as uint64."""
    h = _FNV_OFFSET
    for i in range(start, stop):
        h ^= np.uint64(data[i])
        h *= _FNV_PRIME
    return h


@numba.njit(cache=True, nogil=True)
def _tokenize(data, slots, key_start, key_len, keys, ids_start, ids_len, ids, out_ids,
              line_lengths, missing):
    """Lines of cleaned UTF-8 text (separated by 0x0A) -> ids of their tokens.

    Tokens are separated by spaces and by U+2028 / U+2029 (E2 80 A8 / A9), which Python's
    str.split() also splits on and the BERT cleaning keeps. Writes the ids of every token found
    to out_ids and each line's id count to line_lengths; tokens not in the table go to missing
    ([k] = byte start, byte stop, hash). Returns (ids written, lines, missing tokens); ids written is
    -1 if out_ids was too small. (The byte tests are written out in the loop: helper
    functions for them measured ~6x slower here. The inlined `_probe`, shared with `find`,
    measured the same as the loop written out.)"""
    n = data.shape[0]
    mask = slots.shape[0] - 1
    out = 0
    line = 0
    line_start = 0
    num_missing = 0
    i = 0
    while i < n:
        b = data[i]
        if b == 0x0A:
            line_lengths[line] = out - line_start
            line += 1
            line_start = out
            i += 1
            continue
        if b == 0x20:
            i += 1
            continue
        if b == 0xE2 and i + 2 < n and data[i + 1] == 0x80 and (data[i + 2] | 1) == 0xA9:
            i += 3
            continue
        start = i
        h = _FNV_OFFSET
        while i < n:
            b = data[i]
            if b == 0x0A or b == 0x20 or (b == 0xE2 and i + 2 < n and data[i + 1] == 0x80
                                           and (data[i + 2] | 1) == 0xA9):
                break
            h ^= np.uint64(b)
            h *= _FNV_PRIME
            i += 1
        e = _probe(slots, key_start, key_len, keys, data, start, i, h)
        if e < 0:
            missing[num_missing, 0] = start
            missing[num_missing, 1] = i
            missing[num_missing, 2] = np.int64(h)
            num_missing += 1
        else:
            count = ids_len[e]
            if out + count > out_ids.shape[0]:
                return -1, line, num_missing  # (out of room: the caller retries)
            first = ids_start[e]
            for k in range(count):
                out_ids[out + k] = ids[first + k]
            out += count
    line_lengths[line] = out - line_start
    return out, line + 1, num_missing


@numba.njit(cache=True, nogil=True, inline="always")
def _probe(slots, key_start, key_len, keys, data, start, stop, h):
    """The entry whose key is data[start:stop] (uint8, hash h), or -1."""
    mask = slots.shape[0] - 1
    length = stop - start
    s = np.int64(h & np.uint64(mask))
    e = slots[s]
    while e >= 0:
        if key_len[e] == length:
            k = key_start[e]
            same = True
            for j in range(length):
                if keys[k + j] != data[start + j]:
                    same = False
                    break
            if same:
                return e
        s = (s + 1) & mask
        e = slots[s]
    return -1


@numba.njit(cache=True, nogil=True, inline="always")
def find(slots, key_start, key_len, keys, data, start, stop):
    """The entry whose key is data[start:stop] (uint8), or -1."""
    return _probe(slots, key_start, key_len, keys, data, start, stop,
                  _hash(data, start, stop))


@numba.njit(cache=True, nogil=True)
def _insert(slots, hashes, key_start, key_len, keys, ids_start, ids_len, size, new_keys,
            new_key_ends, new_ids, new_id_ends, key_used, ids_used, ids):
    """Adds entries size.. for the new keys (distinct, not yet in the table; arrays large
    enough). Returns the new size."""
    mask = slots.shape[0] - 1
    key_begin = 0
    id_begin = 0
    for j in range(new_key_ends.shape[0]):
        e = size + j
        length = new_key_ends[j] - key_begin
        keys[key_used:key_used + length] = new_keys[key_begin:new_key_ends[j]]
        key_start[e] = key_used
        key_len[e] = length
        h = _hash(new_keys, key_begin, new_key_ends[j])
        hashes[e] = h
        count = new_id_ends[j] - id_begin
        ids[ids_used:ids_used + count] = new_ids[id_begin:new_id_ends[j]]
        ids_start[e] = ids_used
        ids_len[e] = count
        s = np.int64(h & np.uint64(mask))
        while slots[s] >= 0:
            s = (s + 1) & mask
        slots[s] = e
        key_used += length
        ids_used += count
        key_begin = new_key_ends[j]
        id_begin = new_id_ends[j]
    return size + new_key_ends.shape[0]


@numba.njit(cache=True, nogil=True)
def _rehash(slots, hashes, size):
    mask = slots.shape[0] - 1
    slots[:] = -1
    for e in range(size):
        s = np.int64(hashes[e] & np.uint64(mask))
        while slots[s] >= 0:
            s = (s + 1) & mask
        slots[s] = e


def _grown(array: np.ndarray, needed: int) -> np.ndarray:
    if needed <= len(array):
        return array
    bigger = np.empty(max(needed, 2 * len(array)), array.dtype)
    bigger[:len(array)] = array
    return bigger


class TokenTable:
    """token (UTF-8 bytes) -> tuple of ids, for up to `limit` distinct tokens."""

    def __init__(self, limit: int = 1 << 20):
        self.limit = limit
        self.size = 0
        self.slots = np.full(1 << 12, -1, np.int64)
        self.hashes = np.zeros(1 << 11, np.uint64)
        self.key_start = np.zeros(1 << 11, np.int64)
        self.key_len = np.zeros(1 << 11, np.int64)
        self.ids_start = np.zeros(1 << 11, np.int64)
        self.ids_len = np.zeros(1 << 11, np.int64)
        self.keys = np.zeros(1 << 14, np.uint8)
        self.ids = np.zeros(1 << 13, np.int32)
        self.key_used = 0
        self.ids_used = 0

    def __len__(self) -> int:
        return self.size

    def tokenize(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cleaned text as UTF-8 bytes (uint8), lines separated by b"\\n" ->
        (ids int32 [total], ids per line int64 [lines], missing int64 [m, 2]: byte ranges of
        the tokens not in the table, whose ids are left out of the result; one range per
        distinct token, up to hash collisions, which then leave a token out until the next
        call)."""
        n = len(data)
        room = n  # enough unless some token has more ids than bytes; then twice as much
        while True:
            out_ids = np.empty(room, np.int32)
            line_lengths = np.empty(n + 1, np.int64)
            missing = np.empty((n // 2 + 1, 3), np.int64)
            count, lines, num_missing = _tokenize(
                data, self.slots, self.key_start, self.key_len, self.keys, self.ids_start,
                self.ids_len, self.ids, out_ids, line_lengths, missing)
            if count >= 0:
                missing = missing[:num_missing]
                first = np.unique(missing[:, 2], return_index=True)[1]  # one per hash
                # (copies: views would keep the buffers, sized by bytes not ids, alive)
                return (out_ids[:count].copy(), line_lengths[:lines].copy(),
                        missing[np.sort(first), :2])
            room = 2 * room + 16

    def add(self, tokens: list[bytes], token_ids: list[tuple[int, ...]]) -> int:
        """Adds distinct tokens not yet in the table (as many as the limit allows); returns
        how many were added."""
        tokens = tokens[:max(0, self.limit - self.size)]
        if not tokens:
            return 0
        return self.add_arrays(*pack(tokens, token_ids[:len(tokens)]))

    def add_arrays(self, new_keys: np.ndarray, new_key_ends: np.ndarray, new_ids: np.ndarray,
                   new_id_ends: np.ndarray) -> int:
        """`add` for tokens already packed (see `pack`): keys uint8 [bytes] and their ends
        int64 [tokens], ids int32 [total] and their ends int64 [tokens]."""
        count = min(len(new_key_ends), max(0, self.limit - self.size))
        if count == 0:
            return 0
        new_key_ends, new_id_ends = new_key_ends[:count], new_id_ends[:count]
        new_keys, new_ids = new_keys[:new_key_ends[-1]], new_ids[:new_id_ends[-1]]
        size = self.size + count
        for name in ("hashes", "key_start", "key_len", "ids_start", "ids_len"):
            setattr(self, name, _grown(getattr(self, name), size))
        self.keys = _grown(self.keys, self.key_used + len(new_keys))
        self.ids = _grown(self.ids, self.ids_used + len(new_ids))
        if 2 * size > len(self.slots):  # keep the load factor <= 1/2
            slots = len(self.slots)
            while 2 * size > slots:
                slots *= 2
            self.slots = np.empty(slots, np.int64)
            _rehash(self.slots, self.hashes, self.size)
        self.size = _insert(self.slots, self.hashes, self.key_start, self.key_len, self.keys,
                            self.ids_start, self.ids_len, self.size, new_keys, new_key_ends,
                            new_ids, new_id_ends, self.key_used, self.ids_used, self.ids)
        self.key_used += len(new_keys)
        self.ids_used += len(new_ids)
        return count


def gather(data: np.ndarray, ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Byte ranges (int64 [m, 2]) of data (uint8) -> (their bytes back to back uint8,
    their ends int64 [m]): add_arrays' keys."""
    lengths = ranges[:, 1] - ranges[:, 0]
    ends = np.cumsum(lengths)
    # Byte k of range r sits at start_r + (k - first output position of r).
    positions = np.repeat(ranges[:, 0] - ends + lengths, lengths) + np.arange(lengths.sum())
    return data[positions], ends


def pack(tokens: list[bytes], token_ids: list[tuple[int, ...]]
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tokens and their ids -> add_arrays' arguments."""
    return (np.frombuffer(b"".join(tokens), np.uint8),
            np.cumsum([len(t) for t in tokens], dtype=np.int64),
            np.fromiter((i for ids in token_ids for i in ids), np.int32),
            np.cumsum([len(ids) for ids in token_ids], dtype=np.int64))


def warm_up() -> None:
    """Compiles (or loads from the cache) the kernels (see record_kernels.warm_up)."""
    table = TokenTable()
    table.add([b"a", b"b"], [(1,), (2, 3)])
    table.tokenize(np.frombuffer(b"a b\nc", np.uint8))
    _rehash(table.slots, table.hashes, table.size)
