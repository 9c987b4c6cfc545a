"""Behaviour of the encoder and every head: shapes, faithfulness, masking, serialisation."""
import numpy as np
import pytest
import keras

import bert_tf
from bert_tf.layers import MaskedLMHead, PositionEmbedding, SelfAttention, TransformerBlock
from tests.conftest import make_inputs
from tests.numpy_bert import encoder_forward, layer_norm


def _weights(model):
    return {w.path: np.asarray(w.numpy()) for w in model.weights}


def _randomise(model, seed=0):
    """Non-trivial LayerNorm/bias values too, so a swapped weight cannot hide."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(0, 0.2, w.shape).astype("float32") + (1.0 if "gamma" in w.path else 0))


@pytest.mark.parametrize("act", ["gelu_approximate", "gelu"])
def test_encoder_matches_numpy_reference(tiny_config, act):
    config = tiny_config.replace(hidden_act=act)
    encoder = bert_tf.BertEncoder.from_bert_config(config)
    _randomise(encoder)
    x = make_inputs(lengths=[12, 7])
    out = encoder(x)
    ref_seq, ref_pooled = encoder_forward(_weights(encoder), config, **x)
    np.testing.assert_allclose(out["sequence_output"], ref_seq, atol=2e-4)
    np.testing.assert_allclose(out["pooled_output"], ref_pooled, atol=2e-4)
    assert out["sequence_output"].dtype == "float32"
    assert len(out["encoder_outputs"]) == config.num_hidden_layers
    np.testing.assert_allclose(out["encoder_outputs"][-1], out["sequence_output"])


def test_padding_does_not_change_real_positions(tiny_config):
    encoder = bert_tf.BertEncoder.from_bert_config(tiny_config)
    x = make_inputs(batch=1, seq_len=9, seed=3)
    padded = {k: np.pad(v, ((0, 0), (0, 7))) for k, v in x.items()}
    # Garbage ids under the padding must not leak into real positions either.
    padded["input_ids"][:, 9:] = 42
    a = encoder(x)["sequence_output"]
    b = encoder(padded)["sequence_output"][:, :9]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_heads_shapes_and_dtypes(tiny_config):
    encoder = bert_tf.BertEncoder.from_bert_config(tiny_config)
    x = make_inputs(batch=3, seq_len=10)
    pre = bert_tf.BertPretrainer(encoder)
    out = pre({**x, "masked_lm_positions": np.array([[1, 2, 0, 0]] * 3, "int32")})
    assert out["masked_lm_logits"].shape == (3, 4, tiny_config.vocab_size)
    assert out["next_sentence_logits"].shape == (3, 2)
    cls = bert_tf.BertClassifier(encoder, num_classes=3)(x)
    assert cls["logits"].shape == (3, 3)
    reg = bert_tf.BertClassifier(encoder, num_classes=1)(x)
    assert reg["logits"].shape == (3, 1)
    span = bert_tf.BertSpanLabeler(encoder)(x)
    assert span["start_logits"].shape == span["end_logits"].shape == (3, 10)
    tags = bert_tf.BertTokenClassifier(encoder, num_classes=7)(x)
    assert tags["logits"].shape == (3, 10, 7)
    for outputs in (out, cls, reg, span, tags):
        assert all(v.dtype == "float32" for v in outputs.values())
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        bert_tf.BertClassifier(encoder, num_classes=0)


def test_masked_lm_head_is_tied_and_gathers(tiny_config):
    encoder = bert_tf.BertEncoder.from_bert_config(tiny_config)
    pretrainer = bert_tf.BertPretrainer(encoder)
    _randomise(pretrainer, seed=1)
    x = make_inputs(batch=2, seq_len=10)
    positions = np.array([[3, 1, 7], [0, 9, 9]], "int32")
    logits = np.asarray(pretrainer({**x, "masked_lm_positions": positions})["masked_lm_logits"])
    w = _weights(pretrainer)
    seq = np.asarray(encoder(x)["sequence_output"])
    gathered = np.take_along_axis(seq, positions[:, :, None], axis=1)
    hidden = gathered @ w["masked_lm_head/transform/kernel"] + w["masked_lm_head/transform/bias"]
    hidden = bert_tf.layers.activations.get(tiny_config.hidden_act)(hidden)
    hidden = layer_norm(np.asarray(hidden), w["masked_lm_head/layer_norm/gamma"],
                        w["masked_lm_head/layer_norm/beta"], 1e-12)
    expected = hidden @ w["word_embeddings/embeddings"].T + w["masked_lm_head/output_bias"]
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    # Tied: no [hidden, vocab] matrix of its own, only the bias has vocab size.
    vocab_sized = [p for p, v in w.items() if tiny_config.vocab_size in v.shape]
    assert sorted(vocab_sized) == ["masked_lm_head/output_bias", "word_embeddings/embeddings"]


def test_block_query_positions_give_those_rows_of_the_full_output(tiny_config):
    block = TransformerBlock(tiny_config.hidden_size, tiny_config.num_attention_heads,
                             tiny_config.intermediate_size)
    rng = np.random.default_rng(4)
    hidden = rng.normal(size=(3, 9, tiny_config.hidden_size)).astype("float32")
    mask = (np.arange(9)[None] < np.array([[9], [6], [2]])).astype("int32")
    rows = np.array([[0, 8, 3, 3], [0, 1, 5, 0], [0, 1, 0, 0]], "int32")  # repeats allowed
    full = np.asarray(block(hidden, mask))
    some = np.asarray(block(hidden, mask, query_positions=rows))
    assert some.shape == (3, 4, tiny_config.hidden_size)
    np.testing.assert_allclose(some, np.take_along_axis(full, rows[..., None], 1), atol=1e-5)


def test_pretrainer_last_layer_on_read_rows_only_equals_full_computation(tiny_config):
    """The default pretrainer runs its last block on [CLS] + the masked rows only; its
    outputs and gradients equal the full computation's (`full_last_layer=True`)."""
    import tensorflow as tf
    encoder = bert_tf.BertEncoder.from_bert_config(tiny_config)
    fast = bert_tf.BertPretrainer(encoder)
    _randomise(fast, seed=5)
    full = bert_tf.BertPretrainer(encoder, full_last_layer=True)
    by_path = _weights(fast)
    for w in full.weights:
        w.assign(by_path[w.path])
    x = {**make_inputs(batch=2, seq_len=10, lengths=[10, 6]),
         "masked_lm_positions": np.array([[3, 1, 9, 0], [5, 2, 0, 0]], "int32")}
    results = []
    for model in (fast, full):
        with tf.GradientTape() as tape:
            out = model(x)
            loss = tf.reduce_sum(out["masked_lm_logits"][..., :7] ** 2) + \
                tf.reduce_sum(out["next_sentence_logits"] ** 2)
        grads = tape.gradient(loss, model.trainable_weights)
        results.append((out, {w.path: g for w, g in zip(model.trainable_weights, grads)}))
    (out_fast, g_fast), (out_full, g_full) = results
    for key in out_fast:
        np.testing.assert_allclose(out_fast[key], out_full[key], atol=1e-5)
    assert g_fast.keys() == g_full.keys()
    for path in g_fast:
        np.testing.assert_allclose(tf.convert_to_tensor(g_fast[path]),
                                   tf.convert_to_tensor(g_full[path]), rtol=1e-3, atol=1e-3,
                                   err_msg=path)
    assert full.get_config()["full_last_layer"] and not fast.get_config()["full_last_layer"]


