"""Checkpoint conversion: original TF1 and Hugging Face BERT weights <-> bert_tf models.

    config = checkpoints.infer_bert_config("uncased_L-12_H-768_A-12/bert_model.ckpt")
    encoder = bert_tf.BertEncoder.from_bert_config(config)
    report = checkpoints.load_checkpoint(encoder, "uncased_L-12_H-768_A-12/bert_model.ckpt")

Name tables live in `names`, one reader/writer per format in `tf1`, `huggingface`,
`torch_bin` and `native` (bert_tf's own training checkpoints and `.keras` files). This module adds format detection and config inference on top.
"""
from __future__ import annotations

import os

import keras

from bert_tf.checkpoints import names
from bert_tf.checkpoints.huggingface import (HuggingFaceReader, huggingface_config_dict,
                                             is_huggingface_checkpoint,
                                             load_huggingface_checkpoint,
                                             save_huggingface_safetensors)
from bert_tf.checkpoints.names import LoadReport
from bert_tf.checkpoints.native import load_keras_file, load_training_checkpoint
from bert_tf.checkpoints.tf1 import (TF1Reader, is_tf1_checkpoint, load_tf1_checkpoint,
                                     save_tf1_checkpoint, write_tf1_checkpoint)
from bert_tf.checkpoints.torch_bin import read_torch_bin
from bert_tf.config import BertConfig

FORMATS = ("tf1", "huggingface")
CONFIG_FILES = ("bert_config.json", "config.json")

__all__ = ["CONFIG_FILES", "FORMATS", "LoadReport", "detect_format", "find_config_file",
           "huggingface_config_dict", "infer_bert_config", "load_checkpoint",
           "load_huggingface_checkpoint", "load_keras_file", "load_tf1_checkpoint",
           "load_training_checkpoint", "read_torch_bin",
           "save_huggingface_safetensors", "save_tf1_checkpoint", "write_tf1_checkpoint"]


def detect_format(path: str) -> str:
    """"tf1" or "huggingface" for a checkpoint file, prefix or directory; ValueError if neither."""
    if is_huggingface_checkpoint(path):
        return "huggingface"
    if is_tf1_checkpoint(path):
        return "tf1"
    raise ValueError(f"{path}: neither a TF1 checkpoint (prefix or directory with *.index) nor "
                     "Hugging Face weights (model.safetensors, pytorch_model.bin).")


def _open(path: str, source_format: str) -> tuple[names.CheckpointReader, names.Format]:
    source_format = detect_format(path) if source_format == "auto" else source_format
    if source_format == "tf1":
        return TF1Reader(path), names.TF1
    if source_format == "huggingface":
        reader = HuggingFaceReader(path)
        return reader, names.huggingface_format(names.huggingface_prefix(list(reader.shapes())))
    raise ValueError(f"source_format must be 'auto', 'tf1' or 'huggingface', got "
                     f"{source_format!r}.")


def load_checkpoint(model: keras.Model, path: str, source_format: str = "auto") -> LoadReport:
    """`load_tf1_checkpoint` or `load_huggingface_checkpoint`, by `source_format` or detection."""
    source_format = detect_format(path) if source_format == "auto" else source_format
    if source_format == "tf1":
        return load_tf1_checkpoint(model, path)
    if source_format == "huggingface":
        return load_huggingface_checkpoint(model, path)
    raise ValueError(f"source_format must be 'auto', 'tf1' or 'huggingface', got "
                     f"{source_format!r}.")


def find_config_file(path: str) -> str | None:
    """`bert_config.json` or `config.json` in the checkpoint's directory, if there is one."""
    directory = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    for name in CONFIG_FILES:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _dims_from_shapes(reader: names.CheckpointReader, fmt: names.Format) -> dict[str, int]:
    """The config fields that the tensor shapes determine."""
    shapes = {fmt.canonical(k): v for k, v in reader.shapes().items()}
    layers = fmt.num_layers(list(shapes))
    rules = {r.ours: r for r in fmt.rules(max(layers, 1))}

    def ours(path: str) -> tuple[int, ...]:
        rule = rules[path]
        absent = [t for t in rule.theirs if t not in shapes]
        if absent:
            raise ValueError(f"{reader.source}: no {', '.join(absent)} in the checkpoint; "
                             "is it a BERT checkpoint?")
        return rule.our_shape([shapes[t] for t in rule.theirs])

    vocab, hidden = ours("word_embeddings/embeddings")
    return dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                intermediate_size=ours("transformer_layer_0/intermediate/kernel")[1],
                max_position_embeddings=ours("position_embeddings/embeddings")[0],
                type_vocab_size=ours("segment_embeddings/embeddings")[0])


def infer_bert_config(path: str, source_format: str = "auto", config_file: str | None = None,
                      num_attention_heads: int | None = None) -> BertConfig:
    """The `BertConfig` of a checkpoint.

    Reads `config_file`, else `bert_config.json`/`config.json` beside the checkpoint, and
    checks it against the tensor shapes (ValueError naming both on disagreement). Without a
    config file the sizes come from the shapes, but the number of attention heads cannot
    (it does not change any shape), so `num_attention_heads` is then required; the
    activation defaults to each format's own "gelu" (tanh form for TF1, exact for HF).
    """
    reader, fmt = _open(path, source_format)
    dims = _dims_from_shapes(reader, fmt)
    config_file = config_file or find_config_file(path)
    if config_file:
        config = BertConfig.from_json_file(config_file)
        wrong = [f"{k}: config {getattr(config, k)} vs checkpoint {v}" for k, v in dims.items()
                 if getattr(config, k) != v]
        if wrong:
            raise ValueError(f"{config_file} does not describe {reader.source}: "
                             + "; ".join(wrong))
        if num_attention_heads is not None and num_attention_heads != config.num_attention_heads:
            raise ValueError(f"num_attention_heads={num_attention_heads} disagrees with "
                             f"{config_file} ({config.num_attention_heads}).")
        return config
    if num_attention_heads is None:
        raise ValueError(f"{reader.source}: no {' or '.join(CONFIG_FILES)} beside the checkpoint; "
                         "pass the config file, or num_attention_heads (it cannot be read from "
                         "the weights).")
    act = "gelu_approximate" if fmt.name == "tf1" else "gelu"
    return BertConfig(num_attention_heads=num_attention_heads, hidden_act=act, **dims)
