"""The original's instances, draw for draw, in compiled code (numba): `--rng=original`.

data_prep/pretraining/instances.py states the algorithm of google-research/bert's create_pretraining_data.py
in Python, with every random draw in the original's order; that is the spec and the reference.
This module runs the same steps, in the same order, on flat token arrays in compiled loops, with
the random stream of CPython's `random.Random` itself: the generator's MT19937 state is taken
with `getstate()`, advanced here by the same recurrences CPython uses (`random()`: two 32-bit
outputs -> 53 bits; `randint(0, n - 1)` / `shuffle`: `getrandbits(n.bit_length())` with
rejection), and handed back with `setstate()`. So for the same generator state it yields
exactly the instances of `instances.create_training_instances`, final shuffle included
(tested on the shipped corpus and on random pools, with and without whole-word masking), at
~2 us an instance instead of ~20 us; most of it is the ~125-swap candidate shuffle.

Layout: a pool's documents become one token array (instances.Corpus); an instance is then
seven numbers (A start/length, B start/length in that array, NSP label, target length, masked
count) plus its masked positions and their replacement ids (the original ids are the tokens
at those positions): an `InstanceTable`, in the order made, with the final order beside it.
`padded_batch` turns rows of it into the padded feature arrays of data_prep.files.tfrecords;
data_prep/pretraining/records.py writes their TFRecords directly.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Iterator, Sequence

from data_prep.compiled import numba
import numpy as np

from data_prep.pretraining import instances as inst
from data_prep.pretraining.instances_vectorized import InstanceBatch, _vocab_arrays

BATCH_SIZE = 2048

# --- CPython's random.Random: MT19937 on the state of getstate() ------------------------------
# state: int64 [2 * 624 + 1]: getstate()[1] (the generator's 624 words, then the read position),
# followed by the tempered outputs of the current block of 624, so that a draw is one load.

_N, _M = 624, 397
_OUT = _N + 1  # where the tempered block starts


@numba.njit(cache=True, nogil=True, inline="always")
def _temper_block(state):
    for k in range(_N):
        y = state[k]
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        state[_OUT + k] = y & 0xFFFFFFFF


@numba.njit(cache=True, nogil=True, inline="always")
def _twist(state):
    """The next block of 624 words (genrand_uint32's refill, in CPython's order)."""
    for k in range(_N):
        y = (state[k] & 0x80000000) | (state[k + 1 if k + 1 < _N else 0] & 0x7FFFFFFF)
        # (a multiply, not a branch: y & 1 is a coin flip that a branch would mispredict)
        state[k] = state[k + _M if k + _M < _N else k + _M - _N] ^ (y >> 1) ^ (0x9908B0DF * (y & 1))
    _temper_block(state)


# The read position p travels through the draw functions as a local value (each returns the
# new one) and is stored in state[624] only between calls from Python. Everything a draw runs is
# inlined (inline="always"), the refill too: a call to a separately compiled function with the
# state array made every draw ~7x slower (11 ns instead of 1.5 ns on the CI CPU).

@numba.njit(cache=True, nogil=True, inline="always")
def _genrand(state, p):
    """genrand_uint32 of CPython's _randommodule.c -> (value, p)."""
    if p >= _N:
        _twist(state)
        p = 0
    return state[_OUT + p], p + 1


def _state_from(rng: random.Random) -> tuple[np.ndarray, tuple]:
    """-> (state array, the rest of getstate() to hand back with _give_back)."""
    version, words, gauss = rng.getstate()
    state = np.zeros(2 * _N + 1, np.int64)
    state[:_N + 1] = words
    # _temper_block in numpy (the block's words not yet read are still untempered in it):
    # one compiled kernel fewer to load at start-up.
    y = state[:_N].copy()
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    y ^= y >> 18
    state[_OUT:] = y & 0xFFFFFFFF
    return state, (version, gauss)


