"""Contextual token features or sentence embeddings from any BERT checkpoint.

The original's extract_features.py, same flags and output (see bert_tf/export/feature_extraction.py):

    python -m bert_tf.extract_features --input_file=input.txt --output_file=output.jsonl \
        --vocab_file=vocab.txt --bert_config_file=bert_config.json \
        --init_checkpoint=bert_model.ckpt --layers=-1,-2,-3,-4 --max_seq_length=128

Sentence embeddings (one float32 vector per line; .npy, .tfrecord with `linex_index` and
`embedding`, or JSON lines, by the --output_file suffix):

    python -m bert_tf.extract_features --input_file=input.txt --output_file=emb.npy \
        --vocab_file=vocab.txt --init_checkpoint=all-MiniLM-L6-v2/ --pooling=mean --normalize

--init_checkpoint takes what every bert_tf command takes: an original TF1 checkpoint, Hugging
Face weights, a .keras file, a bert_tf run's output_dir or checkpoint. --bert_config_file may be
left out when a bert_config.json or config.json sits beside the checkpoint (or in a run's
output_dir), and for .keras files, which carry their config.
"""
from __future__ import annotations

import logging
import os

import keras
from absl import app, flags

from bert_tf import checkpoints
from bert_tf.config import BertConfig
from bert_tf.export.feature_extraction import (Example, Extractor, Progress, ResumableOutput,
                                        count_lines, example_features, output_format,
                                        pad_batch, read_examples, settings_fingerprint,
                                        token_json)
from bert_tf.checkpoints.init_checkpoint import init_from_checkpoint
from bert_tf.models import BertEncoder, encoder_of
from bert_tf.export.sentence_embedding import POOLINGS
from data_prep import command
from data_prep.tokenizer.tokenization import FullTokenizer

FLAGS = flags.FLAGS
flags.DEFINE_string("input_file", None, "Text, one input per line: `text` or `text_a ||| text_b`.")
flags.DEFINE_string("output_file", None, "JSON lines (the original's layout), or with "
                    "--pooling: .npy, .tfrecord or JSON lines, by the suffix.")
flags.DEFINE_string("vocab_file", None, "The WordPiece vocab the model was trained with.")
flags.DEFINE_string("bert_config_file", None, "The model's bert_config.json (or HF config.json); "
                    "default: the one beside --init_checkpoint.")
flags.DEFINE_string("init_checkpoint", None, "Any checkpoint bert_tf reads (TF1, Hugging Face, "
                    ".keras, a bert_tf run).")
flags.DEFINE_list("layers", ["-1", "-2", "-3", "-4"], "Blocks whose outputs are written "
                  "(-1 = last), in this order.")
flags.DEFINE_integer("max_seq_length", 128, "Longest packed input; longer inputs are truncated "
                     "as the original does.")
flags.DEFINE_integer("batch_size", 32, "Lines per forward pass.")
flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents (uncased models).")
flags.DEFINE_enum("pooling", "none", ["none", *POOLINGS], "none: every token's values (the "
                  "original's output). cls/mean/max: one sentence vector per line from "
                  "--pooling_layer.")
flags.DEFINE_integer("pooling_layer", -1, "The block whose outputs --pooling pools.")
flags.DEFINE_bool("normalize", False, "With --pooling: scale each vector to unit L2 norm.")
flags.DEFINE_float("save_every_s", 30.0, "Seconds between saves of the partial output (a "
                   "killed run continues from the last one).")


def _config_file(init_checkpoint: str, bert_config_file: str | None) -> str:
    if bert_config_file:
        return bert_config_file
    path = os.path.abspath(init_checkpoint.rstrip("/"))
    for candidate in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        found = checkpoints.find_config_file(candidate)
        if found:
            return found
    raise app.UsageError(f"--bert_config_file is needed: no bert_config.json or config.json "
                         f"beside --init_checkpoint={init_checkpoint}.")


