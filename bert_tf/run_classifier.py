"""Fine-tunes BERT on a GLUE task; evaluates on dev; writes GLUE submission files.

    python -m bert_tf.run_classifier --task_name=sst2 --data_dir=glue_data/SST-2 \\
        --vocab_file=uncased_L-12_H-768_A-12/vocab.txt \\
        --bert_config_file=uncased_L-12_H-768_A-12/bert_config.json \\
        --init_checkpoint=uncased_L-12_H-768_A-12/bert_model.ckpt \\
        --output_dir=runs/sst2 --do_train --do_eval --do_predict

Defaults are the original run_classifier's (lr 5e-5, 3 epochs, 10% warmup, seq 128, batch
32/8/8, lower-cased). Training is `trainer.run`: the same loop, strategies, precision,
optimizer and resumable checkpoints as pretraining. Outputs in --output_dir:
eval_results.txt (task metrics on dev; MNLI adds dev_mismatched_* keys), the submission
file(s) (SST-2.tsv, MNLI-m.tsv + MNLI-mm.tsv, ...; `index<TAB>prediction` with label
names), test_results.tsv (class probabilities), model.keras (the fine-tuned model: best/
if kept, else the last checkpoint), features/ (cached TFRecords, reused).
The diagnostic set is its own test-only task: `--task_name=ax --data_dir=glue_data/diagnostic
--do_predict --output_dir=<the MNLI run>` predicts with the fine-tuned MNLI model.
"""
from __future__ import annotations

import functools
import logging
import os

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from bert_tf import script_flags
from bert_tf.training import distribute, trainer
from bert_tf.tasks.classification import (ClassificationTask, evaluate_logits, output_probabilities,
                                    predict)
from data_prep import command
from data_prep.tasks import glue

FLAGS = flags.FLAGS

script_flags.define_model_flags()
script_flags.define_bucketing_flags()
script_flags.define_training_flags(learning_rate=5e-5, train_batch_size=32, eval_batch_size=8,
                                   num_train_steps=None, num_warmup_steps=None)
# The original evaluates the whole dev set; GLUE scores are meaningless on a part of it.
FLAGS.set_default("max_eval_steps", 0)
flags.DEFINE_string("task_name", None, f"GLUE task: {', '.join(glue.TASKS)}.")
flags.DEFINE_string("data_dir", None, "The task's GLUE folder (e.g. glue_data/SST-2) with "
                    "train.tsv/dev.tsv/test.tsv; with --use_tfds, the TFDS data_dir.")
flags.DEFINE_bool("use_tfds", False, "Read TFDS glue/<task> already prepared under --data_dir "
                  "instead of the TSVs (never downloads).")
flags.DEFINE_bool("do_lower_case", True, "Lower-case the text (uncased models).")
flags.DEFINE_integer("max_seq_length", 128, "Tokens per example after WordPiece, [CLS] and "
                     "[SEP] included; longer ones are truncated.")
flags.DEFINE_bool("do_predict", False, "Predict the test set(s) and write submission files.")
flags.DEFINE_integer("predict_batch_size", 8, "Batch size for prediction.")
flags.DEFINE_float("num_train_epochs", 3.0, "Epochs (sets num_train_steps unless given).")
flags.DEFINE_float("warmup_proportion", 0.1, "Warmup fraction of the steps (unless "
                   "--num_warmup_steps is given).")
flags.DEFINE_bool("eval_every_epoch", False, "Evaluate on dev at the end of every epoch.")
flags.DEFINE_enum("predict_checkpoint", "auto", ["auto", "best", "latest"], "Weights to "
                  "predict with: output_dir/best/ or the latest checkpoint (auto: best if any).")


