"""The interface every task (pretraining, GLUE, SQuAD, tagging) gives the one training loop."""
from __future__ import annotations

import abc

import keras
import tensorflow as tf

from bert_tf.training import bucketing, inputs


class Task(abc.ABC):
    """A task says what to build, what to read and how to score; `trainer.run` does the rest.

    Batches are dicts of tensors whose first dimension is the per-replica batch.
    """

    @abc.abstractmethod
    def build_model(self, dtype: str) -> keras.Model:
        """The Keras model, built under the strategy scope with the given dtype policy."""

    @abc.abstractmethod
    def train_dataset(self, input_context: tf.distribute.InputContext,
                      skip_batches: int) -> tf.data.Dataset:
        """Per-replica batches for training, repeated forever.

        `skip_batches` global steps were already trained (resume): skip that many batches so
        the data position survives a restart.
        """

    def eval_dataset(self, input_context: tf.distribute.InputContext,
                     max_batches: int | None = None) -> tf.data.Dataset | None:
        """Per-replica batches for evaluation (finite), or None when there is nothing to eval.
        max_batches: at most that many, and they hold the file's first examples (a capped
        length-bucketed eval scores the same examples as a capped fixed-length one)."""
        return None

    def has_eval(self) -> bool:
        """Whether `eval_dataset` gives data (the loop evaluates only then)."""
        return type(self).eval_dataset is not Task.eval_dataset

    @abc.abstractmethod
    def compute_loss(self, model: keras.Model, batch: dict,
                     training: bool) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """The scalar float32 loss on this replica's batch, plus named float32 scalars to log."""

    def eval_step(self, model: keras.Model, batch: dict) -> dict[str, tf.Tensor]:
        """Summable float32 scalars (totals and counts) for one eval batch."""
        raise NotImplementedError

    def finalize_eval(self, totals: dict[str, float]) -> dict[str, float]:
        """Metrics from the summed `eval_step` totals over the whole eval set."""
        raise NotImplementedError

    def input_files(self) -> list[str]:
        """The TFRecord files the task reads (named when one turns out to be corrupt)."""
        return []

    def on_checkpoint_restored(self, model: keras.Model) -> None:
        """Called after `init_checkpoint` loading is skipped because a run resumes."""


class FeatureFileTask(Task):
    """A fine-tuning task that reads one TFRecord of features for training and one for eval.

    Subclasses set `train_file`, `eval_file`, `train_batch_size`, `eval_batch_size`,
    `max_seq_length` and `seed` in their `__init__` and implement `parse` ([batch] serialized
    Examples -> dict of tensors). `eval_flag` names the eval file's flag in error messages.
    `bucket_lengths` (None: every batch at max_seq_length) turns on length bucketing
    (`bert_tf.training.bucketing`): sequence features come [batch, bucket length], and eval batches
    carry `example_index`, which `eval_step` passes on (`bucketing.with_example_index`) so the
    loop can put the outputs back in file order; sequence outputs must be padded back to
    max_seq_length (`bucketing.pad_to_length`).
    """

    train_file: str | None
    eval_file: str | None
    train_batch_size: int
    eval_batch_size: int
    max_seq_length: int
    seed: int
    bucket_lengths: tuple[int, ...] | None = None
    eval_flag = "eval_file"

    @abc.abstractmethod
    def parse(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        """Parses a [batch] string tensor of serialized Examples."""

    def dataset(self, file: str, batch_size: int, is_training: bool, input_context=None,
                skip_batches: int = 0, max_batches: int | None = None) -> tf.data.Dataset:
        """Parsed batches of a feature TFRecord (training: shuffled, repeated, full batches),
        length-bucketed when `bucket_lengths` is set. Eval: at most `max_batches` batches,
        made of the file's first max_batches x batch_size examples."""
        flag = "train_file" if is_training else self.eval_flag
        files = inputs.list_files(file, flag)
        max_batches = None if is_training else max_batches  # training repeats forever
        if self.bucket_lengths:
            return bucketing.bucketed_record_dataset(
                files, batch_size, is_training, self.parse, self.max_seq_length,
                self.bucket_lengths, input_context, skip_batches, self.seed,
                max_batches=max_batches)
        ds = inputs.record_dataset(files, batch_size, is_training, self.parse, input_context,
                                   skip_batches, self.seed)
        return ds.take(max_batches) if max_batches else ds

    def train_dataset(self, input_context, skip_batches: int) -> tf.data.Dataset:
        if not self.train_file:
            raise ValueError(f"{type(self).__name__} has no train_file.")
        batch = input_context.get_per_replica_batch_size(self.train_batch_size)
        return self.dataset(self.train_file, batch, True, input_context, skip_batches)

    def eval_dataset(self, input_context, max_batches: int | None = None
                     ) -> tf.data.Dataset | None:
        if not self.eval_file:
            return None
        batch = input_context.get_per_replica_batch_size(self.eval_batch_size)
        return self.dataset(self.eval_file, batch, False, input_context,
                            max_batches=max_batches)

    def has_eval(self) -> bool:
        return bool(self.eval_file)

    def input_files(self) -> list[str]:
        return inputs.list_flag_files((self.train_file, "train_file"),
                                      (self.eval_file, self.eval_flag))