def _give_back(rng: random.Random, state: np.ndarray, rest: tuple) -> None:
    rng.setstate((rest[0], tuple(state[:_N + 1].tolist()), rest[1]))


@numba.njit(cache=True, nogil=True, inline="always")
def _random(state, p):
    """random.random(): 27 + 26 bits of two outputs -> (value, p)."""
    a, p = _genrand(state, p)
    b, p = _genrand(state, p)
    return ((a >> 5) * 67108864.0 + (b >> 6)) * (1.0 / 9007199254740992.0), p


@numba.njit(cache=True, nogil=True, inline="always")
def _below(state, p, n, k):
    """getrandbits(k) until below n (k = n.bit_length()) -> (value, p)."""
    r, p = _genrand(state, p)
    r >>= 32 - k
    while r >= n:
        r, p = _genrand(state, p)
        r >>= 32 - k
    return r, p


@numba.njit(cache=True, nogil=True, inline="always")
def _randbelow(state, p, n):
    """random.randint(0, n - 1) = _randbelow_with_getrandbits(n), for 1 <= n < 2**32."""
    k = 0
    m = n
    while m:
        k += 1
        m >>= 1
    return _below(state, p, n, k)


@numba.njit(cache=True, nogil=True)
def _shuffle(state, p, x):
    """random.shuffle(x) on an int64 array: the same swaps as on a list of len(x) items.
    Returns p."""
    i = x.shape[0] - 1
    k = 0
    m = i + 1
    while m:
        k += 1
        m >>= 1
    while i > 0:
        if i + 1 < 1 << (k - 1):  # (i + 1).bit_length() dropped by one
            k -= 1
        j, p = _below(state, p, i + 1, k)
        x[i], x[j] = x[j], x[i]
        i -= 1
    return p


@numba.njit(cache=True, nogil=True)
def _shuffle_array(state, x):
    """_shuffle from Python: the position is read from and written back to state."""
    state[_N] = _shuffle(state, state[_N], x)


# --- One pass over documents [first, stop) of the shuffled pool ---------------------------------

@numba.njit(cache=True, nogil=True)
def _replace(state, p, new_ids, k, token, mask_id, random_ids):
    """_InstanceBuilder._replace: 80% [MASK], 10% kept, 10% a random vocabulary word.
    Returns p."""
    u, p = _random(state, p)
    if u < 0.8:
        new_ids[k] = mask_id
        return p
    u, p = _random(state, p)
    if u < 0.5:
        new_ids[k] = token
    else:
        j, p = _randbelow(state, p, random_ids.shape[0])
        new_ids[k] = random_ids[j]
    return p


