"""Slow, literal restatement of the original google-research/bert tokenizer rules.

This file is the *specification* that `data_prep.tokenizer.tokenization` is tested
against. It is deliberately naive: one character at a time, one rule per
helper, no caching and no tables, so that a reviewer can check each rule
against the original BERT paper code's behaviour by eye.

The rules (the newer, post-Nov-2018 version of the original tokenizer):

Basic tokenization of a text:
  1. Clean: drop U+0000, U+FFFD and "control" characters (Unicode category Cc
     or Cf, except TAB/LF/CR); map "whitespace" (SPACE, TAB, LF, CR or
     category Zs) to a plain space. Note: the original uses ("Cc", "Cf"), not
     "any category starting with C" (that wider rule is Hugging Face's), so
     private-use (Co) and unassigned (Cn) code points are kept.
  2. Put spaces around every CJK ideograph (the original's eight ranges).
  3. Split on whitespace with Python's `str.split()` (which additionally
     splits on U+2028/U+2029, the only `isspace()` characters left by 1.).
  4. If lower-casing: per token, Python `str.lower()` (full mapping, final
     sigma in context, `ß` stays `ß`), then NFD, then drop category Mn.
  5. Split every punctuation character (ASCII 33-47, 58-64, 91-96, 123-126,
     or any category starting with P) into its own token.
  6. Split on whitespace again.

WordPiece of each token: more than 200 characters -> "[UNK]"; otherwise
greedy longest-match-first from the left, continuation pieces prefixed "##";
if any position cannot be matched the whole token becomes "[UNK]".
"""

from __future__ import annotations

import unicodedata

MAX_CHARS_PER_WORD = 200
UNK = "[UNK]"

# (first, last) code points, inclusive, exactly as listed by the original.
CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)

PUNCT_ASCII_RANGES = ((33, 47), (58, 64), (91, 96), (123, 126))


def is_whitespace(ch: str) -> bool:
    """SPACE, TAB, LF, CR, or Unicode category Zs."""
    if ch in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(ch) == "Zs"


def is_control(ch: str) -> bool:
    """Category Cc or Cf, except TAB/LF/CR (those are whitespace)."""
    if ch in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def is_punctuation(ch: str) -> bool:
    """Every non-alphanumeric printable ASCII char, or category P*."""
    cp = ord(ch)
    for lo, hi in PUNCT_ASCII_RANGES:
        if lo <= cp <= hi:
            return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def clean_text(text: str) -> str:
    out = []
    for ch in text:
        if ord(ch) in (0, 0xFFFD) or is_control(ch):
            continue
        out.append(" " if is_whitespace(ch) else ch)
    return "".join(out)


def space_cjk(text: str) -> str:
    return "".join(f" {ch} " if is_cjk(ch) else ch for ch in text)


def split_whitespace(text: str) -> list[str]:
    # Python's own notion of whitespace, as the original uses str.split().
    return text.strip().split()


def lower_and_strip_accents(token: str) -> str:
    decomposed = unicodedata.normalize("NFD", token.lower())
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


def split_punctuation(token: str) -> list[str]:
    pieces: list[str] = []
    current = ""
    for ch in token:
        if is_punctuation(ch):
            if current:
                pieces.append(current)
                current = ""
            pieces.append(ch)
        else:
            current += ch
    if current:
        pieces.append(current)
    return pieces


def basic_tokenize(text: str, do_lower_case: bool) -> list[str]:
    """Steps 1-6 above: text -> list of words (before WordPiece)."""
    text = space_cjk(clean_text(text))
    pieces: list[str] = []
    for token in split_whitespace(text):
        if do_lower_case:
            token = lower_and_strip_accents(token)
        pieces.extend(split_punctuation(token))
    return split_whitespace(" ".join(pieces))


def wordpiece(word: str, vocab: dict[str, int]) -> list[str]:
    """Greedy longest-match-first WordPiece of one whitespace-free word."""
    if len(word) > MAX_CHARS_PER_WORD:
        return [UNK]
    out: list[str] = []
    start = 0
    while start < len(word):
        match = None
        for end in range(len(word), start, -1):
            candidate = word[start:end] if start == 0 else "##" + word[start:end]
            if candidate in vocab:
                match = candidate
                break
        if match is None:
            return [UNK]
        out.append(match)
        start = end
    return out


def read_vocab(path: str) -> dict[str, int]:
    """Token -> id; id is the 0-based line number."""
    with open(path, encoding="utf-8") as f:
        return {line.rstrip("\n").rstrip(): i for i, line in enumerate(f)}


class ReferenceTokenizer:
    """Text -> word pieces / ids with the original rules, one char at a time."""

    def __init__(self, vocab_path: str, do_lower_case: bool):
        self.vocab = read_vocab(vocab_path)
        self.do_lower_case = do_lower_case

    def tokenize(self, text: str) -> list[str]:
        pieces: list[str] = []
        for word in basic_tokenize(text, self.do_lower_case):
            pieces.extend(wordpiece(word, self.vocab))
        return pieces

    def ids(self, text: str) -> list[int]:
        return [self.vocab[p] for p in self.tokenize(text)]
