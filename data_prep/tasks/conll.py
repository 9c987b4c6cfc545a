"""CoNLL-style tagging data -> BERT features (label on the first word piece of each word).

Input format (CoNLL-2003 and most NER sets): one token per line, the word in the first column
and its tag in the last, a blank line between sentences, `-DOCSTART-` lines ignored. Tags are
IOB2 (`B-PER`, `I-PER`, `O`); IOB1 files (an entity may start with `I-`) are read as they are
and scored by the same chunk rules as conlleval, which treat such an `I-` as a start.

Features (TFRecord, zero padded to max_seq_length): int `input_ids, input_mask, segment_ids`,
`label_ids` (the tag id on the first piece of each word, 0 elsewhere) and `label_weights`
(1.0 on first pieces, 0.0 on [CLS], [SEP], continuation pieces and padding), as the BERT
paper's NER setup: only the first piece of a word is classified.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from data_prep.files.tfrecords import serialize_examples, write_tfrecord


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
    """One sentence: words and their tags (same length); `line` is where it starts (1-based)."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    line: int = 0


def read_conll(path: str) -> list[TaggedSentence]:
    """Reads a CoNLL file. Raises ValueError naming file and line for a line without a tag."""
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    start = 1
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("-DOCSTART-"):
                if words:
                    sentences.append(TaggedSentence(tuple(words), tuple(tags), start))
                words, tags = [], []
                start = number + 1
                continue
            columns = line.split()
            if len(columns) < 2:
                raise ValueError(f"{path}:{number}: expected 'word ... tag', got {line!r}")
            tag = columns[-1]
            if tag != "O" and not (len(tag) > 2 and tag[:2] in ("B-", "I-", "E-", "S-")):
                raise ValueError(f"{path}:{number}: tag {tag!r} is not O or B-/I-<type>")
            words.append(columns[0])
            tags.append(tag)
    if words:
        sentences.append(TaggedSentence(tuple(words), tuple(tags), start))
    if not sentences:
        raise ValueError(f"{path}: no sentences found")
    return sentences


def label_list(sentences: Sequence[TaggedSentence]) -> list[str]:
    """The tag set in a stable order: 'O' first, then the others sorted."""
    tags = {t for s in sentences for t in s.tags}
    return ["O"] + sorted(tags - {"O"})


def convert_sentence(sentence: TaggedSentence, tokenizer, label_map: dict[str, int],
                     max_seq_length: int, where: str = "") -> dict[str, np.ndarray]:
    """One sentence -> feature arrays [max_seq_length]; words beyond the length are dropped
    (their tags are then absent from the features; the caller counts truncations)."""
    ids = [tokenizer.vocab["[CLS]"]]
    labels, weights = [0], [0.0]
    for word, tag in zip(sentence.words, sentence.tags):
        if tag not in label_map:
            raise ValueError(f"{where}: unknown tag {tag!r} (known: {sorted(label_map)})")
        pieces = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))
        if not pieces:  # a word of only deleted characters still needs its label slot
            pieces = [tokenizer.vocab["[UNK]"]]
        if len(ids) + len(pieces) > max_seq_length - 1:
            break
        ids.extend(pieces)
        labels.extend([label_map[tag]] + [0] * (len(pieces) - 1))
        weights.extend([1.0] + [0.0] * (len(pieces) - 1))
    ids.append(tokenizer.vocab["[SEP]"])
    labels.append(0)
    weights.append(0.0)
    pad = max_seq_length - len(ids)
    return {"input_ids": np.array(ids + [0] * pad, np.int64),
            "input_mask": np.array([1] * len(ids) + [0] * pad, np.int64),
            "segment_ids": np.zeros(max_seq_length, np.int64),
            "label_ids": np.array(labels + [0] * pad, np.int64),
            "label_weights": np.array(weights + [0.0] * pad, np.float32)}


def _records(sentences, tokenizer, label_map, max_seq_length, path) -> Iterator[bytes]:
    for i in range(0, len(sentences), 256):
        rows = [convert_sentence(s, tokenizer, label_map, max_seq_length,
                                 f"{path}:{s.line}") for s in sentences[i:i + 256]]
        yield from serialize_examples({k: np.stack([r[k] for r in rows]) for k in rows[0]})


def write_tagging_features(output_path: str, sentences: Sequence[TaggedSentence], tokenizer,
                           labels: Sequence[str], max_seq_length: int,
                           source: str = "") -> int:
    """Writes the features of `sentences` to `output_path` atomically; returns the count."""
    label_map = {label: i for i, label in enumerate(labels)}
    return write_tfrecord(output_path,
                          _records(list(sentences), tokenizer, label_map, max_seq_length,
                                   source or output_path))


def parse_tagging_examples(serialized: tf.Tensor, max_seq_length: int) -> dict[str, tf.Tensor]:
    """[batch] serialized Examples -> int32 ids/mask/segments/labels, float32 label_weights."""
    spec = {k: tf.io.FixedLenFeature([max_seq_length], tf.int64)
            for k in ("input_ids", "input_mask", "segment_ids", "label_ids")}
    spec["label_weights"] = tf.io.FixedLenFeature([max_seq_length], tf.float32)
    parsed = tf.io.parse_example(serialized, spec)
    return {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v for k, v in parsed.items()}
