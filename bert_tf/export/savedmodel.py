"""SavedModel export: raw-text and tensor serving signatures, and a preprocessing model.

Every exported model carries its own tokenizer (tensorflow-text, vocab as a SavedModel asset,
lower-casing fixed at export), so a client sends strings and needs neither bert_tf nor Python
tokenization. Signatures (all outputs named):

| model            | text signature (`serving_default`)        | outputs                                     |
|------------------|-------------------------------------------|---------------------------------------------|
| classifier       | `text` (+ `serve_text_pair`: `text_a`, `text_b`) | `logits`, `probabilities`, `label` (id), `label_name` |
| regression       | same                                      | `logits` (the prediction)                    |
| span_labeler     | `question`, `context`                     | `start_logits`, `end_logits`, `input_ids`    |
| token_classifier | `text`                                    | `logits`, `label` [batch, seq], `input_ids`  |
| fill_mask        | `text` with literal `[MASK]`s              | `top_ids`, `top_tokens`, `top_probabilities` [batch, masks, k], `masked_positions` |
| encoder          | `text`                                    | `pooled_output`, `sequence_output`, `input_mask` |
| encoder, `embed` | `text`                                    | `embedding` [batch, hidden] float32 (mean/cls/max pooled, optionally L2-normalised) |

Each also has `serve_ids` taking int32 `input_ids`, `input_mask`, `segment_ids` [batch, seq].
The separate preprocessing model has `tokenize` (strings -> ragged ids), `bert_pack_inputs`
(one or two ragged segments -> the three int32 tensors) and `serving_default` (text -> them).

A model's text signatures pad a request only to its longest member, rounded up to a multiple
of `pad_multiple` (at most `seq_length`): a batch of short sentences costs what its tokens
cost, and the outputs of real tokens are those of the `seq_length`-padded batch (padding is
masked out of attention). Per-token outputs (`start_logits`, `label` of the token classifier,
`sequence_output`) are therefore [batch, width] with width <= seq_length; `input_ids` or
`input_mask` beside them say which positions are real. `pad_to_longest=False` pads every
request to `seq_length`. The preprocessing model always pads to its `seq_length`, which is
its contract with a separate model.

Every signature checks its inputs before the model runs: a wrong rank, ids outside the
vocabulary, segment ids outside `type_vocab_size`, a sequence longer than
`max_position_embeddings` or inputs of different shapes fail with an InvalidArgumentError
that names the input.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from typing import Sequence

import keras
import tensorflow as tf
import tensorflow_text as tf_text

from bert_tf.models import (BertClassifier, BertEncoder, BertPretrainer, BertSpanLabeler,
                            BertTokenClassifier, encoder_of)
from bert_tf.export.sentence_embedding import POOLINGS, pool_tokens
from data_prep.tokenizer.text_tokenizer import BertTextTokenizer

_LOG = logging.getLogger(__name__)
KINDS = ("classifier", "span_labeler", "token_classifier", "fill_mask", "encoder")
_STRINGS = tf.TensorSpec([None], tf.string)
_IDS = {name: tf.TensorSpec([None, None], tf.int32, name=name)
        for name in ("input_ids", "input_mask", "segment_ids")}


class BertPacker(tf.Module):
    """Packs 1 or 2 tokenized segments into `[CLS] A [SEP] (B [SEP])`, padded to seq_length.

    Truncation takes tokens from the end of the longer segment first, exactly as the original
    `_truncate_seq_pair` (ties: the second segment loses the token), which is what
    tensorflow-text's round-robin trimmer computes.
    """

    def __init__(self, seq_length: int, cls_id: int, sep_id: int, pad_id: int = 0,
                 name: str | None = None, pad_to_longest: bool = False, pad_multiple: int = 8):
        super().__init__(name=name)
        if seq_length < 3:
            raise ValueError(f"seq_length must be >= 3, got {seq_length}.")
        if pad_multiple < 1:
            raise ValueError(f"pad_multiple must be >= 1, got {pad_multiple}.")
        self.seq_length, self.cls_id, self.sep_id, self.pad_id = seq_length, cls_id, sep_id, pad_id
        self.pad_to_longest, self.pad_multiple = pad_to_longest, pad_multiple

    def pack(self, segments: Sequence[tf.RaggedTensor]) -> dict[str, tf.Tensor]:
        """ragged int [batch, (tokens)] x 1..2 -> int32 [batch, width] x 3: width is
        seq_length, or with pad_to_longest the longest row rounded up to pad_multiple."""
        segments = [tf.cast(s, tf.int64) for s in segments]
        budget = self.seq_length - len(segments) - 1
        trimmed = tf_text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
        ids, segment_ids = tf_text.combine_segments(
            trimmed, start_of_sequence_id=self.cls_id, end_of_segment_id=self.sep_id)
        input_ids, input_mask = tf_text.pad_model_inputs(ids, self.seq_length, self.pad_id)
        segment_ids, _ = tf_text.pad_model_inputs(segment_ids, self.seq_length, 0)
        packed = {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}
        if self.pad_to_longest:
            # At least one column, so that an empty request batch still has a valid shape.
            longest = tf.reduce_max(tf.concat([ids.row_lengths(), [1]], axis=0))
            rounded = -(-longest // self.pad_multiple) * self.pad_multiple
            width = tf.minimum(rounded, self.seq_length)
            packed = {k: v[:, :width] for k, v in packed.items()}
        return {k: tf.cast(v, tf.int32) for k, v in packed.items()}


class PreprocessingModule(tf.Module):
    """TF-Hub-style preprocessing: `tokenize` and `bert_pack_inputs`."""

    def __init__(self, vocab_file: str, do_lower_case: bool, seq_length: int,
                 pad_to_longest: bool = False, pad_multiple: int = 8):
        super().__init__(name="bert_preprocessing")
        self.tokenizer = BertTextTokenizer(vocab_file, do_lower_case, out_type=tf.int32)
        self.packer = BertPacker(seq_length, self.tokenizer.cls_id, self.tokenizer.sep_id,
                                 self.tokenizer.pad_id, pad_to_longest=pad_to_longest,
                                 pad_multiple=pad_multiple)
        self.do_lower_case = tf.Variable(do_lower_case, trainable=False, name="do_lower_case")
        self.seq_length = tf.Variable(seq_length, trainable=False, name="seq_length")

    @tf.function(input_signature=[_STRINGS])
    def tokenize(self, text):
        return self.tokenizer.tokenize(checked_strings(text))

    @tf.function(input_signature=[_STRINGS])
    def serving_default(self, text):
        return self.packer.pack([self.tokenize(text)])

    @tf.function(input_signature=[_STRINGS, _STRINGS])
    def serve_text_pair(self, text_a, text_b):
        return self.packer.pack([self.tokenize(text_a), self.tokenize(text_b)])

    def bert_pack_inputs(self, segments):
        return self.packer.pack(segments)


def checked_strings(text: tf.Tensor) -> tf.Tensor:
    """`text` after a run-time check that it is a vector of strings [batch]; the check names
    the input. (A loaded signature does not check the rank it declares.)"""
    return tf.ensure_shape(text, [None])


def checked_ids(packed: dict[str, tf.Tensor], config) -> dict[str, tf.Tensor]:
    """The int32 [batch, seq] id tensors after run-time checks, each naming the input:
    rank 2, one shape for all, seq <= max_position_embeddings, input_ids in
    [0, vocab_size), segment_ids in [0, type_vocab_size)."""
    packed = {k: tf.ensure_shape(v, [None, None]) for k, v in packed.items()}
    ids = packed["input_ids"]
    checks = [tf.debugging.assert_equal(tf.shape(packed[k]), tf.shape(ids), message=(
                  f"{k} must have the shape of input_ids [batch, seq]"))
              for k in ("input_mask", "segment_ids")]
    checks += [
        tf.debugging.assert_less_equal(tf.shape(ids)[1], config.max_position_embeddings,
                                       message="input_ids is longer than the model's "
                                       f"max_position_embeddings ({config.max_position_embeddings})"),
        tf.debugging.assert_non_negative(ids, message="input_ids must be >= 0"),
        tf.debugging.assert_less(ids, config.vocab_size, message=(
            f"input_ids must be < vocab_size ({config.vocab_size})")),
        tf.debugging.assert_non_negative(packed["segment_ids"],
                                         message="segment_ids must be >= 0"),
        tf.debugging.assert_less(packed["segment_ids"], config.type_vocab_size, message=(
            f"segment_ids must be < type_vocab_size ({config.type_vocab_size})"))]
    with tf.control_dependencies(checks):
        return {k: tf.identity(v) for k, v in packed.items()}


class ServingModule(tf.Module):
    """A Keras BERT model plus its preprocessing, with named serving signatures."""

    def __init__(self, model: keras.Model, kind: str, vocab_file: str, do_lower_case: bool,
                 seq_length: int, label_names: Sequence[str] | None = None, top_k: int = 5,
                 pad_to_longest: bool = True, pad_multiple: int = 8,
                 embed_pooling: str = "mean", embed_normalize: bool = False):
        super().__init__(name=f"bert_{kind}")
        if kind not in KINDS:
            raise ValueError(f"Unknown export kind {kind!r}; choose one of {KINDS}.")
        if embed_pooling not in POOLINGS:
            raise ValueError(f"embed_pooling must be one of {POOLINGS}, got {embed_pooling!r}.")
        self.model, self.kind, self.top_k = model, kind, top_k
        self.embed_pooling, self.embed_normalize = embed_pooling, embed_normalize
        self.bert_config = encoder_of(model).bert_config
        self.preprocessing = PreprocessingModule(vocab_file, do_lower_case, seq_length,
                                                 pad_to_longest, pad_multiple)
        names = list(label_names or [])
        self.label_names = tf.constant(names or [""], tf.string)
        self._has_label_names = bool(names)

    # --- the model on packed ids -------------------------------------------------------------
    def _encoder_inputs(self, packed):
        return {k: tf.convert_to_tensor(packed[k], tf.int32)
                for k in ("input_ids", "input_mask", "segment_ids")}

    def _embed(self, text):
        packed = self.preprocessing.serving_default(text)
        out = self.model(self._encoder_inputs(packed), training=False)
        return {"embedding": pool_tokens(out["sequence_output"], packed["input_mask"],
                                         self.embed_pooling, self.embed_normalize)}

    def _run(self, packed):
        out = self.model(self._encoder_inputs(packed), training=False)
        if self.kind == "encoder":
            return {"pooled_output": out["pooled_output"],
                    "sequence_output": out["sequence_output"],
                    "input_mask": packed["input_mask"]}
        if self.kind == "span_labeler":
            return {"start_logits": out["start_logits"], "end_logits": out["end_logits"],
                    "input_ids": packed["input_ids"]}
        logits = out["logits"]
        if self.kind == "token_classifier":
            return {"logits": logits, "label": tf.argmax(logits, -1, output_type=tf.int32),
                    "input_ids": packed["input_ids"]}
        if logits.shape[-1] == 1:  # regression
            return {"logits": logits}
        label = tf.argmax(logits, -1, output_type=tf.int32)
        result = {"logits": logits, "probabilities": tf.nn.softmax(logits), "label": label}
        if self._has_label_names:
            result["label_name"] = tf.gather(self.label_names, label)
        return result

    def _fill_mask(self, text):
        tokenizer = self.preprocessing.tokenizer
        text = checked_strings(text)
        # "[MASK]" is a literal in the input; the original rules would split it into
        # "[", "mask", "]", so the text is split on it and the mask id put back in between.
        pieces = tf.strings.split(text, "[MASK]")  # ragged [batch, (pieces)]
        piece_ids = tokenizer.tokenize(pieces.flat_values)  # [total_pieces, (tokens)]
        mask_column = tf.fill([piece_ids.nrows(), 1], tf.cast(tokenizer.mask_id, piece_ids.dtype))
        with_mask = tf.concat([piece_ids, mask_column], axis=1)  # every piece + [MASK]
        merged = tf.RaggedTensor.from_row_splits(
            with_mask.flat_values, tf.gather(with_mask.row_splits, pieces.row_splits))
        tokens = merged[:, :-1]  # no [MASK] after the last piece
        packed = self.preprocessing.packer.pack([tokens])
        positions = tf.ragged.boolean_mask(
            tf.broadcast_to(tf.range(tf.shape(packed["input_ids"])[1]),
                            tf.shape(packed["input_ids"])),
            tf.equal(packed["input_ids"], tokenizer.mask_id))
        positions = positions.to_tensor(default_value=0)
        out = self.model({**self._encoder_inputs(packed), "masked_lm_positions": positions},
                         training=False)
        probs = tf.nn.softmax(out["masked_lm_logits"])
        top = tf.math.top_k(probs, k=self.top_k)
        flat = tf.RaggedTensor.from_tensor(tf.reshape(tf.cast(top.indices, tf.int64),
                                                      [-1, self.top_k]))
        tokens = tf.reshape(tokenizer.ids_to_tokens(flat).to_tensor(""), tf.shape(top.indices))
        return {"top_ids": top.indices, "top_probabilities": top.values, "top_tokens": tokens,
                "masked_positions": positions}

    # --- signatures --------------------------------------------------------------------------
    def _serve_ids(self, input_ids, input_mask, segment_ids, masked_lm_positions=None):
        packed = checked_ids({"input_ids": input_ids, "input_mask": input_mask,
                              "segment_ids": segment_ids}, self.bert_config)
        if self.kind != "fill_mask":
            return self._run(packed)
        masked_lm_positions = tf.ensure_shape(masked_lm_positions, [None, None])
        seq = tf.shape(packed["input_ids"])[1]
        with tf.control_dependencies([
                tf.debugging.assert_equal(tf.shape(masked_lm_positions)[0],
                                          tf.shape(packed["input_ids"])[0], message=(
                                              "masked_lm_positions must have input_ids' batch")),
                tf.debugging.assert_non_negative(masked_lm_positions, message=(
                    "masked_lm_positions must be >= 0")),
                tf.debugging.assert_less(masked_lm_positions, seq, message=(
                    "masked_lm_positions must be < the sequence length"))]):
            masked_lm_positions = tf.identity(masked_lm_positions)
        out = self.model({**packed, "masked_lm_positions": masked_lm_positions}, training=False)
        return {"masked_lm_logits": out["masked_lm_logits"],
                "next_sentence_logits": out["next_sentence_logits"]}

    def signatures(self) -> dict:
        """Builds the kind's tf.functions (tracked on the module) and returns the signatures."""
        def spec(name):
            return tf.TensorSpec([None], tf.string, name=name)

        pack = self.preprocessing
        if self.kind == "span_labeler":
            self.serving_default = tf.function(
                lambda question, context: self._run(pack.serve_text_pair(question, context)),
                input_signature=[spec("question"), spec("context")])
        elif self.kind == "fill_mask":
            self.serving_default = tf.function(self._fill_mask, input_signature=[spec("text")])
        else:
            self.serving_default = tf.function(
                lambda text: self._run(pack.serving_default(text)),
                input_signature=[spec("text")])
        signatures = {"serving_default": self.serving_default}
        if self.kind == "encoder":
            self.embed = tf.function(self._embed, input_signature=[spec("text")])
            signatures["embed"] = self.embed
        if self.kind in ("classifier", "token_classifier", "encoder"):
            self.serve_text_pair = tf.function(
                lambda text_a, text_b: self._run(pack.serve_text_pair(text_a, text_b)),
                input_signature=[spec("text_a"), spec("text_b")])
            signatures["serve_text_pair"] = self.serve_text_pair
        id_specs = [_IDS["input_ids"], _IDS["input_mask"], _IDS["segment_ids"]]
        if self.kind == "fill_mask":
            id_specs.append(tf.TensorSpec([None, None], tf.int32, name="masked_lm_positions"))
            self.serve_ids = tf.function(self._serve_ids, input_signature=id_specs)
        else:
            self.serve_ids = tf.function(
                lambda input_ids, input_mask, segment_ids: self._serve_ids(
                    input_ids, input_mask, segment_ids), input_signature=id_specs)
        signatures["serve_ids"] = self.serve_ids
        return signatures


