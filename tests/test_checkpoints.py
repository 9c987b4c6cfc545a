"""Checkpoint conversion: name tables, TF1 and Hugging Face read/write, torch-free .bin, script.

Checkpoints with original names are built here from numpy with the names spelled out
literally (not taken from `bert_tf.checkpoints.names`), so a wrong table entry fails a test.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from safetensors import safe_open
from safetensors.numpy import save_file

import bert_tf
from bert_tf import checkpoints, convert_checkpoint
from bert_tf.checkpoints import names, torch_bin

TINY = bert_tf.BertConfig.from_preset("tiny", vocab_size=200, max_position_embeddings=64)
H, L, I, V, P = (TINY.hidden_size, TINY.num_hidden_layers, TINY.intermediate_size,
                 TINY.vocab_size, TINY.max_position_embeddings)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- helpers --------------------------------------------------------------------------------
def _randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Every weight random, so that a weight left at its initial value is noticed."""
    rng = np.random.default_rng(seed)
    for w in names.model_weights(model).values():
        w.assign(rng.normal(0, 0.5, tuple(w.shape)).astype("float32"))
    return model


def _encoder(config=TINY, seed=None):
    encoder = bert_tf.BertEncoder.from_bert_config(config)
    return _randomize(encoder, seed) if seed is not None else encoder


def _pretrainer(config=TINY, seed=None):
    model = bert_tf.BertPretrainer(bert_tf.BertEncoder.from_bert_config(config))
    return _randomize(model, seed) if seed is not None else model


def _inputs(masked=False):
    ids = np.array([[2, 17, 45, 99, 3, 0, 0], [2, 150, 8, 3, 60, 71, 3]], np.int32)
    inputs = {"input_ids": ids, "input_mask": (ids > 0).astype(np.int32),
              "segment_ids": np.array([[0] * 7, [0, 0, 0, 0, 1, 1, 1]], np.int32)}
    if masked:
        inputs["masked_lm_positions"] = np.array([[1, 2], [3, 5]], np.int32)
    return inputs


def _outputs(model, masked=False):
    outputs = model(_inputs(masked), training=False)
    return {k: np.asarray(v) for k, v in outputs.items() if k != "encoder_outputs"}


def _assert_same_weights(a: keras.Model, b: keras.Model):
    wa, wb = names.model_weights(a), names.model_weights(b)
    assert sorted(wa) == sorted(wb)
    for path in wa:
        np.testing.assert_array_equal(wa[path].numpy(), wb[path].numpy(), err_msg=path)


def _original_tf1_arrays(rng, heads=True) -> dict[str, np.ndarray]:
    """A google-research/bert checkpoint of TINY's sizes, names written out by hand."""
    shapes = {"bert/embeddings/word_embeddings": (V, H),
              "bert/embeddings/position_embeddings": (P, H),
              "bert/embeddings/token_type_embeddings": (2, H),
              "bert/embeddings/LayerNorm/gamma": (H,), "bert/embeddings/LayerNorm/beta": (H,),
              "bert/pooler/dense/kernel": (H, H), "bert/pooler/dense/bias": (H,)}
    for i in range(L):
        layer = f"bert/encoder/layer_{i}/"
        for part in ("query", "key", "value"):
            shapes[f"{layer}attention/self/{part}/kernel"] = (H, H)
            shapes[f"{layer}attention/self/{part}/bias"] = (H,)
        shapes.update({f"{layer}attention/output/dense/kernel": (H, H),
                       f"{layer}attention/output/dense/bias": (H,),
                       f"{layer}attention/output/LayerNorm/gamma": (H,),
                       f"{layer}attention/output/LayerNorm/beta": (H,),
                       f"{layer}intermediate/dense/kernel": (H, I),
                       f"{layer}intermediate/dense/bias": (I,),
                       f"{layer}output/dense/kernel": (I, H), f"{layer}output/dense/bias": (H,),
                       f"{layer}output/LayerNorm/gamma": (H,),
                       f"{layer}output/LayerNorm/beta": (H,)})
    if heads:
        shapes.update({"cls/predictions/transform/dense/kernel": (H, H),
                       "cls/predictions/transform/dense/bias": (H,),
                       "cls/predictions/transform/LayerNorm/gamma": (H,),
                       "cls/predictions/transform/LayerNorm/beta": (H,),
                       "cls/predictions/output_bias": (V,),
                       "cls/seq_relationship/output_weights": (2, H),
                       "cls/seq_relationship/output_bias": (2,)})
    return {k: rng.normal(0, 1, s).astype(np.float32) for k, s in shapes.items()}


