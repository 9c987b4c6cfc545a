"""bert_tf: BERT on TensorFlow 2.21 + Keras 3.

    import bert_tf
    encoder = bert_tf.BertEncoder.from_bert_config(bert_tf.BertConfig.from_preset("tiny"))
    classifier = bert_tf.BertClassifier(encoder, num_classes=2)
"""
from bert_tf.config import PRESETS, BertConfig
from bert_tf.models import (BertClassifier, BertEncoder, BertPretrainer, BertSpanLabeler,
                            BertTokenClassifier)

__version__ = "0.1.0"

__all__ = ["PRESETS", "BertClassifier", "BertConfig", "BertEncoder", "BertPretrainer",
           "BertSpanLabeler", "BertTokenClassifier"]
