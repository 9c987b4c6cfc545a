"""`init_from_checkpoint` in every format: heads loaded where the checkpoint has them.

A pretrainer with random weights is written in each format that `--init_checkpoint` takes; a
second pretrainer (other random weights) started from that file must give the first one's
masked-LM and next-sentence logits, and a classifier must get its encoder.
"""
from __future__ import annotations

import logging
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf import checkpoints
from bert_tf.checkpoints import names
from bert_tf.checkpoints.init_checkpoint import checkpoint_format, init_from_checkpoint
from bert_tf.optimization import create_optimizer
from tests.test_checkpoints import TINY, _encoder, _inputs, _pretrainer, _torch_zip


def _write_training_checkpoint(model, tmp_path):
    # As bert_tf.training.trainer writes it: model and optimizer (with its slots) through a manager.
    optimizer = create_optimizer(1e-3, 10, 1)
    optimizer.build(model.trainable_variables)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, optimizer=optimizer),
                                         str(tmp_path / "checkpoints"), max_to_keep=2)
    manager.save(checkpoint_number=7)
    return str(tmp_path / "checkpoints")


def _write_best(model, tmp_path):
    # What training's best/ holds: the model alone under a `model` prefix.
    return tf.train.Checkpoint(model=model).write(str(tmp_path / "best" / "model"))


def _write_keras(model, tmp_path):
    path = str(tmp_path / "source.keras")
    model.save(path)
    return path


def _write_tf1(model, tmp_path):
    return checkpoints.save_tf1_checkpoint(model, str(tmp_path / "tf1" / "bert_model.ckpt"))


def _write_safetensors(model, tmp_path):
    (tmp_path / "hf").mkdir()
    checkpoints.save_huggingface_safetensors(model, str(tmp_path / "hf" / "model.safetensors"))
    return str(tmp_path / "hf")


