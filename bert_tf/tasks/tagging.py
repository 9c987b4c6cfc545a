"""The token classification (NER / tagging) task for the one training loop.

Loss: cross-entropy on the first word piece of every word (label_weights), averaged over
those pieces. Eval: entity-level precision/recall/F1 by conlleval's chunk rules, plus
accuracy over words, on the whole eval set.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from bert_tf.training import bucketing, metrics
from bert_tf.config import BertConfig
from bert_tf.models import INPUT_NAMES, BertEncoder, BertTokenClassifier
from bert_tf.tasks.base import FeatureFileTask
from data_prep.tasks.conll import parse_tagging_examples


class TaggingTask(FeatureFileTask):
    """Fine-tunes `BertTokenClassifier` with `labels` (tag names in id order).

    Batches: int32 `input_ids, input_mask, segment_ids, label_ids` and float32
    `label_weights`, all [batch, max_seq_length] (with `bucket_lengths`: [batch, bucket
    length], see `bert_tf.training.bucketing`).
    """

    def __init__(self, bert_config: BertConfig, labels: Sequence[str], max_seq_length: int,
                 train_batch_size: int = 32, eval_batch_size: int = 8,
                 train_file: str | None = None, eval_file: str | None = None,
                 seed: int = 12345, bucket_lengths: Sequence[int] | None = None):
        if max_seq_length > bert_config.max_position_embeddings:
            raise ValueError(f"max_seq_length ({max_seq_length}) exceeds the model's "
                             f"max_position_embeddings ({bert_config.max_position_embeddings}).")
        self.bert_config = bert_config
        self.labels = list(labels)
        self.max_seq_length = max_seq_length
        self.train_batch_size = train_batch_size
        self.eval_batch_size = eval_batch_size
        self.train_file = train_file
        self.eval_file = eval_file
        self.seed = seed
        self.bucket_lengths = tuple(bucket_lengths) if bucket_lengths else None

    def build_model(self, dtype: str) -> keras.Model:
        return BertTokenClassifier(BertEncoder.from_bert_config(self.bert_config, dtype=dtype),
                                   len(self.labels))

    def parse(self, serialized):
        return parse_tagging_examples(serialized, self.max_seq_length)

    def compute_loss(self, model, batch, training):
        logits = ops.cast(model({k: batch[k] for k in INPUT_NAMES}, training=training)["logits"],
                          "float32")
        weights = ops.cast(batch["label_weights"], "float32")
        log_probs = ops.log_softmax(logits, axis=-1)
        labels = ops.expand_dims(ops.cast(batch["label_ids"], "int32"), -1)
        nll = -ops.squeeze(ops.take_along_axis(log_probs, labels, axis=-1), -1)
        loss = ops.sum(nll * weights) / ops.maximum(ops.sum(weights), 1.0)
        correct = ops.cast(ops.equal(ops.argmax(logits, -1),
                                     ops.cast(batch["label_ids"], "int64")), "float32")
        accuracy = ops.sum(correct * weights) / ops.maximum(ops.sum(weights), 1.0)
        return loss, {"accuracy": accuracy}

    def eval_step(self, model, batch):
        logits = model({k: batch[k] for k in INPUT_NAMES}, training=False)["logits"]
        # Back to max_seq_length (zeros: weight 0, no word), so bucketed batches concatenate.
        width = self.max_seq_length
        return bucketing.with_example_index(batch, {
            "predictions": bucketing.pad_to_length(ops.cast(ops.argmax(logits, -1), "int32"),
                                                   width),
            "label_ids": bucketing.pad_to_length(batch["label_ids"], width),
            "label_weights": bucketing.pad_to_length(batch["label_weights"], width)})

    def predict(self, model: keras.Model, dataset: tf.data.Dataset) -> dict[str, np.ndarray]:
        """`eval_step` over every batch of `dataset`, in file order: int32 `predictions`,
        `label_ids` and float32 `label_weights`, each [n, max_seq_length]."""
        step = tf.function(lambda batch: self.eval_step(model, batch), reduce_retracing=True)
        parts: dict[str, list[np.ndarray]] = {}
        for batch in dataset:
            for key, value in step(batch).items():
                parts.setdefault(key, []).append(value.numpy())
        if not parts:
            empty = np.zeros((0, self.max_seq_length))
            return {"predictions": empty.astype(np.int32), "label_ids": empty.astype(np.int32),
                    "label_weights": empty.astype(np.float32)}
        return bucketing.restore_order({k: np.concatenate(v) for k, v in parts.items()})

    def finalize_eval(self, totals):
        gold, pred = self.word_tags(totals["label_ids"], totals["predictions"],
                                    totals["label_weights"])
        scores = metrics.entity_f1(gold, pred)
        words = sum(len(s) for s in gold)
        right = sum(g == p for gs, ps in zip(gold, pred) for g, p in zip(gs, ps))
        return {"eval_precision": scores["precision"], "eval_recall": scores["recall"],
                "eval_f1": scores["f1"], "eval_accuracy": right / words if words else 0.0,
                "eval_num_sentences": float(len(gold))}

    def word_tags(self, label_ids: np.ndarray, predictions: np.ndarray,
                  label_weights: np.ndarray) -> tuple[list[list[str]], list[list[str]]]:
        """Per sentence, gold and predicted tag names of every first piece (= every word)."""
        gold, pred = [], []
        for ids, preds, weights in zip(np.asarray(label_ids), np.asarray(predictions),
                                       np.asarray(label_weights)):
            keep = np.asarray(weights) > 0
            gold.append([self.labels[i] for i in ids[keep]])
            pred.append([self.labels[i] for i in preds[keep]])
        return gold, pred
