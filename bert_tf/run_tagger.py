"""Fine-tunes BERT for token classification (CoNLL-style NER) and scores entity F1.

    python -m bert_tf.run_tagger --train_file=conll/train.txt --eval_file=conll/dev.txt \\
        --predict_file=conll/test.txt --vocab_file=vocab.txt --bert_config_file=... \\
        --init_checkpoint=... --output_dir=runs/ner --do_train --do_eval --do_predict

Tags go on the first word piece of each word (the BERT paper's NER setup). Outputs in
--output_dir: labels.txt (tag ids), eval_results.txt (entity precision/recall/F1 by the
conlleval rules, word accuracy), predictions.txt (`word gold predicted` per line, CoNLL
layout), model.keras, features/ (cached TFRecords).
"""
from __future__ import annotations

import logging
import os

import keras
import tensorflow as tf
from absl import app, flags

from bert_tf import script_flags
from bert_tf.training import distribute, trainer
from bert_tf.tasks.tagging import TaggingTask
from data_prep import command
from data_prep.tasks import conll
from data_prep.files.tfrecords import atomic_path
from data_prep.tokenizer.tokenization import FullTokenizer

FLAGS = flags.FLAGS

script_flags.define_model_flags()
script_flags.define_bucketing_flags()
script_flags.define_training_flags(learning_rate=5e-5, train_batch_size=32, eval_batch_size=8,
                                   num_train_steps=None, num_warmup_steps=None)
FLAGS.set_default("max_eval_steps", 0)
flags.DEFINE_string("train_file", None, "CoNLL training file.")
flags.DEFINE_string("eval_file", None, "CoNLL dev file.")
flags.DEFINE_string("predict_file", None, "CoNLL file to tag (gold tags, if any, are kept).")
flags.DEFINE_bool("do_predict", False, "Tag --predict_file and write predictions.txt.")
flags.DEFINE_bool("do_lower_case", True, "Lower-case the text (uncased models).")
flags.DEFINE_integer("max_seq_length", 128, "Word pieces per sentence, [CLS]/[SEP] included.")
flags.DEFINE_float("num_train_epochs", 3.0, "Epochs (sets num_train_steps unless given).")
flags.DEFINE_float("warmup_proportion", 0.1, "Warmup fraction of the steps.")
flags.DEFINE_bool("eval_every_epoch", False, "Evaluate on dev at the end of every epoch.")


def _features(name: str, path: str, tokenizer, labels, output_dir: str) -> tuple[str, list]:
    sentences = conll.read_conll(path)
    out = os.path.join(output_dir, "features", f"{name}.tfrecord")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    count = conll.write_tagging_features(out, sentences, tokenizer, labels,
                                         FLAGS.max_seq_length, path)
    logging.info("%s: %d sentences -> %s", path, count, out)
    return out, sentences


def _write_predictions(path: str, sentences, predicted: list[list[str]]) -> int:
    """CoNLL `word gold predicted`; words cut by max_seq_length get O. Returns that count."""
    cut = 0
    lines = []
    for sentence, tags in zip(sentences, predicted):
        cut += len(sentence.words) - len(tags)
        tags = list(tags) + ["O"] * (len(sentence.words) - len(tags))
        lines.extend(f"{w} {g} {p}" for w, g, p in zip(sentence.words, sentence.tags, tags))
        lines.append("")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return cut


