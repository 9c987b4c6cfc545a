"""Original google-research/bert (TF1, name-based) checkpoints: read and write.

A TF1 checkpoint is a prefix `DIR/bert_model.ckpt` with files `.index` and
`.data-00000-of-00001`, holding tensors by variable name (`bert/encoder/layer_0/...`).
"""
from __future__ import annotations

import os
from typing import Mapping

import keras
import numpy as np
import tensorflow as tf

from bert_tf.checkpoints import names


def resolve_tf1_prefix(path: str) -> str:
    """`path` as a checkpoint prefix: a prefix itself, or a directory holding one.

    A directory is resolved through its `checkpoint` state file, else its single `*.index`.
    Raises FileNotFoundError naming `path` when there is no checkpoint.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        indexes = sorted(f for f in os.listdir(path) if f.endswith(".index"))
        if len(indexes) == 1:
            return os.path.join(path, indexes[0][: -len(".index")])
        raise FileNotFoundError(
            f"{path}: expected exactly one TF1 checkpoint (*.index) in the directory, found "
            f"{len(indexes)}: {indexes}. Pass the checkpoint prefix, e.g. DIR/bert_model.ckpt.")
    if path.endswith(".index") or ".data-" in path:
        path = path[: path.rindex(".")] if path.endswith(".index") else path[: path.index(".data-")]
    if not os.path.exists(path + ".index"):
        raise FileNotFoundError(f"{path}: no TF1 checkpoint here ({path}.index does not exist).")
    return path


def is_tf1_checkpoint(path: str) -> bool:
    """True when `path` resolves to a TF1 checkpoint prefix."""
    try:
        resolve_tf1_prefix(path)
        return True
    except (FileNotFoundError, OSError):
        return False


class TF1Reader(names.CheckpointReader):
    """Reads a name-based (or object-based) TF checkpoint through `tf.train.load_checkpoint`."""

    def __init__(self, path: str):
        self.source = resolve_tf1_prefix(path)
        try:
            self._reader = tf.train.load_checkpoint(self.source)
        except (tf.errors.OpError, ValueError) as e:
            raise ValueError(f"{self.source}: not a readable TF checkpoint: {e}") from e

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v) for k, v in self._reader.get_variable_to_shape_map().items()}

    def get(self, name: str) -> np.ndarray:
        value = np.asarray(self._reader.get_tensor(name))
        return value.astype(np.float32) if value.dtype.kind == "f" else value


def load_tf1_checkpoint(model: keras.Model, ckpt_path: str) -> names.LoadReport:
    """Loads an original BERT TF1 checkpoint into `model`.

    model: a `BertEncoder`, `BertPretrainer` or task model containing an encoder. Heads the
      checkpoint lacks (and task layers) keep their initial values; the report lists them.
    ckpt_path: checkpoint prefix (`.../bert_model.ckpt`) or the directory holding it.
    Optimizer slots (`adam_m`, `adam_v`, `global_step`, ...) are skipped.
    Raises ValueError listing missing/unexpected names and shape mismatches (nothing is
    assigned then), FileNotFoundError when there is no checkpoint.
    """
    report = names.load_into(names.model_weights(model), TF1Reader(ckpt_path), names.TF1)
    names.log_report(report)
    return report


def write_tf1_checkpoint(arrays: Mapping[str, np.ndarray], ckpt_prefix: str) -> str:
    """Writes {variable name: array} as a name-based TF1 checkpoint at `ckpt_prefix`.

    The files (`.index`, `.data-00000-of-00001`) are what TF1's `tf.train.Saver` writes, so
    `tf.train.load_checkpoint`, `tf.train.init_from_checkpoint` and `Saver.restore` read them.
    Returns the prefix.
    """
    ckpt_prefix = os.fspath(ckpt_prefix)
    if not arrays:
        raise ValueError(f"{ckpt_prefix}: nothing to write.")
    os.makedirs(os.path.dirname(os.path.abspath(ckpt_prefix)), exist_ok=True)
    keys = sorted(arrays)
    # SaveV2 in eager mode needs no graph, no variables and no Saver; it writes names as given.
    tf.raw_ops.SaveV2(prefix=ckpt_prefix, tensor_names=keys, shape_and_slices=[""] * len(keys),
                      tensors=[tf.constant(np.asarray(arrays[k])) for k in keys])
    return ckpt_prefix


def save_tf1_checkpoint(model: keras.Model, ckpt_prefix: str) -> str:
    """Writes `model`'s BERT weights under the original variable names (float32).

    Encoder weights go to `bert/...`; a `BertPretrainer`'s heads to `cls/...` (the NSP kernel
    transposed to the original [2, hidden]). Task layers have no original name and are not
    written. Returns the prefix; read it back with `load_tf1_checkpoint`.
    """
    arrays = names.export_from(names.model_weights(model), names.TF1)
    return write_tf1_checkpoint(arrays, ckpt_prefix)
