"""bert_tf's own files as checkpoints: training checkpoints (`ckpt-N`) and `.keras` models.

Both are read as a `names.CheckpointReader` keyed by our weight paths (`keras.Variable.path`)
and loaded by `names.load_into` with the identity table `names.NATIVE`, exactly as TF1 and
Hugging Face weights are: the encoder is required, the pooler and the masked-LM and
next-sentence heads are loaded where the file has them (all or nothing), and every name and
shape is checked before the first assignment, so a config that does not match the file fails
with the tensor and both shapes instead of half-loading the model.
"""
from __future__ import annotations

import os
from typing import Mapping

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from bert_tf.checkpoints import names
from bert_tf.models.encoder import encoder_of

_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_ROOT = "model"  # bert_tf.training.trainer writes tf.train.Checkpoint(model=..., optimizer=...)


class ArrayReader(names.CheckpointReader):
    """A reader over {our weight path: array}."""

    def __init__(self, source: str, arrays: Mapping[str, np.ndarray]):
        self.source = source
        self._arrays = dict(arrays)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(a.shape) for name, a in self._arrays.items()}

    def get(self, name: str) -> np.ndarray:
        return np.asarray(self._arrays[name])


class TrainingCheckpointReader(names.CheckpointReader):
    """A bert_tf training checkpoint read by the weight paths of `model`.

    A `tf.train.Checkpoint` stores variables by object-graph edges (attribute names such as
    `model/encoder/word_embeddings/_embeddings`), not by Keras paths. Walking the checkpoint's
    object graph beside `model`'s own (edge names are attribute names, the same in any model
    that holds the same layers) gives each of `model`'s variables its checkpoint key; the
    checkpoint's `model` may be another task's model, as long as it holds an encoder.
    Raises ValueError naming the checkpoint when its encoder has weights that `model`'s does
    not (e.g. more layers): those would otherwise be dropped silently.
    """

    def __init__(self, prefix: str, model: keras.Model):
        self.source = prefix
        self._reader = tf.train.load_checkpoint(prefix)
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(self._reader.get_tensor(_GRAPH_KEY))
        roots = [c.node_id for c in graph.nodes[0].children if c.local_name == _ROOT]
        if not roots:
            raise ValueError(f"{prefix}: no '{_ROOT}' in this checkpoint; not written by "
                             "bert_tf training.")
        root = roots[0]
        if encoder_of(model) is model:
            # A bare encoder from a task model's checkpoint: walk from the checkpoint model's
            # encoder, so that its heads count as the task model's, not as encoder weights
            # the model lacks.
            root = next((c.node_id for c in graph.nodes[root].children
                         if c.local_name == "encoder"), root)
        keys: dict[int, str] = {}  # id(python variable) -> checkpoint key
        nodes: dict[int, int] = {}  # id(python object) -> checkpoint node
        _walk(graph, root, model, keys, nodes)
        shapes = self._reader.get_variable_to_shape_map()
        self._keys = {path: keys[id(v)] for path, v in names.model_weights(model).items()
                      if id(v) in keys}
        self._shapes = {path: tuple(shapes[key]) for path, key in self._keys.items()}
        encoder = encoder_of(model)
        self._num_layers = None
        if id(encoder) in nodes:
            self._num_layers = _count_transformer_layers(graph, nodes[id(encoder)])
            extra = sorted(_variable_keys(graph, nodes[id(encoder)]) - set(self._keys.values()))
            if extra:
                raise ValueError(
                    f"{prefix}: the checkpoint's encoder has {len(extra)} weights that the "
                    f"model's encoder lacks (e.g. {extra[0]} {list(shapes[extra[0]])}): the "
                    "model's config does not match the checkpoint.")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._shapes)

    def get(self, name: str) -> np.ndarray:
        return self._reader.get_tensor(self._keys[name])

    def num_layers(self, fmt: names.Format, canonical: list[str]) -> int:
        # Our paths name the layers by *model* position, which is not the checkpoint's when
        # the configs differ; count the checkpoint's own transformer blocks instead.
        if self._num_layers is None:
            return super().num_layers(fmt, canonical)
        return self._num_layers


def _attribute_key(node) -> str | None:
    return next((a.checkpoint_key for a in node.attributes if a.name == "VARIABLE_VALUE"), None)


def _walk(graph, node_id: int, obj, keys: dict[int, str], nodes: dict[int, int]) -> None:
    """Follows the edges that the checkpoint graph and the Python objects share."""
    if id(obj) in nodes:
        return
    nodes[id(obj)] = node_id
    children = tf.train.TrackableView(obj).children(obj)
    for ref in graph.nodes[node_id].children:
        child = children.get(ref.local_name)
        if child is None:
            continue
        key = _attribute_key(graph.nodes[ref.node_id])
        if key is not None:
            keys[id(child)] = key
        else:
            _walk(graph, ref.node_id, child, keys, nodes)


def _reachable(graph, node_id: int):
    """Every node of the checkpoint graph reachable from `node_id` (itself included), once."""
    stack, seen = [node_id], set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        yield graph.nodes[node]
        stack += [c.node_id for c in graph.nodes[node].children]


def _count_transformer_layers(graph, node_id: int) -> int:
    """Objects under `node_id` with both an `attention` and an `intermediate` child: the
    transformer blocks (layers/transformer_block.py)."""
    return sum({"attention", "intermediate"} <= {c.local_name for c in node.children}
               for node in _reachable(graph, node_id))


def _variable_keys(graph, node_id: int) -> set[str]:
    """Every variable's checkpoint key reachable from `node_id`."""
    keys = (_attribute_key(node) for node in _reachable(graph, node_id))
    return {key for key in keys if key is not None}


def load_training_checkpoint(model: keras.Model, prefix: str) -> names.LoadReport:
    """Loads a bert_tf training checkpoint (`ckpt-N` prefix, or `best/model`) into `model`."""
    report = names.load_into(names.model_weights(model),
                             TrainingCheckpointReader(prefix, model), names.NATIVE)
    names.log_report(report)
    return report


def load_keras_file(model: keras.Model, path: str, safe_mode: bool = True) -> names.LoadReport:
    """Loads the BERT weights of a saved `.keras` model (any bert_tf model) into `model`.

    safe_mode: Keras' safe mode (refuses to deserialise lambdas); keep it on for files you
      did not write yourself.
    """
    source = keras.saving.load_model(os.fspath(path), compile=False, safe_mode=safe_mode)
    arrays = {p: np.asarray(v) for p, v in names.model_weights(source).items()}
    report = names.load_into(names.model_weights(model), ArrayReader(os.fspath(path), arrays),
                             names.NATIVE)
    names.log_report(report)
    return report