def _hf_arrays(rng, prefix="bert.", heads=True, old_layer_norm=False) -> dict[str, np.ndarray]:
    """A Hugging Face BertForPreTraining (or BertModel) state dict, names written by hand."""
    g, b = ("gamma", "beta") if old_layer_norm else ("weight", "bias")
    shapes = {"embeddings.word_embeddings.weight": (V, H),
              "embeddings.position_embeddings.weight": (P, H),
              "embeddings.token_type_embeddings.weight": (2, H),
              f"embeddings.LayerNorm.{g}": (H,), f"embeddings.LayerNorm.{b}": (H,),
              "pooler.dense.weight": (H, H), "pooler.dense.bias": (H,)}
    for i in range(L):
        layer = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            shapes[f"{layer}attention.self.{part}.weight"] = (H, H)
            shapes[f"{layer}attention.self.{part}.bias"] = (H,)
        shapes.update({f"{layer}attention.output.dense.weight": (H, H),
                       f"{layer}attention.output.dense.bias": (H,),
                       f"{layer}attention.output.LayerNorm.{g}": (H,),
                       f"{layer}attention.output.LayerNorm.{b}": (H,),
                       f"{layer}intermediate.dense.weight": (I, H),
                       f"{layer}intermediate.dense.bias": (I,),
                       f"{layer}output.dense.weight": (H, I), f"{layer}output.dense.bias": (H,),
                       f"{layer}output.LayerNorm.{g}": (H,), f"{layer}output.LayerNorm.{b}": (H,)})
    arrays = {prefix + k: rng.normal(0, 1, s).astype(np.float32) for k, s in shapes.items()}
    arrays[prefix + "embeddings.position_ids"] = np.arange(P, dtype=np.int64)[None]
    if heads:
        arrays.update({k: rng.normal(0, 1, s).astype(np.float32) for k, s in {
            "cls.predictions.transform.dense.weight": (H, H),
            "cls.predictions.transform.dense.bias": (H,),
            f"cls.predictions.transform.LayerNorm.{g}": (H,),
            f"cls.predictions.transform.LayerNorm.{b}": (H,),
            "cls.predictions.bias": (V,),
            "cls.seq_relationship.weight": (2, H), "cls.seq_relationship.bias": (2,)}.items()})
        # Tied copies that transformers may write: the same tensors under other names.
        word_embeddings = arrays[prefix + "embeddings.word_embeddings.weight"]
        arrays["cls.predictions.decoder.weight"] = word_embeddings
        arrays["cls.predictions.decoder.bias"] = arrays["cls.predictions.bias"]
    return arrays


# --- name tables ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", [names.TF1, names.huggingface_format("bert."),
                                 names.huggingface_format("")], ids=["tf1", "hf", "hf-bare"])
def test_tables_cover_every_pretrainer_weight_once(fmt):
    rules = fmt.rules(L)
    ours = [r.ours for r in rules]
    theirs = [t for r in rules for t in r.theirs]
    assert sorted(ours) == sorted(names.model_weights(_pretrainer()))
    assert len(set(theirs)) == len(theirs) == 5 + 2 + L * 16 + 5 + 2
    assert all(fmt.group_of(t) == r.group for r in rules for t in r.theirs)


def test_rule_transforms_invert_each_other():
    rule = names.Rule("qkv/kernel", ("q", "k", "v"), transpose=True)
    value = np.arange(4 * 12, dtype=np.float32).reshape(4, 12)
    parts = rule.to_theirs(value)
    assert list(parts) == ["q", "k", "v"] and parts["q"].shape == (4, 4)
    np.testing.assert_array_equal(parts["k"], value[:, 4:8].T)
    np.testing.assert_array_equal(rule.to_ours([parts[n] for n in "qkv"]), value)
    assert rule.their_shapes((4, 12)) == {n: (4, 4) for n in "qkv"}
    assert rule.our_shape([(4, 4)] * 3) == (4, 12)


# --- TF1 ------------------------------------------------------------------------------------
def test_tf1_round_trip_encoder(tmp_path):
    encoder = _encoder(seed=1)
    prefix = checkpoints.save_tf1_checkpoint(encoder, str(tmp_path / "bert_model.ckpt"))
    stored = dict(tf.train.list_variables(prefix))
    assert stored["bert/encoder/layer_1/attention/self/query/kernel"] == [H, H]
    assert stored["bert/embeddings/token_type_embeddings"] == [2, H]
    assert not any(n.startswith("cls/") for n in stored)

    restored = _encoder(seed=2)
    report = checkpoints.load_tf1_checkpoint(restored, str(tmp_path))  # the directory works too
    assert len(report.loaded) == 5 + 2 + 12 * L and not report.initialised
    _assert_same_weights(encoder, restored)
    for key, value in _outputs(encoder).items():
        np.testing.assert_array_equal(value, _outputs(restored)[key])


