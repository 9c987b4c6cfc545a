"""The heads' losses against hand computations (the original BERT formulas)."""
import numpy as np
import pytest

from bert_tf.training import losses


def _nll(logits, labels):
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]


def test_masked_lm_loss_is_weighted_mean_with_epsilon():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 11)).astype("float32")
    ids = rng.integers(0, 11, (3, 4))
    weights = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], "float32")
    want = (_nll(logits, ids) * weights).sum() / (weights.sum() + 1e-5)
    assert float(losses.masked_lm_loss(logits, ids, weights)) == pytest.approx(want, rel=1e-5)
    # All-padding predictions: 0, not NaN (the 1e-5 keeps the division finite).
    assert float(losses.masked_lm_loss(logits, ids, np.zeros_like(weights))) == 0.0
    assert float(losses.masked_lm_loss(logits, ids, weights, jit_compile=False)) == \
        pytest.approx(want, rel=1e-5)


def test_masked_lm_loss_gradient_xla_matches_plain():
    import tensorflow as tf
    rng = np.random.default_rng(2)
    logits = tf.Variable(rng.normal(size=(2, 5, 30)).astype("float32"))
    ids = rng.integers(0, 30, (2, 5))
    weights = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "float32")
    grads = []
    for jit in (True, False):
        with tf.GradientTape() as tape:
            loss = losses.masked_lm_loss(logits, ids, weights, jit_compile=jit)
        grads.append(tape.gradient(loss, logits).numpy())
    # d loss / d logits = w * (softmax - onehot) / sum(w); zero rows where w = 0.
    probs = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(-1, keepdims=True)
    want = (probs - np.eye(30)[ids]) * weights[..., None] / (weights.sum() + 1e-5)
    np.testing.assert_allclose(grads[0], want, atol=1e-6)
    np.testing.assert_allclose(grads[1], want, atol=1e-6)


def test_next_sentence_classification_regression_and_span_losses():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 2)).astype("float32")
    labels = np.array([0, 1, 1, 0, 1])
    assert float(losses.next_sentence_loss(logits, labels[:, None])) == pytest.approx(
        _nll(logits, labels).mean(), rel=1e-5)
    assert float(losses.classification_loss(logits, labels)) == pytest.approx(
        _nll(logits, labels).mean(), rel=1e-5)
    preds = np.array([[0.5], [2.0]], "float32")
    assert float(losses.regression_loss(preds, np.array([1.0, 1.0]))) == pytest.approx(0.625)
    start, end = rng.normal(size=(2, 7)).astype("float32"), rng.normal(size=(2, 7)).astype("float32")
    s_pos, e_pos = np.array([1, 3]), np.array([2, 6])
    want = (_nll(start, s_pos).mean() + _nll(end, e_pos).mean()) / 2
    assert float(losses.span_loss(start, end, s_pos, e_pos)) == pytest.approx(want, rel=1e-5)
