"""Sentence (pair) classification features, exactly as the original `run_classifier.py` makes them.

    [CLS] A [SEP] B [SEP]   segment ids 0 ... 0 1 ... 1, input_mask 1 on tokens, zero padding

Pairs are truncated one token at a time from the end of the longer side until they fit
`max_seq_length - 3` (ties shorten B); a single sentence is cut to `max_seq_length - 2`.

TFRecord schema (one tf.train.Example per example):
  input_ids, input_mask, segment_ids: int64 [max_seq_length]
  label_ids:                          int64 [1] (class id) or float [1] (regression)
  is_real_example:                    int64 [1] (0 for the padding examples appended so that
                                      eval/predict batches are full, as the original does for TPUs)
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from data_prep.tasks.glue_processors import InputExample
from data_prep.files.tfrecords import serialize_examples, write_tfrecord

_LOG = logging.getLogger("data_prep.tasks.classifier_features")

FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "label_ids", "is_real_example")


@dataclasses.dataclass(frozen=True)
class InputFeatures:
    """One example as model inputs (lists of int, each max_seq_length long) and its label."""

    input_ids: list[int]
    input_mask: list[int]
    segment_ids: list[int]
    label_id: int | float
    is_real_example: bool = True


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
    """Shortens the two lists in place until len(a) + len(b) <= max_length.

    Pops from the longer list (from B when they are equal length), so a short sentence keeps
    all its tokens, which matters more than the tail of a long one.
    """
    while len(tokens_a) + len(tokens_b) > max_length:
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def padding_features(max_seq_length: int, regression: bool = False) -> InputFeatures:
    """An all-zero example (is_real_example False) that fills the last eval/predict batch."""
    zeros = [0] * max_seq_length
    return InputFeatures(zeros, zeros, zeros, 0.0 if regression else 0, False)


def convert_example(example: InputExample, label_map: dict[str, int] | None,
                    max_seq_length: int, tokenizer) -> InputFeatures:
    """One example -> features.

    label_map: label name -> id; None for regression (the float label is kept).
    tokenizer: has `tokenize(text) -> list[str]` and `convert_tokens_to_ids(tokens)`.
    A test example (label None) gets label id 0 / 0.0. As the original, an empty text_b (or
    one that tokenizes to nothing) makes it a single-sentence example.
    """
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length must be >= 3, got {max_seq_length}.")
    tokens_a = tokenizer.tokenize(example.text_a)
    tokens_b = tokenizer.tokenize(example.text_b) if example.text_b else None
    if tokens_b:
        truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)  # [CLS], [SEP], [SEP]
    else:
        tokens_a = tokens_a[:max_seq_length - 2]  # [CLS], [SEP]
    tokens = ["[CLS]", *tokens_a, "[SEP]"]
    segment_ids = [0] * len(tokens)
    if tokens_b:
        tokens += [*tokens_b, "[SEP]"]
        segment_ids += [1] * (len(tokens_b) + 1)
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    padding = [0] * (max_seq_length - len(input_ids))
    if label_map is None:
        label_id: int | float = 0.0 if example.label is None else float(example.label)
    elif example.label is None:
        label_id = 0
    elif example.label in label_map:
        label_id = label_map[example.label]
    else:
        raise ValueError(f"{example.guid}: unknown label {example.label!r}; expected one of "
                         f"{list(label_map)}.")
    return InputFeatures(input_ids + padding, [1] * len(input_ids) + padding,
                         segment_ids + padding, label_id)


def features_to_arrays(features: Sequence[InputFeatures],
                       regression: bool) -> dict[str, np.ndarray]:
    """Stacks features: int64 [n, max_seq_length] x3, label_ids [n] (int64 or float32),
    is_real_example int64 [n]."""
    return {
        "input_ids": np.array([f.input_ids for f in features], np.int64),
        "input_mask": np.array([f.input_mask for f in features], np.int64),
        "segment_ids": np.array([f.segment_ids for f in features], np.int64),
        "label_ids": np.array([f.label_id for f in features],
                              np.float32 if regression else np.int64),
        "is_real_example": np.array([f.is_real_example for f in features], np.int64),
    }


def _records(examples: Iterable[InputExample], label_map, max_seq_length: int, tokenizer,
             regression: bool, num_padding: int, chunk: int = 4096):
    """Serialized Examples, tokenizing and serializing `chunk` examples at a time."""
    batch: list[InputFeatures] = []
    done = 0
    for example in examples:
        batch.append(convert_example(example, label_map, max_seq_length, tokenizer))
        if len(batch) == chunk:
            yield from serialize_examples(features_to_arrays(batch, regression))
            done += len(batch)
            batch = []
            if done % (chunk * 5) == 0:
                _LOG.info("Converted %d examples.", done)
    batch.extend(padding_features(max_seq_length, regression) for _ in range(num_padding))
    if batch:
        yield from serialize_examples(features_to_arrays(batch, regression))


def write_features(path: str, examples: Sequence[InputExample], labels: Sequence[str],
                   max_seq_length: int, tokenizer, pad_to_multiple: int = 1,
                   before_commit: Callable[[], None] | None = None) -> tuple[int, int]:
    """Converts `examples` and writes them to the TFRecord `path` atomically.

    labels: the task's label names in id order (empty = regression).
    pad_to_multiple: appends padding examples (is_real_example 0) until the count is a
      multiple of it (the eval/predict batch size), so every batch is full.
    Returns (records written, real examples).
    """
    label_map = {label: i for i, label in enumerate(labels)} if labels else None
    num_padding = -len(examples) % max(pad_to_multiple, 1)
    written = write_tfrecord(
        path, _records(examples, label_map, max_seq_length, tokenizer, label_map is None,
                       num_padding), before_commit=before_commit)
    return written, len(examples)


def feature_spec(max_seq_length: int, regression: bool) -> dict[str, tf.io.FixedLenFeature]:
    seq = [max_seq_length]
    return {
        "input_ids": tf.io.FixedLenFeature(seq, tf.int64),
        "input_mask": tf.io.FixedLenFeature(seq, tf.int64),
        "segment_ids": tf.io.FixedLenFeature(seq, tf.int64),
        "label_ids": tf.io.FixedLenFeature([1], tf.float32 if regression else tf.int64),
        "is_real_example": tf.io.FixedLenFeature([1], tf.int64),
    }


def parse_classifier_examples(serialized: tf.Tensor, max_seq_length: int,
                              regression: bool) -> dict[str, tf.Tensor]:
    """[batch] serialized Examples -> int32 input_ids/input_mask/segment_ids [batch, seq],
    label_ids [batch] (int32, or float32 for regression), is_real_example int32 [batch]."""
    parsed = tf.io.parse_example(serialized, feature_spec(max_seq_length, regression))
    out = {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v for k, v in parsed.items()}
    out["label_ids"] = tf.reshape(out["label_ids"], [-1])
    out["is_real_example"] = tf.reshape(out["is_real_example"], [-1])
    return out
