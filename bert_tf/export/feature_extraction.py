"""Feature extraction: text lines -> each token's activations, or one pooled vector per line.

The input format, packing and output layout are the original `extract_features.py`'s: a line
is `text_a` or `text_a ||| text_b` (whitespace-stripped first), packed as
`[CLS] a [SEP] (b [SEP])` with the original truncation (the pair trimmed from the end of the
longer segment, a single segment cut to max_seq_length - 2), and one JSON object per line,
`{"linex_index": i, "features": [{"token": t, "layers": [{"index": l, "values": [...]}]}]}`,
values rounded to 6 decimals, for every real token (padding excluded).

Unlike the original, a batch is padded only to its longest line (rounded up to a multiple of
8), not to max_seq_length: real tokens' values are the same (padding is masked out of
attention) and short lines cost a fraction of the compute.

Outputs are written to `<output>.partial` and renamed when complete. Every
`save_every_s` seconds the partial file is flushed and its row count saved beside it
(`<output>.partial.json`, with a fingerprint of the inputs, checkpoint and settings), so a
killed run started again with the same flags continues where the last save left it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from bert_tf.models import BertEncoder
from bert_tf.export.sentence_embedding import pool_tokens
from data_prep.files import atomic_io
from data_prep.tasks.classifier_features import truncate_seq_pair
from data_prep.files.file_identity import file_fingerprint
from data_prep.files.tfrecords import encode_tfrecords
from data_prep.tokenizer.tokenization import FullTokenizer

_LOG = logging.getLogger(__name__)
_PAIR = re.compile(r"^(.*) \|\|\| (.*)$")  # the original's separator, spaces included
PAD_MULTIPLE = 8


@dataclasses.dataclass(frozen=True)
class Example:
    unique_id: int
    text_a: str
    text_b: str | None


@dataclasses.dataclass(frozen=True)
class Features:
    unique_id: int
    tokens: list[str]
    input_ids: list[int]
    segment_ids: list[int]


def count_lines(path: str) -> int:
    """Lines the original reader sees: a last line without a newline counts."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def read_examples(path: str) -> Iterator[Example]:
    """Yields one Example per line of `path` (UTF-8), numbered from 0 as the original does.

    ValueError naming the file and line on invalid UTF-8 (the original stops there too, with
    a bare decode error).
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{number + 1}: invalid UTF-8 at byte {e.start} "
                                 f"of the line.") from None
            pair = _PAIR.match(line)
            if pair is None:
                yield Example(number, line, None)
            else:
                yield Example(number, pair.group(1), pair.group(2))


def example_features(example: Example, tokenizer: FullTokenizer, seq_length: int) -> Features:
    """The original's `convert_examples_to_features` for one example (unpadded)."""
    tokens_a = tokenizer.tokenize(example.text_a)
    tokens_b = tokenizer.tokenize(example.text_b) if example.text_b else None
    if tokens_b:
        truncate_seq_pair(tokens_a, tokens_b, seq_length - 3)
    else:
        tokens_a = tokens_a[:seq_length - 2]
    tokens = ["[CLS]", *tokens_a, "[SEP]"]
    segment_ids = [0] * len(tokens)
    if tokens_b:
        tokens += [*tokens_b, "[SEP]"]
        segment_ids += [1] * (len(tokens_b) + 1)
    return Features(example.unique_id, tokens, tokenizer.convert_tokens_to_ids(tokens),
                    segment_ids)


def pad_batch(batch: Sequence[Features], seq_length: int) -> dict[str, np.ndarray]:
    """int32 [batch, width] input_ids / input_mask / segment_ids, width = the longest row
    rounded up to PAD_MULTIPLE (at most seq_length)."""
    longest = max(len(f.input_ids) for f in batch)
    width = min(seq_length, -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE)
    arrays = {k: np.zeros((len(batch), width), np.int32)
              for k in ("input_ids", "input_mask", "segment_ids")}
    for row, f in enumerate(batch):
        n = len(f.input_ids)
        arrays["input_ids"][row, :n] = f.input_ids
        arrays["input_mask"][row, :n] = 1
        arrays["segment_ids"][row, :n] = f.segment_ids
    return arrays


