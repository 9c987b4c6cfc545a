"""Optimizer update rules checked against hand computations in numpy."""
import numpy as np
import pytest
import keras

from bert_tf.optimization import (AdamWeightDecay, Lamb, WarmupPolynomialDecay,
                                  create_optimizer, uses_weight_decay)


def _variables():
    kernel = keras.Variable(np.array([[0.5, -1.0], [2.0, 0.25]], "float32"), name="kernel")
    bias = keras.Variable(np.array([0.1, -0.2], "float32"), name="bias")
    gamma = keras.Variable(np.array([1.0, 1.5], "float32"), name="gamma")
    return kernel, bias, gamma


def _grads(step):
    rng = np.random.default_rng(step)
    return [rng.normal(0, 0.3, (2, 2)).astype("float32"),
            rng.normal(0, 0.3, (2,)).astype("float32"),
            rng.normal(0, 0.3, (2,)).astype("float32")]


def _clip(grads, clip):
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads))
    return [g * (clip / max(norm, clip)) for g in grads]


def test_weight_decay_exclusions():
    assert uses_weight_decay("transformer_layer_0/intermediate/kernel", ("layer_norm", "bias"))
    for path in ("transformer_layer_0/output_layer_norm/gamma", "pooler/bias",
                 "masked_lm_head/output_bias", "embeddings_layer_norm/beta"):
        assert not uses_weight_decay(path, ("layer_norm", "LayerNorm", "bias"))


@pytest.mark.parametrize("clip", [None, 0.2])
def test_adamw_matches_original_update(clip):
    variables = _variables()
    lr, wd, b1, b2, eps = 0.01, 0.01, 0.9, 0.999, 1e-6
    opt = AdamWeightDecay(lr, weight_decay_rate=wd, global_clipnorm=clip,
                          exclude_from_weight_decay=("bias", "gamma"))
    w = [v.numpy().astype(np.float64) for v in variables]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    for step in range(4):
        grads = _grads(step)
        opt.apply(grads, variables)
        grads = _clip(grads, clip) if clip else grads
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            update = m[i] / (np.sqrt(v[i]) + eps)  # no bias correction, as the original
            if i == 0:  # only the kernel decays
                update = update + wd * w[i]
            w[i] = w[i] - lr * update
    for got, want in zip(variables, w):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_lamb_matches_hand_computation():
    variables = _variables()
    lr, wd, b1, b2, eps = 0.02, 0.01, 0.9, 0.999, 1e-6
    opt = Lamb(lr, weight_decay_rate=wd, global_clipnorm=None,
               exclude_from_weight_decay=("bias", "gamma"))
    w = [v.numpy().astype(np.float64) for v in variables]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    for step in range(1, 4):
        grads = _grads(step)
        opt.apply(grads, variables)
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            update = (m[i] / (1 - b1 ** step)) / (np.sqrt(v[i] / (1 - b2 ** step)) + eps)
            ratio = 1.0
            if i == 0:
                update = update + wd * w[i]
                ratio = np.linalg.norm(w[i]) / np.linalg.norm(update)
            w[i] = w[i] - lr * ratio * update
    for got, want in zip(variables, w):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_warmup_then_linear_decay():
    schedule = WarmupPolynomialDecay(1e-4, decay_steps=100, warmup_steps=10)
    got = [float(schedule(s)) for s in (0, 5, 9, 10, 50, 100, 150)]
    want = [0.0, 0.5e-4, 0.9e-4, 0.9e-4, 0.5e-4, 0.0, 0.0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
    squared = WarmupPolynomialDecay(1.0, decay_steps=10, power=2.0, end_learning_rate=0.1)
    np.testing.assert_allclose(float(squared(5)), 0.9 * 0.25 + 0.1, rtol=1e-6)
    with pytest.raises(ValueError, match="decay_steps"):
        WarmupPolynomialDecay(1e-4, decay_steps=0)


def test_optimizer_uses_schedule_per_iteration():
    kernel = keras.Variable(np.zeros((1,), "float32"), name="kernel")
    opt = create_optimizer(1.0, num_train_steps=10, num_warmup_steps=2, weight_decay_rate=0.0)
    seen = []
    for _ in range(3):
        seen.append(float(opt.learning_rate))
        opt.apply([np.ones((1,), "float32")], [kernel])
    np.testing.assert_allclose(seen, [0.0, 0.5, 0.8], rtol=1e-6)
    # Serialisable, schedule included.
    clone = AdamWeightDecay.from_config(opt.get_config())
    assert clone.weight_decay_rate == opt.weight_decay_rate
    with pytest.raises(ValueError, match="Unknown optimizer 'sgd'"):
        create_optimizer(1.0, 10, 0, optimizer="sgd")
