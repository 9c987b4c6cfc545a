"""WordPiece ids of printable-ASCII tokens, computed in compiled code (numba).

line_tokenizer.LineTokenizer computes each distinct whitespace token once, on first sight;
with the Python rules that was ~4 us a token, and a corpus meets most of its distinct tokens
only a few times, so on the shipped corpus first sightings were the largest part of
tokenizing. Most tokens are printable ASCII ("word", "said,", "don't"), for which
BasicTokenizer only lower-cases A-Z and makes each punctuation character (in ASCII, every
character that is not a letter or digit) a word of its own; no accents, no CJK. Each word
then goes through WordPiece: greedy longest-match-first against the vocabulary, "##" before
every piece but the first, [UNK] for the whole word when some position matches no piece or
the word has more than tokenization.MAX_CHARS_PER_WORD characters. `AsciiWordPiece.compute`
runs exactly that over the tokens' UTF-8 bytes and hands every other token back to the
Python rules.

The vocabulary is held as two token_table.TokenTable hash tables over its ASCII entries:
word-initial pieces, and continuation pieces without their "##". Non-ASCII entries can never
match a piece of an ASCII word, so leaving them out changes no result.
"""
from __future__ import annotations

from data_prep.compiled import numba
import numpy as np

from data_prep.tokenizer import token_table, tokenization


@numba.njit(cache=True, nogil=True)
def _compute(data, ranges, lower, init_slots, init_key_start, init_key_len, init_keys,
             init_ids_start, init_ids, cont_slots, cont_key_start, cont_key_len, cont_keys,
             cont_ids_start, cont_ids, longest, max_chars, unk_id, out_ids, counts):
    """ranges int64 [m, 2]: byte ranges of tokens in data (uint8). For each token of
    printable ASCII (0x21-0x7E), writes its ids to out_ids (back to back) and their number to
    counts[k]; counts[k] = -1 for every other token (left to the caller). Returns the ids
    written. out_ids needs room for one id per byte of the handled tokens (a piece is at
    least one byte).

    BasicTokenizer on such a token: lower-case (A-Z only), then every character that is not
    a letter or digit is punctuation (BERT counts all of ASCII 33-47, 58-64, 91-96 and 123-126)
    and becomes a word of its own; the runs of letters and digits between are the other
    words. Each word then goes through WordPiece."""
    out = 0
    word = np.empty(max(max_chars + 1, 1), np.uint8)
    for k in range(ranges.shape[0]):
        a = ranges[k, 0]
        n = ranges[k, 1] - a
        handled = n > 0
        for i in range(n):
            b = data[a + i]
            if b < 0x21 or b > 0x7E:
                handled = False
                break
        if not handled:
            counts[k] = -1
            continue
        first = out
        i = 0
        while i < n:
            # The next word: one punctuation character, or a run of letters and digits.
            length = 0
            while i < n:
                b = data[a + i]
                alnum = 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A
                if not alnum and length > 0:
                    break
                if length <= max_chars:
                    word[length] = b + 32 if lower and 0x41 <= b <= 0x5A else b
                length += 1
                i += 1
                if not alnum:
                    break
            if length > max_chars:
                out_ids[out] = unk_id
                out += 1
                continue
            word_first = out
            start = 0
            while start < length:
                found = -1
                end = min(length, start + longest)
                while end > start:
                    if start == 0:
                        e = token_table.find(init_slots, init_key_start, init_key_len,
                                             init_keys, word, start, end)
                        if e >= 0:
                            found = init_ids[init_ids_start[e]]
                    else:
                        e = token_table.find(cont_slots, cont_key_start, cont_key_len,
                                             cont_keys, word, start, end)
                        if e >= 0:
                            found = cont_ids[cont_ids_start[e]]
                    if found >= 0:
                        break
                    end -= 1
                if found < 0:  # some position matches no piece: the whole word is [UNK]
                    out = word_first
                    out_ids[out] = unk_id
                    out += 1
                    break
                out_ids[out] = found
                out += 1
                start = end
        counts[k] = out - first
    return out


