"""What the bert_tf scripts share: flag definitions (define_* functions) and the helpers that
turn parsed flag values into plain library arguments. Only a script's `main` passes FLAGS in;
library code never reads them.
"""
from __future__ import annotations

import logging
import os
from typing import Callable

import keras
from absl import app, flags

from bert_tf.training import bucketing, cpu_allocator, distribute, trainer
from bert_tf.config import PRESETS, BertConfig
from bert_tf.checkpoints.init_checkpoint import init_from_checkpoint
from bert_tf.optimization import OPTIMIZERS, create_optimizer
from data_prep.tokenizer.tokenization import load_vocab


def define_model_flags() -> None:
    flags.DEFINE_string("bert_config_file", None, "bert_config.json of the model (original or "
                        "Hugging Face format). Alternative to --model.")
    flags.DEFINE_enum("model", None, list(PRESETS), "A preset size instead of --bert_config_file.")
    flags.DEFINE_string("vocab_file", None, "WordPiece vocab; with --model it sets vocab_size.")
    flags.DEFINE_integer("vocab_size", None, "vocab_size for --model when there is no vocab_file.")
    flags.DEFINE_string("init_checkpoint", None, "Initial weights: a bert_tf checkpoint (or a "
                        "bert_tf run's --output_dir), a .keras file, an original TF1 BERT "
                        "checkpoint or a Hugging Face model (dir or file).")


def define_training_flags(learning_rate: float, train_batch_size: int, eval_batch_size: int,
                          num_train_steps: int | None, num_warmup_steps: int | None) -> None:
    flags.DEFINE_string("output_dir", None, "Where checkpoints, summaries and results go.")
    flags.DEFINE_bool("do_train", True, "Train.")
    flags.DEFINE_bool("do_eval", True, "Evaluate after training.")
    flags.DEFINE_integer("train_batch_size", train_batch_size, "Global training batch size.")
    flags.DEFINE_integer("eval_batch_size", eval_batch_size, "Global eval batch size.")
    flags.DEFINE_float("learning_rate", learning_rate, "Peak learning rate.")
    flags.DEFINE_integer("num_train_steps", num_train_steps, "Number of optimizer steps.")
    flags.DEFINE_integer("num_warmup_steps", num_warmup_steps, "Linear warmup steps.")
    flags.DEFINE_enum("optimizer", "adamw", list(OPTIMIZERS), "adamw (original BERT) or lamb.")
    flags.DEFINE_float("weight_decay_rate", 0.01, "Decoupled weight decay (not on LayerNorm/bias).")
    flags.DEFINE_float("end_learning_rate", 0.0, "Learning rate at the end of the decay.")
    flags.DEFINE_float("power", 1.0, "Power of the polynomial decay (1 = linear).")
    flags.DEFINE_integer("num_accumulation_steps", 1, "Micro-batches per optimizer step.")
    flags.DEFINE_integer("save_checkpoints_steps", 1000, "Checkpoint every N steps.")
    flags.DEFINE_integer("keep_checkpoint_max", 5, "How many checkpoints to keep.")
    flags.DEFINE_integer("steps_per_loop", 100, "Steps per tf.function call and log line.")
    flags.DEFINE_integer("max_eval_steps", 100, "Eval batches at most (<=0: the whole set).")
    flags.DEFINE_enum("distribution_strategy", "one_device", list(distribute.STRATEGIES),
                      "tf.distribute strategy; multi_worker_mirrored reads TF_CONFIG.")
    flags.DEFINE_string("tpu", None, "TPU name or grpc:// address for --distribution_strategy=tpu.")
    flags.DEFINE_enum("dtype", "float32", list(distribute.DTYPES), "Compute precision.")
    flags.DEFINE_bool("jit_compile", False, "XLA-compile the forward/backward pass.")
    flags.DEFINE_bool("bfc_cpu_allocator", True, "Use TensorFlow's BFC allocator for host "
                      "memory (reuses it instead of faulting in fresh pages every step: 1.2-2x "
                      "faster steps on CPU; memory once used stays with the process). "
                      "TF_CPU_ALLOCATOR_USE_BFC in the environment overrides it.")
    flags.DEFINE_integer("seed", 12345, "Random seed (initialisation, data order, dropout).")
    flags.DEFINE_integer("eval_every_steps", 0, "Also evaluate every N steps while training "
                         "(0: only at the end).")
    flags.DEFINE_string("best_metric", None, "With periodic evaluation, keep the weights with "
                        "the best value of this eval metric in output_dir/best/ (default: the "
                        "task's main metric).")
    flags.DEFINE_enum("best_metric_mode", "max", ["max", "min"], "Whether higher is better.")


