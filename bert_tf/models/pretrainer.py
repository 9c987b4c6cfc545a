"""`BertPretrainer`: encoder + masked-LM head + next-sentence head (the original `cls/`)."""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

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

    The heads read only [CLS] and the masked positions of the last block's output, so by
    default the last block computes just those rows (keys and values still cover the whole
    sequence); the logits equal the full computation's. At 20 predictions of 128 positions
    that skips about 5/6 of the last block. `full_last_layer=True` computes every row and
    gathers afterwards, as the original does.
    """

    def __init__(self, encoder: BertEncoder, full_last_layer: bool = False, **kwargs):
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
        positions = keras.Input(shape=(None,), dtype="int32", name="masked_lm_positions")
        inputs["masked_lm_positions"] = positions
        if full_last_layer:
            encoded = encoder({k: inputs[k] for k in ("input_ids", "input_mask",
                                                      "segment_ids")})
            masked_lm_logits = self.masked_lm_head(encoded["sequence_output"], positions)
            pooled = encoded["pooled_output"]
        else:
            hidden = encoder.embed(inputs)
            *blocks, last_block = encoder.transformer_layers
            for block in blocks:
                hidden = block(hidden, inputs["input_mask"])
            rows = ops.concatenate([ops.zeros_like(positions[:, :1]), positions], axis=1)
            last = last_block(hidden, inputs["input_mask"], query_positions=rows)
            masked_lm_logits = self.masked_lm_head(last[:, 1:, :])
            pooled = encoder.pooler(last[:, 0, :])
        outputs = {
            "masked_lm_logits": masked_lm_logits,
            "next_sentence_logits": ops.cast(self.next_sentence_head(pooled), "float32"),
        }
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.full_last_layer = full_last_layer

    def get_config(self) -> dict[str, Any]:
        return self._config_with_encoder(full_last_layer=self.full_last_layer)