@numba.njit(cache=True, nogil=True)
def _mask(state, p, seq, n, num_a, limit, general, wwm, per_word, cls_id, sep_id, mask_id,
          random_ids, is_subword, positions, new_ids, scratch, counts):
    """create_masked_lm_predictions on seq[:n]; writes the sorted positions and their new ids
    to the given rows (the original ids are seq's, found again from the row's offsets) and
    adds to counts[0] / counts[1] how many became [MASK] / kept their id; returns (how many
    were masked, p)."""
    count = 0
    if not general:  # _mask_pieces: every candidate is one position
        cand = scratch[:n - 3]
        for c in range(num_a):
            cand[c] = c + 1
        for c in range(n - 3 - num_a):
            cand[num_a + c] = num_a + 2 + c
        p = _shuffle(state, p, cand)
        count = min(limit, n - 3)
        for k in range(count):
            positions[k] = cand[k]
            p = _replace(state, p, new_ids, k, seq[cand[k]], mask_id, random_ids)
    else:  # _mask_words: [CLS]/[SEP] by value, "##" pieces join the previous candidate
        members = scratch[:n]            # candidate positions, grouped
        group_start = scratch[n:2 * n + 1]
        groups = 0
        used = 0
        for i in range(n):
            token = seq[i]
            if token == cls_id or token == sep_id:
                continue
            if not (wwm and groups and token < is_subword.shape[0] and is_subword[token]):
                group_start[groups] = used
                groups += 1
            members[used] = i
            used += 1
        group_start[groups] = used
        order = scratch[2 * n + 1:2 * n + 1 + groups]
        for g in range(groups):
            order[g] = g
        p = _shuffle(state, p, order)
        for g in order:
            if count >= limit:
                break
            size = group_start[g + 1] - group_start[g]
            if count + size > limit:
                continue
            if per_word:  # _replace_word: one decision for the word, a random id per piece
                u, p = _random(state, p)
                keep = False
                if u >= 0.8:
                    v, p = _random(state, p)
                    keep = v < 0.5
                for k in range(count, count + size):
                    q = members[group_start[g] + k - count]
                    positions[k] = q
                    if u < 0.8:
                        new_ids[k] = mask_id
                    elif keep:
                        new_ids[k] = seq[q]
                    else:
                        j, p = _randbelow(state, p, random_ids.shape[0])
                        new_ids[k] = random_ids[j]
            else:
                for k in range(count, count + size):
                    q = members[group_start[g] + k - count]
                    positions[k] = q
                    p = _replace(state, p, new_ids, k, seq[q], mask_id, random_ids)
            count += size
    for k in range(count):
        if new_ids[k] == mask_id:
            counts[0] += 1
        elif new_ids[k] == seq[positions[k]]:
            counts[1] += 1
    # Sort by position (insertion sort of <= max_predictions distinct positions, in place).
    for k in range(1, count):
        q, new = positions[k], new_ids[k]
        j = k - 1
        while j >= 0 and positions[j] > q:
            positions[j + 1], new_ids[j + 1] = positions[j], new_ids[j]
            j -= 1
        positions[j + 1], new_ids[j + 1] = q, new
    return count, p


@numba.njit(cache=True, nogil=True)
def _pass(state, tokens, seg_cum, doc_start, doc_end, docs, first, stop, max_seq_length,
          short_seq_prob, num_to_predict, general, wwm, per_word, cls_id, sep_id, mask_id,
          random_ids, is_subword, rows, positions, new_ids, counts):
    """create_instances_from_document for the shuffled pool's documents first..stop-1.

    docs: int64 [num_docs], the pool's order (docs[k] is the k-th shuffled document).
    Writes instance r to rows[r] (a_start, a_len, b_start, b_len, is_random_next, target,
    num_masked), positions[r] and new_ids[r] (the first num_masked entries: sorted masked
    positions and their new ids); adds to counts (see _mask). Returns (instances written,
    passes with a short target), or (-1, r) if instance r had an empty side after
    truncation."""
    max_num_tokens = max_seq_length - 3
    num_docs = docs.shape[0]
    seq = np.empty(max_seq_length, np.int64)
    scratch = np.empty(3 * max_seq_length + 2, np.int64)
    written = 0
    short = 0
    p = state[_N]
    for d in range(first, stop):
        doc = docs[d]
        s0, s1 = doc_start[doc], doc_end[doc]
        target = max_num_tokens
        u, p = _random(state, p)
        if u < short_seq_prob:
            target, p = _randbelow(state, p, max_num_tokens - 1)
            target += 2
        if target < max_num_tokens:
            short += 1
        chunk_first = s0  # the chunk is segments chunk_first..i
        i = s0
        while i < s1:
            chunk_length = seg_cum[i + 1] - seg_cum[chunk_first]
            if i == s1 - 1 or chunk_length >= target:
                segments = i + 1 - chunk_first
                a_end = 1
                if segments >= 2:
                    a_end, p = _randbelow(state, p, segments - 1)
                    a_end += 1
                a_start = seg_cum[chunk_first]
                a_len = seg_cum[chunk_first + a_end] - a_start
                random_next = segments == 1
                if not random_next:
                    u, p = _random(state, p)
                    random_next = u < 0.5
                if random_next:
                    is_random_next = 1
                    target_b = target - a_len
                    other = 0
                    for _ in range(10):
                        other, p = _randbelow(state, p, num_docs)
                        if other != d:
                            break
                    r0, r1 = doc_start[docs[other]], doc_end[docs[other]]
                    j, p = _randbelow(state, p, r1 - r0)
                    j += r0
                    b_start = seg_cum[j]
                    b_len = 0
                    while j < r1:
                        b_len = seg_cum[j + 1] - b_start
                        if b_len >= target_b:
                            break
                        j += 1
                    i -= segments - a_end  # give back the unused segments
                else:
                    is_random_next = 0
                    b_start = seg_cum[chunk_first + a_end]
                    b_len = seg_cum[i + 1] - b_start
                # truncate_seq_pair: trim the longer side (B on ties), front or back at random
                for _ in range(a_len + b_len - max_num_tokens):
                    u, p = _random(state, p)
                    if a_len > b_len:
                        a_len -= 1
                        a_start += u < 0.5
                    else:
                        b_len -= 1
                        b_start += u < 0.5
                if a_len == 0 or b_len == 0:
                    state[_N] = p
                    return -1, written
                n = a_len + b_len + 3
                seq[0] = cls_id
                seq[1:a_len + 1] = tokens[a_start:a_start + a_len]
                seq[a_len + 1] = sep_id
                seq[a_len + 2:n - 1] = tokens[b_start:b_start + b_len]
                seq[n - 1] = sep_id
                row = rows[written]
                row[0], row[1], row[2], row[3] = a_start, a_len, b_start, b_len
                row[4], row[5] = is_random_next, target
                row[6], p = _mask(state, p, seq, n, a_len, num_to_predict[n], general, wwm,
                                  per_word, cls_id, sep_id, mask_id, random_ids, is_subword,
                                  positions[written], new_ids[written], scratch, counts)
                written += 1
                chunk_first = i + 1
            i += 1
    state[_N] = p
    return written, short


