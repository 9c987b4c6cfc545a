"""Hugging Face BERT checkpoints (`model.safetensors`, `pytorch_model.bin`): read and write.

Read without torch: safetensors through the `safetensors` package's numpy API,
`pytorch_model.bin` through `torch_bin`. Sharded checkpoints (`*.index.json`) are followed.
"""
from __future__ import annotations

import json
import os
from typing import Any

import keras
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from bert_tf.layers import activations
from bert_tf.checkpoints import names, torch_bin
from bert_tf.config import BertConfig

# Looked for, in this order, when a directory is given.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def resolve_huggingface_files(path: str) -> list[str]:
    """The weight file(s) of a Hugging Face checkpoint given as a file or a directory.

    Returns one file, or every shard named by an `*.index.json`. Raises FileNotFoundError.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        found = [os.path.join(path, f) for f in WEIGHT_FILES
                 if os.path.isfile(os.path.join(path, f))]
        if not found:
            others = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
            if len(others) != 1:
                raise FileNotFoundError(
                    f"{path}: no Hugging Face weights ({', '.join(WEIGHT_FILES)}) in the "
                    "directory.")
            found = [os.path.join(path, others[0])]
        path = found[0]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file.")
    if path.endswith(".index.json"):
        with open(path, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{path}: no 'weight_map' in the shard index.")
        base = os.path.dirname(path)
        return [os.path.join(base, shard) for shard in sorted(set(weight_map.values()))]
    if not path.endswith((".safetensors", ".bin", ".pt", ".pth")):
        raise ValueError(f"{path}: expected a .safetensors or .bin file.")
    return [path]


def is_huggingface_checkpoint(path: str) -> bool:
    try:
        resolve_huggingface_files(path)
        return True
    except (FileNotFoundError, ValueError, OSError):
        return False


class HuggingFaceReader(names.CheckpointReader):
    """Reads names, shapes and float32 arrays from safetensors or `.bin` file(s)."""

    def __init__(self, path: str):
        self.source = os.fspath(path)
        self._where: dict[str, str] = {}  # name -> file
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._bins: dict[str, dict[str, np.ndarray]] = {}
        for file in resolve_huggingface_files(path):
            if file.endswith(".safetensors"):
                try:
                    with safe_open(file, framework="np") as f:
                        for key in f.keys():
                            self._shapes[key] = tuple(f.get_slice(key).get_shape())
                            self._where[key] = file
                except Exception as e:  # safetensors raises its own error types
                    raise ValueError(f"{file}: not a readable safetensors file: {e}") from e
            else:
                # The pickle format cannot be read lazily; the whole state dict is loaded.
                self._bins[file] = torch_bin.read_torch_bin(file)
                for key, value in self._bins[file].items():
                    self._shapes[key] = tuple(value.shape)
                    self._where[key] = file

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._shapes)

    def get(self, name: str) -> np.ndarray:
        file = self._where[name]
        if file in self._bins:
            value = self._bins[file][name]
        else:
            with safe_open(file, framework="np") as f:
                value = f.get_tensor(name)
        # float16/bfloat16 checkpoints load into float32 variables; the cast is exact.
        if value.dtype.kind == "f" or str(value.dtype) == "bfloat16":
            return value.astype(np.float32)
        return value


def load_huggingface_checkpoint(model: keras.Model, path_or_dir: str) -> names.LoadReport:
    """Loads Hugging Face BERT weights into `model`.

    model: a `BertEncoder`, `BertPretrainer` or task model containing an encoder.
    path_or_dir: a `.safetensors` / `pytorch_model.bin` file, a shard index, or the directory
      holding one. `BertModel` (no prefix, e.g. sentence-transformers) and
      `BertForPreTraining`-style (`bert.` + `cls.`) names are both accepted, as are the old
      `LayerNorm.gamma/beta` spellings. Heads the checkpoint lacks keep their initial values.
    Raises ValueError listing missing/unexpected names and shape mismatches (nothing is
    assigned then).
    """
    reader = HuggingFaceReader(path_or_dir)
    fmt = names.huggingface_format(names.huggingface_prefix(list(reader.shapes())))
    report = names.load_into(names.model_weights(model), reader, fmt)
    names.log_report(report)
    return report


def save_huggingface_safetensors(model: keras.Model, path: str, prefix: str | None = None
                                 ) -> str:
    """Writes `model`'s BERT weights as a Hugging Face safetensors file (float32).

    prefix: name prefix of encoder weights; default "" for a bare encoder (as `BertModel`
      writes) and "bert." when the model has pretraining heads (as `BertForPreTraining`).
    The tied MLM decoder weight is not written (Hugging Face re-ties it on load).
    Returns `path`; written to a temporary file first, then renamed.
    """
    weights = names.model_weights(model)
    if prefix is None:
        prefix = "bert." if "masked_lm_head/output_bias" in weights else ""
    arrays = names.export_from(weights, names.huggingface_format(prefix))
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    try:
        save_file(arrays, tmp, metadata={"format": "pt"})  # "pt": what transformers expects
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def huggingface_config_dict(config: BertConfig, architecture: str = "BertModel"
                            ) -> dict[str, Any]:
    """`config` as a Hugging Face `config.json` mapping (its "gelu" is the exact form)."""
    values = config.to_dict()
    values["hidden_act"] = activations.to_file_name(config.hidden_act, "huggingface")
    values.update(model_type="bert", architectures=[architecture],
                  position_embedding_type="absolute", pad_token_id=0)
    return values
