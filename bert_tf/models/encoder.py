"""`BertEncoder`: embeddings + transformer stack + pooler, as a functional Keras model."""
from __future__ import annotations

from typing import Any

import keras

from bert_tf.config import BertConfig
from bert_tf.layers import Dropout, PositionEmbedding, TransformerBlock

INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")


def encoder_inputs(seq_length: int | None = None) -> dict[str, keras.KerasTensor]:
    """The dict of int32 `keras.Input`s [batch, seq_length] every BERT model takes."""
    return {name: keras.Input(shape=(seq_length,), dtype="int32", name=name)
            for name in INPUT_NAMES}


@keras.saving.register_keras_serializable(package="bert_tf")
class BertEncoder(keras.Model):
    """The BERT encoder (the original `bert/` variable scope).

    Inputs (dict, int32 [batch, seq_len]): `input_ids`, `input_mask` (1 = token, 0 = padding),
    `segment_ids` (0 = sentence A, 1 = sentence B).
    Outputs (dict): `sequence_output` float [batch, seq_len, hidden_size] (last layer),
    `pooled_output` float [batch, hidden_size] (tanh(dense([CLS]))), and `encoder_outputs`,
    a list of every block's float [batch, seq_len, hidden_size] output.

    Arguments are the `bert_config.json` keys (see `BertConfig`); build one from a config with
    `BertEncoder.from_bert_config(config)`.
    """

    def __init__(self, vocab_size: int = 30522, hidden_size: int = 768,
                 num_hidden_layers: int = 12, num_attention_heads: int = 12,
                 intermediate_size: int = 3072, hidden_act: str = "gelu_approximate",
                 hidden_dropout_prob: float = 0.1, attention_probs_dropout_prob: float = 0.1,
                 max_position_embeddings: int = 512, type_vocab_size: int = 2,
                 initializer_range: float = 0.02, layer_norm_eps: float = 1e-12,
                 dtype: Any = None, **kwargs):
        config = BertConfig(vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
                            intermediate_size, hidden_act, hidden_dropout_prob,
                            attention_probs_dropout_prob, max_position_embeddings,
                            type_vocab_size, initializer_range, layer_norm_eps)
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)

        # === Layers ===
        # autocast=False: under mixed precision the lookup gathers float32 rows and casts
        # those ([batch, seq, hidden]), instead of casting the whole [vocab, hidden] table to
        # the compute dtype first; the rows are the same.
        self.word_embeddings = keras.layers.Embedding(
            vocab_size, hidden_size, embeddings_initializer=init, dtype=dtype,
            autocast=False, name="word_embeddings")
        self.position_embeddings = PositionEmbedding(
            max_position_embeddings, hidden_size, initializer_range, dtype=dtype,
            name="position_embeddings")
        self.segment_embeddings = keras.layers.Embedding(
            type_vocab_size, hidden_size, embeddings_initializer=init, dtype=dtype,
            name="segment_embeddings")
        self.embeddings_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, dtype=dtype, name="embeddings_layer_norm")
        self.embeddings_dropout = Dropout(
            hidden_dropout_prob, dtype=dtype, name="embeddings_dropout")
        self.transformer_layers = [
            TransformerBlock(hidden_size, num_attention_heads, intermediate_size,
                             config.hidden_act, hidden_dropout_prob,
                             attention_probs_dropout_prob, initializer_range, layer_norm_eps,
                             dtype=dtype, name=f"transformer_layer_{i}")
            for i in range(num_hidden_layers)]
        self.pooler = keras.layers.Dense(hidden_size, activation="tanh",
                                         kernel_initializer=init, dtype=dtype, name="pooler")

        # === Functional model ===
        inputs = encoder_inputs()
        hidden = self.embed(inputs)
        encoder_outputs = []
        for block in self.transformer_layers:
            hidden = block(hidden, inputs["input_mask"])
            encoder_outputs.append(hidden)
        pooled = self.pooler(hidden[:, 0, :])
        super().__init__(inputs=inputs,
                         outputs={"sequence_output": hidden, "pooled_output": pooled,
                                  "encoder_outputs": encoder_outputs},
                         dtype=dtype, **kwargs)

        # === Config ===
        self.bert_config = config

    def embed(self, inputs: dict) -> keras.KerasTensor:
        """Word + position + segment embeddings, LayerNorm and dropout: the first block's
        input, float [batch, seq_len, hidden_size]. Task models that wire the blocks
        themselves (`BertPretrainer`) start from here."""
        words = self.word_embeddings(inputs["input_ids"])
        hidden = words + self.position_embeddings(words) + \
            self.segment_embeddings(inputs["segment_ids"])
        return self.embeddings_dropout(self.embeddings_layer_norm(hidden))

    @classmethod
    def from_bert_config(cls, config: BertConfig, **kwargs) -> "BertEncoder":
        """Builds an encoder with the hyper-parameters of `config`."""
        return cls(**config.to_dict(), **kwargs)

    def get_config(self) -> dict[str, Any]:
        config = {"name": self.name, "trainable": self.trainable}
        config.update(self.bert_config.to_dict())
        config["dtype"] = keras.saving.serialize_keras_object(self.dtype_policy)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "BertEncoder":
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.saving.deserialize_keras_object(config["dtype"])
        return cls(**config)


def encoder_of(model: keras.Model) -> BertEncoder:
    """The `BertEncoder` of a bert_tf model (the model itself, or a task model's `.encoder`);
    ValueError naming the model's type when it has none."""
    if isinstance(model, BertEncoder):
        return model
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, BertEncoder):
        raise ValueError(f"{type(model).__name__} has no BertEncoder.")
    return encoder
