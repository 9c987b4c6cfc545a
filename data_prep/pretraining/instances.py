"""Next-sentence pairs and masked-LM instances: the original BERT algorithm on token ids.

Pure functions, no I/O, no flags. Everything random comes from one `random.Random`, and the
ORDER of the random draws is the spec: given the same generator state, the same documents (as
token strings, here mapped to ids) and the same vocabulary word list, `create_training_instances`
returns exactly the instances of google-research/bert's create_pretraining_data.py:

  1. rng.shuffle(documents)
  2. for each of dupe_factor passes, for each document: create_instances_from_document
     (one target length per document: max_seq_length - 3, or with prob short_seq_prob
     randint(2, max_seq_length - 3); chunk segments up to the target; A = the first
     randint(1, len(chunk) - 1) segments; B = the rest, or with prob 0.5 (always for a
     one-segment chunk) a random run of segments from another document, giving the unused
     segments back; truncate_seq_pair; [CLS] A [SEP] B [SEP]; masking)
  3. rng.shuffle(instances)

Masking: candidates are all positions but [CLS]/[SEP] (with whole-word masking a "##" piece joins
the previous candidate, even across [SEP], as in the original); shuffle; take candidates while
they fit in num_to_predict = min(max_predictions_per_seq, max(1, round(len * masked_lm_prob)));
each chosen piece is [MASK] with prob 0.8, else kept with prob 0.5, else a random vocabulary
word.  `wwm_mask_decision="per_word"` (not in the original) makes that 80/10/10 draw once per
whole word, so a word is masked, kept or randomised as a unit; the default "per_piece" draws
once per word piece like the original.

Speed: tokens are ints, candidate lists are built from the segment layout, and the shuffle /
randint draws are inlined on `rng.getrandbits` exactly as CPython's `random.Random` makes them
(`_randbelow_with_getrandbits`); `_Draws` checks that equivalence at run time and otherwise
falls back to the generator's own methods.
"""
from __future__ import annotations

import dataclasses
import random
from itertools import chain
from typing import Iterator, Mapping, Sequence

import numpy as np

WWM_MASK_DECISIONS = ("per_piece", "per_word")
REQUIRED_TOKENS = ("[CLS]", "[SEP]", "[MASK]")

Document = Sequence[Sequence[int]]  # segments (sentences) of token ids


@dataclasses.dataclass(slots=True)
class TrainingInstance:
    """One pretraining example before padding.

    tokens: [len] int ids of `[CLS] A [SEP] B [SEP]` after masking, len <= max_seq_length.
    num_a: len(A); segment ids are 0 for the first num_a + 2 tokens and 1 after.
    masked_lm_positions: [num_masked] sorted int positions into tokens.
    masked_lm_ids: [num_masked] int ids of the original tokens at those positions.
    is_random_next: True when B was drawn from another document (NSP label 1).
    target_seq_length: the length the pair was built towards (< max_seq_length - 3 for a
      short-sequence document); kept for statistics.
    """

    tokens: list[int]
    num_a: int
    masked_lm_positions: list[int]
    masked_lm_ids: list[int]
    is_random_next: bool
    target_seq_length: int

    @property
    def segment_ids(self) -> list[int]:
        return [0] * (self.num_a + 2) + [1] * (len(self.tokens) - self.num_a - 2)


