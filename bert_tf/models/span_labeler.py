"""`BertSpanLabeler`: start/end logits over the sequence (SQuAD)."""
from __future__ import annotations

from typing import Any

import keras

from bert_tf.models.encoder import BertEncoder, encoder_inputs
from bert_tf.models.task import TaskModel


@keras.saving.register_keras_serializable(package="bert_tf")
class BertSpanLabeler(TaskModel):
    """dense(sequence_output) -> 2 logits per token, as the original `run_squad.py`.

    Inputs (dict, int32 [batch, seq_len]): `input_ids`, `input_mask`, `segment_ids`.
    Outputs (dict, float32 [batch, seq_len]): `start_logits`, `end_logits`. Padding is not
    masked here; answer decoding only considers real context tokens.
    """

    def __init__(self, encoder: BertEncoder, **kwargs):
        config = encoder.bert_config

        # === Layers ===
        self.encoder = encoder
        self.span_dense = keras.layers.Dense(
            2, kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=config.initializer_range), dtype=encoder.dtype_policy, name="span_logits")

        # === Functional model ===
        inputs = encoder_inputs()
        logits = keras.ops.cast(self.span_dense(encoder(inputs)["sequence_output"]), "float32")
        super().__init__(inputs=inputs,
                         outputs={"start_logits": logits[:, :, 0], "end_logits": logits[:, :, 1]},
                         **kwargs)

        # === Config ===
        # Nothing beyond the encoder.

    def get_config(self) -> dict[str, Any]:
        return self._config_with_encoder()
