"""`BertTokenClassifier`: one label per token (NER / tagging)."""
from __future__ import annotations

from typing import Any

import keras

from bert_tf.layers.dropout import Dropout
from bert_tf.models.encoder import BertEncoder, encoder_inputs
from bert_tf.models.task import TaskModel


@keras.saving.register_keras_serializable(package="bert_tf")
class BertTokenClassifier(TaskModel):
    """dropout(sequence_output) -> dense per token.

    Inputs (dict, int32 [batch, seq_len]): `input_ids`, `input_mask`, `segment_ids`.
    Outputs (dict, float32): `logits` [batch, seq_len, num_classes].
    """

    def __init__(self, encoder: BertEncoder, num_classes: int, dropout: float | None = None,
                 **kwargs):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        config = encoder.bert_config
        dropout = config.hidden_dropout_prob if dropout is None else dropout
        policy = encoder.dtype_policy

        # === Layers ===
        self.encoder = encoder
        self.dropout_layer = Dropout(dropout, dtype=policy, name="dropout")
        self.output_dense = keras.layers.Dense(
            num_classes, kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=config.initializer_range), dtype=policy, name="logits")

        # === Functional model ===
        inputs = encoder_inputs()
        sequence = encoder(inputs)["sequence_output"]
        logits = self.output_dense(self.dropout_layer(sequence))
        super().__init__(inputs=inputs, outputs={"logits": keras.ops.cast(logits, "float32")},
                         **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.dropout = dropout

    def get_config(self) -> dict[str, Any]:
        return self._config_with_encoder(num_classes=self.num_classes, dropout=self.dropout)
