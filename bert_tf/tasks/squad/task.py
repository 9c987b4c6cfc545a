"""The SQuAD task (v1.1 and v2.0) for the one training loop.

Training reads the feature TFRecords of `data_prep.tasks.squad_features`; the loss is the original's:
the mean of the start and end position cross-entropies over the sequence. Evaluation gathers
every feature's start/end logits and unique id and hands them to `evaluate_fn`, which turns
them into answers and scores (post-processing needs the examples and token maps, which live
outside the graph).

The logits evaluation hands on are set to PADDING_LOGIT at padding positions (input_mask 0).
The original ranks the n-best start/end candidates over every position, padding included,
and only then drops those that are not context tokens, so a padding position could take one
of the n_best_size slots; its logit depends on how far the feature is padded, which length
bucketing changes. With padding masked, answers are the same however a feature is padded
(tests/test_bucketing.py), and a padding position, never an answer, takes no slot.
"""
from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from bert_tf.training import bucketing, losses
from bert_tf.config import BertConfig
from bert_tf.models import INPUT_NAMES, BertEncoder, BertSpanLabeler
from bert_tf.tasks.base import FeatureFileTask
from data_prep.tasks.squad_features import parse_squad_features

# unique_ids int [n], start_logits float32 [n, seq], end_logits float32 [n, seq] -> metrics.
EvaluateFn = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, float]]

# The start/end logit of a padding position in evaluation outputs (below any real logit).
PADDING_LOGIT = -10000.0


class SquadTask(FeatureFileTask):
    """Fine-tunes `BertSpanLabeler` on SQuAD features.

    Batches: int32 `input_ids, input_mask, segment_ids` [batch, max_seq_length] (with
    `bucket_lengths`: [batch, bucket length], see `bert_tf.training.bucketing`) and int32
    `unique_ids, start_positions, end_positions, is_impossible` [batch].
    eval_file + evaluate_fn: the features to evaluate (padding records have unique id 0) and
    what scores their logits (e.g. post-processing + the official metrics).
    """

    eval_flag = "predict_file"

    def __init__(self, bert_config: BertConfig, max_seq_length: int = 384,
                 train_batch_size: int = 12, predict_batch_size: int = 8,
                 train_file: str | None = None, eval_file: str | None = None,
                 evaluate_fn: EvaluateFn | None = None, seed: int = 12345,
                 bucket_lengths: Sequence[int] | None = None):
        if max_seq_length > bert_config.max_position_embeddings:
            raise ValueError(f"max_seq_length ({max_seq_length}) exceeds the model's "
                             f"max_position_embeddings ({bert_config.max_position_embeddings}).")
        if eval_file and evaluate_fn is None:
            raise ValueError("SquadTask with an eval_file needs an evaluate_fn.")
        self.bert_config = bert_config
        self.max_seq_length = max_seq_length
        self.train_batch_size = train_batch_size
        self.eval_batch_size = predict_batch_size
        self.train_file = train_file
        self.eval_file = eval_file
        self.evaluate_fn = evaluate_fn
        self.seed = seed
        self.bucket_lengths = tuple(bucket_lengths) if bucket_lengths else None

    def build_model(self, dtype: str) -> keras.Model:
        encoder = BertEncoder.from_bert_config(self.bert_config, dtype=dtype)
        # Spans come from the sequence output: the pooler gets no gradient. The original's
        # optimizer skips such variables; freezing it does the same without a Keras warning
        # per run or optimizer slots that never change.
        encoder.pooler.trainable = False
        return BertSpanLabeler(encoder)

    def parse(self, serialized):
        return parse_squad_features(serialized, self.max_seq_length)

    def compute_loss(self, model, batch, training):
        outputs = model({k: batch[k] for k in INPUT_NAMES}, training=training)
        return losses.span_loss(outputs["start_logits"], outputs["end_logits"],
                                batch["start_positions"], batch["end_positions"]), {}

    def eval_step(self, model, batch):
        # Per-feature outputs: the loop gathers them over the whole eval set.
        start, end = eval_logits(model, batch, self.max_seq_length)
        return bucketing.with_example_index(batch, {
            "unique_ids": batch["unique_ids"], "start_logits": start, "end_logits": end})

    def finalize_eval(self, totals):
        return self.evaluate_fn(totals["unique_ids"], totals["start_logits"],
                                totals["end_logits"])


def eval_logits(model: keras.Model, batch: dict, max_seq_length: int
                ) -> tuple[tf.Tensor, tf.Tensor]:
    """float32 start and end logits [batch, max_seq_length] of a batch of any length up to
    max_seq_length, PADDING_LOGIT at padding positions and beyond the batch's length."""
    outputs = model({k: batch[k] for k in INPUT_NAMES}, training=False)
    real = tf.cast(batch["input_mask"], tf.bool)
    return tuple(bucketing.pad_to_length(tf.where(real, outputs[name], PADDING_LOGIT),
                                         max_seq_length, PADDING_LOGIT)
                 for name in ("start_logits", "end_logits"))


def predict_logits(model: keras.Model, dataset: tf.data.Dataset,
                   max_seq_length: int | None = None) -> dict[str, np.ndarray]:
    """Runs `model` over every batch: int `unique_ids` [n] and float32 `start_logits`,
    `end_logits` [n, max_seq_length] (padding records included; they have unique id 0), in
    file order, padding positions at PADDING_LOGIT. `max_seq_length` defaults to the
    dataset's sequence width (give it for length-bucketed batches)."""
    width = max_seq_length or dataset.element_spec["input_ids"].shape[1]
    if width is None:
        raise ValueError("predict_logits: the batches have no fixed length; give "
                         "max_seq_length.")

    @tf.function(reduce_retracing=True)
    def forward(batch):
        return eval_logits(model, batch, width)

    parts: dict[str, list[np.ndarray]] = {"unique_ids": [], "start_logits": [],
                                          "end_logits": []}
    for batch in dataset:
        start, end = forward(batch)
        parts["unique_ids"].append(batch["unique_ids"].numpy())
        parts["start_logits"].append(start.numpy())
        parts["end_logits"].append(end.numpy())
        if bucketing.EXAMPLE_INDEX in batch:
            parts.setdefault(bucketing.EXAMPLE_INDEX, []).append(
                batch[bucketing.EXAMPLE_INDEX].numpy())
    return bucketing.restore_order(
        {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in parts.items()})
