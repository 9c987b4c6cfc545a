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

from typing import Callable

import keras
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
