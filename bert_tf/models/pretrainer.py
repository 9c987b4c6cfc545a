"""`BertPretrainer`: encoder + masked-LM head + next-sentence head (the original `cls/`)."""
from __future__ import annotations

from typing import Any

import keras

from bert_tf.layers import MaskedLMHead
from bert_tf.models.encoder import BertEncoder, encoder_inputs
from bert_tf.models.task import TaskModel


@keras.saving.register_keras_serializable(package="bert_tf")
class BertPretrainer(TaskModel):
    """BERT's pretraining model: masked-LM and next-sentence prediction.

    Inputs (dict, int32): `input_ids`, `input_mask`, `segment_ids` [batch, seq_len] and
    `masked_lm_positions` [batch, max_predictions_per_seq].
    Outputs (dict, float32): `masked_lm_logits` [batch, max_predictions_per_seq, vocab_size]
    and `next_sentence_logits` [batch, 2] (index 0 = "B follows A", 1 = "B is random", as the
    original's `next_sentence_labels`).
    """

    def __init__(self, encoder: BertEncoder, **kwargs):
        config = encoder.bert_config
        policy = encoder.dtype_policy

        # === Layers ===
        self.encoder = encoder
        self.masked_lm_head = MaskedLMHead(
            config.vocab_size, config.hidden_size, config.hidden_act, config.initializer_range,
            config.layer_norm_eps, embedding_layer=encoder.word_embeddings, dtype=policy,
            name="masked_lm_head")
        self.next_sentence_head = keras.layers.Dense(
            2, kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=config.initializer_range), dtype=policy, name="next_sentence_head")

        # === Functional model ===
        inputs = encoder_inputs()
        inputs["masked_lm_positions"] = keras.Input(shape=(None,), dtype="int32",
                                                    name="masked_lm_positions")
        encoded = encoder({k: inputs[k] for k in ("input_ids", "input_mask", "segment_ids")})
        outputs = {
            "masked_lm_logits": self.masked_lm_head(encoded["sequence_output"],
                                                    inputs["masked_lm_positions"]),
            "next_sentence_logits": keras.ops.cast(
                self.next_sentence_head(encoded["pooled_output"]), "float32"),
        }
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        # Nothing beyond the encoder: the heads are sized from its config.

    def get_config(self) -> dict[str, Any]:
        return self._config_with_encoder()
