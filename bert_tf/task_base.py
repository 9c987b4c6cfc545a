"""The interface every task (pretraining, GLUE, SQuAD, tagging) gives the one training loop."""
from __future__ import annotations

import abc

import keras
import tensorflow as tf


class Task(abc.ABC):
    """A task says what to build, what to read and how to score; `training.run` does the rest.

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

    def eval_dataset(self, input_context: tf.distribute.InputContext) -> tf.data.Dataset | None:
        """Per-replica batches for evaluation (finite), or None when there is nothing to eval."""
        return None

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

    def on_checkpoint_restored(self, model: keras.Model) -> None:
        """Called after `init_checkpoint` loading is skipped because a run resumes."""