def test_next_sentence_and_classifier_use_pooled_output(tiny_config):
    encoder = bert_tf.BertEncoder.from_bert_config(tiny_config)
    x = make_inputs()
    pooled = np.asarray(encoder(x)["pooled_output"])
    classifier = bert_tf.BertClassifier(encoder, num_classes=4)
    w = _weights(classifier)
    np.testing.assert_allclose(classifier(x)["logits"],
                               pooled @ w["logits/kernel"] + w["logits/bias"], atol=1e-5)
    span = bert_tf.BertSpanLabeler(encoder)
    sw = _weights(span)
    seq = np.asarray(encoder(x)["sequence_output"])
    both = seq @ sw["span_logits/kernel"] + sw["span_logits/bias"]
    np.testing.assert_allclose(span(x)["start_logits"], both[..., 0], atol=1e-5)
    np.testing.assert_allclose(span(x)["end_logits"], both[..., 1], atol=1e-5)


def test_same_seed_same_model_and_dropout(tiny_config):
    config = tiny_config.replace(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    x = make_inputs()
    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(123)
        encoder = bert_tf.BertEncoder.from_bert_config(config)
        runs.append((_weights(encoder), np.asarray(encoder(x, training=True)["sequence_output"])))
    for path in runs[0][0]:
        np.testing.assert_array_equal(runs[0][0][path], runs[1][0][path])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    keras.utils.set_random_seed(124)
    other = bert_tf.BertEncoder.from_bert_config(config)
    assert not np.array_equal(_weights(other)["pooler/kernel"], runs[0][0]["pooler/kernel"])
    # Initialisation is truncated normal with std = initializer_range (cut at 2 std).
    table = runs[0][0]["word_embeddings/embeddings"]
    assert np.abs(table).max() <= 2 * config.initializer_range + 1e-6
    assert 0.7 * config.initializer_range < table.std() < 1.0 * config.initializer_range


def _task_models(encoder):
    return {
        "encoder": encoder,
        "pretrainer": bert_tf.BertPretrainer(encoder),
        "pretrainer_full_last_layer": bert_tf.BertPretrainer(encoder, full_last_layer=True),
        "classifier": bert_tf.BertClassifier(encoder, num_classes=3, dropout=0.2),
        "span_labeler": bert_tf.BertSpanLabeler(encoder),
        "token_classifier": bert_tf.BertTokenClassifier(encoder, num_classes=5),
    }


def _call(model, x):
    if isinstance(model, bert_tf.BertPretrainer):
        x = {**x, "masked_lm_positions": np.array([[1, 4], [2, 3]], "int32")}
    out = model(x)
    return {k: np.asarray(v) for k, v in out.items() if k != "encoder_outputs"}


@pytest.mark.parametrize("kind", ["encoder", "pretrainer", "pretrainer_full_last_layer",
                                  "classifier", "span_labeler", "token_classifier"])
def test_keras_file_round_trip(tiny_config, tmp_path, kind):
    model = _task_models(bert_tf.BertEncoder.from_bert_config(tiny_config))[kind]
    _randomise(model, seed=7)
    x = make_inputs(lengths=[12, 5])
    expected = _call(model, x)
    path = str(tmp_path / f"{kind}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    got = _call(loaded, x)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    # Config alone rebuilds the same architecture (same weight paths and shapes).
    rebuilt = type(model).from_config(model.get_config())
    assert [(w.path, w.shape) for w in rebuilt.weights] == [(w.path, w.shape) for w in model.weights]


def test_layers_round_trip_through_config():
    layers = [
        PositionEmbedding(16, 8, 0.05, name="pos"),
        SelfAttention(8, 2, 0.1, 0.03, name="att"),
        TransformerBlock(8, 2, 32, "gelu", 0.1, 0.1, 0.02, 1e-6, name="block"),
        MaskedLMHead(50, 8, "relu", 0.02, 1e-12, name="mlm"),
    ]
    for layer in layers:
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_attention_scale_and_fused_layout():
    layer = SelfAttention(8, 2, 0.0)
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(1, 4, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 0]], "int32")
    out = np.asarray(layer(hidden, mask))
    kernel, bias = layer.qkv.kernel.numpy(), layer.qkv.bias.numpy()
    q, k, v = np.split(hidden @ kernel + bias, 3, axis=-1)  # [query | key | value]
    ctx = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        scores = q[0, :, sl] @ k[0, :, sl].T / 2.0 + (1 - mask[0]) * -10000.0  # sqrt(4) = 2
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx.append(probs @ v[0, :, sl])
    expected = np.concatenate(ctx, -1) @ layer.output_dense.kernel.numpy() + \
        layer.output_dense.bias.numpy()
    np.testing.assert_allclose(out[0], expected, atol=1e-5)