def check_layers(layers: Sequence[int], num_layers: int, flag: str = "layers") -> None:
    """ValueError naming `flag` when a layer index is outside [-num_layers, num_layers)."""
    wrong = [i for i in layers if not -num_layers <= i < num_layers]
    if wrong or not layers:
        raise ValueError(f"--{flag}={','.join(map(str, layers))}: the model has {num_layers} "
                         f"layers, so indices must be in [{-num_layers}, {num_layers - 1}] "
                         "(-1 = the last layer).")


class Extractor:
    """The encoder's chosen layers, or a pooled vector, for padded id batches.

    `layers` index the transformer blocks' outputs as the original's
    `get_all_encoder_layers()` (0 = the first block, -1 = the last). With `pooling`, the
    output is `pool_tokens` of block `pooling_layer` instead, and `layers` is unused.
    """

    def __init__(self, encoder: BertEncoder, layers: Sequence[int] = (-1,),
                 pooling: str | None = None, pooling_layer: int = -1,
                 normalize: bool = False):
        num_layers = encoder.bert_config.num_hidden_layers
        if pooling:  # --layers is not used then
            check_layers([pooling_layer], num_layers, "pooling_layer")
        else:
            check_layers(list(layers), num_layers)
        self.encoder, self.layers, self.pooling = encoder, list(layers), pooling
        self.pooling_layer, self.normalize = pooling_layer, normalize
        spec = tf.TensorSpec([None, None], tf.int32)
        self._forward = tf.function(self._outputs, input_signature=[spec, spec, spec])

    def _outputs(self, input_ids, input_mask, segment_ids):
        out = self.encoder({"input_ids": input_ids, "input_mask": input_mask,
                            "segment_ids": segment_ids}, training=False)
        blocks = out["encoder_outputs"]
        if self.pooling:
            return pool_tokens(blocks[self.pooling_layer], input_mask, self.pooling,
                               self.normalize)
        return tf.stack([tf.cast(blocks[i], tf.float32) for i in self.layers])

    def __call__(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """float32 [len(layers), batch, width, hidden], or [batch, hidden] with pooling."""
        return self._forward(arrays["input_ids"], arrays["input_mask"],
                             arrays["segment_ids"]).numpy()


def token_json(features: Features, values: np.ndarray, layers: Sequence[int]) -> str:
    """One line of the original's output; values float32 [len(layers), width, hidden]."""
    per_token = values[:, :len(features.tokens)].astype(np.float64).tolist()
    return json.dumps({
        "linex_index": features.unique_id,
        "features": [
            {"token": token,
             "layers": [{"index": index, "values": [round(x, 6) for x in per_token[j][i]]}
                        for j, index in enumerate(layers)]}
            for i, token in enumerate(features.tokens)]})


OUTPUT_FORMATS = ("jsonl", "npy", "tfrecord")


def output_format(path: str) -> str:
    """`npy` for *.npy, `tfrecord` for *.tfrecord / *.tfrecords, else `jsonl`."""
    if path.endswith(".npy"):
        return "npy"
    if path.endswith((".tfrecord", ".tfrecords")):
        return "tfrecord"
    return "jsonl"


class ResumableOutput:
    """Rows appended to `<path>.partial`, saved every `save_every_s`, renamed when complete.

    `fmt` jsonl or tfrecord: appended bytes; npy: a float32 [num_rows, dim] array file
    (allocated up front, filled in order). A saved `<path>.partial.json` whose fingerprint
    equals this run's lets the run continue after `rows_done` rows; any other partial output
    is discarded.
    """

    def __init__(self, path: str, fmt: str, fingerprint: dict, num_rows: int,
                 dim: int | None = None, save_every_s: float = 30.0):
        self.path, self.fmt, self.num_rows = path, fmt, num_rows
        self.partial, self.state_path = path + ".partial", path + ".partial.json"
        self.fingerprint, self.save_every_s = fingerprint, save_every_s
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        state = self._saved_state()
        self.rows_done = state["rows"] if state else 0
        if fmt == "npy":
            mode = "r+" if state else "w+"
            self._array = np.lib.format.open_memmap(self.partial, mode=mode, dtype=np.float32,
                                                    shape=(num_rows, dim))
        else:
            self._file = open(self.partial, "r+b" if state else "wb")
            self._file.truncate(state["bytes"] if state else 0)
            self._file.seek(0, os.SEEK_END)
        self._last_save = time.monotonic()

    def _saved_state(self) -> dict | None:
        try:
            with open(self.state_path) as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = None
        if (state and state.get("fingerprint") == self.fingerprint
                and os.path.exists(self.partial)
                and (self.fmt == "npy" or os.path.getsize(self.partial) >= state["bytes"])):
            return state
        return None

    def write_lines(self, lines: Sequence[str]) -> None:
        self._file.write("".join(line + "\n" for line in lines).encode("utf-8"))
        self._advance(len(lines))

    def write_vectors(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """float32 [n, dim] vectors of lines `ids` (the next n rows)."""
        if self.fmt == "npy":
            self._array[self.rows_done:self.rows_done + len(ids)] = vectors
        elif self.fmt == "tfrecord":
            self._file.write(encode_tfrecords({
                "linex_index": np.asarray(ids, np.int64),
                "embedding": np.asarray(vectors, np.float32)}).tobytes())
        else:
            self.write_lines([json.dumps({"linex_index": i, "embedding": v})
                              for i, v in zip(ids, np.asarray(vectors, np.float64).tolist())])
            return
        self._advance(len(ids))

    def _advance(self, rows: int) -> None:
        self.rows_done += rows
        if time.monotonic() - self._last_save >= self.save_every_s:
            self.save()

    def save(self) -> None:
        """Makes the rows written so far durable and records them for a resumed run."""
        if self.fmt == "npy":
            self._array.flush()
            size = 0
        else:
            self._file.flush()
            os.fsync(self._file.fileno())
            size = self._file.tell()
        atomic_io.write_json(self.state_path, {"fingerprint": self.fingerprint,
                                               "rows": self.rows_done, "bytes": size})
        self._last_save = time.monotonic()

    def finish(self) -> None:
        """Renames the complete output into place."""
        if self.rows_done != self.num_rows:
            raise RuntimeError(f"{self.path}: wrote {self.rows_done} of {self.num_rows} rows.")
        self.save()
        if self.fmt == "npy":
            del self._array
        else:
            self._file.close()
        os.replace(self.partial, self.path)
        os.remove(self.state_path)


def settings_fingerprint(input_file: str, vocab_file: str, checkpoint: str, **settings) -> dict:
    """What determines the output: the input and vocab files' identity, the checkpoint's
    resolved path and modification time, and every setting passed."""
    checkpoint_files = [checkpoint] if os.path.exists(checkpoint) else []
    if os.path.exists(checkpoint + ".index"):
        checkpoint_files = [checkpoint + ".index"]
    return {"input": file_fingerprint(input_file), "vocab": file_fingerprint(vocab_file),
            "checkpoint": [file_fingerprint(p) for p in checkpoint_files] or checkpoint,
            **settings}


class Progress:
    """A log line every `every_s` seconds: lines done, rate and ETA."""

    def __init__(self, total: int, done: int = 0, every_s: float = 10.0):
        self.total, self.done, self.every_s = total, done, every_s
        self._start_done, self._start = done, time.monotonic()
        self._last = self._start

    def update(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if now - self._last >= self.every_s or self.done == self.total:
            rate = (self.done - self._start_done) / max(now - self._start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            _LOG.info("extract_features: %d/%d lines (%.1f%%), %.1f lines/s, ETA %s",
                      self.done, self.total, 100.0 * self.done / max(self.total, 1), rate,
                      "-" if eta == float("inf") else f"{eta:.0f}s")
            self._last = now
