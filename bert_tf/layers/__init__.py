"""Keras 3 layers of BERT, one idea per file."""
from bert_tf.layers.attention import SelfAttention
from bert_tf.layers.dropout import Dropout
from bert_tf.layers.masked_lm_head import MaskedLMHead
from bert_tf.layers.position_embedding import PositionEmbedding
from bert_tf.layers.transformer_block import TransformerBlock

__all__ = ["Dropout", "MaskedLMHead", "PositionEmbedding", "SelfAttention", "TransformerBlock"]
