"""Per-code-point tables that let the in-graph tokenizer apply the original BERT rules.

Built at construction time from this Python's `unicodedata` (so they agree with
`data_prep.tokenization.FullTokenizer` by construction): deletion, whitespace, CJK and
punctuation flags, combining classes, and the lower-case + NFD (+ accent-stripped) mappings
that `data_prep.text_tokenizer.BertTextTokenizer` gathers from in TensorFlow.
"""
from __future__ import annotations

import dataclasses
import functools
import unicodedata

import numpy as np

from data_prep.tokenization import (CAPITAL_SIGMA, CJK_RANGES, is_cjk, is_deleted,
                                    is_punctuation, is_whitespace)

# Layout of one int32 table entry: bits 0-7 canonical combining class,
# bits 8-15 flags, bits 16-30 index k of the case mapping (0 = none).
F_DELETE = 1 << 8          # Removed by cleaning.
F_SPACE = 1 << 9           # Separates words (Python isspace after cleaning).
F_CJK = 1 << 10            # Becomes a word of its own.
F_PUNCT = 1 << 11          # Becomes a word of its own.
F_MN = 1 << 12             # Dropped after NFD when lower-casing.
F_CASE_IGNORABLE = 1 << 13  # Final-sigma context (Unicode "Case_Ignorable").
F_CASED = 1 << 14          # Final-sigma context (Unicode "Cased").
F_REORDER = 1 << 15        # NFD(lower) has a non-Mn char with class > 0.
MAP_SHIFT = 16
BLOCK_BITS = 8
LOW_SIZE = 0x20000  # Planes 0-1: BMP, emoji, most scripts.


@dataclasses.dataclass(frozen=True)
class _Mapping:
    """Ragged table k -> code points: values[starts[k]:starts[k] + lens[k]].

    starts, lens: int64 [K + 1] (k = 0 is a dummy); values: int32 [total].
    """
    starts: np.ndarray
    lens: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, rows: list[list[int]]) -> "_Mapping":
        lens = np.array([len(r) for r in rows], np.int64)
        return cls(np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64),
                   lens, np.array([c for r in rows for c in r] or [0], np.int32))


@dataclasses.dataclass(frozen=True)
class CharTables:
    """Per-code-point facts as a two-level lookup table plus case mappings.

    low: int32 [LOW_SIZE], the packed entries of planes 0-1, flat (one
      gather for nearly all text).
    level1: int32 [0x110000 >> 8], block number of each 256-code-point block.
    level2: int32 [num_distinct_blocks * 256], the packed entries.
    full: mapping k = NFD(c.lower()) of the code point c that has index k.
    stripped: mapping k = the same without its Mn characters.
    """
    low: np.ndarray
    level1: np.ndarray
    level2: np.ndarray
    full: _Mapping
    stripped: _Mapping


def _case_properties(ch: str) -> tuple[bool, bool]:
    """(case_ignorable, cased) exactly as Python's str.lower() sees them.

    Python does not expose these properties, so they are read off its
    final-sigma rule: in "AΣ<ch>" sigma is non-final iff ch is cased and not
    ignorable; in "AΣ<ch>B" it is non-final iff ch is ignorable or cased.
    (For ignorable characters "cased" never matters to the rule.)
    """
    non_final_at_end = ("A\u03a3" + ch).lower()[1] == "\u03c3"
    non_final_before_b = ("A\u03a3" + ch + "B").lower()[1] == "\u03c3"
    ignorable = non_final_before_b and not non_final_at_end
    return ignorable, non_final_at_end


def _entry_and_mapping(ch: str) -> tuple[int, list[int] | None]:
    """Packed flags/combining class of `ch`, and NFD(ch.lower()) if needed."""
    entry = unicodedata.combining(ch)
    cat = unicodedata.category(ch)
    for flag, test in (
            (F_DELETE, is_deleted(ch)),
            (F_SPACE, is_whitespace(ch) or ch.isspace()),
            (F_PUNCT, is_punctuation(ch)),
            (F_MN, cat == "Mn")):
        entry |= flag if test else 0
    ignorable, cased = _case_properties(ch)
    entry |= (F_CASE_IGNORABLE if ignorable else 0) | (
        F_CASED if cased else 0)
    full = unicodedata.normalize("NFD", ch.lower())
    if any(unicodedata.combining(c) and unicodedata.category(c) != "Mn"
           for c in full):
        entry |= F_REORDER
    # Capital sigma is resolved from its context before mapping; Mn chars
    # need an entry because their stripped mapping is empty.
    needs_mapping = (full != ch or cat == "Mn") and ord(ch) != CAPITAL_SIGMA
    return entry, ([ord(c) for c in full] if needs_mapping else None)


@functools.lru_cache(maxsize=None)
def char_tables() -> CharTables:
    """Builds the tables from this Python's unicodedata (~0.5 s, cached)."""
    size = 0x110000
    entries = np.zeros(size, np.int64)
    for lo, hi in CJK_RANGES:
        entries[lo:hi + 1] |= F_CJK
    full: list[list[int]] = [[0]]  # Index 0: "no mapping".
    sources: list[int] = []
    for cp in range(size):
        ch = chr(cp)
        if unicodedata.category(ch) in ("Cn", "Co", "Cs"):
            continue  # Unassigned/private/surrogate: only CJK may apply.
        entry, mapped = _entry_and_mapping(ch)
        if mapped is not None:
            entry |= len(full) << MAP_SHIFT
            full.append(mapped)
            sources.append(cp)
        entries[cp] |= entry
    if len(full) >= 1 << 15:
        raise RuntimeError("too many case mappings for the table layout")
    _check_mapping_invariants(full, sources)
    stripped = [[c for c in m if unicodedata.category(chr(c)) != "Mn"]
                for m in full]
    blocks, level1 = np.unique(
        entries.astype(np.int32).reshape(-1, 1 << BLOCK_BITS),
        axis=0, return_inverse=True)
    return CharTables(
        low=entries[:LOW_SIZE].astype(np.int32),
        level1=level1.reshape(-1).astype(np.int32),
        level2=blocks.reshape(-1),
        full=_Mapping.of(full), stripped=_Mapping.of(stripped))


def _check_mapping_invariants(mappings: list[list[int]],
                              sources: list[int]) -> None:
    """The in-graph tokenizer classifies characters after case mapping.

    That is only equivalent to the original (which cleans, spaces CJK and
    splits before lower-casing) if a mapping never changes whether a
    character is deleted, whitespace or CJK (e.g. U+2000 -> U+2002 is fine:
    both are spaces); check it for this Python's Unicode version.
    """
    for cp, mapped in zip(sources, mappings[1:]):
        ch = chr(cp)
        before = (is_deleted(ch), ch.isspace(), is_cjk(cp))
        for out in mapped:
            o = chr(out)
            if (is_deleted(o), o.isspace(), is_cjk(out)) != before:
                raise RuntimeError(
                    f"unicodedata {unicodedata.unidata_version}: lower/NFD "
                    f"maps U+{cp:04X} to U+{out:04X} of another class; the "
                    "in-graph rules need updating")