def _load_for_prediction(task: ClassificationTask, output_dir: str, which: str, init_fn,
                         dtype: str) -> keras.Model:
    """The fine-tuned model: best/ or the latest checkpoint, else the init checkpoint."""
    model = task.build_model(dtype)
    best = trainer.best_checkpoint(output_dir)
    latest = tf.train.latest_checkpoint(os.path.join(output_dir, "checkpoints"))
    if which == "best" and not best:
        raise ValueError(f"--predict_checkpoint=best but {output_dir} has no best/ checkpoint "
                         "(it needs --eval_every_steps or --eval_every_epoch while training).")
    path = best if which == "best" or (which == "auto" and best) else latest
    if path:
        status = tf.train.Checkpoint(model=model).read(path)
        status.assert_existing_objects_matched().expect_partial()  # optimizer not needed
        logging.info("Predicting with %s.", path)
    elif init_fn is not None:
        logging.warning("No fine-tuned checkpoint in %s: predicting with --init_checkpoint.",
                        output_dir)
        init_fn(model)
    else:
        raise ValueError(f"No checkpoint in {output_dir} and no --init_checkpoint: nothing to "
                         "predict with.")
    return model


def _resolve_modes(task: glue.GlueTask) -> tuple[bool, bool, bool]:
    """do_train/do_eval/do_predict; a test-only task (AX) quietly drops the default train/eval."""
    modes = {}
    for name, available in (("do_train", "train" in task.splits),
                            ("do_eval", bool(task.dev_splits)),
                            ("do_predict", bool(task.test_splits))):
        wanted = FLAGS[name].value
        if wanted and not available:
            if FLAGS[name].present:
                raise app.UsageError(f"--{name}: task {task.name} has no such split (it has "
                                     f"{', '.join(task.splits)}).")
            logging.info("Task %s has no split for %s: skipped.", task.name, name)
            wanted = False
        modes[name] = wanted
    if not any(modes.values()):
        raise app.UsageError("Nothing to do: give --do_train, --do_eval or --do_predict.")
    return modes["do_train"], modes["do_eval"], modes["do_predict"]


