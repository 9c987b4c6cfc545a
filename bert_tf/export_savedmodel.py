"""Exports a bert_tf model as a SavedModel with raw-text and id signatures.

    python -m bert_tf.export_savedmodel --keras_model=runs/demo/classifier/model.keras \
        --vocab_file=runs/demo/vocab.txt --export_dir=runs/demo/export/classifier
    # or from a training checkpoint:
    python -m bert_tf.export_savedmodel --checkpoint=runs/demo/pretrain/checkpoints \
        --bert_config_file=runs/demo/pretrain/bert_config.json --kind=fill_mask ...
"""
from __future__ import annotations

import logging

import keras
from absl import app, flags

from bert_tf.export import savedmodel
from bert_tf.config import BertConfig
from bert_tf.checkpoints.init_checkpoint import init_from_checkpoint
from bert_tf.models import (BertClassifier, BertEncoder, BertPretrainer, BertSpanLabeler,
                            BertTokenClassifier)
from data_prep import command

FLAGS = flags.FLAGS
flags.DEFINE_string("keras_model", None, "A saved .keras bert_tf model to export.")
flags.DEFINE_string("checkpoint", None, "Or: any checkpoint init_checkpoint accepts.")
flags.DEFINE_string("bert_config_file", None, "Config for --checkpoint.")
flags.DEFINE_enum("kind", None, list(savedmodel.KINDS), "Model kind for --checkpoint "
                  "(a .keras model knows its kind).")
flags.DEFINE_integer("num_classes", 2, "Classes for --kind=classifier/token_classifier.")
flags.DEFINE_list("label_names", [], "Label names in id order (classifier outputs label_name).")
flags.DEFINE_string("vocab_file", None, "WordPiece vocab, shipped inside the SavedModel.")
flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents (uncased models).")
flags.DEFINE_integer("seq_length", 128, "Sequence length of the text signatures.")
flags.DEFINE_string("export_dir", None, "Where the SavedModel goes (replaced atomically).")
flags.DEFINE_string("preprocessing_export_dir", None, "Also write the preprocessing model here.")
flags.DEFINE_bool("pad_to_longest", True, "Text signatures pad a request to its longest "
                  "member (rounded up to --pad_multiple), not to --seq_length; the real tokens' "
                  "outputs are the same.")
flags.DEFINE_integer("pad_multiple", 8, "With --pad_to_longest: widths are multiples of this.")
flags.DEFINE_enum("embed_pooling", "mean", ["cls", "mean", "max"], "--kind=encoder: how the "
                  "`embed` signature pools the last layer into one vector per text.")
flags.DEFINE_bool("embed_normalize", False, "--kind=encoder: L2-normalise `embed`'s vectors.")


def build_from_checkpoint(kind: str, config: BertConfig, checkpoint: str,
                          num_classes: int) -> keras.Model:
    """Builds the `kind` model for `config` and loads `checkpoint` into it."""
    encoder = BertEncoder.from_bert_config(config)
    model = {"classifier": lambda: BertClassifier(encoder, num_classes),
             "token_classifier": lambda: BertTokenClassifier(encoder, num_classes),
             "span_labeler": lambda: BertSpanLabeler(encoder),
             "fill_mask": lambda: BertPretrainer(encoder),
             "encoder": lambda: encoder}[kind]()
    init_from_checkpoint(model, checkpoint)
    return model


def main(argv) -> None:
    del argv
    logging.getLogger().setLevel(logging.INFO)
    if bool(FLAGS.keras_model) == bool(FLAGS.checkpoint):
        raise app.UsageError("Give exactly one of --keras_model and --checkpoint.")
    for name in ("vocab_file", "export_dir"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required.")
    if FLAGS.keras_model:
        model = keras.saving.load_model(FLAGS.keras_model)
        kind = FLAGS.kind or savedmodel.kind_of(model)
    else:
        if not (FLAGS.kind and FLAGS.bert_config_file):
            raise app.UsageError("--checkpoint needs --kind and --bert_config_file.")
        kind = FLAGS.kind
        model = build_from_checkpoint(kind, BertConfig.from_json_file(FLAGS.bert_config_file),
                                      FLAGS.checkpoint, FLAGS.num_classes)
    savedmodel.export_model(model, FLAGS.export_dir, FLAGS.vocab_file, FLAGS.do_lower_case,
                        FLAGS.seq_length, FLAGS.label_names or None, kind,
                        pad_to_longest=FLAGS.pad_to_longest, pad_multiple=FLAGS.pad_multiple,
                        embed_pooling=FLAGS.embed_pooling, embed_normalize=FLAGS.embed_normalize)
    if FLAGS.preprocessing_export_dir:
        savedmodel.export_preprocessing(FLAGS.preprocessing_export_dir, FLAGS.vocab_file,
                                    FLAGS.do_lower_case, FLAGS.seq_length)


def run() -> None:
    """Console entry point `bert-export`."""
    command.run(main, "bert-export")


if __name__ == "__main__":
    run()
