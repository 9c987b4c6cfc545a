"""Losses of the original BERT heads, computed in float32 whatever the compute dtype."""
from __future__ import annotations

import tensorflow as tf
from keras import ops


def _nll(logits, labels):
    """Negative log-likelihood of int `labels` [...] under float `logits` [..., classes].

    The fused sparse softmax cross-entropy kernel, not log_softmax + gather: the gather's
    gradient is a scatter into a dense [..., vocab] tensor, 10-15% of a small model's step on
    CPU (benchmarks/README.md).
    """
    return ops.sparse_categorical_crossentropy(ops.cast(labels, "int32"),
                                               ops.cast(logits, "float32"), from_logits=True)


def _masked_lm_loss(logits, masked_lm_ids, masked_lm_weights):
    weights = ops.cast(masked_lm_weights, "float32")
    return ops.sum(_nll(logits, masked_lm_ids) * weights) / (ops.sum(weights) + 1e-5)


# XLA fuses the softmax, its log-sum and the gradient into a few multi-threaded passes over the
# [batch * predictions, vocab] logits: 2x less CPU than the TF kernel for fwd+bwd, the largest
# non-matmul cost of a small model's step (benchmarks/README.md). Only the loss is compiled;
# the matmuls around it keep oneDNN.
_masked_lm_loss_xla = tf.function(_masked_lm_loss, jit_compile=True, reduce_retracing=True)


def masked_lm_loss(logits, masked_lm_ids, masked_lm_weights, jit_compile: bool = True):
    """sum(w * nll) / (sum(w) + 1e-5) over all masked positions, as the original.

    logits: float [batch, predictions, vocab]; ids: int [batch, predictions];
    weights: float [batch, predictions] (0 for padding predictions). Returns a float32 scalar.
    `jit_compile=False` computes it without XLA (same value).
    """
    loss_fn = _masked_lm_loss_xla if jit_compile else _masked_lm_loss
    return loss_fn(logits, masked_lm_ids, masked_lm_weights)


def next_sentence_loss(logits, next_sentence_labels):
    """Mean NLL of the NSP labels (0 = actual next, 1 = random). logits: [batch, 2]."""
    return ops.mean(_nll(logits, ops.reshape(next_sentence_labels, (-1,))))


def classification_loss(logits, labels):
    """Mean cross-entropy; logits float [batch, classes], labels int [batch]."""
    return ops.mean(_nll(logits, ops.reshape(labels, (-1,))))


def regression_loss(logits, labels):
    """Mean squared error; logits float [batch, 1], labels float [batch]."""
    predictions = ops.reshape(ops.cast(logits, "float32"), (-1,))
    return ops.mean(ops.square(predictions - ops.cast(ops.reshape(labels, (-1,)), "float32")))


def span_loss(start_logits, end_logits, start_positions, end_positions):
    """(CE(start) + CE(end)) / 2 over the sequence, as the original run_squad."""
    return (classification_loss(start_logits, start_positions)
            + classification_loss(end_logits, end_positions)) / 2.0
