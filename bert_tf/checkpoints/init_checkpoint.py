"""`init_from_checkpoint`: start a model from any supported checkpoint, format detected.

Formats: a bert_tf training checkpoint (a `checkpoints/` directory or a `ckpt-N` prefix, as
written by `bert_tf.training.trainer`), a `.keras` file, an original Google TF1 BERT checkpoint
(`bert_model.ckpt`), or Hugging Face weights (`*.safetensors`, `pytorch_model.bin`, or a
directory holding them). The encoder is always loaded; heads are loaded where the checkpoint
has them and the model has the same heads (a pretrainer from a pretrainer checkpoint).
"""
from __future__ import annotations

import glob
import logging
import os

import keras
import tensorflow as tf

from bert_tf import checkpoints
from bert_tf.models import encoder_of

_LOG = logging.getLogger(__name__)
_HF_FILES = ("model.safetensors", "pytorch_model.bin")


def checkpoint_format(path: str) -> tuple[str, str]:
    """Returns (format, resolved path): format is bert_tf, keras, tf1 or huggingface."""
    if path.endswith(".keras"):
        return "keras", path
    if path.endswith((".safetensors", ".bin")) or (
            os.path.isdir(path) and any(os.path.exists(os.path.join(path, f)) or
                                        glob.glob(os.path.join(path, "*.safetensors"))
                                        for f in _HF_FILES)):
        return "huggingface", path
    prefix = path
    if os.path.isdir(path):
        # A bert_tf run's --output_dir keeps its checkpoints in checkpoints/: accept the run.
        prefix = (tf.train.latest_checkpoint(path) or
                  tf.train.latest_checkpoint(os.path.join(path, "checkpoints")))
        if prefix is None:
            found = glob.glob(os.path.join(path, "*.ckpt.index")) or glob.glob(
                os.path.join(path, "*.index"))
            if not found:
                raise ValueError(f"init_checkpoint {path!r}: no checkpoint (nor a run's "
                                 "checkpoints/), .keras, safetensors or pytorch_model.bin "
                                 "found there.")
            prefix = found[0][: -len(".index")]
    if not os.path.exists(prefix + ".index"):
        raise ValueError(f"init_checkpoint {path!r}: {prefix}.index does not exist.")
    names = [name for name, _ in tf.train.list_variables(prefix)]
    if any(name.startswith("model/") for name in names):
        return "bert_tf", prefix
    if any(name.startswith("bert/") for name in names):
        return "tf1", prefix
    raise ValueError(f"init_checkpoint {prefix!r}: neither a bert_tf checkpoint (model/...) nor "
                     "an original BERT checkpoint (bert/...).")


def init_from_checkpoint(model: keras.Model, path: str) -> str:
    """Loads weights from `path` into `model` (format auto-detected); returns the format.

    Every format goes through the same name-table loader (`checkpoints.names.load_into`): the
    encoder must match (ValueError naming the tensor and both shapes otherwise, nothing
    assigned), the pooler and pretraining heads are loaded where the checkpoint has them, and
    a warning names the heads the checkpoint lacks, which keep their initial values.
    """
    encoder_of(model)  # a clear error for a model without an encoder, before any reading
    kind, resolved = checkpoint_format(path)
    loaders = {"bert_tf": checkpoints.load_training_checkpoint,
               "keras": checkpoints.load_keras_file,
               "tf1": checkpoints.load_tf1_checkpoint,
               "huggingface": checkpoints.load_huggingface_checkpoint}
    loaders[kind](model, resolved)
    _LOG.info("Initialised %s from %s checkpoint %s", model.name, kind, resolved)
    return kind
