"""Test set-up shared by every test module."""
import os

# Quiet TensorFlow's C++ start-up chatter and pin the Keras backend we ship.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The allocator the scripts use (bert_tf/training/cpu_allocator.py); TensorFlow reads it when the
# first tensor is created, so it must be set before any test runs.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_DATA = os.path.join(REPO_ROOT, "tests", "data")


@pytest.fixture
def tiny_config():
    import bert_tf
    # Dropout off so that outputs are comparable; tests that need dropout set it themselves.
    return bert_tf.BertConfig.from_preset("tiny", vocab_size=211, hidden_dropout_prob=0.0,
                                          attention_probs_dropout_prob=0.0,
                                          max_position_embeddings=64)


def make_inputs(batch: int = 2, seq_len: int = 12, vocab_size: int = 211, seed: int = 0,
                lengths=None) -> dict:
    """Random int32 BERT inputs; `lengths` gives each row's unpadded length."""
    rng = np.random.default_rng(seed)
    lengths = lengths or [seq_len] * batch
    ids = rng.integers(5, vocab_size, size=(batch, seq_len)).astype("int32")
    mask = (np.arange(seq_len)[None, :] < np.array(lengths)[:, None]).astype("int32")
    segments = np.zeros((batch, seq_len), "int32")
    for row, length in enumerate(lengths):
        segments[row, length // 2:length] = 1
    return {"input_ids": ids * mask, "input_mask": mask, "segment_ids": segments}
