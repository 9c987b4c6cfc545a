"""The sentence (pair) classification / regression task (GLUE) for the one training loop.

Reads the feature TFRecords of `data_prep.tasks.classifier_features`; loss as the original
run_classifier (cross-entropy, or mean squared error for regression such as STS-B). Eval
gathers every example's logits so that the task metrics (F1, Matthews, Spearman, ...) are
computed exactly over the whole dev set, padding examples (is_real_example 0) excluded.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from bert_tf.training import bucketing, losses, metrics
from bert_tf.config import BertConfig
from bert_tf.models import INPUT_NAMES, BertClassifier, BertEncoder
from bert_tf.tasks.base import FeatureFileTask
from data_prep.tasks.classifier_features import parse_classifier_examples


class ClassificationTask(FeatureFileTask):
    """Fine-tunes `BertClassifier` (num_classes = 1: regression).

    Batches: int32 `input_ids, input_mask, segment_ids` [batch, max_seq_length] (with
    `bucket_lengths`: [batch, bucket length], see `bert_tf.training.bucketing`), `label_ids` [batch]
    (int32; float32 for regression), int32 `is_real_example` [batch].
    Eval metrics: `eval_loss` and `eval_<name>` for each of `metric_names` (see
    `bert_tf.training.metrics.METRICS`), over real examples only.
    """

    def __init__(self, bert_config: BertConfig, num_classes: int, max_seq_length: int,
                 train_batch_size: int = 32, eval_batch_size: int = 8,
                 train_file: str | None = None, eval_file: str | None = None,
                 metric_names: Sequence[str] = ("accuracy",), seed: int = 12345,
                 bucket_lengths: Sequence[int] | None = None):
        if max_seq_length > bert_config.max_position_embeddings:
            raise ValueError(f"max_seq_length ({max_seq_length}) exceeds the model's "
                             f"max_position_embeddings ({bert_config.max_position_embeddings}).")
        unknown = [n for n in metric_names if n not in metrics.METRICS]
        if unknown:  # fail here, not after training
            raise ValueError(f"Unknown metric(s) {unknown}; known: {sorted(metrics.METRICS)}.")
        self.bert_config = bert_config
        self.num_classes = num_classes
        self.max_seq_length = max_seq_length
        self.train_batch_size = train_batch_size
        self.eval_batch_size = eval_batch_size
        self.train_file = train_file
        self.eval_file = eval_file
        self.metric_names = tuple(metric_names)
        self.seed = seed
        self.bucket_lengths = tuple(bucket_lengths) if bucket_lengths else None

    @property
    def is_regression(self) -> bool:
        return self.num_classes == 1

    def build_model(self, dtype: str) -> keras.Model:
        return BertClassifier(BertEncoder.from_bert_config(self.bert_config, dtype=dtype),
                              self.num_classes)

    def parse(self, serialized):
        return parse_classifier_examples(serialized, self.max_seq_length, self.is_regression)

    def compute_loss(self, model, batch, training):
        logits = model({k: batch[k] for k in INPUT_NAMES}, training=training)["logits"]
        if self.is_regression:
            return losses.regression_loss(logits, batch["label_ids"]), {}
        correct = ops.equal(ops.argmax(logits, -1), ops.cast(batch["label_ids"], "int64"))
        return (losses.classification_loss(logits, batch["label_ids"]),
                {"accuracy": ops.mean(ops.cast(correct, "float32"))})

    def eval_step(self, model, batch):
        # Per-example outputs: the loop gathers them over the whole eval set.
        logits = model({k: batch[k] for k in INPUT_NAMES}, training=False)["logits"]
        return bucketing.with_example_index(batch, {
            "logits": logits, "label_ids": batch["label_ids"],
            "is_real_example": batch["is_real_example"]})

    def finalize_eval(self, totals):
        return evaluate_logits(totals["logits"], totals["label_ids"],
                               totals["is_real_example"], self.metric_names,
                               self.is_regression)


def evaluate_logits(logits: np.ndarray, label_ids: np.ndarray, is_real_example: np.ndarray,
                    metric_names: Sequence[str], regression: bool) -> dict[str, float]:
    """`eval_loss`, `eval_<metric>` and `eval_num_examples` over the real examples.

    logits: float [n, num_classes]; label_ids: int [n] (float for regression);
    is_real_example: [n], 0 for padding rows (dropped).
    """
    keep = np.asarray(is_real_example).reshape(-1).astype(bool)
    logits = np.asarray(logits, np.float64)[keep]
    labels = np.asarray(label_ids)[keep]
    if regression:
        predictions = logits[:, 0]
        loss = np.mean((predictions - labels) ** 2) if labels.size else 0.0
    else:
        predictions = np.argmax(logits, axis=-1)
        log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        nll = -log_probs[np.arange(labels.size), labels.astype(np.int64)]
        loss = np.mean(nll) if labels.size else 0.0
    result = {"eval_loss": float(loss), "eval_num_examples": float(labels.size)}
    result.update({f"eval_{k}": v
                   for k, v in metrics.compute(metric_names, predictions, labels).items()})
    return result


def predict(model: keras.Model, dataset: tf.data.Dataset) -> dict[str, np.ndarray]:
    """Runs `model` over every batch: float32 `logits` [n, num_classes], `label_ids` [n] and
    `is_real_example` [n] (padding rows included; drop them with is_real_example), in file
    order also when the batches are length-bucketed."""
    # reduce_retracing: bucketed batches come in a few lengths; one trace serves them all.
    @tf.function(reduce_retracing=True)
    def forward(batch):
        return model({k: batch[k] for k in INPUT_NAMES}, training=False)["logits"]

    parts: dict[str, list[np.ndarray]] = {"logits": [], "label_ids": [], "is_real_example": []}
    for batch in dataset:
        parts["logits"].append(forward(batch).numpy())
        for key in ("label_ids", "is_real_example", bucketing.EXAMPLE_INDEX):
            if key in batch:
                parts.setdefault(key, []).append(batch[key].numpy())
    return bucketing.restore_order(
        {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in parts.items()})


def output_probabilities(logits: np.ndarray, regression: bool) -> np.ndarray:
    """Softmax probabilities float [n, num_classes]; for regression the value itself [n, 1]."""
    logits = np.asarray(logits, np.float64)
    if regression:
        return logits
    return np.exp(logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True))
