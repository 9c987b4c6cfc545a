"""Pretraining instances with numpy, in batches: the original BERT rules, not its random draws.

`--rng=vectorized` of data_prep.create_pretraining_data. data_prep/pretraining/instances.py reproduces
google-research/bert's create_pretraining_data.py draw for draw (~125 Python `random` calls
per instance, most of its time); this module builds instances from the same RULES with the SAME
PROBABILITIES, drawing from one `np.random.Generator(PCG64(SeedSequence(seed)))` per shard in
whole-array operations. Same seed + same inputs -> the same bytes (for any number of workers,
since each shard has its own generator), but not the bytes of the original mode or script.

Identical to the original (and to --rng=original):
  * one target length per (document, dupe pass): max_seq_length - 3, or with probability
    short_seq_prob uniform in [2, max_seq_length - 3];
  * segments accumulate into a chunk until the chunk reaches the target or the document ends;
    A = the first a_end segments, a_end uniform in [1, len(chunk) - 1] (1 for a one-segment
    chunk); B = the rest of the chunk, or with probability 0.5 (always for a one-segment chunk)
    a run of segments of another document starting at a uniformly random segment, taken until
    it reaches target - len(A) tokens or that document ends, and then the chunk's unused
    segments are given back (the next chunk starts after A);
  * truncation to max_seq_length - 3 tokens: the longer of A and B (B on ties) loses one token
    at a time, from its front or back with probability 0.5 each -- done here in closed form:
    the final lengths are what that loop gives, and the number taken from the front of each
    side is Binomial(tokens removed, 0.5), the loop's distribution;
  * [CLS] A [SEP] B [SEP]; segment ids 0 up to the first [SEP], 1 after;
  * masking: candidates are all positions but [CLS]/[SEP] (also text that tokenizes to them);
    with whole-word masking a "##" piece joins the previous candidate (across [SEP] too, as in
    the original); num_to_predict = min(max_predictions_per_seq,
    max(1, round(len * masked_lm_prob))); the candidates are visited in uniformly random order
    and each is taken if it still fits (so without whole words: a uniformly random subset of
    num_to_predict positions; with whole words: the original's greedy skip-if-too-long fill);
    each chosen piece becomes [MASK] with probability 0.8, stays with 0.1 and becomes a
    uniformly random vocabulary word with 0.1 (`wwm_mask_decision="per_word"`: one such
    decision per word, a random word id per piece); positions sorted, zero padding;
  * the instances of a shard are shuffled uniformly at random before writing.

Not identical: the random stream (numpy PCG64 instead of Python's Mersenne Twister, drawn in
batches), so the instances differ from the original's for the same seed; and two
simplifications that change no distribution: the documents are not shuffled before pairing (the
final shuffle makes their order irrelevant), and a random-next document is uniform over the
OTHER documents of the shard (the original retries up to 10 times and then keeps its own,
probability (1/num_documents)^10). Random orders come from sorting random keys; a row whose
keys tie where it matters is drawn again, so orders and subsets are exactly uniform.

Layout: a shard's documents become one flat int32 token array plus segment offsets; pairing
runs on all (document, pass) streams at once, one chunk per stream per step (a few dozen numpy
calls per step, steps = chunks of the longest document); each instance is then 7 numbers
(A start/length, B start/length, label, target). Shuffling that table and masking it in
batches of BATCH_SIZE rows gives the padded feature arrays of data_prep.files.tfrecords
(serialize_examples) directly, in final order, with no per-instance Python object.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np

from data_prep.pretraining import instances as inst

# Part of the output's definition (the batch size fixes how the stream is consumed): change
# ALGORITHM_VERSION with anything that changes the bytes, so resume never mixes them.
ALGORITHM_VERSION = 1
BATCH_SIZE = 2048


def make_generator(seed: int) -> np.random.Generator:
    """The shard generator: PCG64 seeded through SeedSequence (any int seed, negatives too)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed % 2**64)))


