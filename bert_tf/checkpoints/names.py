"""Declarative name tables: our Keras weight paths <-> original TF1 and Hugging Face names.

A table is a list of `Rule`s. Each rule says which checkpoint tensor(s) make one of our
weights and how: `transpose` (torch `Linear.weight` is [out, in], ours is [in, out]; the
original NSP `output_weights` is [2, H], ours [H, 2]) and, when `theirs` names several tensors,
concatenation along our last axis (our fused attention `qkv` = [query | key | value]).
The same rule runs both ways (`to_ours` for loading, `to_theirs` for writing), so a name or a
transformation is written once. Nothing in this file touches Keras or TensorFlow.

Rules belong to a `group`, the unit that a checkpoint has entirely or not at all:
`encoder` (required), `pooler`, `masked_lm`, `next_sentence` (optional: a checkpoint without
them leaves those weights as initialised, and the load report says so).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import logging
import re
from typing import Callable, Mapping, Sequence

import numpy as np

_LOG = logging.getLogger(__name__)

GROUPS = ("encoder", "pooler", "masked_lm", "next_sentence")
REQUIRED_GROUPS = ("encoder",)


@dataclasses.dataclass(frozen=True)
class Rule:
    """One of our weights and the checkpoint tensor(s) it is made of.

    ours: our weight path (`keras.Variable.path`), e.g. "transformer_layer_0/attention/qkv/kernel".
    theirs: checkpoint names; several are concatenated, in order, along our last axis.
    transpose: each checkpoint tensor is the transpose of its slice of ours (2-D only).
    group: see the module docstring.
    """

    ours: str
    theirs: tuple[str, ...]
    transpose: bool = False
    group: str = "encoder"

    def to_ours(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Checkpoint arrays (in `theirs` order) -> our weight value."""
        parts = [np.asarray(a).T if self.transpose else np.asarray(a) for a in arrays]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)

    def to_theirs(self, value: np.ndarray) -> dict[str, np.ndarray]:
        """Our weight value -> {checkpoint name: array}, C-contiguous."""
        parts = np.split(np.asarray(value), len(self.theirs), axis=-1)
        return {name: np.ascontiguousarray(p.T if self.transpose else p)
                for name, p in zip(self.theirs, parts)}

    def their_shapes(self, our_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """The checkpoint shape each of `theirs` must have for our weight of `our_shape`."""
        shape = list(our_shape)
        if shape[-1] % len(self.theirs):
            raise ValueError(f"{self.ours}: last dim {shape[-1]} not divisible by "
                             f"{len(self.theirs)} parts.")
        shape[-1] //= len(self.theirs)
        part = tuple(reversed(shape)) if self.transpose else tuple(shape)
        return {name: part for name in self.theirs}

    def our_shape(self, their_shapes: Sequence[Sequence[int]]) -> tuple[int, ...]:
        """Inverse of `their_shapes`: our weight shape from the checkpoint shapes."""
        shape = list(reversed(their_shapes[0]) if self.transpose else their_shapes[0])
        shape[-1] *= len(their_shapes)
        return tuple(shape)


@dataclasses.dataclass(frozen=True)
class Format:
    """How one checkpoint family names BERT.

    rules: callable num_layers -> list of `Rule`.
    namespaces: group -> checkpoint name prefixes that belong to it; a name under the
      namespace of a group the model has, used by no rule, is "unexpected" (an error: e.g. a
      13th layer). Names outside every namespace of the model's groups are merely unused.
    skip: fnmatch patterns of names ignored by design (optimizer slots, buffers).
    aliases: (old suffix, canonical suffix): older spellings of the same tensor.
    layer_pattern: regex whose group 1 is the layer index, to count layers.
    """

    name: str
    rules: Callable[[int], list[Rule]]
    namespaces: Mapping[str, tuple[str, ...]]
    skip: tuple[str, ...]
    aliases: tuple[tuple[str, str], ...]
    layer_pattern: str

    def group_of(self, name: str) -> str | None:
        """The group whose namespace holds `name` (longest prefix wins), or None."""
        best, best_len = None, -1
        for group, prefixes in self.namespaces.items():
            for prefix in prefixes:
                if name.startswith(prefix) and len(prefix) > best_len:
                    best, best_len = group, len(prefix)
        return best

    def is_skipped(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.skip)

    def canonical(self, name: str) -> str:
        for old, new in self.aliases:
            if name.endswith(old):
                return name[: -len(old)] + new
        return name

    def num_layers(self, names: Sequence[str]) -> int:
        """1 + the largest layer index among `names` (0 when there is none)."""
        indices = [int(m.group(1)) for m in map(re.compile(self.layer_pattern).match, names) if m]
        return max(indices) + 1 if indices else 0


# --- Our layout ---------------------------------------------------------------------------
# (our path within a transformer layer, original TF1 path within `bert/encoder/layer_{i}`,
#  Hugging Face path within `encoder.layer.{i}`, is it a dense kernel).
# A kernel is stored [in, out] by TF1 and as torch `weight` [out, in] by Hugging Face.
_LAYER = (
    ("attention/qkv/kernel", ("attention/self/query/kernel", "attention/self/key/kernel",
                              "attention/self/value/kernel"),
     ("attention.self.query.weight", "attention.self.key.weight",
      "attention.self.value.weight"), True),
    ("attention/qkv/bias", ("attention/self/query/bias", "attention/self/key/bias",
                            "attention/self/value/bias"),
     ("attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias"), False),
    ("attention/output/kernel", ("attention/output/dense/kernel",),
     ("attention.output.dense.weight",), True),
    ("attention/output/bias", ("attention/output/dense/bias",),
     ("attention.output.dense.bias",), False),
    ("attention_layer_norm/gamma", ("attention/output/LayerNorm/gamma",),
     ("attention.output.LayerNorm.weight",), False),
    ("attention_layer_norm/beta", ("attention/output/LayerNorm/beta",),
     ("attention.output.LayerNorm.bias",), False),
    ("intermediate/kernel", ("intermediate/dense/kernel",), ("intermediate.dense.weight",), True),
    ("intermediate/bias", ("intermediate/dense/bias",), ("intermediate.dense.bias",), False),
    ("output/kernel", ("output/dense/kernel",), ("output.dense.weight",), True),
    ("output/bias", ("output/dense/bias",), ("output.dense.bias",), False),
    ("output_layer_norm/gamma", ("output/LayerNorm/gamma",), ("output.LayerNorm.weight",), False),
    ("output_layer_norm/beta", ("output/LayerNorm/beta",), ("output.LayerNorm.bias",), False),
)

# (our path, TF1 name, HF name without model prefix, group, TF1 transposed, HF transposed).
# HF names of the encoder get the model prefix ("bert." or ""); `cls.` names never do.
_GLOBAL = (
    ("word_embeddings/embeddings", "bert/embeddings/word_embeddings",
     "embeddings.word_embeddings.weight", "encoder", False, False),
    ("position_embeddings/embeddings", "bert/embeddings/position_embeddings",
     "embeddings.position_embeddings.weight", "encoder", False, False),
    ("segment_embeddings/embeddings", "bert/embeddings/token_type_embeddings",
     "embeddings.token_type_embeddings.weight", "encoder", False, False),
    ("embeddings_layer_norm/gamma", "bert/embeddings/LayerNorm/gamma",
     "embeddings.LayerNorm.weight", "encoder", False, False),
    ("embeddings_layer_norm/beta", "bert/embeddings/LayerNorm/beta",
     "embeddings.LayerNorm.bias", "encoder", False, False),
    ("pooler/kernel", "bert/pooler/dense/kernel", "pooler.dense.weight", "pooler", False, True),
    ("pooler/bias", "bert/pooler/dense/bias", "pooler.dense.bias", "pooler", False, False),
    ("masked_lm_head/transform/kernel", "cls/predictions/transform/dense/kernel",
     "cls.predictions.transform.dense.weight", "masked_lm", False, True),
    ("masked_lm_head/transform/bias", "cls/predictions/transform/dense/bias",
     "cls.predictions.transform.dense.bias", "masked_lm", False, False),
    ("masked_lm_head/layer_norm/gamma", "cls/predictions/transform/LayerNorm/gamma",
     "cls.predictions.transform.LayerNorm.weight", "masked_lm", False, False),
    ("masked_lm_head/layer_norm/beta", "cls/predictions/transform/LayerNorm/beta",
     "cls.predictions.transform.LayerNorm.bias", "masked_lm", False, False),
    ("masked_lm_head/output_bias", "cls/predictions/output_bias", "cls.predictions.bias",
     "masked_lm", False, False),
    # The original stores the NSP kernel as [2, H] (`output_weights`), like a torch Linear.
    ("next_sentence_head/kernel", "cls/seq_relationship/output_weights",
     "cls.seq_relationship.weight", "next_sentence", True, True),
    ("next_sentence_head/bias", "cls/seq_relationship/output_bias",
     "cls.seq_relationship.bias", "next_sentence", False, False),
)


def tf1_rules(num_layers: int) -> list[Rule]:
    """Rules for google-research/bert checkpoints (`bert/...`, `cls/...`)."""
    rules = [Rule(ours, (tf1,), tf1_t, group)
             for ours, tf1, _, group, tf1_t, _ in _GLOBAL]
    for i in range(num_layers):
        # Only the NSP kernel is transposed in TF1; layer kernels are [in, out] like ours.
        rules += [Rule(f"transformer_layer_{i}/{ours}",
                       tuple(f"bert/encoder/layer_{i}/{t}" for t in tf1), False)
                  for ours, tf1, _, _ in _LAYER]
    return rules


def huggingface_rules(num_layers: int, prefix: str = "bert.") -> list[Rule]:
    """Rules for Hugging Face `BertModel`/`BertForPreTraining` state dicts.

    prefix: "bert." (task/pretraining models) or "" (`BertModel`, sentence-transformers).
    """
    def full(name: str) -> str:
        return name if name.startswith("cls.") else prefix + name

    rules = [Rule(ours, (full(hf),), hf_t, group)
             for ours, _, hf, group, _, hf_t in _GLOBAL]
    for i in range(num_layers):
        rules += [Rule(f"transformer_layer_{i}/{ours}",
                       tuple(full(f"encoder.layer.{i}.{h}") for h in hf), transposed)
                  for ours, _, hf, transposed in _LAYER]
    return rules


TF1 = Format(
    name="tf1",
    rules=tf1_rules,
    namespaces={"encoder": ("bert/",), "pooler": ("bert/pooler/",),
                "masked_lm": ("cls/predictions/",), "next_sentence": ("cls/seq_relationship/",)},
    # Optimizer state and training counters written by the original and NVIDIA trainers.
    skip=("*/adam_m", "*/adam_v", "*/Adam", "*/Adam_[0-9]*", "*/Momentum", "*/LAMB",
          "*/LAMB_[0-9]*", "*/ExponentialMovingAverage", "global_step", "bad_steps",
          "good_steps", "loss_scale", "current_loss_scale", "beta1_power", "beta2_power",
          "_CHECKPOINTABLE_OBJECT_GRAPH"),
    aliases=(),
    layer_pattern=r"^bert/encoder/layer_(\d+)/",
)


def huggingface_format(prefix: str = "bert.") -> Format:
    """The Hugging Face format for one model prefix ("bert." or "")."""
    return Format(
        name="huggingface",
        rules=lambda num_layers: huggingface_rules(num_layers, prefix),
        namespaces={"encoder": (prefix + "embeddings.", prefix + "encoder."),
                    "pooler": (prefix + "pooler.",), "masked_lm": ("cls.predictions.",),
                    "next_sentence": ("cls.seq_relationship.",)},
        # Buffers, and the MLM decoder weight, which is tied to the word embeddings.
        skip=("*position_ids", "*token_type_ids", "cls.predictions.decoder.weight"),
        # Checkpoints written before transformers 2.x spell LayerNorm gamma/beta; some write
        # the MLM bias under the decoder (it is the same tensor).
        aliases=(("LayerNorm.gamma", "LayerNorm.weight"), ("LayerNorm.beta", "LayerNorm.bias"),
                 ("cls.predictions.decoder.bias", "cls.predictions.bias")),
        layer_pattern=r"^" + re.escape(prefix) + r"encoder\.layer\.(\d+)\.",
    )


def native_rules(num_layers: int) -> list[Rule]:
    """Identity rules: checkpoints keyed by our own weight paths (`.keras`, bert_tf)."""
    rules = [Rule(ours, (ours,), False, group) for ours, _, _, group, _, _ in _GLOBAL]
    for i in range(num_layers):
        rules += [Rule(f"transformer_layer_{i}/{ours}", (f"transformer_layer_{i}/{ours}",))
                  for ours, _, _, _ in _LAYER]
    return rules


# Readers of our own files (`checkpoints.native`) key tensors by our weight paths, so the
# tables' group logic (encoder required, heads all or nothing) applies to them unchanged.
NATIVE = Format(
    name="bert_tf",
    rules=native_rules,
    namespaces={"encoder": ("word_embeddings/", "position_embeddings/", "segment_embeddings/",
                            "embeddings_layer_norm/", "transformer_layer_"),
                "pooler": ("pooler/",), "masked_lm": ("masked_lm_head/",),
                "next_sentence": ("next_sentence_head/",)},
    skip=(),
    aliases=(),
    layer_pattern=r"^transformer_layer_(\d+)/",
)


def huggingface_prefix(names: Sequence[str]) -> str:
    """"bert." when the state dict uses it (task/pretraining models), else "" (`BertModel`)."""
    return "bert." if any(n.startswith("bert.") for n in names) else ""


# --- Applying a table ----------------------------------------------------------------------
# Kept beside the tables because it is their only interpreter; it sees variables only through
# `.path`, `.shape`, `.dtype`, `.assign` and `np.asarray`, so it stays Keras-free.

_MAX_LISTED = 40


class CheckpointReader:
    """What a loader needs from a checkpoint: names with shapes, and arrays by name."""

    source: str  # file or prefix, for messages

    def shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def get(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def num_layers(self, fmt: Format, names: Sequence[str]) -> int:
        """How many transformer layers the checkpoint holds (for messages); `names` are its
        names in `fmt`'s canonical form."""
        return fmt.num_layers(names)


@dataclasses.dataclass
class LoadReport:
    """What a load did.

    loaded: our weight paths set from the checkpoint.
    initialised: our weight paths the checkpoint has nothing for (heads it lacks, task layers);
      they keep their initial values.
    unused: checkpoint names this model does not need (e.g. `cls/...` for a bare encoder).
    skipped: checkpoint names ignored by design (optimizer slots, buffers, tied copies).
    """

    source: str
    format: str
    loaded: list[str] = dataclasses.field(default_factory=list)
    initialised: list[str] = dataclasses.field(default_factory=list)
    unused: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.source}: loaded {len(self.loaded)} weights ({self.format} names); "
                f"{len(self.skipped)} optimizer/buffer tensors skipped; "
                f"{len(self.unused)} checkpoint tensors unused")
        if self.initialised:
            text += f"; left initialised: {', '.join(self.initialised)}"
        return text