def test_composes_inside_a_user_model(tiny_config):
    encoder = bert_tf.BertEncoder.from_bert_config(tiny_config)
    inputs = bert_tf.models.encoder_inputs(seq_length=12)
    pooled = encoder(inputs)["pooled_output"]
    score = keras.layers.Dense(1, activation="sigmoid", name="my_score")(pooled)
    user_model = keras.Model(inputs, score)
    user_model.compile(optimizer="adam", loss="binary_crossentropy")
    x = make_inputs()
    history = user_model.fit(x, np.array([[0.0], [1.0]]), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert user_model.predict(x, verbose=0).shape == (2, 1)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_close_to_float32(tiny_config, policy):
    x = make_inputs(lengths=[12, 6])
    positions = np.array([[1, 2], [3, 4]], "int32")
    full = bert_tf.BertPretrainer(bert_tf.BertEncoder.from_bert_config(tiny_config))
    mixed = bert_tf.BertPretrainer(bert_tf.BertEncoder.from_bert_config(tiny_config,
                                                                        dtype=policy))
    mixed.set_weights(full.get_weights())
    a = full({**x, "masked_lm_positions": positions})
    b = mixed({**x, "masked_lm_positions": positions})
    assert all(w.dtype == "float32" for w in mixed.weights)  # variables stay float32
    assert mixed.encoder(x)["sequence_output"].dtype == policy.split("_")[1]
    for key in a:
        assert b[key].dtype == "float32"
        tol = 0.15 if policy == "mixed_bfloat16" else 0.02
        np.testing.assert_allclose(b[key], a[key], atol=tol)


def test_dropout_keep_rate_scale_gradient_and_xla():
    """bert_tf's Dropout keeps each element with probability (2**32 - round(2**32 * rate)) /
    2**32 (32 hashed bits against a threshold), scales kept ones by its inverse, multiplies
    the gradient by the same mask (eagerly, in a tf.function and under XLA), and gives the same
    masks inside and outside an XLA-compiled function."""
    import tensorflow as tf
    from bert_tf.layers import Dropout
    from bert_tf.layers.dropout import keep_probability, keep_threshold, stateless_dropout
    assert keep_threshold(0.1) == 429496730
    assert keep_probability(0.1) == (2 ** 32 - 429496730) / 2 ** 32
    assert abs(keep_probability(0.1) - 0.9) < 2 ** -33
    x = np.ones((4, 64, 33), "float32")
    layer = Dropout(0.1, seed=7)
    first, second = np.asarray(layer(x, training=True)), np.asarray(layer(x, training=True))
    assert not np.array_equal(first, second)  # successive calls draw new masks
    np.testing.assert_array_equal(layer(x, training=False), x)
    for dropped in (first, second):
        np.testing.assert_allclose(dropped[dropped != 0], 1 / keep_probability(0.1), rtol=1e-7)
    # Keep rate over many elements: within 5 standard errors of the exact keep probability;
    # the same per row and per column, so no part of a tensor is favoured.
    big = np.asarray(Dropout(0.1, seed=3)(np.ones((1001, 999), "float32"), training=True)) != 0
    p = keep_probability(0.1)
    assert abs(big.mean() - p) < 5 * np.sqrt(p * (1 - p) / big.size)
    for axis, n in ((0, 1001), (1, 999)):
        assert np.abs(big.mean(axis) - p).max() < 6 * np.sqrt(p * (1 - p) / n)
    # Neighbouring decisions and rows are uncorrelated.
    flat = big.reshape(-1)[: big.size // 2 * 2].astype("float64")
    assert abs(np.corrcoef(flat[0::2], flat[1::2])[0, 1]) < 0.01
    assert abs(np.corrcoef(big[:-1].reshape(-1), big[1:].reshape(-1))[0, 1]) < 0.01
    # Masks of seeds one apart (Keras steps a layer's seed by [0, 1] per call) or in the other
    # word (other layers) are uncorrelated, also against each other shifted by a few places.
    ones = tf.ones((1000, 1000))
    masks = [np.asarray(stateless_dropout(ones, 0.5, tf.constant(seed))).reshape(-1) != 0
             for seed in ([5, 9], [5, 10], [6, 9], [0, 0], [0, 1], [1, 0])]
    for i, a in enumerate(masks):
        for b in masks[i + 1:]:
            for shift in (0, 1, 7):
                assert abs(np.corrcoef(a[shift:], b[:b.size - shift])[0, 1]) < 0.01
    for rate in (0.3, 0.5):
        many = np.asarray(Dropout(rate, seed=1)(np.ones((512, 512), "float32"), training=True))
        q = keep_probability(rate)
        assert abs((many != 0).mean() - q) < 5 * np.sqrt(q * (1 - q) / many.size)
        np.testing.assert_allclose(many[many != 0], 1 / q, rtol=1e-7)
    # Gradient: upstream * mask, the same mask as the forward pass.
    xv = tf.Variable(np.random.default_rng(0).normal(size=(8, 16, 24)).astype("float32"))
    up = np.random.default_rng(1).normal(size=(8, 16, 24)).astype("float32")
    seeded = Dropout(0.1, seed=11)

    def forward_and_gradient():
        with tf.GradientTape() as tape:
            y = seeded(xv, training=True)
            loss = tf.reduce_sum(y * up)
        return y, tape.gradient(loss, xv)

    for fn in (forward_and_gradient, tf.function(forward_and_gradient),
               tf.function(forward_and_gradient, jit_compile=True)):
        y, grad = fn()
        mask = np.asarray(y) / np.asarray(xv)
        assert 0.8 < (mask != 0).mean() < 0.97
        np.testing.assert_allclose(grad, up * mask, rtol=1e-6)
    # bfloat16: same decisions, scale rounded to bfloat16.
    bf = np.asarray(tf.cast(Dropout(0.1, seed=5, dtype="bfloat16")(tf.ones((64, 64), tf.bfloat16),
                                                                  training=True),
                            tf.float32))
    np.testing.assert_array_equal(np.unique(bf), [0.0, float(tf.cast(
        tf.constant(1 / keep_probability(0.1), tf.bfloat16), tf.float32))])
    # XLA-compiled: the same masks as outside XLA for the same seed.
    seed = tf.constant([5, 9])
    eager = np.asarray(stateless_dropout(tf.constant(x), 0.1, seed))
    compiled = np.asarray(tf.function(lambda: stateless_dropout(tf.constant(x), 0.1, seed),
                                      jit_compile=True)())
    np.testing.assert_array_equal(eager, compiled)
    # A rate of 1 and a noise_shape take Keras' own layer.
    np.testing.assert_array_equal(Dropout(1.0)(x, training=True), np.zeros_like(x))
    shaped = np.asarray(Dropout(0.5, noise_shape=(4, 1, 33), seed=2)(x, training=True))
    assert (shaped == shaped[:, :1, :]).all()
    assert keras.layers.deserialize(keras.layers.serialize(layer)).get_config() == \
        layer.get_config()


def test_fused_training_gelu_equals_the_plain_one_and_stays_out_of_inference():
    """activations.get_for_training("gelu_approximate") (fused XLA kernels, custom gradient)
    computes the same function and derivative as get(); a block uses it only in training."""
    import tensorflow as tf
    from bert_tf.layers import activations
    fused, plain = activations.get_for_training("gelu_new"), activations.get("gelu_new")
    assert fused is not plain and activations.get_for_training("relu") is activations.get("relu")
    x64 = np.linspace(-8, 8, 2001)
    exact = 0.5 * x64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64 ** 3)))
    slope = np.gradient(exact, x64)
    x = tf.constant(x64, tf.float32)
    for fn in (fused, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        np.testing.assert_allclose(y, exact, atol=2e-6)
        np.testing.assert_allclose(tape.gradient(y, x)[1:-1], slope[1:-1], atol=2e-4)
    xb = tf.cast(x, tf.bfloat16)
    with tf.GradientTape() as tape:
        tape.watch(xb)
        yb = fused(xb)
    assert yb.dtype == tf.bfloat16 and tape.gradient(yb, xb).dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(yb, tf.float32), exact, rtol=1e-2, atol=1e-2)
    # A block without dropout gives the same output in training (fused) and inference.
    from bert_tf.layers import TransformerBlock
    block = TransformerBlock(64, 4, 128, hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0)
    hidden = np.random.default_rng(0).normal(size=(2, 8, 64)).astype("float32")
    mask = np.ones((2, 8), "int32")
    np.testing.assert_allclose(block(hidden, mask, training=True),
                               block(hidden, mask, training=False), atol=1e-5)
