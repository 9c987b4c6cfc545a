"""The model-FLOP count behind the benchmarks' MFU column, checked against the model's weights."""
import numpy as np
import pytest

import bert_tf
from benchmarks import common


@pytest.mark.parametrize("size", ["tiny", "mini"])
def test_pretraining_flops_count_every_matrix_weight_a_token_meets(size):
    config = bert_tf.BertConfig.from_preset(size, vocab_size=common.VOCAB_SIZE)
    layers, hidden, _ = common.SIZES[size]
    assert (config.num_hidden_layers, config.hidden_size) == (layers, hidden)
    pretrainer = bert_tf.BertPretrainer(bert_tf.BertEncoder.from_bert_config(config))
    seq, predictions = 16, 3
    pretrainer({"input_ids": np.ones((1, seq), "int32"), "input_mask": np.ones((1, seq), "int32"),
                "segment_ids": np.zeros((1, seq), "int32"),
                "masked_lm_positions": np.arange(1, predictions + 1, dtype="int32")[None]})
    size_of = {w.path: int(np.prod(w.shape)) for w in pretrainer.weights}
    per_token = sum(n for path, n in size_of.items()
                    if path.startswith("transformer_layer_") and path.endswith("/kernel"))
    per_prediction = (size_of["masked_lm_head/transform/kernel"]
                      + size_of["word_embeddings/embeddings"])  # the tied decoder
    per_sequence = size_of["pooler/kernel"] + size_of["next_sentence_head/kernel"]
    attention = layers * 4 * seq * seq * hidden  # QK^T and the weighted sum, forward
    forward = 2 * (seq * per_token + predictions * per_prediction + per_sequence) + attention
    assert common.pretraining_flops_per_sequence(size, seq, predictions) == 3 * forward


def test_base_seq128_count():
    # 6 x 85M encoder matrix weights x 128 tokens, plus attention and the 20-slot MLM head.
    assert common.pretraining_flops_per_sequence("base", 128, 20) == pytest.approx(69.93e9,
                                                                                  rel=1e-4)