def model_weights(model) -> dict[str, object]:
    """{path: variable} of a Keras model, each path once (the MLM head shares the embeddings)."""
    weights: dict[str, object] = {}
    for variable in model.weights:
        weights.setdefault(variable.path, variable)
    return weights


def log_report(report: LoadReport) -> None:
    """One warning naming heads left initialised; the summary at INFO."""
    heads = [p for p in report.initialised
             if p.startswith(("masked_lm_head/", "next_sentence_head/", "pooler/"))]
    if heads:
        _LOG.warning("%s: the checkpoint has no weights for %s; left as initialised.",
                     report.source, ", ".join(heads))
    _LOG.info("%s", report.summary())


def _listing(title: str, items: Sequence[str]) -> str:
    shown = "\n    ".join(items[:_MAX_LISTED])
    more = f"\n    ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"  {title} ({len(items)}):\n    {shown}{more}"


def _model_groups(rules: Sequence[Rule], weights: Mapping[str, object]) -> set[str]:
    """Groups whose every weight exists in the model."""
    groups = {}
    for rule in rules:
        groups.setdefault(rule.group, True)
        groups[rule.group] &= rule.ours in weights
    return {g for g, complete in groups.items() if complete}


def num_model_layers(weights: Mapping[str, object]) -> int:
    """Number of `transformer_layer_{i}` blocks among our weight paths."""
    indices = [int(m.group(1)) for m in map(re.compile(r"^transformer_layer_(\d+)/").match,
                                            weights) if m]
    return max(indices) + 1 if indices else 0