def _write_pytorch_bin(model, tmp_path):
    arrays = names.export_from(names.model_weights(model), names.huggingface_format(
        "bert." if isinstance(model, bert_tf.BertPretrainer) else ""))
    tensors = {name: ("FloatStorage", str(n), 0, a.shape,
                      tuple(s // a.itemsize for s in a.strides), a.ravel())
               for n, (name, a) in enumerate(arrays.items())}
    (tmp_path / "bin").mkdir()
    _torch_zip(tmp_path / "bin" / "pytorch_model.bin", tensors, root="pytorch_model")
    return str(tmp_path / "bin")


WRITERS = {"bert_tf": _write_training_checkpoint, "bert_tf_best": _write_best,
           "keras": _write_keras, "tf1": _write_tf1, "safetensors": _write_safetensors,
           "pytorch_bin": _write_pytorch_bin}
KIND = {"bert_tf": "bert_tf", "bert_tf_best": "bert_tf", "keras": "keras", "tf1": "tf1",
        "safetensors": "huggingface", "pytorch_bin": "huggingface"}


def _logits(model):
    out = model(_inputs(masked=True), training=False)
    return np.asarray(out["masked_lm_logits"]), np.asarray(out["next_sentence_logits"])


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_pretrainer_reproduces_the_source_logits(fmt, tmp_path, caplog):
    source = _pretrainer(seed=1)
    path = WRITERS[fmt](source, tmp_path)
    target = _pretrainer(seed=2)
    assert np.abs(_logits(target)[0] - _logits(source)[0]).max() > 0.1  # not trivially equal
    with caplog.at_level(logging.WARNING):
        assert init_from_checkpoint(target, path) == KIND[fmt]
    assert "left as initialised" not in caplog.text
    for ours, theirs in zip(_logits(target), _logits(source)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_classifier_gets_the_encoder(fmt, tmp_path):
    source = _pretrainer(seed=3)
    path = WRITERS[fmt](source, tmp_path)
    classifier = bert_tf.BertClassifier(_encoder(seed=4), num_classes=3)
    head_before = classifier.output_dense.get_weights()
    init_from_checkpoint(classifier, path)
    ours = classifier.encoder(_inputs(), training=False)
    theirs = source.encoder(_inputs(), training=False)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(np.asarray(ours[key]), np.asarray(theirs[key]),
                                   rtol=1e-5, atol=1e-5)
    for a, b in zip(head_before, classifier.output_dense.get_weights()):  # task head untouched
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_a_bare_encoder_gets_the_pretrainers_encoder(fmt, tmp_path):
    """What extract_features and `export --kind=encoder` load: a BertEncoder alone from a
    pretrainer's checkpoint (the heads are the checkpoint's, not the encoder's, extras)."""
    source = _pretrainer(seed=6)
    path = WRITERS[fmt](source, tmp_path)
    encoder = _encoder(seed=7)
    init_from_checkpoint(encoder, path)
    ours, theirs = encoder(_inputs(), training=False), source.encoder(_inputs(), training=False)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(np.asarray(ours[key]), np.asarray(theirs[key]),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["bert_tf", "keras"])
def test_pretrainer_from_encoder_only_names_the_heads_left_initialised(fmt, tmp_path, caplog):
    encoder = _encoder(seed=5)
    source = encoder if fmt == "keras" else bert_tf.BertClassifier(encoder, num_classes=2)
    path = WRITERS[fmt](source, tmp_path)
    target = _pretrainer(seed=6)
    nsp_before = target.next_sentence_head.get_weights()
    with caplog.at_level(logging.WARNING):
        init_from_checkpoint(target, path)
    assert "masked_lm_head/output_bias" in caplog.text
    assert "next_sentence_head/kernel" in caplog.text and "left as initialised" in caplog.text
    np.testing.assert_array_equal(nsp_before[0], target.next_sentence_head.get_weights()[0])
    np.testing.assert_allclose(
        np.asarray(target.encoder(_inputs(), training=False)["sequence_output"]),
        np.asarray(encoder(_inputs(), training=False)["sequence_output"]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["bert_tf", "keras"])
def test_config_mismatch_names_the_tensor_and_both_shapes(fmt, tmp_path, caplog):
    path = WRITERS[fmt](_pretrainer(seed=7), tmp_path)
    bigger = bert_tf.BertConfig.from_preset("tiny", vocab_size=200, max_position_embeddings=64,
                                           hidden_size=256, intermediate_size=1024)
    target = _pretrainer(bigger)
    before = target.encoder.word_embeddings.embeddings.numpy()
    with pytest.raises(ValueError) as raised, caplog.at_level(logging.WARNING):
        init_from_checkpoint(target, path)
    message = str(raised.value)
    assert "word_embeddings/embeddings" in message and "[200, 128]" in message
    assert "[200, 256]" in message and "shape mismatch" in message
    # The first line alone (what a command prints) names the file, the first tensor that
    # differs with both shapes, and how many differ.
    first = message.splitlines()[0]
    assert first.startswith(path), first  # the file, or the ckpt-N under the directory
    assert "does not match the model's config" in first
    assert "word_embeddings/embeddings: checkpoint [200, 128] vs model [200, 256]" in first
    assert re.search(r"\(\d+ shape mismatch\(es\)\)$", first), first
    assert "could not be found" not in caplog.text  # no restore-status warning flood
    np.testing.assert_array_equal(before, target.encoder.word_embeddings.embeddings.numpy())


def test_training_checkpoint_with_more_layers_than_the_model_is_refused(tmp_path):
    deeper = bert_tf.BertConfig.from_preset("tiny", vocab_size=200, max_position_embeddings=64,
                                           num_hidden_layers=TINY.num_hidden_layers + 1)
    path = _write_training_checkpoint(_pretrainer(deeper, seed=8), tmp_path)
    with pytest.raises(ValueError, match="the model's config does not match the checkpoint"):
        init_from_checkpoint(_pretrainer(), path)


def test_training_checkpoint_with_fewer_layers_counts_the_checkpoints_own(tmp_path):
    # Our weight paths number layers by the model's positions; the message counts the blocks
    # the checkpoint really holds.
    path = _write_training_checkpoint(_pretrainer(seed=8), tmp_path)
    deeper = bert_tf.BertConfig.from_preset("tiny", vocab_size=200, max_position_embeddings=64,
                                           num_hidden_layers=TINY.num_hidden_layers + 2)
    with pytest.raises(ValueError) as raised:
        init_from_checkpoint(_pretrainer(deeper), path)
    first = str(raised.value).splitlines()[0]
    assert (f"{TINY.num_hidden_layers + 2} layers in the model, {TINY.num_hidden_layers} in "
            "the checkpoint" in first), first


def test_a_runs_output_dir_is_a_checkpoint(tmp_path):
    # --init_checkpoint=<a bert_tf run's --output_dir> takes its latest checkpoints/ckpt-N.
    source = _pretrainer(seed=11)
    _write_training_checkpoint(source, tmp_path)
    assert checkpoint_format(str(tmp_path)) == ("bert_tf", str(tmp_path / "checkpoints" / "ckpt-7"))
    target = _pretrainer(seed=12)
    init_from_checkpoint(target, str(tmp_path))
    np.testing.assert_array_equal(target.encoder.word_embeddings.embeddings.numpy(),
                                  source.encoder.word_embeddings.embeddings.numpy())


def test_fewer_layers_in_the_checkpoint_lists_the_missing_ones(tmp_path):
    path = _write_keras(_pretrainer(seed=9), tmp_path)
    deeper = bert_tf.BertConfig.from_preset("tiny", vocab_size=200, max_position_embeddings=64,
                                           num_hidden_layers=TINY.num_hidden_layers + 1)
    last = TINY.num_hidden_layers
    with pytest.raises(ValueError, match=f"(?s)missing from the checkpoint.*transformer_layer_{last}/"):
        init_from_checkpoint(_pretrainer(deeper), path)


def test_checkpoint_format_of_each_writer(tmp_path):
    model = _pretrainer(seed=10)
    for fmt, writer in WRITERS.items():
        (tmp_path / fmt).mkdir()
        assert checkpoint_format(writer(model, tmp_path / fmt))[0] == KIND[fmt], fmt


def test_keras_file_is_loaded_in_safe_mode(tmp_path):
    inputs = keras.Input(shape=(2,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = str(tmp_path / "lambda.keras")
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ValueError, match="(?i)safe_mode|lambda"):
        init_from_checkpoint(_pretrainer(), path)


def test_a_model_without_an_encoder_is_refused_before_reading(tmp_path):
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Sequential has no BertEncoder"):
        init_from_checkpoint(plain, str(tmp_path / "never-read"))