def main(argv) -> None:
    del argv
    script_flags.start_main(FLAGS)
    required = ["task_name", "vocab_file", "output_dir"] + ([] if FLAGS.use_tfds else ["data_dir"])
    for name in required:
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required.")
    task = glue.get_task(FLAGS.task_name)
    do_train, do_eval, do_predict = _resolve_modes(task)
    keras.utils.set_random_seed(FLAGS.seed)
    config = script_flags.bert_config_from_flags(FLAGS)
    script_flags.check_vocab_size(FLAGS.vocab_file, config.vocab_size)
    strategy = distribute.get_strategy(FLAGS.distribution_strategy, FLAGS.tpu)
    output_dir = FLAGS.output_dir
    os.makedirs(output_dir, exist_ok=True)
    features = functools.partial(
        glue.cached_features, task, data_dir=FLAGS.data_dir,
        cache_dir=os.path.join(output_dir, "features"), vocab_file=FLAGS.vocab_file,
        do_lower_case=FLAGS.do_lower_case, max_seq_length=FLAGS.max_seq_length,
        use_tfds=FLAGS.use_tfds)

    train = features("train") if do_train else None
    dev = features(task.dev_splits[0], pad_to_multiple=FLAGS.eval_batch_size) if do_eval else None
    batch = FLAGS.train_batch_size
    steps_per_epoch = max(train.num_examples // batch, 1) if train else 1
    num_train_steps = FLAGS.num_train_steps or (
        max(int(train.num_examples / batch * FLAGS.num_train_epochs), 1) if train else 1)
    num_warmup_steps = (FLAGS.num_warmup_steps if FLAGS.num_warmup_steps is not None
                        else int(num_train_steps * FLAGS.warmup_proportion))
    eval_every = FLAGS.eval_every_steps or (steps_per_epoch if FLAGS.eval_every_epoch else None)
    best_metric = FLAGS.best_metric or (f"eval_{task.primary_metric}" if eval_every else None)
    if train:
        logging.info("%d training examples, batch %d: %d steps (%d warmup), %.1f epochs.",
                     train.num_examples, batch, num_train_steps, num_warmup_steps,
                     num_train_steps * batch / train.num_examples)

    cls_task = ClassificationTask(
        config, task.num_classes, FLAGS.max_seq_length, batch, FLAGS.eval_batch_size,
        train_file=train.path if train else None, eval_file=dev.path if dev else None,
        metric_names=task.metrics, seed=FLAGS.seed,
        bucket_lengths=script_flags.bucket_lengths_from_flags(FLAGS, FLAGS.max_seq_length))
    args = script_flags.training_args_from_flags(
        FLAGS, num_train_steps, do_train, do_eval, eval_every_steps=eval_every,
        best_metric=best_metric, best_metric_mode=FLAGS.best_metric_mode)
    if distribute.is_chief(strategy):
        config.to_json_file(os.path.join(output_dir, "bert_config.json"))
    init_fn = script_flags.init_fn_from_flags(FLAGS)
    optimizer_fn = script_flags.optimizer_fn_from_flags(FLAGS, num_train_steps, num_warmup_steps)

    results: dict[str, float] = {}
    if do_train or do_eval:
        results = trainer.run(cls_task, args, optimizer_fn, strategy=strategy, init_fn=init_fn)
    chief = distribute.is_chief(strategy)
    load = functools.partial(_load_for_prediction, cls_task, output_dir, init_fn=init_fn,
                             dtype=FLAGS.dtype)
    if do_eval and len(task.dev_splits) > 1 and chief:
        # MNLI mismatched: the same (latest) weights as the loop's own evaluation.
        model = load("latest")
        for split in task.dev_splits[1:]:
            data = features(split, pad_to_multiple=FLAGS.eval_batch_size)
            out = predict(model, cls_task.dataset(data.path, FLAGS.eval_batch_size, False))
            extra = evaluate_logits(out["logits"], out["label_ids"], out["is_real_example"],
                                    task.metrics, task.is_regression)
            results.update({f"{split}_{k}": v for k, v in extra.items()})
        trainer.write_eval_results(
            os.path.join(output_dir, "eval_results.txt"),
            {k: v for k, v in results.items() if not k.startswith("train_")})
    if do_train and chief:
        # The fine-tuned model as one file (for export_savedmodel): the weights predictions use.
        script_flags.save_keras(load(FLAGS.predict_checkpoint), os.path.join(output_dir, "model.keras"))
    if do_predict and chief:
        model = load(FLAGS.predict_checkpoint)
        for split in task.test_splits:
            _predict_split(task, split, model, cls_task, features(
                split, pad_to_multiple=FLAGS.predict_batch_size), output_dir)
    logging.info("Final: %s", results)


def _predict_split(task: glue.GlueTask, split: str, model: keras.Model,
                   cls_task: ClassificationTask, data: glue.FeatureFile, output_dir: str) -> None:
    out = predict(model, cls_task.dataset(data.path, FLAGS.predict_batch_size, False))
    real = out["is_real_example"].astype(bool)
    logits = out["logits"][real]
    examples = glue.load_examples(task, split, FLAGS.data_dir, FLAGS.use_tfds)
    if len(examples) != len(logits):
        raise RuntimeError(f"{data.path} holds {len(logits)} examples but {split} has "
                           f"{len(examples)}: delete the stale feature file.")
    predictions = logits[:, 0] if task.is_regression else np.argmax(logits, axis=-1)
    spec = task.splits[split]
    glue.write_probabilities(os.path.join(output_dir, f"{spec.results}.tsv"),
                             output_probabilities(logits, task.is_regression))
    submission = os.path.join(output_dir, f"{spec.submission}.tsv")
    glue.write_submission(submission, task, examples, predictions)
    logging.info("Wrote %s (%d predictions).", submission, len(examples))


def run() -> None:
    """Console entry point `bert-classifier`."""
    command.run(main, "bert-classify")


if __name__ == "__main__":
    run()
