"""WordPiece tokenization with the exact rules of the original BERT tokenizer.

Two implementations that give identical ids (tests/data_prep checks both
against a literal restatement of the original rules):

* `FullTokenizer` - pure Python, one text at a time (drop-in for the
  original `tokenization.FullTokenizer`).
* `BertTextTokenizer` - in-graph (TF + tensorflow-text), batched, usable in
  `tf.function`, `tf.data` and SavedModels: `data_prep.tokenizer.text_tokenizer`
  (with its code-point tables in `data_prep.tokenizer.char_tables`), which builds on the
  rules here. This module does not import TensorFlow.

The original rules, briefly (see tests/data_prep/reference_tokenizer.py):
delete U+0000, U+FFFD and Cc/Cf characters; map whitespace to spaces; isolate
CJK ideographs; split on whitespace; if lower-casing: Python `str.lower()`
(context-sensitive final sigma, `ß` unchanged), NFD, drop Mn; isolate
punctuation; greedy longest-match WordPiece, words over 200 chars -> [UNK].

tensorflow-text's own normaliser differs from these rules on messy text
(measured: it case-folds `ß` to `ss` and final `ς` to `σ`, splits words at
control characters, and limits words in bytes, 100 by default), so
`BertTextTokenizer` does not use it. Nearly all text takes a fast route:
tensorflow-text's `FastBertNormalizer` running a normaliser model that
`data_prep.tokenizer.char_tables` builds from this Python's `unicodedata` (each code point
mapped to what these rules make of it; final sigma by a regex rewrite), then
`FastWordpieceTokenizer`. The few strings it cannot get exactly right (invalid
UTF-8, punctuation newer than tf-text's ICU classes, characters NFD reorders)
take a general route that normalises and splits words from per-code-point
tables. Both are tested against `FullTokenizer` on messy multilingual text.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Iterable

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
RESERVED_TOKENS = (PAD, UNK, CLS, SEP, MASK)
MAX_CHARS_PER_WORD = 200
SUFFIX = "##"

# The original BERT treats only Cc and Cf as "control" (Hugging Face widened
# this to every C* category; we follow the original).
CONTROL_CATEGORIES = ("Cc", "Cf")
CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F), (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)
CAPITAL_SIGMA, SMALL_SIGMA, FINAL_SIGMA = 0x3A3, 0x3C3, 0x3C2


# ----------------------------------------------------------------------------
# Vocabulary files.
# ----------------------------------------------------------------------------

def load_vocab(path: str) -> dict[str, int]:
    """Reads a one-token-per-line vocab; the 0-based line number is the id.

    Only trailing whitespace (the newline, a stray CR) is stripped. Empty
    lines and duplicate tokens are errors: either would make "line number =
    id" ambiguous.

    Returns:
      An insertion-ordered dict token -> id (ids are 0..len-1).
    """
    if "://" in path:  # gs://, hdfs://...: TensorFlow's file system layer (imported on demand)
        import tensorflow as tf
        with tf.io.gfile.GFile(path, "r") as f:
            text = f.read()
    else:
        with open(path, "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line_no = data.count(b"\n", 0, e.start) + 1
            column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
            raise ValueError(f"{path}:{line_no}: not UTF-8 (byte 0x{data[e.start]:02x} at "
                             f"column {column})") from None
    lines = text.split("\n")
    if lines[-1] == "":  # the last line's newline (or an empty file)
        lines.pop()
    # One pass in C for the common case; the per-line checks below only name the bad line.
    tokens = [line.rstrip() for line in lines]
    vocab = dict(zip(tokens, range(len(tokens))))
    if len(vocab) == len(tokens) and "" not in vocab:
        return vocab
    first: dict[str, int] = {}
    for line_no, token in enumerate(tokens, start=1):
        if not token:
            raise ValueError(f"{path}:{line_no}: empty vocab line")
        if token in first:
            raise ValueError(f"{path}:{line_no}: duplicate token {token!r} "
                             f"(first on line {first[token] + 1})")
        first[token] = line_no - 1
    raise AssertionError("unreachable: a duplicate or an empty line was found above")


def validate_vocab(vocab: dict[str, int], path: str) -> None:
    """Raises ValueError unless the BERT reserved tokens are present, [PAD]=0.

    [PAD] must be id 0 (an error, not a warning): the pretraining data and
    the models pad id sequences with zeros, so any other [PAD] id would make
    a real token silently act as padding.
    """
    missing = [t for t in RESERVED_TOKENS if t not in vocab]
    if missing:
        raise ValueError(
            f"{path}: vocab lacks reserved token(s) {' '.join(missing)}; "
            f"a BERT vocab needs all of {' '.join(RESERVED_TOKENS)}")
    if vocab[PAD] != 0:
        raise ValueError(
            f"{path}: {PAD} is on line {vocab[PAD] + 1}, it must be the first "
            "line (id 0) because sequences are zero-padded")


# ----------------------------------------------------------------------------
# Per-character rules (the single source of truth for both tokenizers).
# ----------------------------------------------------------------------------

def is_control(ch: str) -> bool:
    if ch in "\t\n\r":  # Cc, but the original treats them as whitespace.
        return False
    return unicodedata.category(ch) in CONTROL_CATEGORIES


def is_deleted(ch: str) -> bool:
    return ord(ch) in (0, 0xFFFD) or is_control(ch)


def is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


# ----------------------------------------------------------------------------
# Pure-Python tokenizer.
# ----------------------------------------------------------------------------

class _LazyTranslation(dict):
    """A `str.translate` table that computes each code point on first use.

    A full table would need 1.1M entries; text only ever shows a few
    thousand distinct characters, so entries are filled on demand.
    """

    def __init__(self, rule):
        super().__init__()
        self._rule = rule

    def __missing__(self, cp: int):
        value = self._rule(chr(cp))
        self[cp] = value
        return value


def _clean_rule(ch: str):
    if is_deleted(ch):
        return None
    if is_whitespace(ch):
        return " "
    return f" {ch} " if is_cjk(ord(ch)) else ord(ch)


_CLEAN = _LazyTranslation(_clean_rule)
_DROP_MN = _LazyTranslation(
    lambda ch: None if unicodedata.category(ch) == "Mn" else ord(ch))
_ISOLATE_PUNCT = _LazyTranslation(
    lambda ch: f" {ch} " if is_punctuation(ch) else ord(ch))


class BasicTokenizer:
    """Text -> words (before WordPiece) with the original BERT rules.

    Whole-text versions of the original per-token steps: lower-casing and
    NFD of the whole text equal the per-token ones because the separators
    (space, U+2028, U+2029) are starters and neither cased nor
    case-ignorable, so they bound both NFD reordering and the final-sigma
    context exactly as the token boundaries do.
    """

    def __init__(self, do_lower_case: bool = True):
        self.do_lower_case = do_lower_case

    def tokenize(self, text: str) -> list[str]:
        """Returns the words of `text` (a `str`, or UTF-8 `bytes`)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "ignore")  # As the original does.
        return self.isolate(text.translate(_CLEAN)).split()

    def isolate(self, text: str) -> str:
        """Cleaned text -> the same text with the words separated by whitespace (lower-cased
        and accent-stripped if do_lower_case, punctuation and CJK isolated): tokenize without
        the cleaning and the final split. Line breaks stay where they are."""
        if self.do_lower_case:
            text = text.lower()
            if not text.isascii():  # ASCII has no decompositions or Mn.
                text = unicodedata.normalize("NFD", text).translate(_DROP_MN)
        return text.translate(_ISOLATE_PUNCT)


