"""SavedModel export: every model kind reloads in a fresh process and matches Keras."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf.export import savedmodel
from tests.conftest import REPO_ROOT, TEST_DATA
from tests.savedmodel_client import TEXTS

VOCAB = os.path.join(TEST_DATA, "vocab_uncased.txt")
SEQ = 24


@pytest.fixture(scope="module")
def encoder():
    config = bert_tf.BertConfig.from_preset("tiny", vocab_size=30522, hidden_dropout_prob=0.0,
                                            attention_probs_dropout_prob=0.0)
    return bert_tf.BertEncoder.from_bert_config(config)


def _model(kind, encoder):
    return {"classifier": lambda: bert_tf.BertClassifier(encoder, 3),
            "span_labeler": lambda: bert_tf.BertSpanLabeler(encoder),
            "token_classifier": lambda: bert_tf.BertTokenClassifier(encoder, 4),
            "fill_mask": lambda: bert_tf.BertPretrainer(encoder),
            "encoder": lambda: encoder}[kind]()


def _original_truncate(a, b, budget):
    a, b = list(a), list(b)
    while len(a) + len(b) > budget:
        (a if len(a) > len(b) else b).pop()
    return a, b


@pytest.mark.parametrize("kind", savedmodel.KINDS)
def test_reloads_without_bert_tf_and_matches_keras(kind, encoder, tmp_path):
    model = _model(kind, encoder)
    labels = ["a", "b", "c"] if kind == "classifier" else None
    path = savedmodel.export_model(model, str(tmp_path / kind), VOCAB, True, SEQ, labels)
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        # No XLA-compiled function (training-only kernels): TF Serving refuses them by default.
        assert b"_XlaMustCompile" not in f.read()
    out = str(tmp_path / "out.npz")
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "tests",
                                                        "savedmodel_client.py"), path, out, kind],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = dict(np.load(out))
    ids = {k[3:]: v for k, v in got.items() if k.startswith("in/")}
    expected = model(ids, training=False)
    for key, value in expected.items():
        if key == "encoder_outputs":
            continue
        np.testing.assert_allclose(got[f"ids/{key}"], np.asarray(value), atol=1e-5)
    # Text signature == the Keras model on the packed ids of the same text.
    pre = savedmodel.PreprocessingModule(VOCAB, True, SEQ)
    if kind == "span_labeler":
        packed = pre.serve_text_pair(tf.constant(TEXTS[:2]), tf.constant(TEXTS[2:4]))
        keras_out = model(packed)
        np.testing.assert_allclose(got["text/start_logits"], keras_out["start_logits"], atol=1e-5)
    elif kind == "fill_mask":
        positions = got["text/masked_positions"]
        assert positions[4].tolist() == [2, 4]  # [CLS] hello [MASK] world [MASK] ! [SEP]
        assert positions[0].tolist() == [0, 0]  # no mask: padding positions
        assert got["text/top_probabilities"].shape == (len(TEXTS), 2, 5)
    else:
        packed = pre.serving_default(tf.constant(TEXTS))
        keras_out = model(packed)
        key = "pooled_output" if kind == "encoder" else "logits"
        np.testing.assert_allclose(got[f"text/{key}"], keras_out[key], atol=1e-5)
        if kind == "classifier":
            names = np.array([b"a", b"b", b"c"])[got["text/label"]]
            np.testing.assert_array_equal(got["text/label_name"], names)
            np.testing.assert_allclose(got["text/probabilities"].sum(-1), 1.0, atol=1e-5)


def test_packing_truncates_like_the_original():
    pre = savedmodel.PreprocessingModule(VOCAB, True, 12)
    for len_a, len_b in [(3, 3), (20, 2), (2, 20), (9, 9), (10, 9), (30, 30)]:
        a = tf.ragged.constant([list(range(1000, 1000 + len_a))])
        b = tf.ragged.constant([list(range(2000, 2000 + len_b))])
        packed = pre.bert_pack_inputs([a, b])
        ta, tb = _original_truncate(range(1000, 1000 + len_a), range(2000, 2000 + len_b), 9)
        want = [101] + ta + [102] + tb + [102]
        want += [0] * (12 - len(want))
        assert packed["input_ids"].numpy()[0].tolist() == want, (len_a, len_b)
        want_seg = [0] * (len(ta) + 2) + [1] * (len(tb) + 1)
        assert packed["segment_ids"].numpy()[0].tolist() == want_seg + [0] * (12 - len(want_seg))


def test_serving_edge_cases(encoder, tmp_path):
    path = savedmodel.export_model(bert_tf.BertClassifier(encoder, 2), str(tmp_path / "c"), VOCAB,
                               True, SEQ)
    loaded = tf.saved_model.load(path)
    # Clean, named signatures (what `saved_model_cli show` lists).
    assert set(loaded.signatures) == {"serving_default", "serve_text_pair", "serve_ids"}
    serve = loaded.signatures["serving_default"]
    assert set(serve.structured_outputs) == {"logits", "probabilities", "label"}
    assert list(serve.structured_input_signature[1]) == ["text"]
    out = serve(text=tf.constant(["", " ", "x" * 5000, "ok", "\x00\u200b"]))
    assert out["logits"].shape == (5, 2)
    pre = savedmodel.PreprocessingModule(VOCAB, True, SEQ)
    packed = pre.serving_default(tf.constant(["word " * 100, ""]))
    ids = packed["input_ids"].numpy()
    assert ids[0, 0] == 101 and ids[0, -1] == 102 and packed["input_mask"].numpy()[0].all()
    assert ids[1, :2].tolist() == [101, 102] and packed["input_mask"].numpy()[1].sum() == 2
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        serve(text=tf.constant([1, 2]))
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        loaded.signatures["serve_ids"](input_ids=tf.constant([[1.5]]),
                                       input_mask=tf.constant([[1]]),
                                       segment_ids=tf.constant([[0]]))


def test_export_script_from_keras_file(encoder, tmp_path):
    model = bert_tf.BertClassifier(encoder, 2)
    model.save(str(tmp_path / "m.keras"))
    done = subprocess.run(
        [sys.executable, "-m", "bert_tf.export_savedmodel", f"--keras_model={tmp_path}/m.keras",
         f"--vocab_file={VOCAB}", f"--export_dir={tmp_path}/export", "--seq_length=16",
         "--label_names=neg,pos", f"--preprocessing_export_dir={tmp_path}/pre"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    out = loaded.signatures["serving_default"](text=tf.constant(["good film"]))
    assert out["label_name"].numpy()[0] in (b"neg", b"pos")
    pre = tf.saved_model.load(str(tmp_path / "pre"))
    assert pre.signatures["serving_default"](text=tf.constant(["a"]))["input_ids"].shape == (1, 16)


SHORT = ["a fine film", "dull", "it is what it is, and what it is is long enough to need more"]


@pytest.mark.parametrize("kind", ["classifier", "token_classifier", "span_labeler", "encoder"])
def test_text_signatures_pad_to_the_longest_request(kind, encoder):
    model = _model(kind, encoder)
    longest = savedmodel.ServingModule(model, kind, VOCAB, True, 64).signatures()
    fixed = savedmodel.ServingModule(model, kind, VOCAB, True, 64,
                                 pad_to_longest=False).signatures()
    if kind == "span_labeler":
        args = dict(question=tf.constant(SHORT[:2]), context=tf.constant(SHORT[1:]))
    else:
        args = dict(text=tf.constant(SHORT))
    got, want = longest["serving_default"](**args), fixed["serving_default"](**args)
    width = {"encoder": "input_mask"}.get(kind, "input_ids")
    if kind == "classifier":
        np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-5)
        np.testing.assert_array_equal(got["label"], want["label"])
        single = longest["serving_default"](text=tf.constant(["dull"]))
        np.testing.assert_allclose(single["logits"][0], want["logits"][1], atol=1e-5)
        return
    n = got[width].shape[1]
    assert n % 8 == 0 and n < 64 and want[width].shape[1] == 64
    for key, value in got.items():
        if key == "pooled_output":
            np.testing.assert_allclose(value, want[key], atol=1e-5)
        elif value.dtype.is_floating:
            np.testing.assert_allclose(value, want[key][:, :n], atol=1e-5, err_msg=key)
        else:
            np.testing.assert_array_equal(value, want[key][:, :n], err_msg=key)
    if kind == "encoder":
        embedded = longest["embed"](text=tf.constant(SHORT))["embedding"]
        mask = tf.cast(want["input_mask"], tf.float32)[:, :, None]
        mean = tf.reduce_sum(want["sequence_output"] * mask, 1) / tf.reduce_sum(mask, 1)
        np.testing.assert_allclose(embedded, mean, atol=1e-5)


def test_embed_signature_saved_and_normalised(encoder, tmp_path):
    path = savedmodel.export_model(encoder, str(tmp_path / "e"), VOCAB, True, SEQ,
                               embed_pooling="mean", embed_normalize=True)
    loaded = tf.saved_model.load(path)
    assert {"serving_default", "serve_text_pair", "serve_ids", "embed"} <= set(loaded.signatures)
    out = loaded.signatures["embed"](text=tf.constant(SHORT + [""]))["embedding"].numpy()
    assert out.shape == (len(SHORT) + 1, encoder.bert_config.hidden_size)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_every_signature_names_a_wrong_input(encoder, tmp_path):
    """Shape, range and rank errors name the input; a loaded signature does not check the
    rank it declares, so the export checks at run time."""
    loaded = {kind: tf.saved_model.load(savedmodel.export_model(
        _model(kind, encoder), str(tmp_path / kind), VOCAB, True, SEQ))
        for kind in ("classifier", "fill_mask")}
    serve_ids = loaded["classifier"].signatures["serve_ids"]

    def ids(input_ids, input_mask=None, segment_ids=None):
        input_ids = tf.constant(input_ids, tf.int32)
        return dict(input_ids=input_ids,
                    input_mask=tf.ones_like(input_ids) if input_mask is None else
                    tf.constant(input_mask, tf.int32),
                    segment_ids=tf.zeros_like(input_ids) if segment_ids is None else
                    tf.constant(segment_ids, tf.int32))

    cases = [
        (serve_ids, ids([101, 102], [[1, 1]], [[0, 0]]), "input_ids [2] is not compatible with expected shape [?,?]"),
        (serve_ids, ids([[101, 5, 102]], input_mask=[[1, 1]]),
         "input_mask must have the shape of input_ids"),
        (serve_ids, ids([[101, 40000]]), "input_ids must be < vocab_size (30522)"),
        (serve_ids, ids([[101, -1]]), "input_ids must be >= 0"),
        (serve_ids, ids([[101, 102]], segment_ids=[[0, 2]]),
         "segment_ids must be < type_vocab_size (2)"),
        (serve_ids, ids(np.ones((1, 600), np.int32)), "max_position_embeddings (512)"),
        (loaded["classifier"].signatures["serving_default"], dict(text=tf.constant([["a"]])),
         "text [1,1] is not compatible with expected shape [?]"),
        (loaded["fill_mask"].signatures["serve_ids"],
         {**ids([[101, 103, 102]]), "masked_lm_positions": tf.constant([[5]])},
         "masked_lm_positions must be < the sequence length"),
    ]
    for signature, args, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            signature(**args)
        assert message in error.value.message, (message, error.value.message[:500])
