"""`BertTextTokenizer`: the original BERT tokenizer's ids, in-graph (TF + tensorflow-text).

Usable eagerly, in `tf.function`, `tf.data` and SavedModels (the vocab is an asset). See
`data_prep.tokenizer.tokenization` for the rules and for why tensorflow-text's own normaliser is not
used; `data_prep.tokenizer.char_tables` holds the per-code-point tables, and builds the replacement
normaliser model that the fast route gives tensorflow-text's `FastBertTokenizer`.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from data_prep.tokenizer.char_tables import (ALONE, BLOCK_BITS, F_CASE_IGNORABLE, F_CASED, F_CJK,
                                   F_DELETE, F_MN, F_PUNCT, F_REORDER, F_SPACE,
                                   FINAL_SIGMA_REWRITE, LOW_SIZE, MAP_SHIFT, SPACE, WORD,
                                   FastRoute, char_tables, fast_route)
from data_prep.tokenizer.tokenization import (CAPITAL_SIGMA, FINAL_SIGMA, MAX_CHARS_PER_WORD,
                                    RESERVED_TOKENS, SMALL_SIGMA, SUFFIX, UNK, load_vocab,
                                    validate_vocab)


def _row_ids(splits: tf.Tensor) -> tf.Tensor:
    """int64 [N] row of each value, from int64 row splits [B + 1].

    Counts the row ends at or before each position: a scatter-add and a
    cumsum, several times cheaper than tf.repeat (what
    tf.ragged.row_splits_to_segment_ids uses).
    """
    inner = splits[1:-1]
    ends_at = tf.math.unsorted_segment_sum(
        tf.ones_like(inner), inner, splits[-1] + 1)
    return tf.cumsum(ends_at[:-1])


def _row_starts(splits: tf.Tensor) -> tf.Tensor:
    """bool [N]: value i is the first of its row (from int64 splits [B+1])."""
    n = splits[-1]
    starts_at = tf.math.unsorted_segment_sum(
        tf.ones_like(splits[:-1]), splits[:-1], n + 1)
    return starts_at[:-1] > 0


def _compact(keep: tf.Tensor, splits: tf.Tensor, *values: tf.Tensor):
    """Drops values where `keep` is False; returns (new_splits, *values)."""
    kept_before = tf.concat(
        [tf.zeros([1], tf.int64), tf.cumsum(tf.cast(keep, tf.int64))], 0)
    return (tf.gather(kept_before, splits),
            *(tf.boolean_mask(v, keep) for v in values))


def _has(entries: tf.Tensor, flags: int) -> tf.Tensor:
    return tf.not_equal(tf.bitwise.bitwise_and(entries, flags), 0)


@functools.lru_cache(maxsize=None)
def _pretokenizer_classes() -> np.ndarray:
    """int8 [0x110000]: how tensorflow-text's WordPiece pre-tokenizer classes
    each code point: WORD, ALONE (split off: punctuation, CJK) or SPACE.

    Measured (it follows the ICU version tf-text was built with): with the
    vocab {a, ##a}, "a<c>a" gives [a, a] if c is a space, [a, UNK, a] if c
    stands alone and [UNK] (one unknown word) otherwise.
    """
    probe = tf_text.FastWordpieceTokenizer(
        vocab=list(RESERVED_TOKENS) + ["a", SUFFIX + "a"], suffix_indicator=SUFFIX,
        unknown_token=UNK, token_out_type=tf.int32, support_detokenization=False)
    cps = np.arange(0x110000, dtype=np.int32)
    cps = cps[(cps < 0xD800) | (cps > 0xDFFF)]
    a = ord("a")
    triples = np.stack([np.full_like(cps, a), cps, np.full_like(cps, a)], 1)
    ids = probe.tokenize(tf.strings.unicode_encode(
        tf.RaggedTensor.from_uniform_row_length(triples.reshape(-1), 3), "UTF-8"))
    lens = ids.row_lengths().numpy()
    got = np.full((len(cps), 3), -1, np.int64)
    short = lens <= 3
    rows = np.flatnonzero(short)
    for k in range(3):
        has = rows[lens[short] > k]
        got[has, k] = ids.values.numpy()[ids.row_splits.numpy()[has] + k]
    unk, a_id = RESERVED_TOKENS.index(UNK), len(RESERVED_TOKENS)
    a_suffix = a_id + 1

    def gave(*expected):
        return np.all(got == (list(expected) + [-1] * 3)[:3], axis=1)

    classes = np.full(0x110000, -1, np.int8)  # -1: none of the three.
    classes[cps[gave(unk)]] = WORD
    classes[cps[gave(a_id, unk, a_id)]] = ALONE
    classes[cps[gave(a_id, a_id)]] = SPACE
    if gave(a_id, a_suffix, a_suffix)[a]:
        classes[a] = WORD  # "aaa" is one word: [a, ##a, ##a].
    return classes


@functools.lru_cache(maxsize=None)
def _fast_route(do_lower_case: bool) -> FastRoute:
    """The fast route's normaliser model and patterns (built once, ~1 s)."""
    return fast_route(do_lower_case, _pretokenizer_classes())


_STRINGS = tf.TensorSpec([None], tf.string)


def _graph_fn(*signature):
    """tf.function with a fixed signature (one trace, SavedModel-ready).

    AutoGraph is off: nothing here branches on tensors in Python, and
    skipping the conversion makes tracing several times faster.
    """
    return tf.function(input_signature=list(signature), autograph=False)


class BertTextTokenizer(tf.Module):
    """In-graph BERT tokenizer: strings [batch] -> ids [batch, (tokens)].

    Gives the same ids as `FullTokenizer` / the original rules, for any
    input. Works eagerly, inside `tf.function` / `tf.data`, and in a
    SavedModel (the vocab file is tracked as an asset).

    Two routes, chosen per string, with identical results:
    * fast (nearly all text: accents, CJK, Hangul, emoji, Thai, controls,
      zero-width characters, long words): tensorflow-text's
      `FastBertNormalizer` with our model, which maps each code point to
      what the original makes of it (deleted, space, or lower-cased + NFD +
      accents stripped), then its `FastWordpieceTokenizer` with its own
      pre-tokenizer; words over 200 characters are then made [UNK] (the op
      limits words in bytes). That is exact unless the result depends on
      context or on tf-text's own definitions. One regex check sends those
      strings to the general route (see `char_tables.fast_route`): a few
      characters that NFD reorders, punctuation newer than this Python's
      Unicode tables, invalid UTF-8, and capital sigma, unless a regex
      rewrite of the final ones (the context rule of str.lower) lets the
      string through.
    * general: per-code-point table lookups do cleaning, CJK, lower-casing
      (with final sigma), NFD, accent stripping and word splitting;
      `FastWordpieceTokenizer` then splits the finished words.

    Attributes (Python values, not restored by `tf.saved_model.load`):
      vocab_size, pad_id, unk_id, cls_id, sep_id, mask_id, do_lower_case.
    """

    def __init__(self, vocab_file: str, do_lower_case: bool = True,
                 out_type: tf.DType = tf.int32, name: str | None = None):
        """Args:
          vocab_file: one token per line; must pass `validate_vocab`.
          do_lower_case: the original's flag (lower-case + strip accents).
          out_type: tf.int32 or tf.int64, dtype of the returned ids.
          name: tf.Module name.
        """
        super().__init__(name=name)
        vocab = load_vocab(vocab_file)
        validate_vocab(vocab, vocab_file)
        tokens = list(vocab)
        self.vocab_file = tf.saved_model.Asset(vocab_file)
        self.do_lower_case = do_lower_case
        self.out_type = tf.as_dtype(out_type)
        self.vocab_size = len(tokens)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            vocab[t] for t in RESERVED_TOKENS)
        tables = char_tables()
        self._low = tf.constant(tables.low)
        self._level1 = tf.constant(tables.level1)
        self._level2 = tf.constant(tables.level2)
        self._full = tuple(tf.constant(a) for a in dataclasses.astuple(
            tables.full))
        self._stripped = tuple(tf.constant(a) for a in dataclasses.astuple(
            tables.stripped))
        common = dict(vocab=tokens, suffix_indicator=SUFFIX,
                      token_out_type=tf.int64, unknown_token=UNK,
                      support_detokenization=False)
        # Fast route: tf-text's normaliser op with our per-code-point
        # model, then its WordPiece with its own pre-tokenizer, for the
        # strings that `route.pattern` accepts. Its byte limit lets every
        # word of up to 200 characters through; `_fast_ids` applies the
        # 200-character limit, finding words from the "##" pieces.
        route = _fast_route(do_lower_case)
        self._fast_normalizer = tf_text.FastBertNormalizer(
            model_buffer=route.model)
        self._fast_wordpiece = tf_text.FastWordpieceTokenizer(
            max_bytes_per_word=4 * MAX_CHARS_PER_WORD, **common)
        self._is_suffix = tf.constant([t.startswith(SUFFIX) for t in tokens])
        self._fast_pattern = route.pattern
        self._final_sigma_pattern = route.final_sigma_pattern
        self._sigma_pattern = route.sigma_pattern
        # General route: words arrive split and normalised; over-long words
        # are handled here (in characters), so never hit the byte limit.
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            max_bytes_per_word=4 * MAX_CHARS_PER_WORD,
            no_pretokenization=True, **common)
        self._id_to_token = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.range(len(tokens), dtype=tf.int64), tf.constant(tokens)),
            default_value=UNK)
        # Ids may be int32 or int64: trace both signatures now so that both
        # are also in a SavedModel.
        self.ids_to_tokens = tf.function(self._ids_to_tokens, autograph=False)
        self.detokenize = tf.function(self._detokenize, autograph=False)
        for dtype in (tf.int32, tf.int64):
            spec = tf.RaggedTensorSpec([None, None], dtype, ragged_rank=1)
            self.ids_to_tokens.get_concrete_function(spec)
            self.detokenize.get_concrete_function(spec)

    # -- public API ---------------------------------------------------------

    @_graph_fn(_STRINGS)
    def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        """UTF-8 strings [batch] -> ids `out_type` [batch, (num_tokens)].

        No [CLS]/[SEP] are added. Invalid UTF-8 bytes are dropped (the
        original decodes bytes with errors="ignore").
        """
        is_fast = self._is_fast(strings)

        def not_all_fast():
            texts, fast = self._second_chance(strings, is_fast)
            return tf.cond(
                tf.reduce_all(fast),
                lambda: self._fast_ids(texts),
                lambda: tf.cond(
                    tf.reduce_any(fast),
                    lambda: self._mixed_ids(texts, strings, fast),
                    lambda: self._general_ids(strings)))

        values, splits = tf.cond(
            tf.reduce_all(is_fast), lambda: self._fast_ids(strings),
            not_all_fast)
        return tf.RaggedTensor.from_row_splits(
            tf.cast(values, self.out_type), splits, validate=False)

    def __call__(self, strings: tf.Tensor) -> tf.RaggedTensor:
        return self.tokenize(strings)

    @_graph_fn(_STRINGS)
    def tokenize_with_offsets(self, strings: tf.Tensor):
        """Like `tokenize`, plus byte offsets of each token in its input.

        Returns:
          (ids, starts, ends): RaggedTensors [batch, (num_tokens)]; ids have
          `out_type`, starts/ends are int64 byte offsets such that
          `strings[b][starts:ends]` is the source text of the token. A token
          that covers only part of one source character (e.g. one jamo of a
          decomposed Hangul syllable) gets that character's whole span.
        """
        words = self._words(strings, with_offsets=True)
        long = words["length"] > MAX_CHARS_PER_WORD
        ids, b_start, b_end = self._wordpiece.tokenize_with_offsets(
            tf.where(long, tf.constant("", tf.string), words["text"]))
        # Byte offsets inside the normalised words -> normalised characters
        # -> byte spans of the source characters they came from.
        char_pos = tf.cumsum(words["char_bytes"], exclusive=True)
        word_base = tf.gather(char_pos, words["first_char"])
        base = tf.gather(word_base, _row_ids(ids.row_splits))
        first = tf.searchsorted(char_pos, base + b_start.values, "right") - 1
        last = tf.searchsorted(char_pos, base + b_end.values, "left") - 1
        starts = tf.gather(words["src_start"], first)
        ends = tf.gather(words["src_end"], last)
        # Words over the length limit: one [UNK] spanning the whole word.
        values, splits = self._patch_long_words(
            ids.values, ids.row_splits, long)
        word_start = tf.gather(words["src_start"], words["first_char"])
        word_end = tf.gather(words["src_end"], words["last_char"])
        starts, _ = self._patch_long_words(
            starts, ids.row_splits, long, word_start)
        ends, _ = self._patch_long_words(ends, ids.row_splits, long, word_end)
        row_splits = tf.gather(splits, words["row_splits"])

        def ragged(v):
            return tf.RaggedTensor.from_row_splits(v, row_splits,
                                                   validate=False)
        return (ragged(tf.cast(values, self.out_type)), ragged(starts),
                ragged(ends))

    @_graph_fn(_STRINGS)
    def basic_tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        """UTF-8 strings [batch] -> words, string [batch, (num_words)].

        The text after cleaning, CJK spacing, lower-casing/accent stripping
        and punctuation splitting, i.e. the original BasicTokenizer output.
        """
        words = self._words(strings, with_offsets=False)
        return tf.RaggedTensor.from_row_splits(
            words["text"], words["row_splits"], validate=False)

    def _ids_to_tokens(self, ids: tf.RaggedTensor) -> tf.RaggedTensor:
        """int32/int64 ids [batch, (n)] -> token strings [batch, (n)].

        Public as `self.ids_to_tokens` (a tf.function made in __init__).
        """
        return ids.with_values(
            self._id_to_token.lookup(tf.cast(ids.values, tf.int64)))

    def _detokenize(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """int32/int64 ids [batch, (n)] -> strings [batch]: pieces re-joined.

        Lossy by nature (lower-casing, accents, spacing around punctuation).
        Public as `self.detokenize` (a tf.function made in __init__).
        """
        text = tf.strings.reduce_join(self._ids_to_tokens(ids), axis=-1,
                                      separator=" ")
        return tf.strings.regex_replace(text, " " + SUFFIX, "")

    def batch_tokenize(self, texts: Sequence[str], batch_size: int = 4096,
                       num_threads: int | None = None) -> list[list[int]]:
        """Eager convenience: Python strings -> lists of ids (no specials).

        Batches run on `num_threads` Python threads (default: one per CPU,
        at most 4): most ops of one call use one core, and TF releases the
        GIL while it runs them.
        """
        def one_batch(start: int) -> list[list[int]]:
            ids = self.tokenize(tf.constant(
                list(texts[start:start + batch_size]), tf.string))
            values = ids.values.numpy().tolist()
            splits = ids.row_splits.numpy().tolist()
            return [values[a:b] for a, b in zip(splits[:-1], splits[1:])]

        starts = range(0, len(texts), batch_size)
        threads = num_threads or min(4, os.cpu_count() or 1)
        if threads <= 1 or len(starts) <= 1:
            return [ids for start in starts for ids in one_batch(start)]
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            return [ids for batch in pool.map(one_batch, starts)
                    for ids in batch]

    # -- routes -------------------------------------------------------------

    def _fast_ids(self, strings: tf.Tensor):
        """Fast-route strings [B] -> (ids int64 [T], splits int64 [B + 1]).

        tf-text's normaliser (our model) and WordPiece with its own
        pre-tokenizer. Its word limit, 800 bytes, lets every word of up to
        200 characters through; words over 200 bytes (rare) are measured in
        characters and those over 200 become one [UNK], as in the original.
        """
        text = self._fast_normalizer.normalize(strings)
        ids, starts, ends = self._fast_wordpiece.tokenize_with_offsets(text)
        values, splits = ids.values, ids.row_splits
        starts, ends = starts.values, ends.values

        def words(v, s, e):
            """Words of whole rows of tokens: (first token, UTF-8 bytes)."""
            first = tf.where(tf.logical_not(
                tf.gather(self._is_suffix, v)))[:, 0]  # Not "##" pieces.
            last = tf.concat([first, tf.shape(v, out_type=tf.int64)], 0)[1:] - 1
            return first, tf.gather(e, last) - tf.gather(s, first)

        # Only rows of over 200 bytes can hold a word of over 200 bytes.
        long_rows = tf.where(
            tf.strings.length(text) > MAX_CHARS_PER_WORD)[:, 0]

        def any_long_word():
            tokens = tf.ragged.range(tf.gather(splits, long_rows),
                                     tf.gather(splits, long_rows + 1)).values
            _, nbytes = words(*(tf.gather(t, tokens)
                                for t in (values, starts, ends)))
            return tf.reduce_any(nbytes > MAX_CHARS_PER_WORD)

        def fix_long_words():
            word_first, word_bytes = words(values, starts, ends)
            cand = tf.where(word_bytes > MAX_CHARS_PER_WORD)[:, 0]
            first = tf.gather(word_first, cand)
            row = tf.searchsorted(splits, first, side="right",
                                  out_type=tf.int64) - 1
            chars = tf.strings.length(tf.strings.substr(
                tf.gather(text, row), tf.gather(starts, first),
                tf.gather(word_bytes, cand)), unit="UTF8_CHAR")
            long_first = tf.boolean_mask(first, chars > MAX_CHARS_PER_WORD)
            # Each token -> its word; a long word keeps only its first
            # token, as [UNK].
            num_tokens = tf.shape(values, out_type=tf.int64)
            is_first = tf.scatter_nd(word_first[:, None],
                                     tf.ones_like(word_first, tf.bool),
                                     num_tokens)
            word_of = tf.cumsum(tf.cast(is_first, tf.int64)) - 1
            in_long = tf.gather(tf.scatter_nd(
                tf.searchsorted(word_first, long_first,
                                out_type=tf.int64)[:, None],
                tf.ones_like(long_first, tf.bool),
                tf.shape(word_first, out_type=tf.int64)), word_of)
            keep = tf.logical_or(tf.logical_not(in_long), is_first)
            new_values = tf.where(in_long, tf.cast(self.unk_id, values.dtype),
                                  values)
            new_splits, new_values = _compact(keep, splits, new_values)
            return new_values, new_splits

        has_long = tf.cond(tf.size(long_rows) > 0, any_long_word,
                           lambda: tf.constant(False))
        return tf.cond(has_long, fix_long_words, lambda: (values, splits))

    def _general_ids(self, strings: tf.Tensor):
        """Any strings [B] -> (ids int64 [T], row splits int64 [B + 1])."""
        words = self._words(strings, with_offsets=False)
        long = words["length"] > MAX_CHARS_PER_WORD
        # Over-long words are emptied (-> no pieces) and patched to [UNK].
        pieces = self._wordpiece.tokenize(
            tf.where(long, tf.constant("", tf.string), words["text"]))
        values, splits = self._patch_long_words(
            pieces.values, pieces.row_splits, long)
        return values, tf.gather(splits, words["row_splits"])

    def _is_fast(self, strings: tf.Tensor) -> tf.Tensor:
        """bool [B]: the fast route tokenizes strings[i] exactly as it is."""
        return tf.strings.regex_full_match(strings, self._fast_pattern)

    def _second_chance(self, strings: tf.Tensor, is_fast: tf.Tensor):
        """Lets strings with capital sigma take the fast route too.

        Returns (texts [B], is_fast [B]): the strings with each capital
        sigma that lower-casing makes final rewritten as final sigma (in the
        rows where only capital sigma kept them off the fast route), and
        which rows the fast route now tokenizes exactly from `texts`.
        """
        if self._final_sigma_pattern is None:
            return strings, is_fast
        candidates = tf.where(tf.logical_not(is_fast))
        texts = tf.gather_nd(strings, candidates)
        sigma_only = tf.strings.regex_full_match(texts, self._sigma_pattern)
        rows = tf.boolean_mask(candidates, sigma_only)
        texts = tf.strings.regex_replace(
            tf.boolean_mask(texts, sigma_only), self._final_sigma_pattern,
            FINAL_SIGMA_REWRITE)
        return (tf.tensor_scatter_nd_update(strings, rows, texts),
                tf.tensor_scatter_nd_update(
                    is_fast, rows, tf.ones_like(texts, tf.bool)))

    def _mixed_ids(self, texts: tf.Tensor, strings: tf.Tensor,
                   is_fast: tf.Tensor):
        """Routes each string (fast: from `texts`), then restores the order."""
        fast_rows = tf.where(is_fast)[:, 0]
        other_rows = tf.where(tf.logical_not(is_fast))[:, 0]
        a_values, a_splits = self._fast_ids(tf.gather(texts, fast_rows))
        o_values, o_splits = self._general_ids(tf.gather(strings, other_rows))
        both = tf.RaggedTensor.from_row_splits(
            tf.concat([a_values, o_values], 0),
            tf.concat([a_splits, o_splits[1:] + a_splits[-1]], 0),
            validate=False)
        order = tf.math.invert_permutation(
            tf.concat([fast_rows, other_rows], 0))
        both = tf.gather(both, order)
        return both.values, both.row_splits

    # -- general route, step by step ----------------------------------------

    def _lookup(self, cps: tf.Tensor) -> tf.Tensor:
        """int32 code points [N] -> packed int32 table entries [N]."""
        entries = tf.gather(self._low, tf.minimum(cps, LOW_SIZE - 1))
        high = cps >= LOW_SIZE

        def fix_high():  # Planes 2-16 are rare: look them up separately.
            pos = tf.where(high)
            hi = tf.gather_nd(cps, pos)
            block = tf.gather(self._level1,
                              tf.bitwise.right_shift(hi, BLOCK_BITS))
            offset = tf.bitwise.bitwise_and(hi, (1 << BLOCK_BITS) - 1)
            return tf.tensor_scatter_nd_update(
                entries, pos,
                tf.gather(self._level2, block * (1 << BLOCK_BITS) + offset))

        return tf.cond(tf.reduce_any(high), fix_high, lambda: entries)

    def _words(self, strings: tf.Tensor, with_offsets: bool) -> dict:
        """Strings [B] -> normalised words, as flat tensors.

        Returns a dict with
          text: string [W], the words (UTF-8), row by row;
          length: int64 [W], characters per word;
          row_splits: int64 [B + 1], words of each input string;
        and, if `with_offsets`, per normalised character (int64 [C]) its
        UTF-8 length `char_bytes` and source byte span `src_start/src_end`,
        plus `first_char`/`last_char` (int64 [W]) indices into those.
        """
        if with_offsets:
            cps, starts = tf.strings.unicode_decode_with_offsets(
                strings, "UTF-8", errors="replace", replacement_char=0xFFFD)
            src_start = starts.values
            # A character ends where the next one starts, or at string end.
            row_of = _row_ids(cps.row_splits)
            last_in_row = tf.concat(
                [_row_starts(cps.row_splits)[1:], [True]], 0)
            src_end = tf.where(
                last_in_row,
                tf.gather(tf.cast(tf.strings.length(strings), tf.int64),
                          row_of),
                tf.concat([src_start[1:], tf.zeros([1], tf.int64)], 0))
        else:
            cps = tf.strings.unicode_decode(
                strings, "UTF-8", errors="replace", replacement_char=0xFFFD)
        values, splits = cps.values, cps.row_splits
        entries = self._lookup(values)
        if self.do_lower_case:
            values = self._resolve_capital_sigma(values, splits, entries)
            values, splits, src = tf.cond(
                tf.reduce_any(_has(entries, F_REORDER)),
                lambda: self._lower_nfd_exact(values, splits, entries),
                lambda: self._expand(values, splits, entries, self._stripped))
            entries = self._lookup(values)
        else:
            keep = tf.logical_not(_has(entries, F_DELETE))
            src = tf.where(keep)[:, 0]
            splits, values, entries = _compact(keep, splits, values, entries)

        # Word boundaries: spaces separate; CJK and punctuation stand alone.
        sep = _has(entries, F_SPACE)
        alone = _has(entries, F_CJK | F_PUNCT)
        after_break = tf.logical_or(
            _row_starts(splits),
            tf.concat([[True], tf.logical_or(sep, alone)[:-1]], 0))
        starts_word = tf.logical_and(tf.logical_not(sep),
                                     tf.logical_or(alone, after_break))
        keep = tf.logical_not(sep)
        chars = tf.boolean_mask(values, keep)
        num_chars = tf.size(chars, out_type=tf.int64)
        word_splits = tf.concat(
            [tf.where(tf.boolean_mask(starts_word, keep))[:, 0],
             tf.reshape(num_chars, [1])], 0)
        # Words of row r: those starting in [splits[r], splits[r + 1]).
        row_splits = tf.searchsorted(tf.where(starts_word)[:, 0], splits,
                                     side="left", out_type=tf.int64)
        word_chars = tf.RaggedTensor.from_row_splits(
            chars, word_splits, validate=False)
        out = {
            "text": tf.strings.unicode_encode(word_chars, "UTF-8"),
            "length": word_chars.row_lengths(),
            "row_splits": row_splits,
        }
        if with_offsets:
            src = tf.boolean_mask(src, keep)
            char_bytes = 1 + tf.cast(chars >= 0x80, tf.int64) + tf.cast(
                chars >= 0x800, tf.int64) + tf.cast(chars >= 0x10000, tf.int64)
            out.update(
                char_bytes=char_bytes,
                src_start=tf.gather(src_start, src),
                src_end=tf.gather(src_end, src),
                first_char=word_splits[:-1],
                last_char=word_splits[1:] - 1)
        return out

    def _resolve_capital_sigma(self, values, splits, entries):
        """Σ -> ς or σ by Python's Final_Sigma context rule.

        Σ is final iff the nearest non-case-ignorable character before it
        (in the same string, ignoring deleted characters) is cased and the
        nearest one after it is not cased or absent. Spaces are neither, so
        they bound the context just like the original's per-token
        lower-casing.
        """
        is_sigma = tf.equal(values, CAPITAL_SIGMA)

        def resolve():
            pos = tf.where(is_sigma)[:, 0]
            anchors = tf.where(tf.logical_not(
                _has(entries, F_CASE_IGNORABLE | F_DELETE)))[:, 0]
            cased = _has(entries, F_CASED)
            last = tf.size(anchors, out_type=tf.int64) - 1
            row = tf.searchsorted(splits[1:], pos, side="right",
                                  out_type=tf.int64)
            row_start = tf.gather(splits, row)
            row_end = tf.gather(splits, row + 1)
            # Σ is itself an anchor (cased, not ignorable).
            k = tf.searchsorted(anchors, pos, side="left", out_type=tf.int64)
            prev = tf.gather(anchors, tf.maximum(k - 1, 0))
            prev_cased = (k > 0) & (prev >= row_start) & tf.gather(cased, prev)
            nxt = tf.gather(anchors, tf.minimum(k + 1, last))
            next_cased = (k < last) & (nxt < row_end) & tf.gather(cased, nxt)
            final = prev_cased & tf.logical_not(next_cased)
            new = tf.where(final, FINAL_SIGMA, SMALL_SIGMA)
            return tf.tensor_scatter_nd_update(values, pos[:, None], new)

        return tf.cond(tf.reduce_any(is_sigma), resolve, lambda: values)

    def _expand(self, values, splits, entries, mapping):
        """Deletes cleaned-away code points and applies a case mapping.

        Args:
          values: int32 [N] code points; splits: int64 [B + 1];
          entries: int32 [N] their table entries;
          mapping: (starts, lens, values) tensors of a `_Mapping`.
        Returns:
          (values int32 [M], splits int64 [B + 1], src int64 [M]) where
          src[i] is the input position output code point i came from.
        """
        m_starts, m_lens, m_values = mapping
        idx = tf.bitwise.right_shift(entries, MAP_SHIFT)
        mapped = idx > 0
        lens = tf.where(
            _has(entries, F_DELETE), tf.zeros_like(idx, tf.int64),
            tf.where(mapped, tf.gather(m_lens, idx),
                     tf.ones_like(idx, tf.int64)))
        # Output code points are read from one pool, the mapping values then
        # the input itself: input i's outputs start at pool[first[i]].
        pool = tf.concat([m_values, values], 0)
        first = tf.where(
            mapped, tf.gather(m_starts, idx),
            tf.size(m_values, out_type=tf.int64) +
            tf.range(tf.size(values, out_type=tf.int64)))

        def at_most_one_each():  # Common case: no expansion.
            src = tf.where(lens > 0)[:, 0]
            new_splits, = _compact(lens > 0, splits)
            return tf.gather(pool, tf.gather(first, src)), new_splits, src

        def any_number():
            # Output code points of input i: [ends[i], ends[i + 1]).
            ends = tf.concat([tf.zeros([1], tf.int64), tf.cumsum(lens)], 0)
            src = _row_ids(ends)
            at = (tf.gather(first - ends[:-1], src) +
                  tf.range(tf.size(src, out_type=tf.int64)))
            return tf.gather(pool, at), tf.gather(ends, splits), src

        return tf.cond(tf.reduce_all(lens <= 1), at_most_one_each, any_number)

    def _lower_nfd_exact(self, values, splits, entries):
        """Lower-case + NFD + drop Mn, with NFD's canonical reordering.

        Only needed when some non-Mn character has a non-zero combining
        class (rare: a few viramas, musical stems); otherwise dropping Mn
        per code point (`_expand` with the stripped mapping) is identical.
        """
        values, splits, src = self._expand(values, splits, entries,
                                           self._full)
        entries = self._lookup(values)
        ccc = tf.bitwise.bitwise_and(entries, 0xFF)
        # NFD stably sorts each run of non-starters (class > 0) by class.
        group = tf.cumsum(tf.cast(
            tf.logical_or(tf.equal(ccc, 0), _row_starts(splits)), tf.int64))
        perm = tf.argsort(group * 256 + tf.cast(ccc, tf.int64), stable=True)
        values, entries, src = (tf.gather(t, perm)
                                for t in (values, entries, src))
        splits, values, src = _compact(
            tf.logical_not(_has(entries, F_MN)), splits, values, src)
        return values, splits, src

    def _patch_long_words(self, values, splits, long, fill=None):
        """Gives each `long` word (which has no pieces) exactly one value.

        Args:
          values, splits: ragged [W, (pieces)] as flat values + int64 splits.
          long: bool [W]. fill: [W] value per long word (default [UNK] id).
        Returns:
          (values, splits) of the patched ragged [W, (pieces)].
        """
        def patch():
            lens = tf.where(long, tf.ones_like(long, tf.int64),
                            splits[1:] - splits[:-1])
            new_splits = tf.concat(
                [tf.zeros([1], tf.int64), tf.cumsum(lens)], 0)
            word = _row_ids(splits)
            dest = (tf.gather(new_splits, word) +
                    tf.range(tf.size(values, out_type=tf.int64)) -
                    tf.gather(splits, word))
            base = (tf.fill([new_splits[-1]], tf.cast(self.unk_id,
                                                      values.dtype))
                    if fill is None else
                    tf.gather(fill, _row_ids(new_splits)))
            return (tf.tensor_scatter_nd_update(base, dest[:, None], values),
                    new_splits)

        return tf.cond(tf.reduce_any(long), patch, lambda: (values, splits))


def batch_tokenize(texts: Sequence[str], tokenizer: BertTextTokenizer,
                   batch_size: int = 4096,
                   num_threads: int | None = None) -> list[list[int]]:
    """Python strings -> lists of ids via the in-graph `tokenizer`, batched."""
    return tokenizer.batch_tokenize(texts, batch_size, num_threads)