def test_tf1_round_trip_pretrainer(tmp_path):
    model = _pretrainer(seed=3)
    prefix = checkpoints.save_tf1_checkpoint(model, str(tmp_path / "ckpt"))
    reader = tf.train.load_checkpoint(prefix)
    # The original stores the NSP kernel transposed, [2, hidden].
    np.testing.assert_array_equal(reader.get_tensor("cls/seq_relationship/output_weights"),
                                  names.model_weights(model)["next_sentence_head/kernel"].numpy().T)
    restored = _pretrainer(seed=4)
    report = checkpoints.load_tf1_checkpoint(restored, prefix)
    assert not report.initialised and not report.unused
    _assert_same_weights(model, restored)
    for key, value in _outputs(model, masked=True).items():
        np.testing.assert_array_equal(value, _outputs(restored, masked=True)[key])


def test_original_tf1_names_land_in_the_right_place(tmp_path):
    arrays = _original_tf1_arrays(np.random.default_rng(5))
    # Optimizer state as the original trainer leaves it: must be skipped, not complained about.
    slots = {"global_step": np.array(1000, np.int64), "bad_steps": np.array(0, np.int32),
             "loss_scale": np.array(1024.0, np.float32),
             "bert/pooler/dense/kernel/adam_m": np.zeros((H, H), np.float32),
             "bert/pooler/dense/kernel/adam_v": np.zeros((H, H), np.float32),
             "cls/predictions/output_bias/Adam": np.zeros((V,), np.float32),
             "cls/predictions/output_bias/Adam_1": np.zeros((V,), np.float32)}
    prefix = checkpoints.write_tf1_checkpoint({**arrays, **slots}, str(tmp_path / "model.ckpt"))
    model = _pretrainer()
    report = checkpoints.load_tf1_checkpoint(model, prefix)
    assert sorted(report.skipped) == sorted(slots)
    assert not report.unused and not report.initialised

    w = {p: v.numpy() for p, v in names.model_weights(model).items()}
    layer = "bert/encoder/layer_1/attention/self/"
    qkv = w["transformer_layer_1/attention/qkv/kernel"]
    np.testing.assert_array_equal(qkv[:, :H], arrays[layer + "query/kernel"])
    np.testing.assert_array_equal(qkv[:, H:2 * H], arrays[layer + "key/kernel"])
    np.testing.assert_array_equal(qkv[:, 2 * H:], arrays[layer + "value/kernel"])
    np.testing.assert_array_equal(w["transformer_layer_1/attention/qkv/bias"][H:2 * H],
                                  arrays[layer + "key/bias"])
    np.testing.assert_array_equal(w["next_sentence_head/kernel"],
                                  arrays["cls/seq_relationship/output_weights"].T)
    np.testing.assert_array_equal(w["segment_embeddings/embeddings"],
                                  arrays["bert/embeddings/token_type_embeddings"])
    np.testing.assert_array_equal(w["transformer_layer_0/output/kernel"],
                                  arrays["bert/encoder/layer_0/output/dense/kernel"])
    np.testing.assert_array_equal(w["masked_lm_head/layer_norm/gamma"],
                                  arrays["cls/predictions/transform/LayerNorm/gamma"])