class AsciiWordPiece:
    """FullTokenizer's ids for printable-ASCII tokens, in compiled code."""

    def __init__(self, full: tokenization.FullTokenizer):
        self.lower = bool(full.basic_tokenizer.do_lower_case)
        self.unk_id = full.unk_id
        # The vocabulary's tokens as one "\n"-joined byte string (vocab tokens hold no
        # "\n"), split into the two tables with array operations: a Python loop over 30k
        # entries would cost a measurable part of a small create_pretraining_data run.
        blob = np.frombuffer("\n".join(full.vocab).encode("utf-8", "surrogatepass"),
                             np.uint8)
        ids = np.fromiter(full.vocab.values(), np.int32, len(full.vocab))
        stops = np.flatnonzero(blob == 0x0A)
        starts = np.concatenate([[0], stops + 1])
        stops = np.concatenate([stops, [len(blob)]])
        # (Each segment's max includes its "\n", which is ASCII; empty tokens are masked.)
        ascii_ = np.maximum.reduceat(blob, np.minimum(starts, len(blob) - 1)) < 0x80
        ascii_ &= stops > starts
        suffix = len(tokenization.SUFFIX)
        is_suffix = stops - starts >= suffix
        for j, byte in enumerate(tokenization.SUFFIX.encode()):
            is_suffix &= blob[np.minimum(starts + j, len(blob) - 1)] == byte
        initial = ascii_ & ~is_suffix
        continuation = ascii_ & is_suffix & (stops - starts > suffix)
        self.initial = _table(blob, starts[initial], stops[initial], ids[initial])
        self.continuation = _table(blob, starts[continuation] + suffix, stops[continuation],
                                   ids[continuation])
        # The longest piece an ASCII word can match (the search bound; chars = bytes).
        lengths = np.concatenate([stops[initial] - starts[initial],
                                  stops[continuation] - starts[continuation] - suffix])
        self.longest = int(lengths.max()) if len(lengths) else 1

    def compute(self, data: np.ndarray, ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """data uint8 [n] (UTF-8), ranges int64 [m, 2] (token byte ranges) -> (ids int32
        [total]: the handled tokens' ids back to back, counts int64 [m]: ids per token, -1
        for the tokens left to the Python rules)."""
        ranges = np.ascontiguousarray(ranges, np.int64)
        out_ids = np.empty(int((ranges[:, 1] - ranges[:, 0]).sum()) + 1, np.int32)
        counts = np.empty(len(ranges), np.int64)
        i, c = self.initial, self.continuation
        total = _compute(data, ranges, self.lower, i.slots, i.key_start, i.key_len, i.keys,
                         i.ids_start, i.ids, c.slots, c.key_start, c.key_len, c.keys,
                         c.ids_start, c.ids, self.longest, tokenization.MAX_CHARS_PER_WORD,
                         self.unk_id, out_ids, counts)
        return out_ids[:total], counts


def _table(blob: np.ndarray, starts: np.ndarray, stops: np.ndarray, ids: np.ndarray
           ) -> token_table.TokenTable:
    """A TokenTable of the keys blob[starts[k]:stops[k]] (distinct) -> (ids[k],)."""
    keys, key_ends = token_table.gather(blob, np.stack([starts, stops], axis=1))
    table = token_table.TokenTable(limit=len(ids) + 1)
    table.add_arrays(keys, key_ends, ids.astype(np.int32),
                     np.arange(1, len(ids) + 1, dtype=np.int64))
    return table


def warm_up() -> None:
    """Compiles (or loads from the cache) the kernel."""
    blob = np.frombuffer(b"ab\nc", np.uint8)
    i = _table(blob, np.array([0]), np.array([2]), np.array([1], np.int32))
    c = _table(blob, np.array([3]), np.array([4]), np.array([2], np.int32))
    _compute(np.frombuffer(b"abc", np.uint8), np.array([[0, 3]], np.int64), True, i.slots,
             i.key_start, i.key_len, i.keys, i.ids_start, i.ids, c.slots, c.key_start,
             c.key_len, c.keys, c.ids_start, c.ids, 2, 200, 0, np.empty(4, np.int32),
             np.empty(1, np.int64))