def load_into(weights: Mapping[str, object], reader: CheckpointReader, fmt: Format
              ) -> LoadReport:
    """Assigns checkpoint tensors to `weights` ({our path: variable}) by `fmt`'s table.

    Every check runs before the first assignment, so a failed load leaves the model as it was.
    Raises ValueError listing missing names, unexpected names and shape mismatches.
    """
    rules = fmt.rules(num_model_layers(weights))
    groups = _model_groups(rules, weights)
    if "encoder" not in groups:
        missing = sorted(r.ours for r in rules if r.group == "encoder" and r.ours not in weights)
        raise ValueError(f"The model has no complete BERT encoder to load {reader.source} into; "
                         f"missing model weights: {', '.join(missing[:10])}")
    report = LoadReport(reader.source, fmt.name)

    # Canonical name -> the name actually in the checkpoint. An alias whose canonical name is
    # also present is a duplicate copy (e.g. decoder.bias next to predictions.bias): skipped.
    shapes = reader.shapes()
    actual: dict[str, str] = {}
    for name in sorted(shapes, key=lambda n: fmt.canonical(n) != n):
        if fmt.is_skipped(name):
            report.skipped.append(name)
        elif fmt.canonical(name) in actual:
            report.skipped.append(name)
        else:
            actual[fmt.canonical(name)] = name

    missing, mismatched, plan = [], [], []
    for group in GROUPS:
        group_rules = [r for r in rules if r.group == group]
        if group not in groups:
            continue
        if group not in REQUIRED_GROUPS and not any(t in actual for r in group_rules
                                                    for t in r.theirs):
            report.initialised += [r.ours for r in group_rules]
            continue
        for rule in group_rules:
            absent = [t for t in rule.theirs if t not in actual]
            if absent:
                missing += absent
                continue
            expected = rule.their_shapes(tuple(weights[rule.ours].shape))
            ours = f"{rule.ours} {list(weights[rule.ours].shape)}"
            bad = [f"{actual[t]}: checkpoint {list(shapes[actual[t]])} vs model "
                   f"{list(expected[t])}" + ("" if ours == f"{actual[t]} {list(expected[t])}"
                                             else f" (for {ours})")
                   for t in rule.theirs if tuple(shapes[actual[t]]) != expected[t]]
            if bad:
                mismatched += bad
            else:
                plan.append(rule)

    # Names of the model's groups that no rule knows (e.g. a 13th layer) are errors; names
    # of other groups or of no group (a task head, the MLM head for a bare encoder) are unused.
    known = {t for r in rules if r.group in groups for t in r.theirs}
    used = {t for rule in plan for t in rule.theirs}
    unexpected = []
    for canonical, name in actual.items():
        if canonical in used or canonical in known:
            continue
        if fmt.group_of(canonical) in groups:
            unexpected.append(name)
        else:
            report.unused.append(name)

    if missing or unexpected or mismatched:
        # The first line is the whole story for a command's one-line error: the first
        # difference and how many there are; the listings follow.
        first = (mismatched[:1] or [f"{name} missing from the checkpoint" for name in
                                    sorted(missing)[:1]] or
                 [f"{name} unexpected in the checkpoint" for name in sorted(unexpected)[:1]])
        counts = ", ".join(f"{n} {what}" for n, what in (
            (len(mismatched), "shape mismatch(es)"), (len(missing), "missing"),
            (len(unexpected), "unexpected")) if n)
        parts = [f"{reader.source}: checkpoint does not match the model's config "
                 f"({fmt.name} names, {num_model_layers(weights)} layers in the model, "
                 f"{reader.num_layers(fmt, list(actual))} in the checkpoint): {first[0]} ({counts})"]
        if missing:
            parts.append(_listing("missing from the checkpoint", sorted(missing)))
        if unexpected:
            parts.append(_listing("unexpected in the checkpoint", sorted(unexpected)))
        if mismatched:
            parts.append(_listing("shape mismatch", mismatched))
        if not plan and not mismatched:
            # Nothing matched at all: most likely another naming scheme; show what it uses.
            parts.append(_listing(f"no {fmt.name} names found; the checkpoint has",
                                  sorted(shapes)[:10]))
        raise ValueError("\n".join(parts))

    # Read everything before assigning anything: a corrupt tensor must not leave the model
    # half loaded.
    values = [rule.to_ours([reader.get(actual[t]) for t in rule.theirs]) for rule in plan]
    for rule, value in zip(plan, values):
        variable = weights[rule.ours]
        variable.assign(value.astype(_numpy_dtype(variable.dtype), copy=False))
        report.loaded.append(rule.ours)
    covered = {r.ours for r in rules}
    report.initialised += [p for p in weights if p not in covered]
    return report


def export_from(weights: Mapping[str, object], fmt: Format) -> dict[str, np.ndarray]:
    """{checkpoint name: float32 array} for every table rule whose weights the model has."""
    rules = fmt.rules(num_model_layers(weights))
    groups = _model_groups(rules, weights)
    arrays: dict[str, np.ndarray] = {}
    for rule in rules:
        if rule.group in groups:
            value = np.asarray(weights[rule.ours]).astype(np.float32)
            arrays.update(rule.to_theirs(value))
    return arrays


def _numpy_dtype(dtype) -> np.dtype:
    name = getattr(dtype, "name", dtype)
    if str(name) == "bfloat16":
        import ml_dtypes  # shipped with TensorFlow and Keras; numpy itself has no bfloat16
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(str(name))
