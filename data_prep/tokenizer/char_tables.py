"""Per-code-point tables that let the in-graph tokenizer apply the original BERT rules.

Built at construction time from this Python's `unicodedata` (so they agree with
`data_prep.tokenizer.tokenization.FullTokenizer` by construction): deletion, whitespace, CJK and
punctuation flags, combining classes, and the lower-case + NFD (+ accent-stripped) mappings
that `data_prep.tokenizer.text_tokenizer.BertTextTokenizer` gathers from in TensorFlow. From the same
tables, `fast_route` builds a tensorflow-text FastBertNormalizer model (a darts-clone trie in
a flatbuffer) that applies those rules code point by code point, and the RE2 patterns that
tell which strings that model plus tensorflow-text's WordPiece handle exactly.
"""
from __future__ import annotations

import dataclasses
import functools
import unicodedata

import numpy as np

from data_prep.tokenizer.tokenization import (CAPITAL_SIGMA, CJK_RANGES, SMALL_SIGMA, is_cjk,
                                    is_deleted, is_punctuation, is_whitespace)

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


# ----------------------------------------------------------------------------
# The fast route: a tensorflow-text FastBertNormalizer model that applies the
# original rules code point by code point.
# ----------------------------------------------------------------------------

# Word classes, as the original and tensorflow-text's pre-tokenizer see them.
WORD, ALONE, SPACE = 0, 1, 2
_NUM_CPS = 0x110000
_SURROGATES = (0xD800, 0xDFFF)

# FastBertNormalizerModel data encoding (tensorflow_text fast_bert_normalizer.h):
# bit 30 "differs from the input", bits 6-29 pool offset, bits 0-5 byte length.
_NORM_DIFFERENT = 0x40000000
_NORM_LEN_BITS = 6
_NORM_MAX_LEN = (1 << _NORM_LEN_BITS) - 1
_NORM_MAX_OFFSET = (1 << (30 - _NORM_LEN_BITS)) - 1


@functools.lru_cache(maxsize=None)
def all_entries() -> np.ndarray:
    """int32 [0x110000]: the packed table entry of every code point."""
    tables = char_tables()
    cps = np.arange(_NUM_CPS)
    block = tables.level1[cps >> BLOCK_BITS].astype(np.int64)
    return tables.level2[block * (1 << BLOCK_BITS) + (cps & ((1 << BLOCK_BITS) - 1))]


def original_word_classes() -> np.ndarray:
    """int8 [0x110000]: WORD, ALONE (punctuation, CJK) or SPACE per code point.

    The class of a character in the text the original splits into words,
    i.e. after cleaning and normalisation (deleted characters never get
    there; their entry is WORD).
    """
    entries = all_entries()
    return np.where(
        (entries & F_SPACE) != 0, SPACE,
        np.where((entries & (F_PUNCT | F_CJK)) != 0, ALONE, WORD)).astype(np.int8)


@dataclasses.dataclass(frozen=True)
class FastRoute:
    """What the in-graph tokenizer's fast route needs (see `fast_route`).

    model: a FastBertNormalizerModel flatbuffer mapping each code point to
      the text the original rules make of it (deleted -> "", whitespace ->
      " ", lower-cased + NFD + Mn dropped if lower-casing).
    pattern: RE2 pattern; the words of a string that fully matches it are
      exactly the original's after that normaliser and tensorflow-text's
      WordPiece pre-tokenizer (which splits on whitespace and punctuation).
    final_sigma_pattern, sigma_pattern: when lower-casing (else None). The
      model maps capital sigma to small sigma, so `pattern` excludes it; a
      string that fully matches `sigma_pattern` qualifies after
      `tf.strings.regex_replace(text, final_sigma_pattern, FINAL_SIGMA_REWRITE)`,
      which turns each capital sigma that str.lower() makes final into
      final sigma.
    Word lengths are left to the caller: the original's limit is 200
    characters, WordPiece's is in bytes.
    """
    model: bytes
    pattern: str
    final_sigma_pattern: str | None = None
    sigma_pattern: str | None = None


# Rewrite for `FastRoute.final_sigma_pattern`: context kept, sigma made final.
FINAL_SIGMA_REWRITE = "\\1\u03c2\\2"


def _normalized_forms(do_lower_case: bool) -> tuple[np.ndarray, list[list[int]]]:
    """(form [0x110000], rows): code point c becomes rows[form[c]], or stays
    itself where form[c] == -1, when normalised on its own."""
    entries = all_entries()
    form = np.full(_NUM_CPS, -1, np.int64)
    rows: list[list[int]] = [[], [0x20]]
    if do_lower_case:
        stripped = char_tables().stripped
        idx = entries >> MAP_SHIFT
        for k in range(1, len(stripped.lens)):
            start = int(stripped.starts[k])
            rows.append(stripped.values[start:start + int(stripped.lens[k])].tolist())
        mapped = idx > 0
        form[mapped] = idx[mapped] + 1  # rows[k + 1] is mapping k.
    form[(entries & F_SPACE) != 0] = 1
    form[0x20] = -1
    form[(entries & F_DELETE) != 0] = 0
    return form, rows


