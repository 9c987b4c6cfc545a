"""`BertConfig`: the hyper-parameters of a BERT encoder, read from and written to `bert_config.json`.

The field names are the original google-research/bert names; the same names are used as the
constructor arguments of `bert_tf.BertEncoder`, so one name means one thing everywhere.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Mapping

from bert_tf.layers import activations
from data_prep.files.atomic_io import write_json

_LOG = logging.getLogger(__name__)

# (num_hidden_layers, hidden_size, num_attention_heads) of the published BERT sizes
# (Turc et al., 2019 for the compact ones). intermediate_size is always 4 * hidden_size.
PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 128, 2),
    "mini": (4, 256, 4),
    "small": (4, 512, 8),
    "medium": (8, 512, 8),
    "base": (12, 768, 12),
    "large": (24, 1024, 16),
}

# Keys that mark a Hugging Face `config.json` rather than an original `bert_config.json`.
_HF_MARKER_KEYS = ("model_type", "architectures", "transformers_version")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Hyper-parameters of a BERT encoder, with the original `bert_config.json` key names.

    `hidden_act` holds a canonical bert_tf activation name (see `bert_tf.layers.activations`):
    `"gelu"` is the exact erf form and `"gelu_approximate"` the tanh approximation that the
    original TF code calls "gelu". `from_dict`/`from_json_file` translate file names to it.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu_approximate"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_act", activations.canonical_name(self.hidden_act))
        self.validate()

    # --- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        """Raises `ValueError` with the offending key when the config cannot build a model."""
        positive_ints = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                         "intermediate_size", "max_position_embeddings", "type_vocab_size")
        for key in positive_ints:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"BertConfig.{key} must be a positive integer, got {value!r}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BertConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads}).")
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, key)
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"BertConfig.{key} must be in [0, 1), got {value!r}.")
        for key in ("initializer_range", "layer_norm_eps"):
            if not float(getattr(self, key)) > 0:
                raise ValueError(f"BertConfig.{key} must be > 0, got {getattr(self, key)!r}.")

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "auto",
                  where: str = "config") -> "BertConfig":
        """Builds a config from a `bert_config.json`-style mapping.

        Args:
          values: the mapping; unknown keys are logged and ignored.
          source: how to read `hidden_act="gelu"`: `"original"` (google-research/bert: tanh
            approximation), `"huggingface"` (exact erf), or `"auto"` (Hugging Face when the
            mapping has `model_type`/`architectures`, else original).
          where: names the file in error messages.
        """
        if source == "auto":
            source = "huggingface" if any(k in values for k in _HF_MARKER_KEYS) else "original"
        if source not in ("original", "huggingface"):
            raise ValueError(f"source must be 'auto', 'original' or 'huggingface', got {source!r}.")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        if source == "huggingface" and "layer_norm_eps" not in values and "layer_norm_epsilon" in values:
            kwargs["layer_norm_eps"] = values["layer_norm_epsilon"]
        ignored = sorted(set(values) - known)
        if ignored:
            _LOG.info("%s: ignoring keys not used by BertConfig: %s", where, ", ".join(ignored))
        if "hidden_act" in kwargs:
            kwargs["hidden_act"] = activations.from_file_name(kwargs["hidden_act"], source)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from e

    @classmethod
    def from_json_file(cls, path: str, source: str = "auto") -> "BertConfig":
        """Reads an original `bert_config.json` (or a Hugging Face `config.json`)."""
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON (line {e.lineno}): {e.msg}") from e
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(values).__name__}.")
        return cls.from_dict(values, source=source, where=path)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "BertConfig":
        """A published size by name (`tiny, mini, small, medium, base, large`)."""
        if name not in PRESETS:
            raise ValueError(f"Unknown BERT preset {name!r}; choose one of {sorted(PRESETS)}.")
        layers, hidden, heads = PRESETS[name]
        values = dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                      intermediate_size=4 * hidden)
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> "BertConfig":
        return dataclasses.replace(self, **changes)

    # --- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The canonical mapping (bert_tf activation names); the inverse of `BertConfig(**d)`."""
        return dataclasses.asdict(self)

    def to_original_dict(self) -> dict[str, Any]:
        """The mapping in original `bert_config.json` form ("gelu" = tanh approximation)."""
        values = self.to_dict()
        values["hidden_act"] = activations.to_file_name(self.hidden_act, "original")
        return values

    def to_json_file(self, path: str) -> None:
        """Writes an original-format `bert_config.json` atomically (temp file + rename)."""
        write_json(path, self.to_original_dict(), indent=2)
