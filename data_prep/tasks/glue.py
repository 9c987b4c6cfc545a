"""GLUE data for fine-tuning: examples (TSV or local TFDS), cached feature files, submissions.

    task = get_task("sst2")
    train = cached_features(task, "train", "glue_data/SST-2", "out/features", "vocab.txt",
                            do_lower_case=True, max_seq_length=128)
    ... train.path is a TFRecord of classifier features, train.num_examples real examples ...
    write_submission("out/SST-2.tsv", task, test_examples, predicted_ids)

Feature files are keyed by everything that changes their bytes (task, split, source file size
and mtime, vocab contents, casing, max_seq_length, padding), so a cache is reused only when it
is what would be written again, and a changed flag never silently reads stale features.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from typing import Sequence

import numpy as np

from data_prep.files.atomic_io import write_json, write_text
from data_prep.tasks.classifier_features import write_features
from data_prep.files.file_identity import file_fingerprint, file_sha256
from data_prep.tasks.glue_processors import (TASKS, GlueTask, InputExample, existing_split_path,
                                       get_task, read_examples, split_path)

_LOG = logging.getLogger("data_prep.tasks.glue")

# Bump when the feature bytes change for the same inputs (invalidates every cache).
FEATURES_VERSION = 1

__all__ = ["TASKS", "FeatureFile", "GlueTask", "InputExample", "cached_features", "get_task",
           "load_examples", "read_examples", "read_tfds_examples", "write_probabilities",
           "write_submission"]


@dataclasses.dataclass(frozen=True)
class FeatureFile:
    """A feature TFRecord: `num_records` records, of which the first `num_examples` are real
    (the rest is padding for full batches)."""

    path: str
    num_records: int
    num_examples: int


# --- examples ---------------------------------------------------------------------------------

# TFDS `glue/<config>` split names and text features (TFDS renames some GLUE columns).
_TFDS_SPLITS = {"train": "train", "dev": "validation", "test": "test",
                "dev_matched": "validation_matched", "dev_mismatched": "validation_mismatched",
                "test_matched": "test_matched", "test_mismatched": "test_mismatched"}
_TFDS_TEXTS = {"cola": ("sentence", None), "sst2": ("sentence", None),
               "mrpc": ("sentence1", "sentence2"), "stsb": ("sentence1", "sentence2"),
               "qqp": ("question1", "question2"), "mnli": ("premise", "hypothesis"),
               "ax": ("premise", "hypothesis"), "qnli": ("question", "sentence"),
               "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2")}


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def example_from_tfds(task: GlueTask, split: str, record: dict,
                      label_names: Sequence[str]) -> InputExample:
    """One TFDS record (numpy values) -> InputExample with the GLUE label names.

    TFDS keeps GLUE's own 0/1 ids for the binary tasks but numbers named labels its own way
    (MNLI: entailment, neutral, contradiction), so named labels go through `label_names`
    (the TFDS ClassLabel names). Test records carry label -1: no label.
    """
    key_a, key_b = _TFDS_TEXTS[task.name]
    index = str(int(record["idx"]))
    raw = record["label"]
    if split.startswith("test") or (not task.is_regression and int(raw) < 0):
        label = None
    elif task.is_regression:
        label = float(raw)
    elif task.labels == ("0", "1"):
        label = str(int(raw))
    else:
        label = label_names[int(raw)]
    return InputExample(guid=f"{split}-{index}", text_a=_text(record[key_a]),
                        text_b=_text(record[key_b]) if key_b else None, label=label,
                        index=index)


def read_tfds_examples(task: GlueTask, split: str, data_dir: str | None) -> list[InputExample]:
    """Examples from an already prepared TFDS `glue/<task>` under `data_dir`; never downloads."""
    import tensorflow_datasets as tfds  # slow to import; only this option needs it

    if split not in _TFDS_SPLITS or split not in task.splits:
        raise ValueError(f"GLUE task {task.name} has no {split!r} split in TFDS.")
    builder = tfds.builder(f"glue/{task.tfds_name}", data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(f"TFDS glue/{task.tfds_name} is not prepared under "
                                f"{builder.data_dir}; prepare it there first (bert_tf never "
                                "downloads).")
    names = list(builder.info.features["label"].names) if not task.is_regression else []
    dataset = builder.as_dataset(split=_TFDS_SPLITS[split], shuffle_files=False)
    examples = [example_from_tfds(task, split, r, names) for r in tfds.as_numpy(dataset)]
    examples.sort(key=lambda e: int(e.index))  # TFDS order is not the file order
    _LOG.info("Read %d %s %s examples from TFDS %s.", len(examples), task.name, split,
              builder.data_dir)
    return examples


def load_examples(task: GlueTask, split: str, data_dir: str,
                  use_tfds: bool = False) -> list[InputExample]:
    """Examples of a split from the GLUE TSVs in `data_dir`, or from TFDS under `data_dir`."""
    if use_tfds:
        return read_tfds_examples(task, split, data_dir)
    return read_examples(task, split, data_dir)


# --- cached features --------------------------------------------------------------------------

def _source_fingerprint(task: GlueTask, split: str, data_dir: str, use_tfds: bool) -> dict:
    if use_tfds:
        return {"tfds": f"glue/{task.tfds_name}", "data_dir": os.path.abspath(data_dir or "")}
    return file_fingerprint(existing_split_path(task, split, data_dir))


def cached_features(task: GlueTask, split: str, data_dir: str, cache_dir: str,
                    vocab_file: str, do_lower_case: bool, max_seq_length: int,
                    pad_to_multiple: int = 1, use_tfds: bool = False,
                    tokenizer=None) -> FeatureFile:
    """The features of a split as a TFRecord in `cache_dir`, written on first use.

    pad_to_multiple: padding examples are appended up to a multiple of it (eval/predict batch
      size; 1 for training). tokenizer: optional, else a `FullTokenizer(vocab_file,
      do_lower_case)` is built when (and only when) the file has to be written.
    """
    key = {"version": FEATURES_VERSION, "task": task.name, "split": split,
           "source": _source_fingerprint(task, split, data_dir, use_tfds),
           "vocab_sha256": file_sha256(vocab_file), "do_lower_case": bool(do_lower_case),
           "max_seq_length": int(max_seq_length), "pad_to_multiple": int(pad_to_multiple)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"{task.name}-{split}-{digest}.tfrecord")
    manifest = path + ".json"
    if os.path.isfile(path) and os.path.isfile(manifest):
        with open(manifest, encoding="utf-8") as f:
            info = json.load(f)
        _LOG.info("Reusing %s (%d examples).", path, info["num_examples"])
        return FeatureFile(path, info["num_records"], info["num_examples"])

    examples = load_examples(task, split, data_dir, use_tfds)
    if not examples:
        raise ValueError(f"GLUE {task.name} {split}: no examples in "
                         f"{split_path(task, split, data_dir) if not use_tfds else 'TFDS'}.")
    if tokenizer is None:
        from data_prep.tokenizer.tokenization import FullTokenizer
        tokenizer = FullTokenizer(vocab_file, do_lower_case)
    num_padding = -len(examples) % max(pad_to_multiple, 1)
    counts = {"num_records": len(examples) + num_padding, "num_examples": len(examples)}
    # The manifest is written before the TFRecord is renamed into place: a final TFRecord
    # never exists without it.
    written, real = write_features(
        path, examples, task.labels, max_seq_length, tokenizer, pad_to_multiple,
        before_commit=lambda: write_json(manifest, {**counts, "key": key}))
    _LOG.info("Wrote %s: %d examples + %d padding.", path, real, written - real)
    return FeatureFile(path, written, real)


# --- outputs ----------------------------------------------------------------------------------

def write_submission(path: str, task: GlueTask, examples: Sequence[InputExample],
                     predictions: np.ndarray) -> None:
    """A GLUE submission file: header `index\\tprediction`, then one row per example.

    predictions: int class ids [n] (written as label names), or floats [n] for regression.
    """
    predictions = np.asarray(predictions).reshape(-1)
    if len(predictions) != len(examples):
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples.")
    lines = ["index\tprediction"]
    for i, (example, value) in enumerate(zip(examples, predictions)):
        index = example.index if example.index is not None else str(i)
        lines.append(f"{index}\t{float(value):.6f}" if task.is_regression
                     else f"{index}\t{task.labels[int(value)]}")
    write_text(path, "\n".join(lines) + "\n")


def write_probabilities(path: str, outputs: np.ndarray) -> None:
    """`test_results.tsv` as the original: per example, the class probabilities (or the
    regression value), tab-separated, no header. outputs: float [n, num_classes]."""
    write_text(path, "".join("\t".join(repr(float(v)) for v in row) + "\n"
                              for row in np.asarray(outputs)))