@numba.njit(cache=True, nogil=True)
def _fill(rows, positions, new_ids, order, tokens, max_seq_length, cls_id, sep_id, input_ids,
          input_mask, segment_ids, masked_positions, masked_ids, weights, labels):
    """Rows order[0], order[1], ... of the instance table -> padded feature arrays (zeroed by
    the caller)."""
    for i in range(order.shape[0]):
        r = order[i]
        a_start, a_len, b_start, b_len = rows[r, 0], rows[r, 1], rows[r, 2], rows[r, 3]
        n = a_len + b_len + 3
        ids = input_ids[i]
        ids[0] = cls_id
        ids[1:a_len + 1] = tokens[a_start:a_start + a_len]
        ids[a_len + 1] = sep_id
        ids[a_len + 2:n - 1] = tokens[b_start:b_start + b_len]
        ids[n - 1] = sep_id
        input_mask[i, :n] = 1
        segment_ids[i, a_len + 2:n] = 1
        for k in range(rows[r, 6]):
            p = positions[r, k]
            masked_ids[i, k] = ids[p]  # (positions are distinct: ids[p] is still the original)
            ids[p] = new_ids[r, k]
            masked_positions[i, k] = p
            weights[i, k] = 1.0
        labels[i, 0] = rows[r, 4]


def _num_to_predict_table(options: inst.InstanceOptions) -> np.ndarray:
    """num_to_predict(length) for every length (Python's round, exactly)."""
    return np.array([inst.num_to_predict(n, options)
                     for n in range(options.max_seq_length + 1)], np.int64)


