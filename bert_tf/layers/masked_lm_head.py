"""Masked-LM head whose output projection is tied to the word-embedding table."""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from bert_tf.layers import activations
from bert_tf.layers.attention import gather_positions


@keras.saving.register_keras_serializable(package="bert_tf")
class MaskedLMHead(keras.layers.Layer):
    """Gathers the masked positions, then dense+act -> LayerNorm -> (x @ E^T + bias).

    Inputs:
      sequence_output: float [batch, seq_len, hidden_size].
      masked_lm_positions: int [batch, num_predictions], or None when `sequence_output`
        already holds only the masked rows ([batch, num_predictions, hidden_size]).
    Output: float32 logits [batch, num_predictions, vocab_size].

    Gathering before the transform means the [hidden, vocab] matmul runs on the ~15% masked
    positions only, as in the original. `embedding_layer` is the encoder's word-embedding
    layer; its table is used transposed, so no extra [vocab, hidden] weight exists. It is not
    part of the config: the owning model passes it again when it is rebuilt.
    """

    def __init__(self, vocab_size: int, hidden_size: int, hidden_act: str = "gelu_approximate",
                 initializer_range: float = 0.02, layer_norm_eps: float = 1e-12,
                 embedding_layer: keras.layers.Embedding | None = None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.hidden_act = activations.canonical_name(hidden_act)
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.embedding_layer = embedding_layer
        self.transform = keras.layers.Dense(
            hidden_size, activation=activations.get(self.hidden_act),
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
            dtype=self.dtype_policy, name="transform")
        self.layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps,
                                                          dtype=self.dtype_policy,
                                                          name="layer_norm")

    def build(self, sequence_output_shape, masked_lm_positions_shape=None):
        if self.embedding_layer is None:
            raise ValueError("MaskedLMHead needs the encoder's word-embedding layer "
                             "(embedding_layer=encoder.word_embeddings).")
        self.transform.build((None, None, self.hidden_size))
        self.layer_norm.build((None, None, self.hidden_size))
        self.output_bias = self.add_weight(name="output_bias", shape=(self.vocab_size,),
                                           initializer="zeros")

    def call(self, sequence_output, masked_lm_positions=None):
        gathered = sequence_output
        if masked_lm_positions is not None:
            gathered = gather_positions(sequence_output, masked_lm_positions)
        hidden = self.layer_norm(self.transform(gathered))
        table = ops.cast(self.embedding_layer.embeddings, self.compute_dtype)
        # hidden @ table^T as one 2-D MatMul with transpose_b: its gradient for the table is
        # d_logits^T @ hidden, already [vocab, hidden]. An explicit transpose of the table
        # costs a [hidden, vocab] transpose of that gradient every step.
        rows = tf.reshape(hidden, [-1, self.hidden_size])
        logits = tf.matmul(rows, table, transpose_b=True)
        logits = tf.reshape(logits, tf.concat([tf.shape(hidden)[:-1], [self.vocab_size]], 0))
        return ops.cast(logits, "float32") + ops.cast(self.output_bias, "float32")

    def compute_output_shape(self, sequence_output_shape, masked_lm_positions_shape=None):
        if masked_lm_positions_shape is None:
            return tuple(sequence_output_shape[:-1]) + (self.vocab_size,)
        return tuple(masked_lm_positions_shape) + (self.vocab_size,)

    def compute_output_spec(self, sequence_output, masked_lm_positions=None):
        shape = (sequence_output.shape[:-1] if masked_lm_positions is None
                 else masked_lm_positions.shape)
        return keras.KerasTensor(tuple(shape) + (self.vocab_size,), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                      hidden_act=self.hidden_act, initializer_range=self.initializer_range,
                      layer_norm_eps=self.layer_norm_eps)
        return config