class FullTokenizer:
    """Pure-Python end-to-end tokenizer (API of the original FullTokenizer).

    Attributes:
      vocab: token -> id, in file order.
      inv_vocab: id -> token.
    """

    _CACHE_LIMIT = 1 << 20  # Distinct words whose pieces are memoised.

    def __init__(self, vocab_file: str, do_lower_case: bool = True,
                 vocab: dict[str, int] | None = None):
        """`vocab`: load_vocab(vocab_file) when the caller has already read it (it is
        validated here either way)."""
        self.vocab = load_vocab(vocab_file) if vocab is None else vocab
        validate_vocab(self.vocab, vocab_file)
        self.basic_tokenizer = BasicTokenizer(do_lower_case)
        self.unk_id = self.vocab[UNK]
        # No vocab entry is longer than this (suffix marker excluded), which bounds the
        # longest-match search. Only entries within len(SUFFIX) of the longest can set it.
        longest = max(map(len, self.vocab), default=0) - len(SUFFIX)
        self._max_piece_chars = max(
            len(t) - len(SUFFIX) if t.startswith(SUFFIX) else len(t)
            for t in [t for t in self.vocab if len(t) >= longest])
        self._cache: dict[str, tuple[str, ...]] = {}

    @functools.cached_property
    def inv_vocab(self) -> dict[int, str]:
        # Built on first use: the id-only paths (wordpiece_ids, create_pretraining_data)
        # never need it.
        return {i: t for t, i in self.vocab.items()}

    def tokenize(self, text: str) -> list[str]:
        """Returns the word pieces of `text`, e.g. ["un", "##aff", "##able"]."""
        pieces: list[str] = []
        for word in self.basic_tokenizer.tokenize(text):
            found = self._cache.get(word)
            if found is None:
                found = self._wordpiece(word)
                if len(self._cache) < self._CACHE_LIMIT:
                    self._cache[word] = found
            pieces.extend(found)
        return pieces

    def _wordpiece(self, word: str) -> tuple[str, ...]:
        """Greedy longest-match-first; any unmatched position -> (UNK,)."""
        inv_vocab = self.inv_vocab
        return tuple(inv_vocab[i] for i in self.wordpiece_ids(word))

    def wordpiece_ids(self, word: str) -> tuple[int, ...]:
        """The ids of `word`'s pieces (one word of BasicTokenizer's output): greedy
        longest-match-first; a word with any unmatched position, or over
        MAX_CHARS_PER_WORD characters, is (unk_id,)."""
        if len(word) > MAX_CHARS_PER_WORD:
            return (self.unk_id,)
        get, ids, start, n = self.vocab.get, [], 0, len(word)
        longest = self._max_piece_chars
        while start < n:
            prefix = SUFFIX if start else ""
            for end in range(min(n, start + longest), start, -1):
                piece_id = get(prefix + word[start:end])
                if piece_id is not None:
                    ids.append(piece_id)
                    start = end
                    break
            else:
                return (self.unk_id,)
        return tuple(ids)

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Token strings -> ids; tokens not in the vocab map to [UNK]."""
        vocab, unk = self.vocab, self.unk_id
        return [vocab.get(t, unk) for t in tokens]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Ids -> token strings; raises KeyError naming an out-of-range id."""
        try:
            return [self.inv_vocab[int(i)] for i in ids]
        except KeyError as e:
            raise KeyError(
                f"id {e.args[0]} is outside the vocab (size "
                f"{len(self.vocab)})") from None