def bert_config_from_flags(values: flags.FlagValues) -> BertConfig:
    """The model config from --bert_config_file or --model (+ --vocab_file/--vocab_size)."""
    if bool(values.bert_config_file) == bool(values.model):
        raise flags.ValidationError("Give exactly one of --bert_config_file and --model.")
    if values.bert_config_file:
        return BertConfig.from_json_file(values.bert_config_file)
    overrides = {}
    if values.vocab_file:
        overrides["vocab_size"] = len(load_vocab(values.vocab_file))
    elif values.vocab_size:
        overrides["vocab_size"] = values.vocab_size
    return BertConfig.from_preset(values.model, **overrides)


def start_main(flag_values: flags.FlagValues) -> None:
    """What a training script's `main` does first, before any tensor exists: INFO logging and
    the CPU allocator that `--bfc_cpu_allocator` asks for (bert_tf/training/cpu_allocator.py)."""
    logging.getLogger().setLevel(logging.INFO)
    cpu_allocator.use_bfc_cpu_allocator(flag_values.bfc_cpu_allocator)


def training_args_from_flags(values: flags.FlagValues, num_train_steps: int, do_train: bool,
                             do_eval: bool, **overrides) -> trainer.TrainingArgs:
    """`TrainingArgs` from the flags of `define_training_flags` (+ per-script overrides)."""
    args = dict(
        output_dir=values.output_dir, train_batch_size=values.train_batch_size,
        num_train_steps=num_train_steps, steps_per_loop=values.steps_per_loop,
        save_checkpoints_steps=values.save_checkpoints_steps,
        keep_checkpoint_max=values.keep_checkpoint_max,
        num_accumulation_steps=values.num_accumulation_steps,
        max_eval_steps=values.max_eval_steps if values.max_eval_steps > 0 else None,
        dtype=values.dtype, jit_compile=values.jit_compile, do_train=do_train, do_eval=do_eval)
    args.update(overrides)
    return trainer.TrainingArgs(**args)


def optimizer_fn_from_flags(values: flags.FlagValues, num_train_steps: int,
                            num_warmup_steps: int) -> Callable[[], keras.optimizers.Optimizer]:
    """A factory of the optimizer the flags describe (built later, under the strategy scope)."""
    return lambda: create_optimizer(values.learning_rate, num_train_steps, num_warmup_steps,
                                    values.optimizer, values.weight_decay_rate,
                                    values.end_learning_rate, values.power)


def init_fn_from_flags(values: flags.FlagValues) -> Callable[[keras.Model], None] | None:
    """Loads --init_checkpoint (any format) into a model; None without the flag."""
    path = values.init_checkpoint
    if not path:
        return None
    return lambda model: init_from_checkpoint(model, path)


def check_vocab_size(vocab_file: str, vocab_size: int) -> None:
    """UsageError when the vocab has more tokens than the model's embedding table."""
    size = len(load_vocab(vocab_file))
    if size > vocab_size:
        raise app.UsageError(f"--vocab_file has {size} tokens but the model's vocab_size is "
                             f"{vocab_size}: ids would be out of range.")


def save_keras(model: keras.Model, path: str) -> None:
    """model.save(path) atomically (Keras insists on the .keras suffix for the temp file)."""
    tmp = f"{path[:-len('.keras')]}.tmp-{os.getpid()}.keras"
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    logging.info("Saved %s.", path)


def define_bucketing_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """--length_bucketing and --bucket_boundaries (fine-tuning scripts; bert_tf/training/bucketing.py)."""
    flags.DEFINE_bool("length_bucketing", True, "Pad each batch only to its bucket's length "
                      "(the smallest --bucket_boundaries length that holds its longest "
                      "example; training groups examples of similar length within a shuffle "
                      "window) instead of to --max_seq_length. Same eval results either way.",
                      flag_values=flag_values)
    flags.DEFINE_string("bucket_boundaries", None, "Comma-separated bucket lengths for "
                        "--length_bucketing, e.g. 32,64,128 (--max_seq_length is added). "
                        "Default: multiples of 16 up to 128, then of 64.",
                        flag_values=flag_values)


def bucket_lengths_from_flags(values: flags.FlagValues,
                              max_seq_length: int) -> tuple[int, ...] | None:
    """The bucket lengths the flags ask for; None (fixed length) without --length_bucketing.

    On TPUs batches keep max_seq_length: TPUStrategy wants one static shape per input.
    """
    if not values.length_bucketing:
        return None
    if values.distribution_strategy == "tpu":
        if values["length_bucketing"].present:
            raise app.UsageError("--length_bucketing is not supported with "
                                 "--distribution_strategy=tpu (static shapes).")
        logging.info("TPU: length bucketing off (batches keep --max_seq_length).")
        return None
    try:
        lengths = bucketing.parse_bucket_lengths(values.bucket_boundaries, max_seq_length)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    logging.info("Length bucketing: %s (--length_bucketing=false pads every batch to %d).",
                 lengths, max_seq_length)
    return lengths
