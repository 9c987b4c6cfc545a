"""Fine-tunes BERT on SQuAD v1.1 / v2.0; predicts and evaluates answers.

    python -m bert_tf.run_squad --vocab_file=uncased_L-12_H-768_A-12/vocab.txt \\
        --bert_config_file=uncased_L-12_H-768_A-12/bert_config.json \\
        --init_checkpoint=uncased_L-12_H-768_A-12/bert_model.ckpt \\
        --train_file=squad/train-v2.0.json --predict_file=squad/dev-v2.0.json \\
        --do_train --do_predict --version_2_with_negative --output_dir=runs/squad2

Defaults are the original run_squad's (lr 3e-5, 2 epochs, 10% warmup, batch 12, predict
batch 8, seq 384, doc stride 128, query 64, n-best 20, answers up to 30 tokens, lower-cased);
as there, the step count is examples / batch * epochs. Training is `trainer.run`: the same
loop, strategies, precision, optimizer and resumable checkpoints as the other tasks.
Prediction is the loop's evaluation of the --predict_file features (at the end, and every
--eval_every_steps if given); it writes to --output_dir:
  predictions.json       question id -> answer ("" = no answer, v2.0)
  nbest_predictions.json question id -> the n-best answers with probabilities and logits
  null_odds.json         (v2.0) question id -> null score - best answer score
  eval_results.txt       the official metrics when the file has gold answers: v1.1
                         exact_match/f1; v2.0 exact/f1/total, HasAns_*, NoAns_*, best_exact,
                         best_f1 and their thresholds (rerun with
                         --null_score_diff_threshold=<best_f1_thresh> to apply it)
and features/ (cached TFRecords), model.keras (after training) and checkpoints/.
--do_eval is the same as --do_predict (evaluation is prediction scored).
"""
from __future__ import annotations

import functools
import logging
import os

import keras
import tensorflow as tf
from absl import app, flags

from bert_tf import script_flags
from bert_tf.training import distribute
from bert_tf.tasks.squad import metrics as squad_metrics
from bert_tf.training import trainer
from bert_tf.tasks.squad.postprocess import compute_predictions, write_predictions
from bert_tf.tasks.squad.task import SquadTask
from data_prep import command
from data_prep.tasks import squad

FLAGS = flags.FLAGS

script_flags.define_model_flags()
script_flags.define_bucketing_flags()
script_flags.define_training_flags(learning_rate=3e-5, train_batch_size=12, eval_batch_size=8,
                                   num_train_steps=None, num_warmup_steps=None)
FLAGS.set_default("do_eval", False)  # --do_predict is the original's switch
flags.DEFINE_string("train_file", None, "SQuAD JSON for training, e.g. train-v1.1.json.")
flags.DEFINE_string("predict_file", None, "SQuAD JSON to predict (and evaluate, if it has "
                    "answers), e.g. dev-v1.1.json.")
flags.DEFINE_bool("do_predict", False, "Predict --predict_file and evaluate the predictions.")
flags.DEFINE_bool("do_lower_case", True, "Lower-case the text (uncased models).")
flags.DEFINE_integer("max_seq_length", 384, "Tokens per feature after WordPiece: [CLS] "
                     "question [SEP] context window [SEP].")
flags.DEFINE_integer("doc_stride", 128, "Tokens between the starts of context windows.")
flags.DEFINE_integer("max_query_length", 64, "Question tokens kept (the rest is cut).")
flags.DEFINE_integer("predict_batch_size", 8, "Batch size for prediction.")
flags.DEFINE_float("num_train_epochs", 2.0, "Epochs (sets num_train_steps unless given).")
flags.DEFINE_float("warmup_proportion", 0.1, "Warmup fraction of the steps (unless "
                   "--num_warmup_steps is given).")
flags.DEFINE_integer("n_best_size", 20, "Start/end candidates per feature, and n-best "
                     "answers written per question.")
flags.DEFINE_integer("max_answer_length", 30, "Longest answer in WordPiece tokens.")
flags.DEFINE_bool("version_2_with_negative", False, "SQuAD v2.0: questions may have no "
                  "answer.")
flags.DEFINE_float("null_score_diff_threshold", 0.0, "v2.0: answer \"\" when null score - "
                   "best answer score exceeds this.")
flags.DEFINE_bool("verbose_logging", False, "Log why an answer could not be mapped back to "
                  "the original text.")


def _resolve_modes() -> tuple[bool, bool]:
    """do_train / do_predict; an unasked-for default without its file is dropped."""
    modes = {}
    for name, file_flag in (("do_train", "train_file"), ("do_predict", "predict_file")):
        wanted = FLAGS[name].value or (name == "do_predict" and FLAGS.do_eval)
        if wanted and not FLAGS[file_flag].value:
            if FLAGS[name].present or name == "do_predict":
                raise app.UsageError(f"--{name} needs --{file_flag}.")
            logging.info("No --%s: not training.", file_flag)
            wanted = False
        modes[name] = wanted
    if not any(modes.values()):
        raise app.UsageError("Nothing to do: give --do_train and/or --do_predict.")
    return modes["do_train"], modes["do_predict"]