@dataclasses.dataclass(frozen=True)
class InstanceTable:
    """A pool's instances before padding, as compact as the draw-exact order allows.

    The original shuffles all of a pool's instances at the end, so every instance must be
    known before the first is written: this is what is held. rows: int32 [n, 7] (int64 for
    pools of 2**31 tokens or more) in the order made (A start, A length, B start, B length
    in `tokens`, is_random_next, target length, number masked); positions: uint8 [n,
    max_predictions_per_seq] (uint16 above 256 tokens a sequence), the sorted masked
    positions; new_ids: uint16 [n, max_predictions_per_seq] (int32 for vocabularies above
    65536 ids), what each masked position holds instead (the original ids are the tokens
    there); the first rows[:, 6] entries of each row are used. tokens: int32, the pool's
    segments back to back. order: int64 [n], the final order (instance i of the output is
    row order[i]). mask_counts: int64 [2], masked positions that became [MASK] / kept their
    id. About 28 + 3 * max_predictions_per_seq bytes an instance (88 at the defaults).
    """

    rows: np.ndarray
    positions: np.ndarray
    new_ids: np.ndarray
    tokens: np.ndarray
    order: np.ndarray
    mask_counts: np.ndarray

    def __len__(self) -> int:
        return len(self.order)


def _unsigned_for(bound: int) -> type:
    """The smallest unsigned dtype holding 0..bound-1 (at most int32's range)."""
    for dtype in (np.uint8, np.uint16):
        if bound <= np.iinfo(dtype).max + 1:
            return dtype
    return np.int32


def create_table(documents: Sequence[inst.Document] | inst.Corpus, vocab: inst.VocabIds,
                 options: inst.InstanceOptions, dupe_factor: int, rng: random.Random,
                 counters: dict | None = None, group_segments: int = BATCH_SIZE
                 ) -> InstanceTable:
    """instances.create_training_instances as an InstanceTable, final shuffle included.

    The same instances, in the same order, as `create_training_instances(documents, vocab,
    options, dupe_factor, rng)`, and rng ends in the same state. rng must be a plain
    random.Random (a subclass may draw differently: use instances.py). counters, if given, gets
    "document_passes" and "short_targets" added. Segments must not be empty.
    """
    if type(rng) is not random.Random:
        raise TypeError("the compiled instances need a plain random.Random (its draws are "
                        "reproduced); use data_prep.pretraining.instances for a subclass")
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}")
    state, rest = _state_from(rng)
    corpus = inst.Corpus.of(documents)
    num_docs = len(corpus.doc_start)
    random_ids, is_subword = _vocab_arrays(vocab)
    random_ids = random_ids.astype(np.int64)
    if num_docs >= 2**32 or len(random_ids) >= 2**32:
        raise ValueError("more than 2**32 - 1 documents or vocabulary words in one shard")
    tokens = corpus.tokens.astype(np.int32, copy=False)
    docs = np.arange(num_docs, dtype=np.int64)
    _shuffle_array(state, docs)
    general = bool(options.do_whole_word_mask
                   or np.isin(tokens, (vocab.cls_id, vocab.sep_id)).any())
    per_word = options.do_whole_word_mask and options.wwm_mask_decision == "per_word"
    to_predict = _num_to_predict_table(options)
    seg_counts = corpus.doc_end - corpus.doc_start
    seq, pred = options.max_seq_length, options.max_predictions_per_seq
    id_bound = max(len(is_subword), vocab.mask_id + 1, int(random_ids.max(initial=0)) + 1,
                   int(tokens.max(initial=0)) + 1)
    # A pass over a document makes at most one instance per segment: the arrays are sized for
    # that and filled from the front. np.empty does not touch them, so the unused rest never
    # becomes resident memory.
    capacity = dupe_factor * int(seg_counts.sum())
    rows = np.empty((capacity, 7), np.int32 if len(tokens) < 2**31 - seq else np.int64)
    positions = np.empty((capacity, pred), _unsigned_for(seq))
    new_ids = np.empty((capacity, pred), _unsigned_for(id_bound))
    mask_counts = np.zeros(2, np.int64)
    short, used = 0, 0
    # Documents are processed in groups of about group_segments segments (a kernel call each).
    group_ends = np.searchsorted(np.cumsum(seg_counts[docs]),
                                 np.arange(group_segments, seg_counts.sum() + group_segments,
                                           group_segments), "left") + 1
    bounds = np.unique(np.concatenate([[0], np.minimum(group_ends, num_docs)]))
    for _ in range(dupe_factor):
        for first, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            room = used + int(seg_counts[docs[first:stop]].sum())
            written, group_short = _pass(
                state, tokens, corpus.seg_cum, corpus.doc_start, corpus.doc_end, docs, first,
                stop, seq, options.short_seq_prob, to_predict, general,
                options.do_whole_word_mask, per_word, vocab.cls_id, vocab.sep_id,
                vocab.mask_id, random_ids, is_subword, rows[used:room], positions[used:room],
                new_ids[used:room], mask_counts)
            if written < 0:
                raise AssertionError("empty segment after truncation")
            used += written
            short += group_short
    order = np.arange(used, dtype=np.int64)
    _shuffle_array(state, order)  # the original's final rng.shuffle(instances)
    _give_back(rng, state, rest)
    if counters is not None:
        counters["document_passes"] = counters.get("document_passes", 0) + dupe_factor * num_docs
        counters["short_targets"] = counters.get("short_targets", 0) + short
    return InstanceTable(rows[:used], positions[:used], new_ids[:used], tokens, order,
                         mask_counts)


