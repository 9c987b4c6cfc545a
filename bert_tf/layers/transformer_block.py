"""One post-LayerNorm transformer block, as in the original BERT."""
from __future__ import annotations

import keras

from bert_tf.layers import activations
from bert_tf.layers.attention import SelfAttention, gather_positions
from bert_tf.layers.dropout import Dropout


@keras.saving.register_keras_serializable(package="bert_tf")
class TransformerBlock(keras.layers.Layer):
    """attention -> dropout -> +residual -> LayerNorm -> dense+act -> dense -> dropout ->
    +residual -> LayerNorm.

    Inputs: hidden float [batch, seq_len, hidden_size]; input_mask int [batch, seq_len];
    optional query_positions int [batch, num_queries].
    Output: float [batch, seq_len, hidden_size], or [batch, num_queries, hidden_size] with
    `query_positions`: those rows of the full output, computed without the other rows'
    attention queries, feed-forward and LayerNorms (see `SelfAttention`).
    LayerNorm statistics are computed in float32 (Keras does so for float16/bfloat16 inputs).
    """

    def __init__(self, hidden_size: int, num_attention_heads: int, intermediate_size: int,
                 hidden_act: str = "gelu_approximate", hidden_dropout_prob: float = 0.1,
                 attention_probs_dropout_prob: float = 0.1, initializer_range: float = 0.02,
                 layer_norm_eps: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = activations.canonical_name(hidden_act)
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps

        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        policy = self.dtype_policy
        self.attention = SelfAttention(hidden_size, num_attention_heads,
                                       attention_probs_dropout_prob, initializer_range,
                                       dtype=policy, name="attention")
        self.attention_dropout = Dropout(hidden_dropout_prob, dtype=policy,
                                         name="attention_dropout")
        self.attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, dtype=policy, name="attention_layer_norm")
        # The activation is applied in call(): training runs activations.get_for_training
        # (fused kernels for the tanh GELU), inference and export the plain function.
        self.intermediate = keras.layers.Dense(intermediate_size, kernel_initializer=init,
                                               dtype=policy, name="intermediate")
        self.activation = activations.get(self.hidden_act)
        self.training_activation = activations.get_for_training(self.hidden_act)
        self.output_dense = keras.layers.Dense(hidden_size, kernel_initializer=init,
                                               dtype=policy, name="output")
        self.output_dropout = Dropout(hidden_dropout_prob, dtype=policy,
                                      name="output_dropout")
        self.output_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, dtype=policy, name="output_layer_norm")

    def build(self, hidden_shape, input_mask_shape=None, query_positions_shape=None):
        self.attention.build(hidden_shape, input_mask_shape)
        self.attention_layer_norm.build(hidden_shape)
        self.intermediate.build(hidden_shape)
        self.output_dense.build(tuple(hidden_shape[:-1]) + (self.intermediate_size,))
        self.output_layer_norm.build(hidden_shape)

    def call(self, hidden, input_mask, query_positions=None, training=None):
        rows = None
        if query_positions is not None:
            # Gathered once: the attention's queries and the residual read the same rows.
            rows = gather_positions(hidden, query_positions)
        attended = self.attention(hidden, input_mask, query_rows=rows, training=training)
        attended = self.attention_dropout(attended, training=training)
        hidden = self.attention_layer_norm((hidden if rows is None else rows) + attended)
        activation = self.training_activation if training else self.activation
        expanded = self.output_dense(activation(self.intermediate(hidden)))
        expanded = self.output_dropout(expanded, training=training)
        return self.output_layer_norm(hidden + expanded)

    def compute_output_shape(self, hidden_shape, input_mask_shape=None,
                             query_positions_shape=None):
        if query_positions_shape is not None:
            return tuple(query_positions_shape) + (self.hidden_size,)
        return hidden_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size, num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size, hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            initializer_range=self.initializer_range, layer_norm_eps=self.layer_norm_eps)
        return config
