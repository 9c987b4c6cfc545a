"""Activation names and functions.

Canonical bert_tf names (used in `BertConfig.hidden_act` and every layer config):

| name               | function                                  | who calls it that               |
|--------------------|-------------------------------------------|---------------------------------|
| `gelu`             | exact GELU, x * Phi(x) with erf            | Hugging Face, PyTorch, Keras     |
| `gelu_approximate` | tanh approximation of GELU                 | original BERT TF code ("gelu"), HF ("gelu_new") |
| `relu`, `silu`, `tanh`, `linear` | as usual                     | everyone                        |

The same word "gelu" means different functions in the two checkpoint sources, so file readers
translate with `from_file_name(name, source)` and writers with `to_file_name(name, source)`.
"""
from __future__ import annotations

import math
from typing import Callable

import keras
import tensorflow as tf
from keras import ops

_ALIASES = {
    "gelu_approximate": "gelu_approximate",
    "gelu_new": "gelu_approximate",
    "gelu_tanh": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu_fast": "gelu_approximate",
    "gelu": "gelu",
    "gelu_exact": "gelu",
    "gelu_erf": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
    "tanh": "tanh",
    "linear": "linear",
}


def canonical_name(name: str) -> str:
    """Maps an alias (`gelu_new`, `swish`, ...) to the canonical bert_tf name."""
    key = str(name).lower()
    if key not in _ALIASES:
        raise ValueError(f"Unsupported activation {name!r}; supported: {sorted(_ALIASES)}.")
    return _ALIASES[key]


def from_file_name(name: str, source: str) -> str:
    """Canonical name for `name` as written in a config file from `source`.

    `source="original"`: google-research/bert, whose "gelu" is the tanh approximation.
    `source="huggingface"`: Hugging Face, whose "gelu" is exact.
    """
    if source == "original" and str(name).lower() == "gelu":
        return "gelu_approximate"
    return canonical_name(name)


def to_file_name(name: str, source: str) -> str:
    """Inverse of `from_file_name`: how `source`'s own code spells canonical `name`."""
    name = canonical_name(name)
    if source == "original":
        return {"gelu_approximate": "gelu", "gelu": "gelu_exact"}.get(name, name)
    return {"gelu_approximate": "gelu_new"}.get(name, name)


def _gelu_approximate(x):
    return keras.activations.gelu(x, approximate=True)


def _gelu(x):
    return keras.activations.gelu(x, approximate=False)


_FUNCTIONS: dict[str, Callable] = {
    "gelu": _gelu,
    "gelu_approximate": _gelu_approximate,
    "relu": keras.activations.relu,
    "silu": keras.activations.silu,
    "tanh": ops.tanh,
    "linear": lambda x: x,
}


def get(name: str) -> Callable:
    """The activation function for any accepted name (see the table above)."""
    return _FUNCTIONS[canonical_name(name)]


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


# The tanh-GELU and its derivative as one XLA kernel each, with float32 math for any input
# dtype. Unfused, TensorFlow runs about 8 elementwise passes forward and more backward over
# the [batch, seq, intermediate] tensor (and in bfloat16 each pass converts to float32 and
# back); fused, the forward reads x and writes y, and the backward reads x and the upstream
# gradient (recomputing tanh) and writes the input gradient: about 2.5x less time on CPU.
@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _gelu_approximate_forward(x):
    x32 = tf.cast(x, tf.float32)
    inner = _SQRT_2_OVER_PI * (x32 + _GELU_CUBIC * x32 * x32 * x32)
    return tf.cast(0.5 * x32 * (1.0 + tf.tanh(inner)), x.dtype)


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _gelu_approximate_backward(x, upstream):
    x32 = tf.cast(x, tf.float32)
    x_sq = x32 * x32
    t = tf.tanh(x32 * (_SQRT_2_OVER_PI + _SQRT_2_OVER_PI * _GELU_CUBIC * x_sq))
    # d/dx [x/2 (1 + t)] = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    derivative = 0.5 * (1.0 + t) + 0.5 * x32 * (1.0 - t * t) * (
        _SQRT_2_OVER_PI + 3.0 * _SQRT_2_OVER_PI * _GELU_CUBIC * x_sq)
    return tf.cast(tf.cast(upstream, tf.float32) * derivative, upstream.dtype)


@tf.autograph.experimental.do_not_convert
@tf.custom_gradient
def _gelu_approximate_fused(x):
    """x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the same function as
    `_gelu_approximate` (float32 math inside, one rounding to x's dtype), computed forward
    and backward by the two fused kernels above."""
    return _gelu_approximate_forward(x), lambda upstream: _gelu_approximate_backward(
        x, upstream)


_TRAINING_FUNCTIONS: dict[str, Callable] = {"gelu_approximate": _gelu_approximate_fused}


def get_for_training(name: str) -> Callable:
    """`get(name)`'s function as the training step should run it: for the tanh GELU, the
    fused XLA kernels above; otherwise `get(name)`.

    Training only: XLA-compiled functions in an exported SavedModel would need XLA where it
    is served (TF Serving refuses them unless started with XLA enabled), so inference and
    export keep `get(name)`, plain TensorFlow ops.
    """
    name = canonical_name(name)
    return _TRAINING_FUNCTIONS.get(name, _FUNCTIONS[name])