def main(argv) -> None:
    del argv
    script_flags.start_main(FLAGS)
    for name in ("vocab_file", "output_dir"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required.")
    for mode, file_flag in (("do_train", "train_file"), ("do_eval", "eval_file"),
                            ("do_predict", "predict_file")):
        if FLAGS[mode].value and not FLAGS[file_flag].value:
            raise app.UsageError(f"--{mode} needs --{file_flag}.")
    keras.utils.set_random_seed(FLAGS.seed)
    output_dir = FLAGS.output_dir
    os.makedirs(output_dir, exist_ok=True)
    labels_path = os.path.join(output_dir, "labels.txt")
    if FLAGS.do_train:
        labels = conll.label_list(conll.read_conll(FLAGS.train_file))
        with atomic_path(labels_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(labels) + "\n")
    elif os.path.exists(labels_path):
        with open(labels_path, encoding="utf-8") as f:
            labels = [line.strip() for line in f if line.strip()]
    else:
        raise app.UsageError(f"{labels_path} is missing: train first (--do_train).")
    config = script_flags.bert_config_from_flags(FLAGS)
    script_flags.check_vocab_size(FLAGS.vocab_file, config.vocab_size)
    tokenizer = FullTokenizer(FLAGS.vocab_file, FLAGS.do_lower_case)
    strategy = distribute.get_strategy(FLAGS.distribution_strategy, FLAGS.tpu)
    train_file, train_sentences = (_features("train", FLAGS.train_file, tokenizer, labels,
                                              output_dir) if FLAGS.do_train else (None, []))
    eval_file, _ = (_features("eval", FLAGS.eval_file, tokenizer, labels, output_dir)
                    if FLAGS.do_eval else (None, []))
    batch = FLAGS.train_batch_size
    num_train_steps = FLAGS.num_train_steps or max(
        int(len(train_sentences) / batch * FLAGS.num_train_epochs), 1)
    num_warmup_steps = (FLAGS.num_warmup_steps if FLAGS.num_warmup_steps is not None
                        else int(num_train_steps * FLAGS.warmup_proportion))
    task = TaggingTask(config, labels, FLAGS.max_seq_length, batch, FLAGS.eval_batch_size,
                       train_file, eval_file, FLAGS.seed,
                       script_flags.bucket_lengths_from_flags(FLAGS, FLAGS.max_seq_length))
    eval_every = FLAGS.eval_every_steps or (
        max(len(train_sentences) // batch, 1) if FLAGS.eval_every_epoch else None)
    args = script_flags.training_args_from_flags(
        FLAGS, num_train_steps, FLAGS.do_train, FLAGS.do_eval, eval_every_steps=eval_every,
        best_metric=FLAGS.best_metric or ("eval_f1" if eval_every else None),
        best_metric_mode=FLAGS.best_metric_mode)
    init_fn = script_flags.init_fn_from_flags(FLAGS)
    results = {}
    if FLAGS.do_train or FLAGS.do_eval:
        results = trainer.run(
            task, args, script_flags.optimizer_fn_from_flags(FLAGS, num_train_steps,
                                                             num_warmup_steps),
            strategy=strategy, init_fn=init_fn)
    if (FLAGS.do_train or FLAGS.do_predict) and distribute.is_chief(strategy):
        model = task.build_model(FLAGS.dtype)
        # The best-F1 weights when periodic evaluation kept them, else the last checkpoint.
        weights = trainer.best_checkpoint(output_dir) or tf.train.latest_checkpoint(
            os.path.join(output_dir, "checkpoints"))
        if weights:
            tf.train.Checkpoint(model=model).read(weights).expect_partial()
            logging.info("Predicting with %s.", weights)
        elif init_fn is not None:
            init_fn(model)
        if FLAGS.do_train:
            script_flags.save_keras(model, os.path.join(output_dir, "model.keras"))
        if FLAGS.do_predict:
            path, sentences = _features("predict", FLAGS.predict_file, tokenizer, labels,
                                        output_dir)
            out = task.predict(model, task.dataset(path, FLAGS.eval_batch_size, False))
            _, predicted = task.word_tags(out["label_ids"], out["predictions"],
                                          out["label_weights"])
            cut = _write_predictions(os.path.join(output_dir, "predictions.txt"), sentences,
                                     predicted)
            if cut:
                logging.warning("%d words were beyond --max_seq_length=%d and got tag O.", cut,
                                FLAGS.max_seq_length)
    logging.info("Final: %s", results)


def run() -> None:
    """Console entry point `bert-tagger`."""
    command.run(main, "bert-tagger")


if __name__ == "__main__":
    run()