def _atomic_save(module: tf.Module, export_dir: str, signatures: dict, extra: dict) -> str:
    parent = os.path.dirname(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        tf.saved_model.save(module, tmp, signatures=signatures)
        with open(os.path.join(tmp, "assets.extra.json"), "w") as f:
            json.dump(extra, f, indent=2, sort_keys=True)
        if os.path.exists(export_dir):
            shutil.rmtree(export_dir)
        os.replace(tmp, export_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return export_dir


def kind_of(model: keras.Model) -> str:
    """The export kind that fits a bert_tf model."""
    for cls, kind in ((BertClassifier, "classifier"), (BertSpanLabeler, "span_labeler"),
                      (BertTokenClassifier, "token_classifier"), (BertPretrainer, "fill_mask"),
                      (BertEncoder, "encoder")):
        if isinstance(model, cls):
            return kind
    raise ValueError(f"Cannot export {type(model).__name__}: not a bert_tf model.")


def export_model(model: keras.Model, export_dir: str, vocab_file: str, do_lower_case: bool,
                 seq_length: int = 128, label_names: Sequence[str] | None = None,
                 kind: str | None = None, top_k: int = 5, pad_to_longest: bool = True,
                 pad_multiple: int = 8, embed_pooling: str = "mean",
                 embed_normalize: bool = False) -> str:
    """Writes `model` as a SavedModel with text and id signatures; returns export_dir.

    pad_to_longest / pad_multiple: how the text signatures pad a request (module docstring).
    embed_pooling / embed_normalize: the encoder's `embed` signature (bert_tf.export.sentence_embedding).
    The directory is written elsewhere first and renamed into place, so a failed export never
    leaves a half-written model behind.
    """
    kind = kind or kind_of(model)
    module = ServingModule(model, kind, vocab_file, do_lower_case, seq_length, label_names,
                           top_k, pad_to_longest, pad_multiple, embed_pooling, embed_normalize)
    extra = {"kind": kind, "seq_length": seq_length, "do_lower_case": do_lower_case,
             "label_names": list(label_names or []),
             "padding": f"longest, multiple of {pad_multiple}" if pad_to_longest else "seq_length"}
    if kind == "encoder":
        extra["embed"] = {"pooling": embed_pooling, "normalize": embed_normalize}
    _atomic_save(module, export_dir, module.signatures(), extra)
    _LOG.info("Exported %s to %s", kind, export_dir)
    return export_dir


def export_preprocessing(export_dir: str, vocab_file: str, do_lower_case: bool,
                         seq_length: int = 128) -> str:
    """Writes the TF-Hub-style preprocessing SavedModel; returns export_dir."""
    module = PreprocessingModule(vocab_file, do_lower_case, seq_length)
    ragged = tf.RaggedTensorSpec([None, None], tf.int32)
    module.bert_pack_inputs = tf.function(module.bert_pack_inputs)
    module.bert_pack_inputs.get_concrete_function([ragged])
    module.bert_pack_inputs.get_concrete_function([ragged, ragged])
    signatures = {"serving_default": module.serving_default,
                  "serve_text_pair": module.serve_text_pair}
    return _atomic_save(module, export_dir, signatures,
                        {"kind": "preprocessing", "seq_length": seq_length,
                         "do_lower_case": do_lower_case})