def _check_flags() -> None:
    for name in ("vocab_file", "output_dir"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required.")
    if FLAGS["eval_batch_size"].present:
        raise app.UsageError("run_squad predicts with --predict_batch_size; --eval_batch_size "
                             "is not used.")
    if FLAGS["max_eval_steps"].present and FLAGS.max_eval_steps > 0:
        raise app.UsageError("--max_eval_steps: answers need every feature of a question, so "
                             "SQuAD always predicts the whole --predict_file.")
    if FLAGS.max_seq_length <= FLAGS.max_query_length + 3:
        raise app.UsageError(f"--max_seq_length ({FLAGS.max_seq_length}) must exceed "
                             f"--max_query_length ({FLAGS.max_query_length}) + 3.")
    for name in ("doc_stride", "n_best_size", "max_answer_length", "predict_batch_size"):
        if FLAGS[name].value <= 0:
            raise app.UsageError(f"--{name} must be > 0.")


def _evaluate_fn(data: squad.SquadData, output_dir: str, chief: bool):
    """unique_ids, start_logits, end_logits -> answers written (chief) and scored."""
    version_2 = FLAGS.version_2_with_negative
    threshold = FLAGS.null_score_diff_threshold
    scored = squad_metrics.has_gold_answers(data.articles)
    if not scored:
        logging.info("%s has no gold answers: predictions are written, not scored.",
                     FLAGS.predict_file)
    options = dict(n_best_size=FLAGS.n_best_size, max_answer_length=FLAGS.max_answer_length,
                   do_lower_case=FLAGS.do_lower_case, version_2_with_negative=version_2,
                   null_score_diff_threshold=threshold)

    def evaluate(unique_ids, start_logits, end_logits) -> dict[str, float]:
        result = compute_predictions(data.examples, data.features, unique_ids, start_logits,
                                     end_logits, **options)
        if chief:
            paths = write_predictions(output_dir, result)
            logging.info("Wrote %s.", ", ".join(paths.values()))
        if not scored:
            return {}
        if version_2:
            # Scored with the threshold the predictions used: the numbers are those of
            # predictions.json as written.
            return squad_metrics.evaluate_v2(data.articles, result.predictions,
                                             result.null_odds, na_prob_thresh=threshold)
        return squad_metrics.evaluate_v1(data.articles, result.predictions)

    return evaluate


def main(argv) -> None:
    del argv
    script_flags.start_main(FLAGS)
    if FLAGS.verbose_logging:
        logging.getLogger("bert_tf.squad").setLevel(logging.DEBUG)
    _check_flags()
    do_train, do_predict = _resolve_modes()
    keras.utils.set_random_seed(FLAGS.seed)
    config = script_flags.bert_config_from_flags(FLAGS)
    script_flags.check_vocab_size(FLAGS.vocab_file, config.vocab_size)
    strategy = distribute.get_strategy(FLAGS.distribution_strategy, FLAGS.tpu)
    chief = distribute.is_chief(strategy)
    output_dir = FLAGS.output_dir
    os.makedirs(output_dir, exist_ok=True)
    init_fn = script_flags.init_fn_from_flags(FLAGS)
    if do_predict and not do_train and init_fn is None and not tf.train.latest_checkpoint(
            os.path.join(output_dir, "checkpoints")):
        raise app.UsageError(f"No checkpoint in {output_dir} and no --init_checkpoint: "
                             "nothing to predict with.")
    data = functools.partial(
        squad.squad_data, cache_dir=os.path.join(output_dir, "features"),
        vocab_file=FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case,
        max_seq_length=FLAGS.max_seq_length, doc_stride=FLAGS.doc_stride,
        max_query_length=FLAGS.max_query_length,
        version_2_with_negative=FLAGS.version_2_with_negative, seed=FLAGS.seed)
    train = data(FLAGS.train_file, is_training=True) if do_train else None
    predict = data(FLAGS.predict_file, is_training=False,
                   pad_to_multiple=FLAGS.predict_batch_size) if do_predict else None

    batch = FLAGS.train_batch_size
    num_train_steps = FLAGS.num_train_steps or (
        max(int(train.num_examples / batch * FLAGS.num_train_epochs), 1) if train else 1)
    num_warmup_steps = (FLAGS.num_warmup_steps if FLAGS.num_warmup_steps is not None
                        else int(num_train_steps * FLAGS.warmup_proportion))
    if train:
        logging.info("%d training examples (%d features), batch %d: %d steps (%d warmup).",
                     train.num_examples, train.num_features, batch, num_train_steps,
                     num_warmup_steps)
    eval_every = (FLAGS.eval_every_steps or None) if do_predict else None
    scored = bool(predict) and squad_metrics.has_gold_answers(predict.articles)
    task = SquadTask(
        config, FLAGS.max_seq_length, batch, FLAGS.predict_batch_size,
        train_file=train.path if train else None, eval_file=predict.path if predict else None,
        evaluate_fn=_evaluate_fn(predict, output_dir, chief) if predict else None,
        seed=FLAGS.seed,
        bucket_lengths=script_flags.bucket_lengths_from_flags(FLAGS, FLAGS.max_seq_length))
    args = script_flags.training_args_from_flags(
        FLAGS, num_train_steps, do_train, do_predict, max_eval_steps=None,
        eval_every_steps=eval_every,
        best_metric=FLAGS.best_metric or ("f1" if eval_every and scored else None),
        best_metric_mode=FLAGS.best_metric_mode)
    if chief:
        config.to_json_file(os.path.join(output_dir, "bert_config.json"))
    optimizer_fn = script_flags.optimizer_fn_from_flags(FLAGS, num_train_steps, num_warmup_steps)

    results = trainer.run(task, args, optimizer_fn, strategy=strategy, init_fn=init_fn)
    if do_train and chief:
        # The fine-tuned model as one file (for export_savedmodel --keras_model).
        model = task.build_model(FLAGS.dtype)
        latest = tf.train.latest_checkpoint(os.path.join(output_dir, "checkpoints"))
        tf.train.Checkpoint(model=model).read(latest).assert_existing_objects_matched() \
            .expect_partial()
        script_flags.save_keras(model, os.path.join(output_dir, "model.keras"))
    logging.info("Final: %s", results)


def run() -> None:
    """Console entry point (e.g. `bert-squad`)."""
    command.run(main, "bert-squad")


if __name__ == "__main__":
    run()
