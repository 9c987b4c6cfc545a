"""The FLOP count behind the benchmarks' model TFLOP/s and MFU columns, checked against the
model's own weights."""
import numpy as np
import pytest

import bert_tf
from benchmarks import common

SEQ, PREDICTIONS = 16, 3


def _weight_sizes(size: str) -> dict[str, int]:
    config = bert_tf.BertConfig.from_preset(size, vocab_size=common.VOCAB_SIZE)
    layers, hidden, _ = common.SIZES[size]
    assert (config.num_hidden_layers, config.hidden_size) == (layers, hidden)
    pretrainer = bert_tf.BertPretrainer(bert_tf.BertEncoder.from_bert_config(config))
    pretrainer({"input_ids": np.ones((1, SEQ), "int32"),
                "input_mask": np.ones((1, SEQ), "int32"),
                "segment_ids": np.zeros((1, SEQ), "int32"),
                "masked_lm_positions": np.arange(1, PREDICTIONS + 1, dtype="int32")[None]})
    return {w.path: int(np.prod(w.shape)) for w in pretrainer.weights}


def _heads(size_of: dict[str, int]) -> int:
    """Forward multiply-adds of the heads: MLM transform + tied decoder per slot, pooler, NSP."""
    per_prediction = (size_of["masked_lm_head/transform/kernel"]
                      + size_of["word_embeddings/embeddings"])
    return (PREDICTIONS * per_prediction + size_of["pooler/kernel"]
            + size_of["next_sentence_head/kernel"])


@pytest.mark.parametrize("size", ["tiny", "mini"])
def test_model_flops_count_every_block_kernel_on_every_token(size):
    size_of = _weight_sizes(size)
    layers, hidden, _ = common.SIZES[size]
    per_token = sum(n for path, n in size_of.items()
                    if path.startswith("transformer_layer_") and path.endswith("/kernel"))
    attention = layers * 2 * SEQ * SEQ * hidden  # multiply-adds of QK^T and of the sum over V
    forward = 2 * (SEQ * per_token + _heads(size_of) + attention)
    assert common.pretraining_flops_per_sequence(size, SEQ, PREDICTIONS) == 3 * forward


@pytest.mark.parametrize("size", ["tiny", "mini"])
def test_executed_flops_follow_the_last_block_rows(size):
    size_of = _weight_sizes(size)
    layers, hidden, _ = common.SIZES[size]
    rows = 1 + PREDICTIONS
    last = f"transformer_layer_{layers - 1}/"
    kernels = {path: n for path, n in size_of.items()
               if path.startswith("transformer_layer_") and path.endswith("/kernel")}
    before_last = sum(n for path, n in kernels.items() if not path.startswith(last))
    qkv = kernels[last + "attention/qkv/kernel"]
    rest_of_last = sum(n for path, n in kernels.items() if path.startswith(last)) - qkv
    # keys and values (2/3 of the fused QKV kernel) for every row; the rest for `rows` rows.
    last_block = SEQ * (2 * qkv // 3) + rows * (qkv // 3 + rest_of_last)
    attention = (layers - 1) * 2 * SEQ * SEQ * hidden + 2 * rows * SEQ * hidden
    forward = 2 * (SEQ * before_last + last_block + _heads(size_of) + attention)
    assert common.pretraining_flops_per_sequence(
        size, SEQ, PREDICTIONS, last_block_rows=rows) == 3 * forward


def test_base_seq128_counts():
    assert common.pretraining_flops_per_sequence("base", 128, 20) == pytest.approx(69.93e9,
                                                                                  rel=1e-4)
    assert common.pretraining_flops_per_sequence(
        "base", 128, 20, last_block_rows=21) == pytest.approx(66.02e9, rel=1e-4)