def padded_batch(table: InstanceTable, start: int, stop: int, vocab: inst.VocabIds,
                 options: inst.InstanceOptions) -> InstanceBatch:
    """Rows start..stop-1 of a table as padded feature arrays (data_prep.files.tfrecords schema)."""
    n, seq, pred = stop - start, options.max_seq_length, options.max_predictions_per_seq
    features = {
        "input_ids": np.zeros((n, seq), np.int32),
        "input_mask": np.zeros((n, seq), np.int32),
        "segment_ids": np.zeros((n, seq), np.int32),
        "masked_lm_positions": np.zeros((n, pred), np.int32),
        "masked_lm_ids": np.zeros((n, pred), np.int32),
        "masked_lm_weights": np.zeros((n, pred), np.float32),
        "next_sentence_labels": np.zeros((n, 1), np.int32),
    }
    order = table.order[start:stop]
    _fill(table.rows, table.positions, table.new_ids, order, table.tokens, seq, vocab.cls_id,
          vocab.sep_id, *features.values())
    return InstanceBatch(features, table.rows[order, 5].astype(np.int64))


def iter_instance_batches(documents: Sequence[inst.Document] | inst.Corpus,
                          vocab: inst.VocabIds,
                          options: inst.InstanceOptions, dupe_factor: int, rng: random.Random,
                          counters: dict | None = None,
                          batch_size: int = BATCH_SIZE) -> Iterator[InstanceBatch]:
    """create_table's instances as padded batches of up to batch_size rows, in final order."""
    table = create_table(documents, vocab, options, dupe_factor, rng, counters, batch_size)
    for start in range(0, len(table), batch_size):
        yield padded_batch(table, start, min(start + batch_size, len(table)), vocab, options)


def warm_up() -> None:
    """Compiles (or loads from the cache) the kernels, on a tiny pool (see
    record_kernels.warm_up): once in a fork server instead of once per worker."""
    # (300 ids: new ids are uint16, as for a real vocabulary, so the shards' kernels are the
    # ones loaded)
    vocab = inst.VocabIds(2, 3, 4, tuple(range(300)), (False,) * 10 + (True,) * 290)
    documents = [[[5, 6, 10], [7, 11]], [[8, 9]]]
    for whole_words in (False, True):
        options = inst.InstanceOptions(max_seq_length=8, max_predictions_per_seq=2,
                                       do_whole_word_mask=whole_words)
        create_table(documents, vocab, options, 1, random.Random(0))  # (what shards run)