@dataclasses.dataclass(frozen=True)
class InstanceBatch:
    """Up to BATCH_SIZE instances as zero-padded arrays.

    features: the data_prep.files.tfrecords schema, what tfrecords.serialize_examples takes:
      input_ids, input_mask, segment_ids [n, max_seq_length]; masked_lm_positions,
      masked_lm_ids [n, max_predictions_per_seq]; next_sentence_labels [n, 1] (int32 here,
      written as int64 features); masked_lm_weights [n, max_predictions_per_seq] float32.
    target_seq_length: int64 [n], the length each pair was built towards (statistics).
    """

    features: dict
    target_seq_length: np.ndarray

    def __len__(self) -> int:
        return len(self.target_seq_length)


def final_lengths(len_a: np.ndarray, len_b: np.ndarray,
                  max_num_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """The lengths the original's truncate_seq_pair loop leaves (it trims the longer side, B on
    ties, one token at a time, until len_a + len_b <= max_num_tokens)."""
    over = len_a + len_b > max_num_tokens
    short = np.minimum(len_a, len_b)
    keeps_short = 2 * short <= max_num_tokens  # the shorter side is never trimmed
    a_short = len_a <= len_b
    new_a = np.where(keeps_short, np.where(a_short, len_a, max_num_tokens - len_b),
                     (max_num_tokens + 1) // 2)  # else both meet: A gets the odd token
    new_b = np.where(keeps_short, np.where(a_short, max_num_tokens - len_a, len_b),
                     max_num_tokens // 2)
    return np.where(over, new_a, len_a), np.where(over, new_b, len_b)


def pair_documents(corpus: inst.Corpus, options: inst.InstanceOptions, dupe_factor: int,
                   rng: np.random.Generator, counters: dict | None = None) -> dict:
    """NSP pairs of every (document, dupe pass), truncated, as arrays (not yet shuffled).

    Returns {"a_start", "a_len", "b_start", "b_len": int64 token ranges into corpus.tokens,
    "random_next": bool, "target": int64} with one row per instance.
    """
    max_num_tokens = options.max_seq_length - 3
    num_docs = len(corpus.doc_start)
    seg_cum, doc_start, doc_end = corpus.seg_cum, corpus.doc_start, corpus.doc_end
    doc = np.tile(np.arange(num_docs, dtype=np.int64), dupe_factor)
    short = rng.random(len(doc)) < options.short_seq_prob
    target = np.where(short, rng.integers(2, max_num_tokens + 1, len(doc)), max_num_tokens)
    if counters is not None:
        counters["document_passes"] = counters.get("document_passes", 0) + len(doc)
        counters["short_targets"] = counters.get("short_targets", 0) + int(short.sum())
    pos = doc_start[doc]  # each stream's next segment
    end = doc_end[doc]
    parts: list[tuple] = []
    while len(doc):
        a_start = seg_cum[pos]
        # The chunk: segments pos..stop-1, the first run that reaches the target (or all).
        stop = np.minimum(np.searchsorted(seg_cum, a_start + target, "left"), end)
        num_segments = stop - pos
        a_end = pos + 1 + rng.integers(0, np.maximum(num_segments - 1, 1))
        random_next = (num_segments == 1) | (rng.random(len(doc)) < 0.5)
        b_start = seg_cum[a_end]
        a_len = b_start - a_start
        b_len = seg_cum[stop] - b_start
        rows = np.flatnonzero(random_next)
        if len(rows):
            own = doc[rows]
            if num_docs > 1:  # uniform over the other documents
                other = rng.integers(0, num_docs - 1, len(rows))
                other += other >= own
            else:
                other = own
            first = doc_start[other] + rng.integers(0, doc_end[other] - doc_start[other])
            first_token = seg_cum[first]
            want = target[rows] - a_len[rows]  # take segments until B reaches this
            last = np.searchsorted(seg_cum, first_token + want, "left")
            last = np.minimum(np.maximum(last, first + 1), doc_end[other])
            b_start[rows] = first_token
            b_len[rows] = seg_cum[last] - first_token
        parts.append((a_start, a_len, b_start, b_len, random_next, target))
        pos = np.where(random_next, a_end, stop)  # random next: unused segments back
        alive = pos < end
        doc, pos, target, end = doc[alive], pos[alive], target[alive], end[alive]
    names = ("a_start", "a_len", "b_start", "b_len", "random_next", "target")
    table = {name: (np.concatenate([p[k] for p in parts]) if parts
                    else np.zeros(0, bool if name == "random_next" else np.int64))
             for k, name in enumerate(names)}
    new_a, new_b = final_lengths(table["a_len"], table["b_len"], max_num_tokens)
    table["a_start"] += rng.binomial(table["a_len"] - new_a, 0.5)
    table["b_start"] += rng.binomial(table["b_len"] - new_b, 0.5)
    table["a_len"], table["b_len"] = new_a, new_b
    return table


_VOCAB_ARRAYS: dict = {}  # id(vocab) -> (vocab, random_token_ids, is_subword)


def _vocab_arrays(vocab: inst.VocabIds) -> tuple[np.ndarray, np.ndarray]:
    """vocab.random_token_ids (int32) and vocab.is_subword (bool) as arrays, converted once per
    vocabulary object (from 30k-entry tuples: ~1 ms a shard otherwise)."""
    cached = _VOCAB_ARRAYS.get(id(vocab))
    if cached is None or cached[0] is not vocab:
        cached = (vocab, np.asarray(vocab.random_token_ids, np.int32),
                  np.asarray(vocab.is_subword, bool))
        if len(_VOCAB_ARRAYS) >= 8:
            _VOCAB_ARRAYS.clear()
        _VOCAB_ARRAYS[id(vocab)] = cached
    return cached[1], cached[2]


class _Masker:
    """Builds the padded, masked feature arrays of rows of a pair table."""

    def __init__(self, corpus: inst.Corpus, vocab: inst.VocabIds, options: inst.InstanceOptions):
        seq = options.max_seq_length
        if seq > 2**16:
            raise ValueError(f"max_seq_length must be <= {2**16}, got {seq}")
        self.vocab = vocab
        self.options = options
        # windows[k] = tokens[k - pad : k - pad + seq], zeros outside the corpus: a row's A (and
        # its B) is one window, so building a row is two contiguous copies.
        self.pad = seq + 2
        tokens = np.concatenate([np.zeros(self.pad, np.int32), corpus.tokens,
                                 np.zeros(self.pad, np.int32)])
        self.windows = np.lib.stride_tricks.sliding_window_view(tokens, seq)
        self.random_ids, self.is_subword = _vocab_arrays(vocab)
        # Text that tokenizes to [CLS]/[SEP] is no candidate either; only then test for it.
        self.scan_specials = bool(np.isin(corpus.tokens, (vocab.cls_id, vocab.sep_id)).any())
        self.col = np.arange(seq, dtype=np.int32)[None, :]
        self.col_bits = max(1, (seq - 1).bit_length())
        # 32-bit keys (fast to sort) keep >= 23 random bits up to 256 columns; 64-bit beyond.
        bits = 32 if self.col_bits <= 8 else 64
        self.key_type = np.uint32 if bits == 32 else np.uint64
        self.key_col = self.col.astype(self.key_type)
        self.col_mask = self.key_type(2**self.col_bits - 1)
        # Valid keys: random bits from bits - 2 down to col_bits; invalid keys: the top bit.
        self.high_mask = self.key_type((2**(bits - 1) - 1) ^ (2**self.col_bits - 1))
        self.invalid_keys = self.key_type(2**(bits - 1)) | self.key_col

    def __call__(self, rows: dict, rng: np.random.Generator) -> dict:
        vocab, options, col = self.vocab, self.options, self.col
        n, seq = len(rows["a_len"]), options.max_seq_length
        a_len = rows["a_len"]
        length = a_len + rows["b_len"] + 3
        ids = np.where(col <= a_len[:, None], self.windows[rows["a_start"] - 1 + self.pad],
                       self.windows[rows["b_start"] - a_len - 2 + self.pad])
        input_mask = col < length[:, None]
        ids *= input_mask
        base = np.arange(n, dtype=np.int64) * seq
        flat_ids = ids.reshape(-1)
        specials = (base, base + a_len + 1, base + length - 1)
        candidate = input_mask.copy()
        for index in specials:
            candidate.reshape(-1)[index] = False
        if self.scan_specials:
            candidate &= (ids != vocab.cls_id) & (ids != vocab.sep_id)
            num_candidates = candidate.sum(axis=1)
        else:
            num_candidates = length - 3
        for index, token in zip(specials, (vocab.cls_id, vocab.sep_id, vocab.sep_id)):
            flat_ids[index] = token
        positions, weights, masked_ids = self._mask(ids, candidate, num_candidates, length,
                                                    base, rng)
        return {
            "input_ids": ids,
            "input_mask": input_mask.astype(np.int32),
            "segment_ids": (input_mask & (col >= (a_len + 2)[:, None])).astype(np.int32),
            "masked_lm_positions": positions,
            "masked_lm_ids": masked_ids,
            "masked_lm_weights": weights.astype(np.float32),
            "next_sentence_labels": rows["random_next"].astype(np.int32)[:, None],
        }

    def mask_padded(self, features: dict, rng: np.random.Generator) -> dict:
        """Masks sequences that are already laid out (instances_packed's), by the same rules.

        features: int input_ids, input_mask [n, max_seq_length] (and any other arrays, passed
        through). Candidates are the real tokens that are not [CLS]/[SEP] (so a packed
        sequence's inner [SEP]s are never masked); num_to_predict, the random subset or whole
        words, and 80/10/10 are those of __call__. Returns features with input_ids masked and
        masked_lm_positions, masked_lm_ids (int32) and masked_lm_weights (float32) added.
        """
        vocab = self.vocab
        ids = np.array(features["input_ids"], np.int32)
        n, seq = ids.shape
        input_mask = np.asarray(features["input_mask"]) > 0
        length = input_mask.sum(axis=1)
        candidate = input_mask & (ids != vocab.cls_id) & (ids != vocab.sep_id)
        num_candidates = candidate.sum(axis=1)
        base = np.arange(n, dtype=np.int64) * seq
        positions, weights, masked_ids = self._mask(ids, candidate, num_candidates, length,
                                                    base, rng)
        return {**features, "input_ids": ids, "masked_lm_positions": positions,
                "masked_lm_ids": masked_ids, "masked_lm_weights": weights.astype(np.float32)}

    def _mask(self, ids: np.ndarray, candidate: np.ndarray, num_candidates: np.ndarray,
              length: np.ndarray, base: np.ndarray, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Chooses each row's positions and masks `ids` [n, seq] in place, 80/10/10.

        candidate: bool [n, seq], the maskable tokens (num_candidates [n] of them); length [n]
        counts [CLS]/[SEP]; base [n] = row * seq. Returns masked_lm_positions [n, num_pred],
        masked_lm_weights (bool) and masked_lm_ids (int32, the original ids).
        """
        vocab, options = self.vocab, self.options
        seq = ids.shape[1]
        limit = np.minimum(options.max_predictions_per_seq, np.maximum(
            1, np.rint(length * options.masked_lm_prob).astype(np.int64)))
        if options.do_whole_word_mask:
            positions, weights, group = self._choose_words(ids, candidate, limit, base, rng)
        else:
            positions, weights = self._choose_pieces(candidate, np.minimum(
                limit, num_candidates), num_candidates, rng)
            group = None
        flat_ids = ids.reshape(-1)
        flat = (base[:, None] + positions)[weights]  # row-major, sorted within a row
        labels = flat_ids[flat]
        if group is not None and options.wwm_mask_decision == "per_word":
            word = group.reshape(-1)[flat]  # a word's chosen pieces are consecutive here
            first = np.ones(len(flat), bool)
            first[1:] = (word[1:] != word[:-1]) | (flat[1:] // seq != flat[:-1] // seq)
            u = rng.random(int(first.sum()))[np.cumsum(first) - 1]
        else:
            u = rng.random(len(flat))
        flat_ids[flat[u < 0.8]] = vocab.mask_id
        as_random = flat[u >= 0.9]  # 0.8 <= u < 0.9: keep
        flat_ids[as_random] = self.random_ids[rng.integers(0, len(self.random_ids),
                                                           len(as_random))]
        masked_ids = np.zeros(positions.shape, np.int32)
        masked_ids[weights] = labels
        return positions, weights, masked_ids

    def _sorted_keys(self, valid: np.ndarray, rng: np.random.Generator,
                     redraw) -> np.ndarray:
        """Each row's valid columns in uniformly random order, as sorted keys.

        A key is random bits with the column in the lowest col_bits bits (so `key & col_mask`
        is the column); invalid columns get the top bit instead and sort last. Rows where
        redraw(rows, sorted_keys) says a tie of the random parts could matter are drawn again,
        so the order is exactly uniform (ties: ~1e-4 of rows).
        """
        n, seq = valid.shape
        out = np.empty((n, seq), self.key_type)
        rows = np.arange(n)
        while len(rows):
            if self.key_type is np.uint32:  # two keys per 64 random bits, low half first
                raw = rng.bit_generator.random_raw((len(rows) * seq + 1) // 2)
                keys = raw.astype("<u8", copy=False).view("<u4")[:len(rows) * seq]
                keys = keys.astype(np.uint32, copy=False).reshape(len(rows), seq)
            else:
                keys = rng.bit_generator.random_raw((len(rows), seq)).astype(np.uint64)
            keys &= self.high_mask
            keys |= self.key_col
            np.copyto(keys, self.invalid_keys, where=~valid[rows])
            keys.sort(axis=1)
            out[rows] = keys
            rows = rows[redraw(rows, keys)]
        return out

    def _tied(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        shift = self.key_type(self.col_bits)
        return (a >> shift) == (b >> shift)

    def _choose_pieces(self, candidate, take, num_candidates, rng):
        """A uniformly random subset of `take` candidates per row (the take smallest keys;
        a row whose take-th and next keys tie in their random part draws again).

        Returns (positions [n, max_predictions_per_seq] int32 sorted, zero padded;
        weights [n, max_predictions_per_seq] bool)."""
        num_pred = self.options.max_predictions_per_seq
        seq = candidate.shape[1]

        def boundary_tie(rows, keys):
            t = take[rows]
            r = np.arange(len(rows))
            return (self._tied(keys[r, np.maximum(t - 1, 0)], keys[r, np.minimum(t, seq - 1)])
                    & (t > 0) & (t < num_candidates[rows]))

        keys = self._sorted_keys(candidate, rng, boundary_tie)
        width = min(num_pred, seq)
        positions = (keys[:, :width] & self.col_mask).astype(np.int32)
        weights = self.col[:, :width] < take[:, None]
        positions[~weights] = seq
        positions.sort(axis=1)
        positions[~weights] = 0
        if width < num_pred:
            pad = ((0, 0), (0, num_pred - width))
            positions, weights = np.pad(positions, pad), np.pad(weights, pad)
        return positions, weights

    def _choose_words(self, ids, candidate, limit, base, rng):
        """Whole words in uniformly random order, each taken if it still fits under the limit
        (the original's loop). Returns (positions, weights) as _choose_pieces, and the word
        index of each position [n, seq] (meaningful at candidates)."""
        n, seq = candidate.shape
        num_pred = self.options.max_predictions_per_seq
        first = np.argmax(candidate, axis=1)  # the first candidate starts a word regardless
        starts = candidate & ~(self.is_subword[ids] & (self.col > first[:, None]))
        group = np.cumsum(starts, axis=1, dtype=np.int32) - 1  # word index of each piece
        flat_group = (base[:, None] + group).reshape(-1)
        sizes = np.bincount(flat_group[candidate.reshape(-1)], minlength=n * seq)
        num_words = starts.sum(axis=1)

        def any_tie(rows, keys):
            return (self._tied(keys[:, 1:], keys[:, :-1])
                    & (self.col[:, 1:] < num_words[rows, None])).any(axis=1)

        keys = self._sorted_keys(self.col < num_words[:, None], rng, any_tie)
        order = (keys & self.col_mask).astype(np.int64)  # words in random order
        # Each word has >= 1 piece, so the first num_pred + 1 words always reach the limit.
        width = min(seq, num_pred + 1)
        slots = base[:, None] + order[:, :width]
        sorted_sizes = sizes[slots]
        total = np.cumsum(sorted_sizes, axis=1)
        take = (total <= limit[:, None]) & (sorted_sizes > 0)
        taken = np.zeros(n * seq, bool)
        taken[slots[take]] = True
        # After the first word that does not fit, later words still go in while they fit.
        left = limit - np.where(take, sorted_sizes, 0).sum(axis=1)
        overflow = total > limit[:, None]
        after = overflow.argmax(axis=1)  # the first word that did not fit
        active = np.flatnonzero((left > 0) & overflow.any(axis=1))
        if len(active):
            rest = sizes[base[active, None] + order[active]]  # all words of these rows
            index = np.arange(len(active))
            while len(index):
                fits = ((rest[index] > 0) & (rest[index] <= left[active[index], None])
                        & (self.col > after[active[index], None]))
                has = fits.any(axis=1)
                index, fits = index[has], fits[has]
                nxt = fits.argmax(axis=1)
                row = active[index]
                taken[base[row] + order[row, nxt]] = True
                left[row] -= rest[index, nxt]
                after[row] = nxt
                index = index[left[row] > 0]
        chosen = candidate & taken[flat_group.clip(0)].reshape(n, seq)
        counts = chosen.sum(axis=1)
        weights = np.arange(num_pred)[None, :] < counts[:, None]
        positions = np.zeros((n, num_pred), np.int32)
        positions[weights] = np.flatnonzero(chosen) % seq
        return positions, weights, group


def padded_masker(corpus: inst.Corpus, vocab: inst.VocabIds,
                  options: inst.InstanceOptions) -> _Masker:
    """A masker whose `mask_padded(features, rng)` masks already laid-out sequences of
    corpus's tokens (instances_packed)."""
    return _Masker(corpus, vocab, options)


def iter_instance_batches(documents: Sequence[inst.Document] | inst.Corpus,
                          vocab: inst.VocabIds,
                          options: inst.InstanceOptions, dupe_factor: int, seed: int,
                          counters: dict | None = None,
                          batch_size: int = BATCH_SIZE) -> Iterator[InstanceBatch]:
    """All instances of a document pool, shuffled, as padded batches (final order).

    documents: documents -> segments -> int token ids; empty documents are dropped, segments
    must not be empty (read_documents drops lines without tokens). counters, if given, gets
    "document_passes" and "short_targets" added (as in instances.py). With one document,
    random-next segments come from that document (as in the original).
    Deterministic in (documents, vocab, options, dupe_factor, seed, batch_size).
    """
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}")
    rng = make_generator(seed)
    corpus = inst.Corpus.of(documents)
    table = pair_documents(corpus, options, dupe_factor, rng, counters)
    order = rng.permutation(len(table["target"]))
    table = {k: v[order] for k, v in table.items()}
    masker = _Masker(corpus, vocab, options)
    for start in range(0, len(order), batch_size):
        rows = {k: v[start:start + batch_size] for k, v in table.items()}
        yield InstanceBatch(masker(rows, rng), rows["target"].astype(np.int64))


def create_arrays(documents: Sequence[inst.Document] | inst.Corpus, vocab: inst.VocabIds,
                  options: inst.InstanceOptions, dupe_factor: int, seed: int,
                  counters: dict | None = None) -> InstanceBatch:
    """iter_instance_batches concatenated into one InstanceBatch (for tests and small pools)."""
    batches = list(iter_instance_batches(documents, vocab, options, dupe_factor, seed,
                                         counters))
    if not batches:
        seq, pred = options.max_seq_length, options.max_predictions_per_seq
        empty = {"input_ids": (seq, np.int32), "input_mask": (seq, np.int32),
                 "segment_ids": (seq, np.int32), "masked_lm_positions": (pred, np.int32),
                 "masked_lm_ids": (pred, np.int32), "masked_lm_weights": (pred, np.float32),
                 "next_sentence_labels": (1, np.int32)}
        return InstanceBatch({k: np.zeros((0, d), t) for k, (d, t) in empty.items()},
                             np.zeros(0, np.int64))
    return InstanceBatch({k: np.concatenate([b.features[k] for b in batches])
                          for k in batches[0].features},
                         np.concatenate([b.target_seq_length for b in batches]))