def fast_route(do_lower_case: bool, tf_classes: np.ndarray) -> FastRoute:
    """The fast route's normaliser model and the strings it handles exactly.

    Args:
      do_lower_case: the original's flag.
      tf_classes: int8 [0x110000], the WORD/ALONE/SPACE class that
        tensorflow-text's WordPiece pre-tokenizer gives each code point
        (measured by the caller, since it depends on its ICU version).

    The normaliser is exact per code point. The pattern rejects strings
    with invalid UTF-8 (no class matches it) or with a code point whose
    normalised text has a character that the pre-tokenizer classes
    differently from the original (e.g. punctuation newer than this
    Python's Unicode tables), or whose text is not simply the
    concatenation of per-code-point texts: capital sigma (final sigma
    depends on context; see `sigma_pattern`) and characters with F_REORDER
    (NFD reordering).
    """
    entries = all_entries()
    form, rows = _normalized_forms(do_lower_case)
    ours = original_word_classes()
    bad_char = (ours != tf_classes) & ((entries & F_DELETE) == 0)
    bad_char[0x20] = tf_classes[0x20] != SPACE
    # Rows with a character that tf-text's pre-tokenizer classes otherwise.
    row_bad = np.array([any(bad_char[c] for c in r) for r in rows])
    mapped = form >= 0
    excluded = np.where(mapped, row_bad[np.maximum(form, 0)], bad_char)
    excluded[_SURROGATES[0]:_SURROGATES[1] + 1] = True
    if do_lower_case:
        excluded |= (entries & F_REORDER) != 0
        sigma_ok = not excluded[CAPITAL_SIGMA]
        excluded[CAPITAL_SIGMA] = True  # Unless its context is resolved.
    allowed = ~excluded
    sigma = {}
    if do_lower_case and sigma_ok:
        # Non-final capital sigma -> small sigma: final ones are rewritten
        # to final sigma beforehand (see `_final_sigma_pattern`).
        form[CAPITAL_SIGMA] = len(rows)
        rows.append([SMALL_SIGMA])
        with_sigma = allowed.copy()
        with_sigma[CAPITAL_SIGMA] = True
        sigma = dict(final_sigma_pattern=_final_sigma_pattern(),
                     sigma_pattern=regex_class(with_sigma) + "*")
    mapped = form >= 0
    keys = np.flatnonzero(mapped)
    model = _normalizer_model(do_lower_case, keys, [rows[form[c]] for c in keys])
    return FastRoute(model=model, pattern=regex_class(allowed) + "*", **sigma)


def _final_sigma_pattern() -> str:
    """RE2 pattern matching a capital sigma that str.lower() makes final.

    Python's rule: the nearest character before it that is not
    case-ignorable is cased, and the nearest one after it that is not
    case-ignorable is not cased, or there is none. The original lower-cases
    each whitespace-separated token after cleaning, so deleted characters
    are transparent here (like case-ignorable ones) and spaces and CJK
    (which the original surrounds with spaces) bound the context.

    Groups: 1 = the cased character and the ignorable ones up to the sigma,
    2 = the ignorable ones after it plus the one that ends the context (or
    nothing at the end). A match never consumes a sigma whose own verdict
    differs: the one in group 1 is followed by a cased sigma (so it is not
    final), and groups 2 holds no cased character. Matches of
    `regex_replace` do not overlap, but the next final sigma's context
    always starts after the uncased character that ended this match.
    """
    entries = all_entries()
    bound = (entries & (F_SPACE | F_CJK)) != 0
    deleted = (entries & F_DELETE) != 0  # Some also count as spaces.
    transparent = deleted | (((entries & F_CASE_IGNORABLE) != 0) & ~bound)
    cased = ((entries & F_CASED) != 0) & ~transparent & ~bound
    other = ~transparent & ~cased
    for mask in (transparent, cased, other):
        mask[_SURROGATES[0]:_SURROGATES[1] + 1] = False
    ignorable = regex_class(transparent)
    return "({cased}{ign}*)\\x{{{sigma:x}}}({ign}*(?:{other}|$))".format(
        cased=regex_class(cased), ign=ignorable, sigma=CAPITAL_SIGMA,
        other=regex_class(other))