@dataclasses.dataclass(frozen=True)
class VocabIds:
    """The ids the algorithm needs from a vocabulary.

    random_token_ids: ids in the vocabulary's word-list order (`list(vocab.keys())` in the
      original); a random replacement is random_token_ids[randint(0, len - 1)].
    is_subword: is_subword[id] is True for "##" pieces (whole-word masking).
    """

    cls_id: int
    sep_id: int
    mask_id: int
    random_token_ids: tuple[int, ...]
    is_subword: tuple[bool, ...]

    @classmethod
    def from_vocab(cls, vocab: Mapping[str, int], source: str = "vocabulary") -> "VocabIds":
        missing = [t for t in REQUIRED_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"{source} lacks required token(s) {', '.join(missing)}; "
                             "a BERT vocabulary needs [CLS], [SEP] and [MASK]")
        ids = tuple(vocab.values())
        size = max(ids) + 1
        if ids == tuple(range(size)):  # load_vocab's ids: one comprehension in file order
            is_subword = [word.startswith("##") for word in vocab]
        else:
            is_subword = [False] * size
            for word, index in vocab.items():
                if word.startswith("##"):
                    is_subword[index] = True
        return cls(vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"], ids, tuple(is_subword))


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Documents as flat arrays (what the compiled and vectorized engines work on).

    tokens: int32 [num_tokens], all segments back to back; seg_cum: int64 [num_segments + 1]
    token offsets of the segments; doc_start / doc_end: int64 [num_documents] segment ranges.
    Every document has a segment and every segment a token.
    """

    tokens: np.ndarray
    seg_cum: np.ndarray
    doc_start: np.ndarray
    doc_end: np.ndarray

    @classmethod
    def from_documents(cls, documents: Sequence[Document]) -> "Corpus":
        """Nested documents -> Corpus; empty documents are dropped, empty segments refused."""
        documents = [d for d in documents if len(d)]
        seg_lengths = np.fromiter((len(s) for d in documents for s in d), np.int64)
        if seg_lengths.size and seg_lengths.min() < 1:
            raise ValueError("empty segment: a document's segments must hold tokens")
        seg_cum = np.zeros(len(seg_lengths) + 1, np.int64)
        np.cumsum(seg_lengths, out=seg_cum[1:])
        tokens = np.fromiter(chain.from_iterable(chain.from_iterable(documents)), np.int32,
                             int(seg_cum[-1]))
        doc_end = np.cumsum(np.fromiter((len(d) for d in documents), np.int64,
                                        len(documents)))
        doc_start = doc_end - np.fromiter((len(d) for d in documents), np.int64,
                                          len(documents))
        return cls(tokens, seg_cum, doc_start, doc_end)

    @classmethod
    def of(cls, documents: "Sequence[Document] | Corpus") -> "Corpus":
        return documents if isinstance(documents, Corpus) else cls.from_documents(documents)

    def documents(self) -> list[list[list[int]]]:
        """Back to nested lists: documents -> segments -> token ids."""
        tokens, seg_cum = self.tokens.tolist(), self.seg_cum.tolist()
        return [[tokens[seg_cum[k]:seg_cum[k + 1]] for k in range(start, end)]
                for start, end in zip(self.doc_start.tolist(), self.doc_end.tolist())]


@dataclasses.dataclass(frozen=True)
class InstanceOptions:
    """The original flags that shape instances (same names and defaults)."""

    max_seq_length: int = 128
    short_seq_prob: float = 0.1
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    do_whole_word_mask: bool = False
    wwm_mask_decision: str = "per_piece"

    def __post_init__(self):
        validate_options(self)


def validate_options(o: InstanceOptions) -> None:
    """Raises ValueError (one line, naming the flag) for settings the algorithm cannot honour."""
    if o.max_seq_length < 5:  # [CLS] a [SEP] b [SEP]: truncation needs 2 free tokens.
        raise ValueError(f"max_seq_length must be >= 5, got {o.max_seq_length}")
    if o.max_predictions_per_seq < 1:
        raise ValueError(f"max_predictions_per_seq must be >= 1, got {o.max_predictions_per_seq}")
    if not 0.0 < o.masked_lm_prob <= 1.0:
        raise ValueError(f"masked_lm_prob must be in (0, 1], got {o.masked_lm_prob}")
    if not 0.0 <= o.short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob must be in [0, 1], got {o.short_seq_prob}")
    if o.wwm_mask_decision not in WWM_MASK_DECISIONS:
        raise ValueError(f"wwm_mask_decision must be one of {WWM_MASK_DECISIONS}, "
                         f"got {o.wwm_mask_decision!r}")


def num_to_predict(length: int, options: InstanceOptions) -> int:
    """The original's masked-token count for a sequence of `length` tokens."""
    return min(options.max_predictions_per_seq,
               max(1, int(round(length * options.masked_lm_prob))))


def mask_cap_length(options: InstanceOptions) -> int | None:
    """Shortest length whose masked count max_predictions_per_seq caps, or None if none is."""
    for length in range(1, options.max_seq_length + 1):
        if int(round(length * options.masked_lm_prob)) > options.max_predictions_per_seq:
            return length
    return None


class _Draws:
    """rng.random / randbelow / shuffle with the exact draws of CPython's random.Random."""

    def __init__(self, rng: random.Random):
        self.random = rng.random
        if type(rng) is random.Random and _inlined_draws_match():
            self.randbelow, self.shuffle = _inlined_draws(rng)
        else:  # A subclass may override its draws: use them, slower.
            self.randbelow = lambda n: rng.randint(0, n - 1)
            self.shuffle = rng.shuffle


def _inlined_draws(rng: random.Random):
    """randbelow(n) == rng.randint(0, n - 1) and shuffle(x) == rng.shuffle(x), without the
    per-draw Python calls of random.py (they are most of the masking time)."""
    getrandbits = rng.getrandbits

    def randbelow(n: int) -> int:
        k = n.bit_length()
        r = getrandbits(k)
        while r >= n:
            r = getrandbits(k)
        return r

    def shuffle(x: list) -> None:
        i = len(x) - 1
        while i > 0:  # one inner loop per bit width k = (i + 1).bit_length()
            k = (i + 1).bit_length()
            lowest = (1 << (k - 1)) - 1  # the smallest i of this width
            for i in range(i, lowest - 1, -1):
                j = getrandbits(k)
                while j > i:
                    j = getrandbits(k)
                x[i], x[j] = x[j], x[i]
            i = lowest - 1

    return randbelow, shuffle


_MATCH: list[bool] = []


def _inlined_draws_match() -> bool:
    """Checks once that the inlined draws equal this Python's random.Random methods."""
    if not _MATCH:
        reference, inlined = random.Random(20181031), random.Random(20181031)
        randbelow, shuffle = _inlined_draws(inlined)
        sizes = (1, 2, 3, 5, 100, 30522, 2**31 + 1)
        expected, got = list(range(300)), list(range(300))
        reference.shuffle(expected)
        shuffle(got)
        expected += [reference.randint(0, n - 1) for n in sizes]
        got += [randbelow(n) for n in sizes]
        _MATCH.append(expected == got and reference.random() == inlined.random())
    return _MATCH[0]


def create_training_instances(documents: Sequence[Document], vocab: VocabIds,
                              options: InstanceOptions, dupe_factor: int,
                              rng: random.Random) -> list[TrainingInstance]:
    """All instances of a document pool, in the original's order of draws.

    documents: documents -> segments -> int token ids; empty documents are dropped first (the
      original removes them before shuffling). Not modified.
    Returns the shuffled instances (about dupe_factor * tokens / max_seq_length of them).
    """
    instances = list(iter_training_instances(documents, vocab, options, dupe_factor, rng))
    shuffle_like_original(instances, rng)
    return instances


def iter_training_instances(documents: Sequence[Document], vocab: VocabIds,
                            options: InstanceOptions, dupe_factor: int, rng: random.Random,
                            counters: dict | None = None) -> Iterator[TrainingInstance]:
    """create_training_instances before its final shuffle, as a stream.

    Lets a caller encode instances as they come (memory: bytes, not objects) and then apply
    `shuffle_like_original` to the encoded list: the final shuffle's draws depend only on the
    list's length, so the result is the same.  `counters`, if given, gets "document_passes" and
    "short_targets" (passes whose target length is below max_seq_length - 3) added once the
    stream is exhausted.
    """
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}")
    draws = _Draws(rng)
    all_documents = [d for d in documents if d]
    draws.shuffle(all_documents)
    builder = _InstanceBuilder(all_documents, vocab, options, draws)
    passes = short = 0
    max_num_tokens = options.max_seq_length - 3
    for _ in range(dupe_factor):
        for document_index in range(len(all_documents)):
            batch: list[TrainingInstance] = []
            target = builder.from_document(document_index, batch)
            passes += 1
            short += target < max_num_tokens
            yield from batch
    if counters is not None:
        counters["document_passes"] = counters.get("document_passes", 0) + passes
        counters["short_targets"] = counters.get("short_targets", 0) + short


