"""BERT models: the encoder and the task models built on it (one model per file)."""
from bert_tf.models.classifier import BertClassifier
from bert_tf.models.encoder import INPUT_NAMES, BertEncoder, encoder_inputs, encoder_of
from bert_tf.models.pretrainer import BertPretrainer
from bert_tf.models.span_labeler import BertSpanLabeler
from bert_tf.models.token_classifier import BertTokenClassifier

__all__ = ["INPUT_NAMES", "BertClassifier", "BertEncoder", "BertPretrainer", "BertSpanLabeler",
           "BertTokenClassifier", "encoder_inputs", "encoder_of"]
