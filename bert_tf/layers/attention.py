"""BERT multi-head self-attention with a fused query/key/value projection."""
from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import ops

from bert_tf.layers.dropout import Dropout

# The original adds -10000 to the scores of padded keys; it stays finite in float16 too.
_MASK_BIAS = -10000.0


def gather_positions(sequence, positions):
    """Rows of `sequence` float [batch, seq_len, width] at int `positions` [batch, n]
    -> [batch, n, width].

    One row gather (GatherV2 with batch_dims=1), whose gradient scatters whole rows.
    `ops.take_along_axis` broadcasts the positions to [batch, n, width], transposes the
    sequence and gathers and scatters element by element, which cost several times more.
    """
    return tf.gather(sequence, ops.cast(positions, "int32"), axis=1, batch_dims=1)


@keras.saving.register_keras_serializable(package="bert_tf")
class SelfAttention(keras.layers.Layer):
    """Scaled dot-product self-attention as in the original BERT.

    Inputs:
      hidden: float [batch, seq_len, hidden_size].
      input_mask: int/bool [batch, seq_len], 1 for real tokens, 0 for padding.
      query_rows: optional float [batch, num_queries, hidden_size]: rows of `hidden` (the
        caller gathers them, and reuses them for its residual): attend from these only.
    Output: float [batch, seq_len or num_queries, hidden_size] (before the residual).

    One [hidden, 3*hidden] matmul computes query, key and value together (one large GEMM is
    faster than three small ones); the kernel's columns are [query | key | value], each laid out
    head-major, which is how checkpoint conversion concatenates the original's three kernels.
    Scores are scaled by 1/sqrt(head_dim) and the softmax runs in float32 under mixed precision.

    With `query_rows`, keys and values still cover every position but queries are projected
    and attended from the given rows only: the output rows equal those rows of the full
    output. The pretrainer's last block uses it, because its heads read only [CLS] and
    the masked positions.
    """

    def __init__(self, hidden_size: int, num_attention_heads: int,
                 attention_probs_dropout_prob: float = 0.1, initializer_range: float = 0.02,
                 **kwargs):
        super().__init__(**kwargs)
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by "
                             f"num_attention_heads {num_attention_heads}.")
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.head_dim = hidden_size // num_attention_heads
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.qkv = keras.layers.Dense(3 * hidden_size, kernel_initializer=init,
                                      dtype=self.dtype_policy, name="qkv")
        self.output_dense = keras.layers.Dense(hidden_size, kernel_initializer=init,
                                               dtype=self.dtype_policy, name="output")
        self.dropout = Dropout(attention_probs_dropout_prob, dtype=self.dtype_policy,
                               name="dropout")

    def build(self, hidden_shape, input_mask_shape=None, query_rows_shape=None):
        self.qkv.build(hidden_shape)
        self.output_dense.build(tuple(hidden_shape[:-1]) + (self.hidden_size,))

    def _split_heads(self, x, num_parts):
        """[batch, len, num_parts * hidden] -> num_parts x [batch, heads, len, head_dim]."""
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, length, num_parts, self.num_attention_heads, self.head_dim))
        x = ops.transpose(x, (2, 0, 3, 1, 4))
        # unstack, not x[0], x[1], ...: the gradient of strided slices is one zero-filled
        # full-size tensor per slice, summed; unstack's gradient is one stack.
        return ops.unstack(x, num_parts, axis=0)

    def _project(self, hidden, query_rows):
        if query_rows is None:
            return self._split_heads(self.qkv(hidden), 3)
        # Keys and values for every position, queries for the requested rows only: the same
        # kernel columns as the fused projection ([query | key | value]).
        kernel = ops.cast(self.qkv.kernel, self.compute_dtype)
        bias = ops.cast(self.qkv.bias, self.compute_dtype)
        size = self.hidden_size
        (query,) = self._split_heads(ops.matmul(query_rows, kernel[:, :size]) + bias[:size], 1)
        key, value = self._split_heads(ops.matmul(hidden, kernel[:, size:]) + bias[size:], 2)
        return query, key, value

    def call(self, hidden, input_mask, query_rows=None, training=None):
        batch, seq_len = ops.shape(hidden)[0], ops.shape(hidden)[1]
        query, key, value = self._project(hidden, query_rows)
        query = query * ops.cast(1.0 / math.sqrt(self.head_dim), query.dtype)
        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))  # [b, h, q, k]
        scores = ops.cast(scores, "float32")
        mask = ops.cast(ops.reshape(input_mask, (batch, 1, 1, seq_len)), "float32")
        scores = scores + (1.0 - mask) * _MASK_BIAS
        probs = ops.cast(ops.softmax(scores, axis=-1), self.compute_dtype)
        probs = self.dropout(probs, training=training)
        context = ops.matmul(probs, value)  # [b, h, q, head_dim]
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)),
                              (batch, ops.shape(query)[2], self.hidden_size))
        return self.output_dense(context)

    def compute_output_shape(self, hidden_shape, input_mask_shape=None, query_rows_shape=None):
        if query_rows_shape is not None:
            return tuple(query_rows_shape[:-1]) + (self.hidden_size,)
        return tuple(hidden_shape[:-1]) + (self.hidden_size,)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_attention_heads=self.num_attention_heads,
                      attention_probs_dropout_prob=self.attention_probs_dropout_prob,
                      initializer_range=self.initializer_range)
        return config