def load_encoder(init_checkpoint: str, bert_config_file: str | None) -> BertEncoder:
    """The encoder of `init_checkpoint` (any format), dropout off."""
    if init_checkpoint.endswith(".keras") and not bert_config_file:
        model = keras.saving.load_model(init_checkpoint, compile=False)
        return encoder_of(model)
    config = BertConfig.from_json_file(_config_file(init_checkpoint, bert_config_file))
    encoder = BertEncoder.from_bert_config(config)
    init_from_checkpoint(encoder, init_checkpoint)
    return encoder


def _batches(examples, size: int):
    batch: list[Example] = []
    for example in examples:
        batch.append(example)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def main(argv) -> None:
    del argv
    logging.getLogger().setLevel(logging.INFO)
    if FLAGS.batch_size < 1:
        raise app.UsageError(f"--batch_size must be >= 1, got {FLAGS.batch_size}.")
    if FLAGS.max_seq_length < 3:
        raise app.UsageError(f"--max_seq_length must be >= 3, got {FLAGS.max_seq_length}.")
    pooling = None if FLAGS.pooling == "none" else FLAGS.pooling
    fmt = output_format(FLAGS.output_file)
    if fmt != "jsonl" and not pooling:
        raise app.UsageError(f"--output_file={FLAGS.output_file}: per-token features are "
                             "written as JSON lines; .npy and .tfrecord need --pooling.")
    try:
        layers = [int(x) for x in FLAGS.layers]
    except ValueError:
        raise app.UsageError(f"--layers={','.join(FLAGS.layers)}: integers expected.") from None
    num_lines = count_lines(FLAGS.input_file)
    if num_lines == 0:
        raise app.UsageError(f"--input_file={FLAGS.input_file} is empty.")
    tokenizer = FullTokenizer(FLAGS.vocab_file, FLAGS.do_lower_case)
    encoder = load_encoder(FLAGS.init_checkpoint, FLAGS.bert_config_file)
    config = encoder.bert_config
    if FLAGS.max_seq_length > config.max_position_embeddings:
        raise app.UsageError(f"--max_seq_length={FLAGS.max_seq_length} exceeds the model's "
                             f"max_position_embeddings ({config.max_position_embeddings}).")
    if len(tokenizer.vocab) > config.vocab_size:
        raise app.UsageError(f"--vocab_file has {len(tokenizer.vocab)} tokens but the model's "
                             f"vocab_size is {config.vocab_size}.")
    extractor = Extractor(encoder, layers, pooling, FLAGS.pooling_layer, FLAGS.normalize)
    fingerprint = settings_fingerprint(
        FLAGS.input_file, FLAGS.vocab_file, os.path.abspath(FLAGS.init_checkpoint),
        config=config.to_dict(), layers=layers, max_seq_length=FLAGS.max_seq_length,
        do_lower_case=FLAGS.do_lower_case, pooling=pooling, pooling_layer=FLAGS.pooling_layer,
        normalize=FLAGS.normalize, format=fmt)
    output = ResumableOutput(FLAGS.output_file, fmt, fingerprint, num_lines,
                             config.hidden_size if pooling else None, FLAGS.save_every_s)
    if output.rows_done:
        logging.info("Continuing %s after %d of %d lines.", FLAGS.output_file, output.rows_done,
                     num_lines)
    progress = Progress(num_lines, output.rows_done)
    examples = (e for e in read_examples(FLAGS.input_file) if e.unique_id >= output.rows_done)
    for batch in _batches(examples, FLAGS.batch_size):
        features = [example_features(e, tokenizer, FLAGS.max_seq_length) for e in batch]
        values = extractor(pad_batch(features, FLAGS.max_seq_length))
        if pooling:
            output.write_vectors([f.unique_id for f in features], values)
        else:
            output.write_lines([token_json(f, values[:, row], layers)
                                for row, f in enumerate(features)])
        progress.update(len(batch))
    output.finish()
    logging.info("Wrote %s (%d lines).", FLAGS.output_file, num_lines)


def run() -> None:
    """Console entry point `bert-extract-features`."""
    flags.mark_flags_as_required(["input_file", "output_file", "vocab_file", "init_checkpoint"])
    command.run(main, "bert-extract-features")


if __name__ == "__main__":
    run()