def _ranges(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (first, last) runs of True in a bool [0x110000] mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def regex_class(mask: np.ndarray) -> str:
    """RE2 character class (with brackets) of the code points in `mask`."""
    parts = []
    for a, b in _ranges(mask):
        parts.append(f"\\x{{{a:x}}}" + (f"-\\x{{{b:x}}}" if b > a else ""))
    return "[" + "".join(parts) + "]"


def darts_clone_trie(keys: list[bytes], values: list[int]) -> np.ndarray:
    """uint32 double array of a darts-clone trie mapping `keys` to `values`.

    The layout tensorflow-text reads (darts_clone_trie_wrapper.h): a unit
    holds its label (bits 0-7), a has-leaf flag (bit 8) and the offset to
    its children (bits 10-31, shifted by 8 if bit 9); child c of node n is at
    n ^ offset ^ c, a node's value at n ^ offset (label 0, bit 31 set).
    Every node gets a distinct base (n ^ offset), which keeps a transition
    from landing on another node's child with the same label.
    Keys must be non-empty, free of NUL bytes, and values < 2**31.
    """
    root: dict = {}
    for key, value in zip(keys, values):
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value
    size = 4 * sum(len(k) + 1 for k in keys) + 1024
    units = [0] * size
    used = bytearray(size)
    used[0] = 1
    # free_from[p]: a position <= the first free one at or after p (path
    # compressed), so that the search skips used stretches quickly.
    free_from = list(range(size + 1))

    def first_free(p: int) -> int:
        root_p = p
        while free_from[root_p] != root_p:
            root_p = free_from[root_p]
        while free_from[p] != root_p:
            free_from[p], p = root_p, free_from[p]
        return root_p

    used_base: set[int] = set()
    last = 0
    queue = [(root, 0)]
    for node, node_id in queue:
        labels = sorted(k for k in node if k is not None)
        slots = ([0] if None in node else []) + labels
        pos = first_free(1)
        while True:  # First fit: slots[0] at a free position.
            base = pos ^ slots[0]
            if (base | 0xFF) >= size or (node_id ^ base) >= 1 << 21:
                raise ValueError("trie too large for this builder")
            if base not in used_base and not any(used[base ^ s] for s in slots):
                break
            pos = first_free(pos + 1)
        used_base.add(base)
        units[node_id] |= ((node_id ^ base) << 10) | (0x100 if None in node else 0)
        for s in slots:
            at = base ^ s
            used[at] = 1
            free_from[at] = at + 1
            last = max(last, at)
        if None in node:
            units[base] = node[None] | (1 << 31)
        for label in labels:
            units[base ^ label] = label
            queue.append((node[label], base ^ label))
    return np.array(units[:last + 1], np.uint32)


def _normalizer_model(lower: bool, cps: np.ndarray,
                      texts: list[list[int]]) -> bytes:
    """FastBertNormalizerModel flatbuffer: code point cps[i] -> texts[i]."""
    import flatbuffers  # A TensorFlow dependency.

    pool = bytearray()
    offsets: dict[bytes, int] = {}
    data_zero, keys, values = 0, [], []
    for cp, text in zip(cps.tolist(), texts):
        out = "".join(map(chr, text)).encode()
        if len(out) > _NORM_MAX_LEN:
            raise ValueError(f"U+{cp:04X} normalises to {len(out)} bytes")
        data = _NORM_DIFFERENT
        if out:
            if out not in offsets:
                offsets[out] = len(pool)
                pool += out
            if offsets[out] > _NORM_MAX_OFFSET:
                raise ValueError("normaliser string pool too large")
            data |= (offsets[out] << _NORM_LEN_BITS) | len(out)
        if cp == 0:
            data_zero = data  # The trie cannot hold a NUL key.
        else:
            keys.append(chr(cp).encode())
            values.append(data)
    trie = darts_clone_trie(keys, values)
    builder = flatbuffers.Builder(len(trie) * 4 + len(pool) + 1024)
    trie_vec = builder.CreateNumpyVector(trie)
    pool_vec = builder.CreateNumpyVector(np.frombuffer(bytes(pool) or b"\0", np.uint8))
    # table FastBertNormalizerModel { lower_case_nfd_strip_accents: bool;
    #   trie_array: [uint32]; data_for_codepoint_zero: int32;
    #   normalized_string_pool: [ubyte]; }
    builder.StartObject(4)
    builder.PrependUOffsetTRelativeSlot(3, pool_vec, 0)
    builder.PrependInt32Slot(2, data_zero, 0)
    builder.PrependUOffsetTRelativeSlot(1, trie_vec, 0)
    builder.PrependBoolSlot(0, lower, False)
    builder.Finish(builder.EndObject())
    return bytes(builder.Output())
