"""Learned absolute position embeddings."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bert_tf")
class PositionEmbedding(keras.layers.Layer):
    """Adds nothing; returns the first `seq_len` rows of a learned position table.

    Input: any tensor [batch, seq_len, ...] (only its shape is used).
    Output: float [1, seq_len, hidden_size] in the compute dtype, broadcastable onto the batch.
    The table has `max_position_embeddings` rows, so a model pretrained at 128 can continue at
    512 (BERT's phase 2) with the same weights, and one model takes batches of any length up
    to it (length bucketing); a longer static length is a ValueError.
    """

    def __init__(self, max_position_embeddings: int, hidden_size: int,
                 initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.max_position_embeddings = max_position_embeddings
        self.hidden_size = hidden_size
        self.initializer_range = initializer_range

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.max_position_embeddings, self.hidden_size),
            initializer=keras.initializers.TruncatedNormal(stddev=self.initializer_range))

    def call(self, inputs):
        seq_len = ops.shape(inputs)[1]
        # Any length up to the table's rows works (length-bucketed batches use several);
        # beyond it the slice would silently come out short and fail later in a broadcast.
        if isinstance(seq_len, int) and seq_len > self.max_position_embeddings:
            raise ValueError(f"Sequence length {seq_len} exceeds max_position_embeddings "
                             f"({self.max_position_embeddings}).")
        table = ops.cast(self.embeddings, self.compute_dtype)
        return ops.expand_dims(table[:seq_len], 0)

    def compute_output_shape(self, input_shape):
        return (1, input_shape[1], self.hidden_size)

    def get_config(self):
        config = super().get_config()
        config.update(max_position_embeddings=self.max_position_embeddings,
                      hidden_size=self.hidden_size, initializer_range=self.initializer_range)
        return config