def test_written_checkpoint_restores_with_tf1_saver(tmp_path):
    """The original code restores with a graph-mode Saver over variables named like ours."""
    encoder = _encoder(seed=6)
    prefix = checkpoints.save_tf1_checkpoint(encoder, str(tmp_path / "bert_model.ckpt"))
    wanted = {"bert/encoder/layer_0/attention/self/value/kernel": (H, H),
              "bert/embeddings/LayerNorm/gamma": (H,), "bert/pooler/dense/bias": (H,)}
    with tf.Graph().as_default():
        variables = [tf.compat.v1.get_variable(n, shape=s) for n, s in wanted.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as session:
            saver.restore(session, prefix)
            values = dict(zip(wanted, session.run(variables)))
    qkv = names.model_weights(encoder)["transformer_layer_0/attention/qkv/kernel"].numpy()
    np.testing.assert_array_equal(values["bert/encoder/layer_0/attention/self/value/kernel"],
                                  qkv[:, 2 * H:])


def test_encoder_from_pretraining_checkpoint_reports_unused_heads(tmp_path):
    prefix = checkpoints.save_tf1_checkpoint(_pretrainer(seed=7), str(tmp_path / "ckpt"))
    report = checkpoints.load_tf1_checkpoint(_encoder(), prefix)
    assert sorted(report.unused) == sorted(
        ["cls/predictions/transform/dense/kernel", "cls/predictions/transform/dense/bias",
         "cls/predictions/transform/LayerNorm/gamma", "cls/predictions/transform/LayerNorm/beta",
         "cls/predictions/output_bias", "cls/seq_relationship/output_weights",
         "cls/seq_relationship/output_bias"])


def test_pretrainer_from_encoder_checkpoint_leaves_heads_initialised(tmp_path, caplog):
    prefix = checkpoints.save_tf1_checkpoint(_encoder(seed=8), str(tmp_path / "ckpt"))
    model = _pretrainer(seed=9)
    before = names.model_weights(model)["next_sentence_head/kernel"].numpy()
    with caplog.at_level(logging.WARNING):
        report = checkpoints.load_tf1_checkpoint(model, prefix)
    assert sorted(report.initialised) == sorted(
        ["masked_lm_head/transform/kernel", "masked_lm_head/transform/bias",
         "masked_lm_head/layer_norm/gamma", "masked_lm_head/layer_norm/beta",
         "masked_lm_head/output_bias", "next_sentence_head/kernel", "next_sentence_head/bias"])
    assert "next_sentence_head/kernel" in caplog.text and "left as initialised" in caplog.text
    np.testing.assert_array_equal(names.model_weights(model)["next_sentence_head/kernel"], before)


def test_task_model_loads_its_encoder(tmp_path):
    encoder = _encoder(seed=10)
    prefix = checkpoints.save_tf1_checkpoint(encoder, str(tmp_path / "ckpt"))
    classifier = bert_tf.BertClassifier(_encoder(), num_classes=3)
    report = checkpoints.load_tf1_checkpoint(classifier, prefix)
    assert sorted(report.initialised) == ["logits/bias", "logits/kernel"]
    _assert_same_weights(encoder, classifier.encoder)


def test_shape_mismatch_names_both_shapes(tmp_path):
    prefix = checkpoints.save_tf1_checkpoint(_encoder(seed=11), str(tmp_path / "ckpt"))
    with pytest.raises(ValueError) as error:
        checkpoints.load_tf1_checkpoint(_encoder(TINY.replace(vocab_size=300)), prefix)
    message = str(error.value)
    assert "shape mismatch (1)" in message and prefix in message
    assert "bert/embeddings/word_embeddings: checkpoint [200, 128] vs model [300, 128]" in message


def test_layer_count_mismatch_lists_missing_and_unexpected(tmp_path):
    prefix = checkpoints.save_tf1_checkpoint(_encoder(seed=12), str(tmp_path / "ckpt"))
    deeper = _encoder(TINY.replace(num_hidden_layers=3), seed=13)
    before = {p: v.numpy() for p, v in names.model_weights(deeper).items()}
    with pytest.raises(ValueError, match=r"missing from the checkpoint \(16\)") as error:
        checkpoints.load_tf1_checkpoint(deeper, prefix)
    assert "bert/encoder/layer_2/attention/self/query/kernel" in str(error.value)
    # Checks run before any assignment: a failed load changes nothing.
    for path, variable in names.model_weights(deeper).items():
        np.testing.assert_array_equal(variable.numpy(), before[path], err_msg=path)

    with pytest.raises(ValueError, match=r"unexpected in the checkpoint \(16\)") as error:
        checkpoints.load_tf1_checkpoint(_encoder(TINY.replace(num_hidden_layers=1)), prefix)
    assert "bert/encoder/layer_1/output/LayerNorm/beta" in str(error.value)


def test_partially_present_head_is_an_error(tmp_path):
    arrays = _original_tf1_arrays(np.random.default_rng(14))
    del arrays["cls/predictions/output_bias"]
    prefix = checkpoints.write_tf1_checkpoint(arrays, str(tmp_path / "ckpt"))
    with pytest.raises(ValueError, match=r"missing from the checkpoint \(1\):\n\s+"
                                         r"cls/predictions/output_bias"):
        checkpoints.load_tf1_checkpoint(_pretrainer(), prefix)


# --- Hugging Face ---------------------------------------------------------------------------
def test_huggingface_names_land_in_the_right_place(tmp_path):
    arrays = _hf_arrays(np.random.default_rng(15), old_layer_norm=True)
    save_file(arrays, str(tmp_path / "model.safetensors"))
    model = _pretrainer()
    report = checkpoints.load_huggingface_checkpoint(model, str(tmp_path))
    assert sorted(report.skipped) == ["bert.embeddings.position_ids",
                                      "cls.predictions.decoder.bias",
                                      "cls.predictions.decoder.weight"]
    assert not report.unused and not report.initialised

    w = {p: v.numpy() for p, v in names.model_weights(model).items()}
    self_attention = "bert.encoder.layer.0.attention.self."
    qkv = w["transformer_layer_0/attention/qkv/kernel"]  # torch Linear weights are [out, in]
    for n, part in enumerate(("query", "key", "value")):
        np.testing.assert_array_equal(qkv[:, n * H:(n + 1) * H],
                                      arrays[self_attention + part + ".weight"].T)
    np.testing.assert_array_equal(w["transformer_layer_1/intermediate/kernel"],
                                  arrays["bert.encoder.layer.1.intermediate.dense.weight"].T)
    np.testing.assert_array_equal(w["embeddings_layer_norm/gamma"],
                                  arrays["bert.embeddings.LayerNorm.gamma"])
    np.testing.assert_array_equal(w["next_sentence_head/kernel"],
                                  arrays["cls.seq_relationship.weight"].T)
    np.testing.assert_array_equal(w["masked_lm_head/output_bias"], arrays["cls.predictions.bias"])


def test_huggingface_bert_model_layout_without_prefix(tmp_path):
    """sentence-transformers / `BertModel.save_pretrained`: `embeddings.…`, no `bert.`."""
    arrays = _hf_arrays(np.random.default_rng(16), prefix="", heads=False)
    arrays["classifier.weight"] = np.zeros((3, H), np.float32)  # some other model's head
    save_file(arrays, str(tmp_path / "weights.safetensors"))
    encoder = _encoder()
    report = checkpoints.load_huggingface_checkpoint(encoder, str(tmp_path / "weights.safetensors"))
    assert report.unused == ["classifier.weight"]
    np.testing.assert_array_equal(names.model_weights(encoder)["pooler/kernel"].numpy(),
                                  arrays["pooler.dense.weight"].T)


def test_huggingface_sharded_half_precision(tmp_path):
    """A sharded checkpoint (`model.safetensors.index.json`) stored in bfloat16 and float16."""
    import ml_dtypes  # pylint: disable=import-outside-toplevel

    arrays = _hf_arrays(np.random.default_rng(24), prefix="", heads=False)
    names_ = sorted(arrays)
    halves = [names_[: len(names_) // 2], names_[len(names_) // 2:]]
    dtypes = [ml_dtypes.bfloat16, np.float16]
    weight_map = {}
    for n, (shard, dtype) in enumerate(zip(halves, dtypes)):
        file = f"model-0000{n + 1}-of-00002.safetensors"
        save_file({k: arrays[k].astype(dtype) if arrays[k].dtype == np.float32 else arrays[k]
                   for k in shard}, str(tmp_path / file))
        weight_map.update({k: file for k in shard})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    encoder = _encoder()
    report = checkpoints.load_huggingface_checkpoint(encoder, str(tmp_path))
    assert len(report.loaded) == 5 + 2 + 12 * L
    name = "encoder.layer.0.intermediate.dense.weight"
    dtype = dtypes[0] if name in halves[0] else dtypes[1]
    np.testing.assert_array_equal(
        names.model_weights(encoder)["transformer_layer_0/intermediate/kernel"].numpy(),
        arrays[name].astype(dtype).astype(np.float32).T)


def test_huggingface_round_trip(tmp_path):
    encoder = _encoder(seed=17)
    path = checkpoints.save_huggingface_safetensors(encoder, str(tmp_path / "enc.safetensors"))
    restored = _encoder(seed=18)
    checkpoints.load_huggingface_checkpoint(restored, path)
    _assert_same_weights(encoder, restored)
    np.testing.assert_array_equal(_outputs(encoder)["sequence_output"],
                                  _outputs(restored)["sequence_output"])

    model = _pretrainer(seed=19)
    path = checkpoints.save_huggingface_safetensors(model, str(tmp_path / "pt.safetensors"))
    restored = _pretrainer(seed=20)
    with safe_open(path, framework="np") as f:  # BertForPreTraining layout: bert. + cls.
        assert "bert.encoder.layer.0.attention.self.query.weight" in f.keys()
        assert "cls.seq_relationship.weight" in f.keys()
    report = checkpoints.load_huggingface_checkpoint(restored, path)
    assert not report.initialised
    _assert_same_weights(model, restored)


def _run_python_with(modules, code, tmp_path):
    """Runs `code` in a fresh interpreter (cwd `tmp_path`); skips if `modules` are missing.

    torch and transformers run in their own process: importing them into a process that
    already holds TensorFlow can crash it (CUDA torch builds pull in triton).
    """
    import importlib.util  # pylint: disable=import-outside-toplevel
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} not installed")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


_TRANSFORMERS_RUN = """
import numpy as np, torch, transformers
model = transformers.BertModel.from_pretrained("hf", attn_implementation="eager").eval()
inputs = {k: torch.from_numpy(v).long() for k, v in np.load("inputs.npz").items()}
with torch.no_grad():
    out = model(**inputs)
np.savez("outputs.npz", sequence=out.last_hidden_state.numpy(), pooled=out.pooler_output.numpy())
"""


def test_huggingface_writer_is_read_by_transformers(tmp_path):
    """Our safetensors + config.json load into transformers' BertModel with equal outputs."""
    encoder = _encoder(TINY.replace(hidden_act="gelu"), seed=21)
    checkpoints.save_huggingface_safetensors(encoder, str(tmp_path / "hf" / "model.safetensors"))
    (tmp_path / "hf" / "config.json").write_text(
        json.dumps(checkpoints.huggingface_config_dict(encoder.bert_config)))
    inputs = _inputs()
    np.savez(tmp_path / "inputs.npz", input_ids=inputs["input_ids"],
             attention_mask=inputs["input_mask"], token_type_ids=inputs["segment_ids"])
    _run_python_with(["torch", "transformers"], _TRANSFORMERS_RUN, tmp_path)
    theirs = np.load(tmp_path / "outputs.npz")
    ours = _outputs(encoder)
    mask = inputs["input_mask"].astype(bool)
    np.testing.assert_allclose(ours["sequence_output"][mask], theirs["sequence"][mask], atol=1e-4)
    np.testing.assert_allclose(ours["pooled_output"], theirs["pooled"], atol=1e-4)


# --- pytorch_model.bin without torch --------------------------------------------------------
def _unicode(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _torch_zip(path, tensors, root="archive", data_pkl=None):
    """Writes the zip `torch.save` writes, by hand (pickle protocol 2 opcodes).

    tensors: name -> (storage type name e.g. "FloatStorage", storage key, offset, size,
      stride, storage as a 1-D numpy array); tensors may share a storage key.
    data_pkl: raw bytes to store as data.pkl instead (for hostile pickles).
    """
    out = bytearray(b"\x80\x02}")  # PROTO 2, EMPTY_DICT
    storages = {}
    for name, (storage_type, key, offset, size, stride, storage) in tensors.items():
        storages[key] = storage
        out += _unicode(name) + b"ctorch._utils\n_rebuild_tensor_v2\n("
        out += b"(" + _unicode("storage") + f"ctorch\n{storage_type}\n".encode()
        out += _unicode(key) + _unicode("cpu") + _int(storage.size) + b"tQ"  # TUPLE, BINPERSID
        out += _int(offset) + b"(" + b"".join(map(_int, size)) + b"t"
        out += b"(" + b"".join(map(_int, stride)) + b"t"
        out += b"\x89" + b"ccollections\nOrderedDict\n)R"  # False, OrderedDict()
        out += b"tRs"  # args TUPLE, REDUCE, SETITEM
    out += b"."
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{root}/data.pkl", bytes(out) if data_pkl is None else data_pkl)
        archive.writestr(f"{root}/byteorder", "little")
        archive.writestr(f"{root}/version", "3\n")
        for key, storage in storages.items():
            archive.writestr(f"{root}/data/{key}", storage.tobytes())


def test_torch_bin_hand_built_strided_and_typed(tmp_path):
    shared = np.arange(24, dtype=np.float32)
    bf16 = (np.array([1.5, -2.0, 3.25], np.float32).view(np.uint32) >> 16).astype(np.uint16)
    _torch_zip(tmp_path / "x.bin", {
        "plain": ("FloatStorage", "0", 0, (2, 3), (3, 1), shared),
        "transposed": ("FloatStorage", "0", 0, (4, 6), (1, 4), shared),
        "offset": ("FloatStorage", "0", 10, (2, 2), (2, 1), shared),
        "half": ("HalfStorage", "1", 0, (2,), (1,), np.array([0.5, 4.0], np.float16)),
        "bf16": ("BFloat16Storage", "2", 0, (3,), (1,), bf16),
        "ids": ("LongStorage", "3", 0, (1, 3), (3, 1), np.array([7, 8, 9], np.int64)),
        "scalar": ("FloatStorage", "0", 5, (), (), shared),
    })
    state = checkpoints.read_torch_bin(str(tmp_path / "x.bin"))
    np.testing.assert_array_equal(state["plain"], shared[:6].reshape(2, 3))
    np.testing.assert_array_equal(state["transposed"], shared.reshape(6, 4).T)
    np.testing.assert_array_equal(state["offset"], shared[10:14].reshape(2, 2))
    np.testing.assert_array_equal(state["half"], np.array([0.5, 4.0], np.float16))
    np.testing.assert_array_equal(state["bf16"], np.array([1.5, -2.0, 3.25], np.float32))
    assert state["ids"].dtype == np.int64 and state["scalar"] == 5.0


def test_pytorch_model_bin_loads_without_torch(tmp_path):
    arrays = _hf_arrays(np.random.default_rng(22), prefix="", heads=False)
    tensors = {name: ("LongStorage" if a.dtype == np.int64 else "FloatStorage", str(n), 0,
                      a.shape, tuple(s // a.itemsize for s in a.strides), a.ravel())
               for n, (name, a) in enumerate(arrays.items())}
    _torch_zip(tmp_path / "pytorch_model.bin", tensors, root="pytorch_model")
    encoder = _encoder()
    checkpoints.load_huggingface_checkpoint(encoder, str(tmp_path))
    np.testing.assert_array_equal(
        names.model_weights(encoder)["transformer_layer_1/output/kernel"].numpy(),
        arrays["encoder.layer.1.output.dense.weight"].T)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_torch_bin_refuses_foreign_globals(tmp_path, monkeypatch):
    marker = str(tmp_path / "pwned")
    path = tmp_path / "evil.bin"
    _torch_zip(path, {}, data_pkl=pickle.dumps({"w": _Payload(marker)}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global posix.mkdir"):
        torch_bin._read_zip(str(path))
    # Without torch to fall back on, the error names the file and says what to do.
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ValueError, match=r"evil.bin: cannot read this PyTorch file without "
                                         r"torch \(.*refusing.*install torch"):
        checkpoints.read_torch_bin(str(path))
    assert not os.path.exists(marker)


def test_torch_bin_bounds_checked(tmp_path):
    storage = np.zeros(6, np.float32)
    _torch_zip(tmp_path / "big.bin", {"w": ("FloatStorage", "0", 2, (2, 3), (3, 1), storage)})
    with pytest.raises(pickle.UnpicklingError, match="exceeds its storage"):
        torch_bin._read_zip(str(tmp_path / "big.bin"))


def test_torch_bin_refuses_broadcast_geometry(tmp_path, monkeypatch):
    # stride (0, 0) over a 1-element storage: a 28-byte file asking for terabytes.
    _torch_zip(tmp_path / "huge.bin", {"w": ("FloatStorage", "0", 0, (1 << 20, 1 << 20), (0, 0),
                                            np.zeros(1, np.float32))})
    with pytest.raises(pickle.UnpicklingError, match="more than its storage of 1"):
        torch_bin._read_zip(str(tmp_path / "huge.bin"))
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ValueError, match="huge.bin: cannot read"):
        checkpoints.read_torch_bin(str(tmp_path / "huge.bin"))


def test_torch_bin_caps_the_total_against_the_file_size(tmp_path):
    storage = np.zeros(300_000, np.float32)  # 1.2 MB, viewed whole by each tensor
    views = {f"w{i}": ("FloatStorage", "0", 0, (300_000,), (1,), storage) for i in range(2)}
    _torch_zip(tmp_path / "tied.bin", views)
    assert len(torch_bin._read_zip(str(tmp_path / "tied.bin"))) == 2  # tied weights: fine
    views = {f"w{i}": ("FloatStorage", "0", 0, (300_000,), (1,), storage) for i in range(8)}
    _torch_zip(tmp_path / "many.bin", views)
    with pytest.raises(pickle.UnpicklingError, match="more than 4x the file's size"):
        torch_bin._read_zip(str(tmp_path / "many.bin"))


def test_torch_bin_refuses_a_zip_bomb_entry_before_inflating_it(tmp_path):
    # 64 MB of zeros deflates to ~60 kB: the entry claims far more than the file could hold.
    path = tmp_path / "bomb.bin"
    pickled = b"\x80\x02}" + _unicode("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(" + (
        b"(" + _unicode("storage") + b"ctorch\nFloatStorage\n" + _unicode("1") +
        _unicode("cpu") + _int(16 << 20) + b"tQ" + _int(0) + b"(" + _int(4) + b"t(" + _int(1) +
        b"t\x89ccollections\nOrderedDict\n)RtRs.")
    _torch_zip(tmp_path / "pkl.bin", {}, data_pkl=pickled)
    with zipfile.ZipFile(tmp_path / "pkl.bin") as src, zipfile.ZipFile(
            path, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item))
        dst.writestr("archive/data/1", b"\0" * (64 << 20))
    assert os.path.getsize(path) < 1 << 20
    with pytest.raises(pickle.UnpicklingError,
                       match=r"zip entry archive/data/1 unpacks to 67108864 bytes, more than 4x"):
        torch_bin._read_zip(str(path))


_TORCH_SAVE = """
import collections, numpy as np, torch
base = torch.arange(20, dtype=torch.float32)
state = collections.OrderedDict(
    weight=torch.nn.Parameter(torch.randn(3, 4)), view=base[5:11].view(2, 3),
    transposed=base[:12].view(3, 4).t(), bf16=torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
    half=torch.tensor([0.25], dtype=torch.float16), ids=torch.arange(4)[None])
torch.save(state, "pytorch_model.bin")
np.savez("expected.npz", **{k: v.detach().float().numpy() if v.dtype == torch.bfloat16
                            else v.detach().numpy() for k, v in state.items()})
"""


def test_torch_bin_written_by_torch(tmp_path):
    _run_python_with(["torch"], _TORCH_SAVE, tmp_path)
    ours = checkpoints.read_torch_bin(str(tmp_path / "pytorch_model.bin"))
    expected = np.load(tmp_path / "expected.npz")
    assert list(ours) == ["weight", "view", "transposed", "bf16", "half", "ids"]
    for name in ours:
        assert ours[name].dtype == expected[name].dtype, name
        np.testing.assert_array_equal(ours[name], expected[name], err_msg=name)


# --- config inference and format detection -------------------------------------------------
def test_infer_bert_config(tmp_path):
    prefix = checkpoints.save_tf1_checkpoint(_encoder(), str(tmp_path / "bert_model.ckpt"))
    with pytest.raises(ValueError, match="num_attention_heads"):
        checkpoints.infer_bert_config(prefix)
    inferred = checkpoints.infer_bert_config(prefix, num_attention_heads=2)
    assert inferred == TINY.replace(hidden_act="gelu_approximate")

    TINY.replace(num_hidden_layers=3).to_json_file(str(tmp_path / "bert_config.json"))
    with pytest.raises(ValueError, match="num_hidden_layers: config 3 vs checkpoint 2"):
        checkpoints.infer_bert_config(prefix)
    TINY.to_json_file(str(tmp_path / "bert_config.json"))
    assert checkpoints.infer_bert_config(str(tmp_path)) == TINY


def test_detect_format(tmp_path):
    checkpoints.save_tf1_checkpoint(_encoder(), str(tmp_path / "tf1" / "bert_model.ckpt"))
    checkpoints.save_huggingface_safetensors(_encoder(), str(tmp_path / "hf" / "model.safetensors"))
    assert checkpoints.detect_format(str(tmp_path / "tf1")) == "tf1"
    assert checkpoints.detect_format(str(tmp_path / "tf1" / "bert_model.ckpt")) == "tf1"
    assert checkpoints.detect_format(str(tmp_path / "hf")) == "huggingface"
    with pytest.raises(ValueError, match="neither"):
        checkpoints.detect_format(str(tmp_path))


# --- the conversion script ------------------------------------------------------------------
def test_convert_script_end_to_end(tmp_path):
    source = tmp_path / "source"
    model = _pretrainer(seed=23)
    checkpoints.save_tf1_checkpoint(model, str(source / "bert_model.ckpt"))
    TINY.to_json_file(str(source / "bert_config.json"))
    (source / "vocab.txt").write_text("[PAD]\n[UNK]\n")

    # The command line, as a user runs it: TF1 -> Hugging Face.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "bert_tf.convert_checkpoint", f"--source={source}",
         f"--output={tmp_path / 'hf'}", "--output_format=huggingface", "--model=pretrainer"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "hf")) == ["config.json", "model.safetensors",
                                                   "vocab.txt"]
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_config["hidden_act"] == "gelu_new"  # the original's "gelu" is the tanh form

    # Library entry: Hugging Face -> Keras; the saved model reproduces the original's outputs.
    convert_checkpoint.convert(str(tmp_path / "hf"), str(tmp_path / "keras"),
                               output_format="keras", model="pretrainer")
    assert sorted(os.listdir(tmp_path / "keras")) == ["bert_config.json", "model.keras",
                                                      "vocab.txt"]
    reloaded = keras.models.load_model(str(tmp_path / "keras" / "model.keras"))
    for key, value in _outputs(model, masked=True).items():
        np.testing.assert_allclose(_outputs(reloaded, masked=True)[key], value, atol=1e-6)

    # No half-written output is left behind, and an existing output is not clobbered.
    with pytest.raises(FileExistsError):
        convert_checkpoint.convert(str(source), str(tmp_path / "keras"), output_format="tf1")
    assert sorted(os.listdir(tmp_path)) == ["hf", "keras", "source"]
    convert_checkpoint.convert(str(source), str(tmp_path / "keras"), output_format="tf1",
                               overwrite=True)
    assert "checkpoint" in os.listdir(tmp_path / "keras")
    assert sorted(os.listdir(tmp_path)) == ["hf", "keras", "source"]


def test_convert_command_reports_errors_without_traceback(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "bert_tf.convert_checkpoint", f"--source={tmp_path}",
         f"--output={tmp_path / 'out'}"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 1
    assert "bert-convert: error: " in result.stderr and "neither a TF1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "out")
