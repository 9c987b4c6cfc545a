"""FullTokenizer ids for many lines at once: the same ids for less CPU time.

data_prep.tokenizer.tokenization.FullTokenizer tokenizes one text at a time: clean, lower-case, NFD and
drop accents, isolate punctuation, split, WordPiece (memoised per word), then one dict lookup
per piece for its id. `LineTokenizer` gives the same ids for a batch of lines with most of
that work done once per distinct token instead of once per occurrence:

  1. the lines are joined with "\\n" and cleaned by one `str.translate` (tokenization's own
     table, except that "\\n" is kept as the line separator instead of becoming a space);
  2. each line is split on whitespace, and each whitespace-separated token is looked up in a
     memo: token -> tuple of ids, filled on first sight by FullTokenizer's BasicTokenizer
     (words) and its WordPiece step (pieces; memoised per word too).

Why this is the same: the original BERT tokenizer itself lower-cases, strips accents and
splits punctuation per whitespace-separated token of the cleaned text, and FullTokenizer's
whole-text versions of those steps equal the per-token ones (see BasicTokenizer); a cleaned
token is unchanged by cleaning it again. "\\n" is, like a space, a starter that is neither
cased nor case-ignorable, so it bounds lower-casing contexts (final sigma) and NFD exactly as
the ends of separate lines do. Tested against FullTokenizer on the shipped corpus and on messy
multilingual text (tests/data_prep/test_line_tokenizer.py).

`LineTokenizer.flat` (what create_pretraining_data uses) gives the same ids as flat arrays and
does step 2 in compiled code: the memo is then a data_prep/token_table.TokenTable over the
tokens' UTF-8 bytes, and the tokens it has not seen yet are computed together by the Python
rules above and added: printable-ASCII tokens (most of them) by a compiled BasicTokenizer and
WordPiece (data_prep/tokenizer/wordpiece_compiled.py), the others by `_TokenIds.compute_many`. On the 1.4 MB
shipped corpus a warm pass costs ~0.35 us per pretraining instance instead of ~1.3 us
(__call__).
"""
from __future__ import annotations

from itertools import chain
from typing import Sequence

import numpy as np

from data_prep.tokenizer import token_table, tokenization, wordpiece_compiled


class _CleanKeepingNewline(dict):
    """tokenization's cleaning table (lazy, per code point), with "\\n" kept as it is."""

    def __missing__(self, cp: int):
        value = cp if cp == 10 else tokenization._CLEAN[cp]
        self[cp] = value
        return value


_CLEAN_KEEP_NEWLINE = _CleanKeepingNewline()


class _WordIds(dict):
    """Memo: word (after BasicTokenizer) -> tuple of its WordPiece ids."""

    def __init__(self, full: tokenization.FullTokenizer, limit: int):
        super().__init__()
        self._wordpiece_ids = full.wordpiece_ids
        self._limit = limit

    def __missing__(self, word: str) -> tuple[int, ...]:
        ids = self._wordpiece_ids(word)
        if len(self) < self._limit:
            self[word] = ids
        return ids


class _TokenIds(dict):
    """Memo: whitespace token of cleaned text -> tuple of its ids."""

    def __init__(self, full: tokenization.FullTokenizer, limit: int):
        super().__init__()
        self._isolate = full.basic_tokenizer.isolate
        self._lower = full.basic_tokenizer.do_lower_case
        self._words = _WordIds(full, limit)
        self._limit = limit

    def compute_many(self, tokens: Sequence[str]) -> list[tuple[int, ...]]:
        """The ids of tokens of cleaned text (memoising their words, not the tokens): the
        tokens that need more than lower-casing go through BasicTokenizer together, "\\n"-joined (a line
        break bounds lower-casing and NFD as the end of a text does)."""
        words, lower = self._words, self._lower
        out: list = [None] * len(tokens)
        others = []
        for k, token in enumerate(tokens):
            if token.isascii() and token.isalnum():
                out[k] = words[token.lower() if lower else token]
            else:
                others.append(k)
        if others:
            parts = self._isolate("\n".join([tokens[k] for k in others])).split("\n")
            get = words.__getitem__
            for k, part in zip(others, parts):
                out[k] = tuple(chain.from_iterable(map(get, part.split())))
        return out

    def __missing__(self, token: str) -> tuple[int, ...]:
        ids = self.compute_many([token])[0]
        if len(self) < self._limit:
            self[token] = ids
        return ids


class LineTokenizer:
    """texts -> token ids, equal to FullTokenizer's convert_tokens_to_ids(tokenize(text)).

    Memory: the memos hold up to `cache_limit` distinct tokens and words each (past that, new
    ones are computed each time, still correctly).
    """

    def __init__(self, full: tokenization.FullTokenizer, cache_limit: int = 1 << 20):
        self.full = full
        self._ids = _TokenIds(full, cache_limit)
        self._table = token_table.TokenTable(cache_limit)
        self._ascii: wordpiece_compiled.AsciiWordPiece | None = None  # built on first use

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        get = self._ids.__getitem__
        joined = "\n".join(texts)
        if joined.count("\n") != len(texts) - 1:  # a text holds "\n": one at a time
            return [list(chain.from_iterable(map(get, t.translate(tokenization._CLEAN).split())))
                    for t in texts]
        return [list(chain.from_iterable(map(get, line.split())))
                for line in joined.translate(_CLEAN_KEEP_NEWLINE).split("\n")]

    def flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """texts -> (ids int32 [total], ids per text int64 [len(texts)]): __call__'s ids, back
        to back.

        The tokens' ids come from a compiled table (data_prep/tokenizer/token_table.py); tokens it does
        not hold yet are computed here, with the same rules, and added to it.
        """
        if not texts:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        joined = "\n".join(texts)
        if joined.count("\n") != len(texts) - 1:  # a text holds "\n": the per-text route
            return flatten(self(texts))
        data = np.frombuffer(joined.translate(_CLEAN_KEEP_NEWLINE).encode("utf-8",
                                                                         "surrogatepass"),
                             np.uint8)
        ids, lengths, missing = self._table.tokenize(data)
        while len(missing):  # (a second round only for tokens whose hashes collided)
            if not self._add(data, missing):  # the table is full: these texts the dict way
                return flatten(self(texts))
            ids, lengths, missing = self._table.tokenize(data)
        return ids, lengths

    def _add(self, data: np.ndarray, missing: np.ndarray) -> bool:
        """Computes the ids of the tokens at byte ranges `missing` (int64 [m, 2], distinct
        tokens) and adds them to the table; False if it had no room for all of them."""
        if self._ascii is None:
            self._ascii = wordpiece_compiled.AsciiWordPiece(self.full)
        piece_ids, counts = self._ascii.compute(data, missing)
        done = counts >= 0
        if done.any():  # printable ASCII: compiled
            keys, key_ends = token_table.gather(data, missing[done])
            if self._table.add_arrays(keys, key_ends, piece_ids,
                                      np.cumsum(counts[done])) < len(key_ends):
                return False
        rest = missing[~done].tolist()
        if rest:  # everything else: the Python rules
            raw = data.tobytes()
            new = [raw[a:b] for a, b in rest]
            if self._table.add(new, self._ids.compute_many(
                    [t.decode("utf-8", "surrogatepass") for t in new])) < len(new):
                return False
        return True


def flatten(lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-text id lists -> (ids int32 [total], ids per text int64 [n]), LineTokenizer.flat's
    form."""
    return (np.fromiter(chain.from_iterable(lists), np.int32),
            np.fromiter(map(len, lists), np.int64, len(lists)))
