"""SQuAD data for fine-tuning: examples, and feature TFRecords cached under the run directory.

    train = squad_data("train-v1.1.json", "out/features", "vocab.txt", is_training=True)
    dev = squad_data("dev-v1.1.json", "out/features", "vocab.txt", is_training=False,
                     pad_to_multiple=8)
    ... train.path / dev.path are TFRecords (data_prep.tasks.squad_features schema); dev.examples and
    dev.features are what post-processing needs to turn logits into answer texts ...

As `data_prep.tasks.glue`, a feature file is keyed by everything that changes its bytes (source file
size and mtime, vocab contents, casing, lengths, stride, v2 flag, padding, shuffle seed), so a
cache is reused only when it is what would be written again. Training features are written once
and then only read; prediction always rebuilds its examples and features in memory (post-
processing needs their token maps, and they are cheap next to the forward pass) and rewrites
the TFRecord only when it is not cached.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random

from data_prep.tasks.squad_examples import SquadExample, load_squad_json, read_squad_examples
from data_prep.tasks.squad_features import SquadFeature, convert_examples_to_features, write_features
from data_prep.files.atomic_io import write_json
from data_prep.files.file_identity import file_fingerprint, file_sha256

_LOG = logging.getLogger("data_prep.tasks.squad")

# Bump when the feature bytes change for the same inputs (invalidates every cache).
FEATURES_VERSION = 1


@dataclasses.dataclass
class SquadData:
    """A feature TFRecord and (for prediction) what produced it.

    path: the TFRecord; num_records of them, the first num_features real (the rest padding).
    num_examples: questions that made features (training: after skipped answers).
    examples / features / articles: prediction only - the examples, their features (same
      order as the records) and the file's raw `data` list (the gold answers); else None.
    """

    path: str
    num_records: int
    num_features: int
    num_examples: int
    examples: list[SquadExample] | None = None
    features: list[SquadFeature] | None = None
    articles: list[dict] | None = None


def squad_data(input_file: str, cache_dir: str, vocab_file: str, is_training: bool,
               do_lower_case: bool = True, max_seq_length: int = 384, doc_stride: int = 128,
               max_query_length: int = 64, version_2_with_negative: bool = False,
               pad_to_multiple: int = 1, seed: int = 12345, tokenizer=None) -> SquadData:
    """The features of a SQuAD file as a TFRecord in `cache_dir`, written on first use.

    is_training: answer positions, training examples shuffled with `seed` before conversion
      (as the original: the features of one file would otherwise reach the shuffle buffer in
      article order). pad_to_multiple: padding records up to a multiple of it (prediction).
    tokenizer: optional, else `FullTokenizer(vocab_file, do_lower_case)` when needed.
    """
    if not os.path.isfile(input_file):
        raise FileNotFoundError(f"SQuAD file not found: {input_file}")
    key = {"version": FEATURES_VERSION, "source": file_fingerprint(input_file),
           "vocab_sha256": file_sha256(vocab_file), "do_lower_case": bool(do_lower_case),
           "max_seq_length": int(max_seq_length), "doc_stride": int(doc_stride),
           "max_query_length": int(max_query_length), "is_training": bool(is_training),
           "version_2_with_negative": bool(version_2_with_negative),
           "pad_to_multiple": int(pad_to_multiple), "seed": int(seed) if is_training else None}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    os.makedirs(cache_dir, exist_ok=True)
    name = os.path.splitext(os.path.basename(input_file))[0]
    path = os.path.join(cache_dir, f"{name}-{'train' if is_training else 'predict'}-"
                                   f"{digest}.tfrecord")
    manifest = path + ".json"
    cached = None
    if os.path.isfile(path) and os.path.isfile(manifest):
        with open(manifest, encoding="utf-8") as f:
            cached = json.load(f)
        if is_training:
            _LOG.info("Reusing %s (%d features of %d examples; %d questions were skipped "
                      "when it was written).", path, cached["num_features"],
                      cached["num_examples"], cached["stats"]["num_skipped"])
            return SquadData(path, cached["num_records"], cached["num_features"],
                             cached["num_examples"])

    articles = load_squad_json(input_file)
    examples, stats = read_squad_examples(input_file, is_training, version_2_with_negative,
                                          articles)
    if not examples:
        raise ValueError(f"{input_file}: no usable questions.")
    if is_training:
        random.Random(seed).shuffle(examples)
    if tokenizer is None:
        from data_prep.tokenizer.tokenization import FullTokenizer
        tokenizer = FullTokenizer(vocab_file, do_lower_case)
    features = convert_examples_to_features(examples, tokenizer, max_seq_length, doc_stride,
                                            max_query_length, is_training)
    if cached is not None:  # prediction with a cached TFRecord: only the in-memory features
        kept = list(features)
        if len(kept) != cached["num_features"]:
            raise RuntimeError(f"{path} holds {cached['num_features']} features but "
                               f"{input_file} gives {len(kept)}: delete the stale file.")
        _LOG.info("Reusing %s (%d features of %d examples).", path, len(kept), len(examples))
        return SquadData(path, cached["num_records"], len(kept), len(examples), examples, kept,
                         articles)

    def commit(num_records: int, num_features: int) -> None:
        # Written before the TFRecord is renamed into place: it never exists without it.
        write_json(manifest, {"num_records": num_records, "num_features": num_features,
                               "num_examples": len(examples),
                               "stats": dataclasses.asdict(stats),
                               "key": key})

    written, num_features, kept = write_features(path, features, max_seq_length,
                                                 pad_to_multiple, keep=not is_training,
                                                 before_commit=commit)
    _LOG.info("Wrote %s: %d features of %d examples + %d padding.", path, num_features,
              len(examples), written - num_features)
    if is_training:
        return SquadData(path, written, num_features, len(examples))
    return SquadData(path, written, num_features, len(examples), examples, kept, articles)