def shuffle_like_original(items: list, rng: random.Random) -> None:
    """The original's final rng.shuffle(instances), on any list of the same length."""
    _Draws(rng).shuffle(items)


class _InstanceBuilder:
    """create_instances_from_document + truncate_seq_pair + create_masked_lm_predictions."""

    def __init__(self, documents, vocab: VocabIds, options: InstanceOptions, draws: _Draws):
        self.documents = documents
        self.vocab = vocab
        self.options = options
        self.draws = draws
        specials = {vocab.cls_id, vocab.sep_id}
        # Text that tokenizes to [CLS]/[SEP] is not masked either; only then scan for them.
        self.scan_specials = not all(specials.isdisjoint(seg) for doc in documents for seg in doc)

    def from_document(self, document_index: int, out: list[TrainingInstance]) -> int:
        """Appends the instances of one document to `out` (one pass of one dupe); returns the
        pass's target length."""
        documents, draws = self.documents, self.draws
        random, randbelow = draws.random, draws.randbelow
        document = documents[document_index]
        max_num_tokens = self.options.max_seq_length - 3
        target_seq_length = max_num_tokens
        if random() < self.options.short_seq_prob:
            target_seq_length = 2 + randbelow(max_num_tokens - 1)  # randint(2, max_num_tokens)

        current_chunk: list[Sequence[int]] = []
        current_length = 0
        i = 0
        while i < len(document):
            segment = document[i]
            current_chunk.append(segment)
            current_length += len(segment)
            if i == len(document) - 1 or current_length >= target_seq_length:
                if current_chunk:
                    a_end = 1
                    if len(current_chunk) >= 2:
                        a_end = 1 + randbelow(len(current_chunk) - 1)
                    tokens_a: list[int] = []
                    for j in range(a_end):
                        tokens_a.extend(current_chunk[j])
                    tokens_b: list[int] = []
                    if len(current_chunk) == 1 or random() < 0.5:
                        is_random_next = True
                        target_b_length = target_seq_length - len(tokens_a)
                        for _ in range(10):
                            random_document_index = randbelow(len(documents))
                            if random_document_index != document_index:
                                break
                        random_document = documents[random_document_index]
                        for j in range(randbelow(len(random_document)), len(random_document)):
                            tokens_b.extend(random_document[j])
                            if len(tokens_b) >= target_b_length:
                                break
                        i -= len(current_chunk) - a_end  # give back the unused segments
                    else:
                        is_random_next = False
                        for j in range(a_end, len(current_chunk)):
                            tokens_b.extend(current_chunk[j])
                    tokens_a, tokens_b = self._truncate_seq_pair(tokens_a, tokens_b,
                                                                 max_num_tokens)
                    out.append(self._instance(tokens_a, tokens_b, is_random_next,
                                              target_seq_length))
                current_chunk = []
                current_length = 0
            i += 1
        return target_seq_length

    def _truncate_seq_pair(self, tokens_a: list[int], tokens_b: list[int],
                           max_num_tokens: int) -> tuple[list[int], list[int]]:
        """The original's pop-one-token-at-a-time loop, counting pops instead of popping: each
        step trims the longer list (B on ties) from the front or back by one rng.random()."""
        random = self.draws.random
        len_a, len_b = len(tokens_a), len(tokens_b)
        excess = len_a + len_b - max_num_tokens
        if excess <= 0:
            return tokens_a, tokens_b
        front_a = front_b = 0
        for _ in range(excess):
            if len_a > len_b:
                len_a -= 1
                if random() < 0.5:
                    front_a += 1
            else:
                len_b -= 1
                if random() < 0.5:
                    front_b += 1
        return (tokens_a[front_a:front_a + len_a], tokens_b[front_b:front_b + len_b])

    def _instance(self, tokens_a: list[int], tokens_b: list[int], is_random_next: bool,
                  target_seq_length: int) -> TrainingInstance:
        if not tokens_a or not tokens_b:  # Unreachable for max_seq_length >= 5.
            raise AssertionError("empty segment after truncation")
        vocab = self.vocab
        num_a = len(tokens_a)
        tokens = [vocab.cls_id, *tokens_a, vocab.sep_id, *tokens_b, vocab.sep_id]
        if self.options.do_whole_word_mask or self.scan_specials:
            positions, labels = self._mask_words(tokens)
        else:
            positions, labels = self._mask_pieces(tokens, num_a)
        return TrainingInstance(tokens, num_a, positions, labels, is_random_next,
                                target_seq_length)

    def _mask_pieces(self, tokens: list[int], num_a: int) -> tuple[list[int], list[int]]:
        """Masking without whole words: every candidate is one position."""
        n = len(tokens)
        candidates = list(range(1, num_a + 1))
        candidates.extend(range(num_a + 2, n - 1))
        draws = self.draws
        draws.shuffle(candidates)
        chosen = candidates[:num_to_predict(n, self.options)]
        original = [tokens[index] for index in chosen]
        random, randbelow = draws.random, draws.randbelow
        mask_id, random_ids = self.vocab.mask_id, self.vocab.random_token_ids
        num_random_ids = len(random_ids)
        for index in chosen:  # inlined _replace: this loop runs ~20 times per instance
            if random() < 0.8:
                tokens[index] = mask_id
            elif random() < 0.5:
                pass
            else:
                tokens[index] = random_ids[randbelow(num_random_ids)]
        order = sorted(range(len(chosen)), key=chosen.__getitem__)
        return [chosen[k] for k in order], [original[k] for k in order]

    def _replace(self, tokens: list[int], index: int) -> None:
        random = self.draws.random
        if random() < 0.8:
            tokens[index] = self.vocab.mask_id
        elif random() < 0.5:
            pass  # keep the original token
        else:
            ids = self.vocab.random_token_ids
            tokens[index] = ids[self.draws.randbelow(len(ids))]

    def _mask_words(self, tokens: list[int]) -> tuple[list[int], list[int]]:
        """General masking: scans for [CLS]/[SEP] and groups "##" pieces when whole-word."""
        vocab, options = self.vocab, self.options
        is_subword = vocab.is_subword
        wwm = options.do_whole_word_mask
        candidates: list[list[int]] = []
        for i, token in enumerate(tokens):
            if token == vocab.cls_id or token == vocab.sep_id:
                continue
            if wwm and candidates and token < len(is_subword) and is_subword[token]:
                candidates[-1].append(i)
            else:
                candidates.append([i])
        self.draws.shuffle(candidates)
        limit = num_to_predict(len(tokens), options)
        per_word = wwm and options.wwm_mask_decision == "per_word"
        original = list(tokens)
        chosen: list[int] = []
        # Index sets are disjoint, so the original's "already covered" test never fires.
        for index_set in candidates:
            if len(chosen) >= limit:
                break
            if len(chosen) + len(index_set) > limit:
                continue
            chosen.extend(index_set)
            if per_word:
                self._replace_word(tokens, index_set)
            else:
                for index in index_set:
                    self._replace(tokens, index)
        chosen.sort()
        return chosen, [original[p] for p in chosen]

    def _replace_word(self, tokens: list[int], index_set: list[int]) -> None:
        """per_word: one 80/10/10 decision for the whole word; random picks one id per piece."""
        random = self.draws.random
        if random() < 0.8:
            for index in index_set:
                tokens[index] = self.vocab.mask_id
        elif random() < 0.5:
            pass
        else:
            ids = self.vocab.random_token_ids
            for index in index_set:
                tokens[index] = ids[self.draws.randbelow(len(ids))]
