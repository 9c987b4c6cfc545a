"""SQuAD examples -> model features, exactly as the original run_squad makes them.

Each example becomes one feature per window ("doc span") of its WordPiece-tokenized context:

    [CLS] query [SEP] doc_span [SEP]   segment ids 0 ... 0 1 ... 1, zero padding

The query is cut to `max_query_length` tokens; windows hold at most
`max_seq_length - len(query) - 3` tokens and start `doc_stride` tokens apart (the last one
ends at the end of the context). A context token in several windows is "max context" in the
one where min(left context, right context) + 0.01 * window length is largest: only there may
a predicted answer start. Training positions point into the feature; 0/0 ([CLS]) when the
answer is not entirely inside the window, or the question is impossible (v2.0).

TFRecord schema (one tf.train.Example per feature, int64):
  unique_ids:                          [1] (from 1000000000 up; 0 marks a padding record)
  input_ids, input_mask, segment_ids:  [max_seq_length]
  start_positions, end_positions:      [1] (0 when not training)
  is_impossible:                       [1] (the example's flag, as the original writes it)
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import tensorflow as tf

from data_prep.tasks.squad_examples import SquadExample
from data_prep.files.tfrecords import serialize_examples, write_tfrecord

_LOG = logging.getLogger("data_prep.tasks.squad")

FIRST_UNIQUE_ID = 1000000000
FEATURE_NAMES = ("unique_ids", "input_ids", "input_mask", "segment_ids", "start_positions",
                 "end_positions", "is_impossible")
_SEQUENCE_FEATURES = ("input_ids", "input_mask", "segment_ids")


class DocSpan(NamedTuple):
    """A window of the tokenized context: `length` tokens from `start`."""

    start: int
    length: int


@dataclasses.dataclass
class SquadFeature:
    """One window of one example (unpadded; `features_to_arrays` pads).

    tokens: the WordPiece tokens, [CLS] query [SEP] context window [SEP].
    input_ids: int32 [len(tokens)]; segment_ids: int32 [len(tokens)] (0 query part, 1 window).
    token_to_orig_map: int32 [len(tokens)], the doc_tokens index (whitespace word) each window
      token comes from; -1 for [CLS], query and [SEP] tokens (the original's dict, as an array).
    token_is_max_context: bool [len(tokens)], True where this window is the token's max
      context (False outside the window).
    start_position / end_position: training targets in `tokens` (0/0: no answer here).
    """

    unique_id: int
    example_index: int
    doc_span_index: int
    tokens: list[str]
    input_ids: np.ndarray
    segment_ids: np.ndarray
    token_to_orig_map: np.ndarray
    token_is_max_context: np.ndarray
    start_position: int = 0
    end_position: int = 0
    is_impossible: bool = False


class _TokenizedDoc(NamedTuple):
    tokens: list[str]              # all sub-tokens of the context
    tok_to_orig_index: list[int]   # sub-token -> whitespace word
    orig_to_tok_index: list[int]   # whitespace word -> its first sub-token


def tokenize_doc(doc_tokens: Sequence[str], tokenizer) -> _TokenizedDoc:
    """Each whitespace word -> its sub-tokens, with the index maps both ways."""
    tokens: list[str] = []
    tok_to_orig_index: list[int] = []
    orig_to_tok_index: list[int] = []
    for i, word in enumerate(doc_tokens):
        orig_to_tok_index.append(len(tokens))
        for piece in tokenizer.tokenize(word):
            tok_to_orig_index.append(i)
            tokens.append(piece)
    return _TokenizedDoc(tokens, tok_to_orig_index, orig_to_tok_index)


def improve_answer_span(doc_tokens: Sequence[str], input_start: int, input_end: int,
                        tokenizer, orig_answer_text: str) -> tuple[int, int]:
    """The sub-token span within [input_start, input_end] that is exactly the tokenized answer.

    Answers are word-aligned, but a word can hold more than the answer: for "(1895-1943)."
    with answer "1895" the word span covers the whole word, while the tokenized answer is one
    sub-token inside it. The first (leftmost start, then longest) sub-span equal to the
    tokenized answer wins; none: the span is returned unchanged.
    """
    target = " ".join(tokenizer.tokenize(orig_answer_text))
    for new_start in range(input_start, input_end + 1):
        for new_end in range(input_end, new_start - 1, -1):
            if " ".join(doc_tokens[new_start:new_end + 1]) == target:
                return new_start, new_end
    return input_start, input_end


def make_doc_spans(num_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[DocSpan]:
    """Windows of at most `max_tokens_for_doc` tokens, starts `doc_stride` apart (or less when
    a window is shorter), the last one reaching the end. None for an empty context."""
    if max_tokens_for_doc <= 0 or doc_stride <= 0:
        raise ValueError(f"max_tokens_for_doc ({max_tokens_for_doc}) and doc_stride "
                         f"({doc_stride}) must be > 0.")
    spans: list[DocSpan] = []
    start = 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens_for_doc)
        spans.append(DocSpan(start, length))
        if start + length == num_tokens:
            break
        start += min(length, doc_stride)
    return spans


def check_is_max_context(doc_spans: Sequence[DocSpan], cur_span_index: int,
                         position: int) -> bool:
    """Whether window `cur_span_index` gives context token `position` its most context.

    Score = min(tokens left of it, tokens right of it) + 0.01 * window length; ties go to the
    earlier window. Scoring on the minimum prefers a window where the token is central.
    """
    best_score, best_index = None, None
    for index, span in enumerate(doc_spans):
        end = span.start + span.length - 1
        if position < span.start or position > end:
            continue
        score = min(position - span.start, end - position) + 0.01 * span.length
        if best_score is None or score > best_score:
            best_score, best_index = score, index
    return best_index == cur_span_index


def _answer_token_span(example: SquadExample, doc: _TokenizedDoc,
                       tokenizer) -> tuple[int, int]:
    """The training answer as an inclusive sub-token span of the whole context."""
    start = doc.orig_to_tok_index[example.start_position]
    if example.end_position < len(example.doc_tokens) - 1:
        end = doc.orig_to_tok_index[example.end_position + 1] - 1
    else:
        end = len(doc.tokens) - 1
    return improve_answer_span(doc.tokens, start, end, tokenizer, example.orig_answer_text)


def convert_examples_to_features(examples: Sequence[SquadExample], tokenizer,
                                 max_seq_length: int = 384, doc_stride: int = 128,
                                 max_query_length: int = 64, is_training: bool = False,
                                 first_unique_id: int = FIRST_UNIQUE_ID
                                 ) -> Iterator[SquadFeature]:
    """Features of every example, in order, unique ids counting up from `first_unique_id`.

    tokenizer: `tokenize(text) -> list[str]`, `convert_tokens_to_ids(tokens)`.
    is_training: examples carry answer positions (see `read_squad_examples`).
    """
    unique_id = first_unique_id
    docs: dict[int, tuple[list[str], _TokenizedDoc]] = {}
    for example_index, example in enumerate(examples):
        query = tokenizer.tokenize(example.question_text)[:max_query_length]
        # The questions of a paragraph share its doc_tokens list: tokenize it once (by
        # identity; the entry holds the list, so its id cannot be reused meanwhile).
        cached = docs.get(id(example.doc_tokens))
        if cached is None:
            cached = (example.doc_tokens, tokenize_doc(example.doc_tokens, tokenizer))
            docs[id(example.doc_tokens)] = cached
        doc = cached[1]
        answer = None
        if is_training and not example.is_impossible:
            answer = _answer_token_span(example, doc, tokenizer)
        room = max_seq_length - len(query) - 3  # [CLS], [SEP], [SEP]
        if room <= 0:
            raise ValueError(f"Question {example.qas_id}: max_seq_length ({max_seq_length}) "
                             f"leaves no room for context after {len(query)} query tokens; "
                             f"it must exceed max_query_length + 3.")
        spans = make_doc_spans(len(doc.tokens), room, doc_stride)
        for span_index, span in enumerate(spans):
            yield _window_feature(example, example_index, query, doc, spans, span_index,
                                  answer, is_training, unique_id, tokenizer)
            unique_id += 1


def _window_feature(example: SquadExample, example_index: int, query: list[str],
                    doc: _TokenizedDoc, spans: Sequence[DocSpan], span_index: int,
                    answer: tuple[int, int] | None, is_training: bool, unique_id: int,
                    tokenizer) -> SquadFeature:
    span = spans[span_index]
    window = range(span.start, span.start + span.length)
    tokens = ["[CLS]", *query, "[SEP]", *doc.tokens[span.start:span.start + span.length],
              "[SEP]"]
    doc_offset = len(query) + 2  # where the window starts in `tokens`
    token_to_orig = np.full(len(tokens), -1, np.int32)
    token_to_orig[doc_offset:doc_offset + span.length] = doc.tok_to_orig_index[
        span.start:span.start + span.length]
    is_max_context = np.zeros(len(tokens), bool)
    is_max_context[doc_offset:doc_offset + span.length] = [
        check_is_max_context(spans, span_index, position) for position in window]
    segment_ids = np.zeros(len(tokens), np.int32)
    segment_ids[doc_offset:] = 1

    start_position = end_position = 0
    if answer is not None:
        # A window that holds only part of the answer is trained to predict "no answer here".
        if span.start <= answer[0] and answer[1] <= window[-1]:
            start_position = answer[0] - span.start + doc_offset
            end_position = answer[1] - span.start + doc_offset
    return SquadFeature(
        unique_id=unique_id, example_index=example_index, doc_span_index=span_index,
        tokens=tokens, input_ids=np.asarray(tokenizer.convert_tokens_to_ids(tokens), np.int32),
        segment_ids=segment_ids, token_to_orig_map=token_to_orig,
        token_is_max_context=is_max_context, start_position=start_position,
        end_position=end_position, is_impossible=bool(is_training and example.is_impossible))


def features_to_arrays(features: Sequence[SquadFeature | None],
                       max_seq_length: int) -> dict[str, np.ndarray]:
    """Zero-padded int64 arrays of the TFRecord schema: [n] ids/positions/flags and
    [n, max_seq_length] inputs. A None feature is a padding record (unique id 0, all zeros)."""
    n = len(features)
    arrays = {name: np.zeros((n, max_seq_length) if name in _SEQUENCE_FEATURES else (n,),
                             np.int64) for name in FEATURE_NAMES}
    for row, feature in enumerate(features):
        if feature is None:
            continue
        length = len(feature.input_ids)
        arrays["unique_ids"][row] = feature.unique_id
        arrays["input_ids"][row, :length] = feature.input_ids
        arrays["input_mask"][row, :length] = 1
        arrays["segment_ids"][row, :length] = feature.segment_ids
        arrays["start_positions"][row] = feature.start_position
        arrays["end_positions"][row] = feature.end_position
        arrays["is_impossible"][row] = feature.is_impossible
    return arrays


def _records(features: Iterable[SquadFeature], max_seq_length: int, pad_to_multiple: int,
             kept: list | None, counts: list[int], chunk: int = 2048) -> Iterator[bytes]:
    batch: list[SquadFeature | None] = []
    for feature in features:
        if len(feature.tokens) > max_seq_length:
            raise ValueError(f"Feature {feature.unique_id} has {len(feature.tokens)} tokens, "
                             f"more than max_seq_length {max_seq_length}.")
        batch.append(feature)
        counts[0] += 1
        if kept is not None:
            kept.append(feature)
        if len(batch) == chunk:
            yield from serialize_examples(features_to_arrays(batch, max_seq_length))
            batch = []
            if counts[0] % (chunk * 10) == 0:
                _LOG.info("Converted %d features.", counts[0])
    batch.extend([None] * (-counts[0] % max(pad_to_multiple, 1)))
    if batch:
        yield from serialize_examples(features_to_arrays(batch, max_seq_length))


def write_features(path: str, features: Iterable[SquadFeature], max_seq_length: int,
                   pad_to_multiple: int = 1, keep: bool = False,
                   before_commit: Callable[[int, int], None] | None = None
                   ) -> tuple[int, int, list[SquadFeature] | None]:
    """Writes features to the TFRecord `path` atomically (streaming, in chunks).

    pad_to_multiple: padding records (unique id 0) are appended up to a multiple of it (the
      predict batch size), so that every batch is full.
    keep: also return the features (for post-processing predictions).
    before_commit(num_records, num_features): runs before the rename (e.g. a manifest).
    Returns (records written, real features, the features if `keep` else None).
    """
    kept: list[SquadFeature] | None = [] if keep else None
    counts = [0]
    records = _records(features, max_seq_length, pad_to_multiple, kept, counts)

    def commit() -> None:
        if before_commit is not None:
            before_commit(counts[0] + -counts[0] % max(pad_to_multiple, 1), counts[0])

    written = write_tfrecord(path, records, before_commit=commit)
    return written, counts[0], kept


def feature_spec(max_seq_length: int) -> dict[str, tf.io.FixedLenFeature]:
    return {name: tf.io.FixedLenFeature(
        [max_seq_length] if name in _SEQUENCE_FEATURES else [1], tf.int64)
        for name in FEATURE_NAMES}


def parse_squad_features(serialized: tf.Tensor, max_seq_length: int) -> dict[str, tf.Tensor]:
    """[batch] serialized Examples -> int32 `input_ids, input_mask, segment_ids`
    [batch, max_seq_length] and int32 `unique_ids, start_positions, end_positions,
    is_impossible` [batch]."""
    parsed = tf.io.parse_example(serialized, feature_spec(max_seq_length))
    return {name: tf.cast(value if name in _SEQUENCE_FEATURES else tf.reshape(value, [-1]),
                          tf.int32) for name, value in parsed.items()}
