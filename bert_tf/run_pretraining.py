"""Pretrains BERT (masked LM + next sentence) on data_prep's TFRecords.

    python -m bert_tf.run_pretraining --flagfile=flags/pretrain_tiny.flags
    python -m bert_tf.run_pretraining --flagfile=flags/pretrain_tiny_dynamic.flags

--dynamic_masking draws the masked-LM masks in the input pipeline (bert_tf/training/dynamic_masking.py;
records of create_pretraining_data --masking=none, or static ones, whose stored masks are then
replaced); --nsp=false trains the masked LM alone (records of --task=none have no
next-sentence labels).
"""
from __future__ import annotations

import logging
import os

import keras
from absl import app, flags

from bert_tf import script_flags
from bert_tf.training import distribute, dynamic_masking, trainer
from bert_tf.tasks.pretraining import PretrainingTask
from data_prep import command

FLAGS = flags.FLAGS

script_flags.define_model_flags()
script_flags.define_training_flags(learning_rate=5e-5, train_batch_size=32, eval_batch_size=8,
                                   num_train_steps=100000, num_warmup_steps=10000)
flags.DEFINE_string("input_file", None, "TFRecord shards: comma-separated globs.")
flags.DEFINE_string("eval_input_file", None, "Eval TFRecord shards (default: none, no eval).")
flags.DEFINE_integer("max_seq_length", 128, "Sequence length the records were written with.")
flags.DEFINE_integer("max_predictions_per_seq", 20, "Masked positions per record (with "
                     "--dynamic_masking: the most masked positions per sequence).")
flags.DEFINE_bool("dynamic_masking", False, "Draw the masked-LM masks while reading (new masks "
                  "every epoch, seeded by --seed and the batch's position) instead of reading "
                  "the records' static ones. Needs --vocab_file.")
flags.DEFINE_float("masked_lm_prob", 0.15, "With --dynamic_masking: fraction of tokens masked.")
flags.DEFINE_bool("whole_word_masking", False, "With --dynamic_masking: mask whole words (a "
                  "'##' piece goes with the word before it).")
flags.DEFINE_bool("nsp", True, "Train the next-sentence head too (the records need "
                  "next_sentence_labels); false: masked LM only.")
flags.DEFINE_bool("full_last_layer", False,
                  "Run the last transformer block on every position, as the original, instead of "
                  "only on [CLS] and the masked positions (same result, more work).")


def main(argv) -> None:
    del argv
    script_flags.start_main(FLAGS)
    for name in ("input_file", "output_dir"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required.")
    masking = None
    if FLAGS.dynamic_masking:
        if not FLAGS.vocab_file:
            raise app.UsageError("--dynamic_masking needs --vocab_file (the special and '##' "
                                 "token ids).")
        masking = dynamic_masking.MaskingOptions.from_vocab_file(
            FLAGS.vocab_file, masked_lm_prob=FLAGS.masked_lm_prob,
            max_predictions_per_seq=FLAGS.max_predictions_per_seq,
            whole_word_masking=FLAGS.whole_word_masking)
    elif FLAGS.whole_word_masking or FLAGS["masked_lm_prob"].present:
        raise app.UsageError("--whole_word_masking and --masked_lm_prob apply to "
                             "--dynamic_masking only (static masks are drawn by "
                             "create_pretraining_data).")
    keras.utils.set_random_seed(FLAGS.seed)
    config = script_flags.bert_config_from_flags(FLAGS)
    strategy = distribute.get_strategy(FLAGS.distribution_strategy, FLAGS.tpu)
    task = PretrainingTask(config, FLAGS.input_file, FLAGS.train_batch_size,
                           FLAGS.max_seq_length, FLAGS.max_predictions_per_seq,
                           eval_input_file=FLAGS.eval_input_file,
                           eval_batch_size=FLAGS.eval_batch_size, seed=FLAGS.seed,
                           full_last_layer=FLAGS.full_last_layer, masking=masking,
                           nsp=FLAGS.nsp)
    args = script_flags.training_args_from_flags(
        FLAGS, FLAGS.num_train_steps, FLAGS.do_train,
        FLAGS.do_eval and bool(FLAGS.eval_input_file))
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    if distribute.is_chief(strategy):
        config.to_json_file(os.path.join(FLAGS.output_dir, "bert_config.json"))
    if FLAGS.vocab_file:
        script_flags.check_vocab_size(FLAGS.vocab_file, config.vocab_size)
    results = trainer.run(
        task, args, script_flags.optimizer_fn_from_flags(FLAGS, FLAGS.num_train_steps,
                                                         FLAGS.num_warmup_steps),
        strategy=strategy, init_fn=script_flags.init_fn_from_flags(FLAGS))
    logging.info("Final: %s", results)


def run() -> None:
    """Console entry point `bert-pretrain`."""
    command.run(main, "bert-pretrain")


if __name__ == "__main__":
    run()
