"""Pretraining data: text files -> NSP pairs -> masked-LM instances -> sharded TFRecords.

The library behind `python -m data_prep.create_pretraining_data` (and data_prep/beam_pipeline.py):
`create_pretraining_data(input_files, output_files, settings, num_workers, summary_file)`.

Input: the original format, one sentence per line and a blank line between documents (see
data_prep/prepare_corpus.py for raw books). The flags keep the original script's names and
defaults; the instances follow its algorithm draw for draw (data_prep/pretraining/instances.py).

Work unit = (group of inputs -> one output shard). An input is a whole file, or a byte range
of one cut right after a blank line (data_prep/pretraining/input_spans.py): a file larger than
--max_shard_mb (default 128 MB) is cut into near-equal ranges under it, and so are files when
there are more shards than files. The inputs are split into num_shards contiguous groups;
shard k is built by its own `random.Random(random_seed + k)`, so the output depends on the
seed, the inputs, --max_shard_mb and the shard count only -- byte-identical for any
num_workers. A one-shard run is the original script's run (same seed, same draws).

Deviations from the original, on purpose:
  * The random-next segment B is drawn from another document OF THE SAME SHARD (the original
    pools the whole corpus). That is what bounds memory by one shard (see Memory) and makes
    shards independent.
  * A new input file starts a new document (the original runs a document on across files
    that do not end with a blank line).
  * An input of more than --max_shard_mb is never one shard: a file above it is cut at
    document breaks into several shards (by default; the original holds the whole input in
    memory and shuffles all its instances together, which is what --max_shard_mb=0 with one
    output file does), and a shard of several inputs above it is an error naming the flags.
  * `--invalid_utf8=replace` (opt-in; the default `error` stops at the first bad line, naming
    the file and line, as the original stops with a decode error) replaces invalid bytes by
    U+FFFD with a warning naming the file, the first bad line and the count; the tokenizer then
    drops U+FFFD, as the original's rules do. See data_prep/files/text_files.py.
  * Tokenization is data_prep.tokenizer.tokenization (same ids as the original): by default its
    table-driven FullTokenizer, which on CPU is ~7x faster than a char-by-char restatement of
    the original's rules and also beats the in-graph tensorflow-text one (--tokenizer=tf_text),
    run over whole batches of lines with a memo per distinct whitespace token
    (data_prep/tokenizer/line_tokenizer.py `LineTokenizer.flat`: the same ids, ~4x less CPU once warm).

Speed (CPU time per instance at max_seq_length=128, benchmarks/bench_create_pretraining_data.py;
~5.6 us in all, ~19x less than the original algorithm): reading and tokenizing ~2 us (token
ids from a compiled table, data_prep/tokenizer/token_table.py; WordPiece in Python once per distinct
word), instances ~2.2 us
(data_prep/pretraining/instances_compiled.py: the original's steps and CPython's own random draws in
compiled code, so the instances, their order and the generator's final state are those of
data_prep/pretraining/instances.py), Example bytes with their TFRecord frame ~1 us (written straight
from the instance table by data_prep/pretraining/records.py), file writing ~0.3 us.

--rng=vectorized (opt-in; default --rng=original) builds the instances with numpy instead
(data_prep/pretraining/instances_vectorized.py): the same rules and probabilities (target lengths, chunking,
split point, 50% random next with unused segments given back, truncation, 15% masking with
80/10/10, whole words, final shuffle), but not the original's random stream, so not its bytes.
It was the fast mode while the draw-exact one ran in Python (~20 us an instance); since the
draw-exact instances are compiled, both cost about the same end to end. Shard k draws from
PCG64 seeded with random_seed + k, so this output too is byte-identical for any num_workers;
the mode is part of each shard's fingerprint, so a resumed run never mixes modes.

--masking=none (default static) writes no masks: input_ids, input_mask, segment_ids (and
next_sentence_labels with NSP), the instances of --rng unmasked, for run_pretraining
--dynamic_masking, which draws new masks every epoch; one copy (--dupe_factor=1) is then
enough, and more copies only repeat the text (a warning says so). --task=none (default nsp)
packs whole sentences up to --max_seq_length across documents, a [SEP] where one ends, with no
next-sentence label (data_prep/pretraining/instances_packed.py; numpy draws whatever --rng says), for
run_pretraining --nsp=false; with static masking its masks follow the same rules. Both modes
are in each shard's fingerprint (only when not the default, so the defaults' shards stay
resumable), so a resumed run never mixes modes.

Memory (per worker, one shard at a time): the input is read in blocks of a few MB, and a
shard's records go to its temporary file a batch at a time as they are encoded, so neither
the text nor the records are ever held whole. What is held is the shard's token ids (int32:
~1 byte per input byte of English text) and, in the default draw-exact mode, its instance
table (instances_compiled.InstanceTable: 28 + 3 x max_predictions_per_seq bytes an instance,
~2.3 bytes per input byte at the defaults with dupe_factor=10). That table cannot be bounded
independently of the shard: the original shuffles all instances of its input at the end, so a
shard's last-made instance may be its first record, and every instance must be known before
the first is written. Peak RSS per worker is thus ~0.16 GB (Python, numpy, numba and its
compiled kernels) plus ~4.2 bytes per input byte of its largest shard (measured on the
shipped books repeated: 0.21 GB for a 9.6 MB shard, 0.58 GB for a 100 MB one; ~4.4 GB would
be a 1 GB shard). So the shard is bounded: --max_shard_mb (default 128 MB of text, ~0.7 GB
per worker) cuts larger files into several shards at document breaks, whatever the corpus
size; with --num_workers=N, N shards are in memory at once. (The original holds every
document and instance as Python objects: ~80 MB per MB of input.)

Each shard is written to `<shard>.tmp-<host>-<pid>-<random>` and renamed when complete; its
manifest `<shard>.manifest.json` (counts + a fingerprint of everything that determines the bytes) is
written just before the rename. A rerun skips shards whose file and matching manifest exist.
A summary (documents, instances, tokens, masked fraction and 80/10/10 split, NSP balance,
short-target rate) is logged and written as JSON beside the shards.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import hashlib
import json
import multiprocessing
import os
import random
import sys
import time
from typing import Callable, Iterator, Sequence

import numpy as np
from absl import logging

from data_prep.pretraining import instances as inst, instances_compiled, instances_packed
from data_prep.pretraining import input_spans, instances_vectorized
from data_prep.pretraining.input_spans import InputSpan
from data_prep.files import atomic_io, text_files

# data_prep.files.tfrecords and data_prep.tokenizer.tokenization import TensorFlow (~4 s): they are imported
# where first needed, so that flag and input errors are reported at once.

FORMAT_VERSION = 1
SUMMARY_NAME = "summary.json"
_TOKENIZE_BATCH = 2048
_PROGRESS_SECONDS = 10.0
_ENCODE_BATCH = 2048  # records per chunk
RNG_MODES = ("original", "vectorized")
MASKING_MODES = ("static", "none")  # masks written into the records, or drawn while training
TASKS = ("nsp", "none")  # next-sentence pairs, or full sentences packed without labels


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything but the file lists that determines a shard's bytes."""

    vocab_file: str
    do_lower_case: bool = True
    options: inst.InstanceOptions = inst.InstanceOptions()
    dupe_factor: int = 10
    random_seed: int = 12345
    gzip: bool = False
    tokenizer: str = "python"  # one of TOKENIZERS; both give the same ids
    rng: str = "original"  # one of RNG_MODES: the original's draws, or numpy in batches
    masking: str = "static"  # one of MASKING_MODES
    task: str = "nsp"  # one of TASKS
    # text_files.INVALID_UTF8. Not in the fingerprint: on valid UTF-8 both give the same
    # bytes, and on invalid UTF-8 "error" writes nothing.
    invalid_utf8: str = "error"
    # Input per shard, in MB (10^6 bytes; 0: no limit): larger files are cut at document
    # breaks (input_spans.py). In the fingerprint through the spans it makes.
    max_shard_mb: float = 128.0

    @property
    def max_shard_bytes(self) -> int:
        return int(self.max_shard_mb * 1e6)


@dataclasses.dataclass(frozen=True)
class ShardJob:
    index: int
    inputs: tuple[InputSpan, ...]  # whole files or byte ranges of them
    output_file: str
    fingerprint: str
    settings: Settings

    @property
    def seed(self) -> int:
        return self.settings.random_seed + self.index


def shard_file_name(output_dir: str, index: int, num_shards: int, gzip: bool) -> str:
    suffix = ".tfrecord.gz" if gzip else ".tfrecord"
    return os.path.join(output_dir, f"pretraining_data-{index:05d}-of-{num_shards:05d}{suffix}")


def manifest_path(shard_file: str) -> str:
    return shard_file + ".manifest.json"


def group_inputs(inputs: Sequence, num_shards: int) -> list[tuple]:
    """Contiguous groups of near-equal counts of inputs (files or spans), one per shard."""
    if not 1 <= num_shards <= len(inputs):
        raise ValueError(f"{num_shards} output shard(s) need as many pieces of input, and the "
                         f"input cuts at its document breaks (blank lines) into only "
                         f"{len(inputs)}: lower --num_shards or the --output_file count")
    n = len(inputs)
    return [tuple(inputs[k * n // num_shards:(k + 1) * n // num_shards])
            for k in range(num_shards)]


def plan_inputs(input_files: Sequence[str], settings: Settings,
                num_shards: int = 0) -> list[InputSpan]:
    """The input files as the spans that shards read: files larger than settings.max_shard_mb
    cut at document breaks, and cut into at least num_shards spans in all (see
    input_spans.plan_spans)."""
    return input_spans.plan_spans(list(input_files), settings.max_shard_bytes, num_shards)


def check_shard_sizes(groups: Sequence[Sequence[InputSpan]], settings: Settings) -> None:
    """ValueError when a shard of several inputs would read more than --max_shard_mb (its
    memory grows with its input); one span is over the limit by less than a document."""
    limit = settings.max_shard_bytes
    for k, group in enumerate(groups):
        size = sum(span.size() for span in group)
        if limit and len(group) > 1 and size > limit:
            total = sum(span.size() for g in groups for span in g)
            raise ValueError(
                f"shard {k} would read {size / 1e6:.1f} MB of input ({len(group)} files or "
                f"pieces), above --max_shard_mb={settings.max_shard_mb:g}, and a shard's "
                f"memory grows with its input (~4.2 bytes per byte): give more shards "
                f"(--num_shards={-(-total // limit)} or more, or more --output_file names) or "
                f"raise --max_shard_mb (0: no limit)")


_VOCABS: dict = {}
_VOCAB_IDS: dict = {}


def _file_version(path: str) -> tuple:
    stat = os.stat(path)
    return os.path.abspath(path), stat.st_size, stat.st_mtime_ns


def _read_vocab(vocab_file: str) -> tuple[tuple, dict[str, int]]:
    """(file version, checked vocabulary): `read_vocab` and `load_vocab_ids` key their caches
    on one stat of the file, so both always describe the same version of it."""
    if not os.path.isfile(vocab_file):
        raise ValueError(f"--vocab_file: no such file {vocab_file!r}")
    key = _file_version(vocab_file)
    if key not in _VOCABS:
        from data_prep.tokenizer import tokenization
        try:
            vocab = tokenization.load_vocab(vocab_file)
            tokenization.validate_vocab(vocab, vocab_file)
        except ValueError as e:
            raise ValueError(f"--vocab_file: {e}") from None
        _VOCABS[key] = vocab
    return key, _VOCABS[key]


def read_vocab(vocab_file: str) -> dict[str, int]:
    """The checked vocabulary (tokenization.load_vocab + validate_vocab), read once per
    process and file version: the ids for the algorithm and the tokenizer share it."""
    return _read_vocab(vocab_file)[1]


def load_vocab_ids(vocab_file: str) -> inst.VocabIds:
    """Checks the vocabulary file and returns the ids the algorithm needs (cached per process
    and file version: once per shard otherwise)."""
    key, vocab = _read_vocab(vocab_file)
    if key not in _VOCAB_IDS:
        _VOCAB_IDS[key] = inst.VocabIds.from_vocab(vocab, source=f"--vocab_file {vocab_file}")
    return _VOCAB_IDS[key]


# --- One shard (runs in a worker) -----------------------------------------------------------

TOKENIZERS = ("python", "tf_text")
_TOKENIZE_FNS: dict = {}


class _FlatLists:
    """A texts -> list-of-id-lists tokenizer with LineTokenizer's `flat` method."""

    def __init__(self, tokenize: Callable[[list[str]], list[list[int]]]):
        self.tokenize = tokenize

    def flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        from data_prep.tokenizer import line_tokenizer
        return line_tokenizer.flatten(self.tokenize(list(texts)))


def batch_tokenizer(name: str, vocab_file: str, do_lower_case: bool):
    """A tokenizer with `flat(texts) -> (ids int32 [total], ids per text int64 [n])`, cached
    per process.

    "python": line_tokenizer.LineTokenizer, tokenization.FullTokenizer's ids through a
    compiled table of the distinct tokens (the fastest here); "tf_text":
    text_tokenizer.BertTextTokenizer.batch_tokenize (in-graph; same ids).
    """
    key = (name, vocab_file, do_lower_case)
    if key not in _TOKENIZE_FNS:
        from data_prep.tokenizer import tokenization
        if name == "python":
            from data_prep.tokenizer import line_tokenizer
            tokenizer = line_tokenizer.LineTokenizer(tokenization.FullTokenizer(
                vocab_file, do_lower_case, vocab=read_vocab(vocab_file)))
        elif name == "tf_text":
            from data_prep.tokenizer import text_tokenizer
            tokenizer = _FlatLists(functools.partial(
                text_tokenizer.BertTextTokenizer(vocab_file, do_lower_case).batch_tokenize,
                batch_size=_TOKENIZE_BATCH))
        else:
            raise ValueError(f"--tokenizer must be one of {TOKENIZERS}, got {name!r}")
        _TOKENIZE_FNS[key] = tokenizer
    return _TOKENIZE_FNS[key]


def read_corpus(inputs: Sequence[str | InputSpan], tokenizer, stats: dict | None = None,
                invalid_utf8: str = "error") -> inst.Corpus:
    """Files (or spans of files) in the input format -> documents -> segments -> token ids,
    as flat arrays.

    A blank line ends a document, and so does the end of a file or span (spans start after a
    blank line: input_spans.py); lines that tokenize to nothing are dropped (as in the
    original), and so are documents left without lines. Warns about empty files and files
    without any blank-line document break. tokenizer: see batch_tokenizer. `stats` gets
    files (counted where a file starts) / input_bytes / lines counts added. invalid_utf8:
    text_files.decode_text's policy.
    """
    stats = stats if stats is not None else {}
    ids_parts, length_parts, doc_parts = [], [], []
    num_docs = 0
    for span in map(input_spans.as_span, inputs):
        path = span.path
        runs, num_lines = 0, 0
        continues = False  # whether the block before ended inside a document
        # The file a block at a time (text_files.read_text_blocks): the text is never held
        # whole, only its token ids, so reading needs a few MB beyond them.
        for text in text_files.read_text_blocks(path, invalid_utf8, start=span.start,
                                                end=span.end):
            stripped = [raw.strip() for raw in text.split("\n")]
            nonblank = np.fromiter(map(bool, stripped), bool, len(stripped))
            # A run of non-blank lines is a document: number each line by the run it is in
            # (lines before the block's first run continue the document before).
            run_starts = nonblank & ~np.concatenate([[continues], nonblank[:-1]])
            doc_parts.append((np.cumsum(run_starts) - 1 + num_docs)[nonblank])
            block_runs = int(run_starts.sum())
            num_docs += block_runs
            runs += block_runs
            continues = bool(nonblank[-1])
            lines = [line for line in stripped if line]
            num_lines += len(lines)
            for start in range(0, len(lines), _TOKENIZE_BATCH):
                ids, lengths = tokenizer.flat(lines[start:start + _TOKENIZE_BATCH])
                ids_parts.append(ids)
                length_parts.append(lengths)
        if not num_lines and span.whole_file:
            logging.warning("%s: no text (empty file)", path)
        elif runs == 1 and num_lines > 1 and span.whole_file:
            logging.warning("%s: no blank line between documents, so the whole file is one "
                            "document of %d lines (the input format is one sentence per line "
                            "and a blank line after each document)", path, num_lines)
        stats["files"] = stats.get("files", 0) + (span.start == 0)
        stats["input_bytes"] = stats.get("input_bytes", 0) + span.size()
        stats["lines"] = stats.get("lines", 0) + num_lines
    tokens = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int32)
    lengths = np.concatenate(length_parts) if length_parts else np.zeros(0, np.int64)
    line_doc = np.concatenate(doc_parts) if doc_parts else np.zeros(0, np.int64)
    keep = lengths > 0
    seg_lengths, seg_doc = lengths[keep], line_doc[keep]
    seg_cum = np.zeros(len(seg_lengths) + 1, np.int64)
    np.cumsum(seg_lengths, out=seg_cum[1:])
    firsts = np.flatnonzero(np.diff(seg_doc, prepend=-1) != 0)  # a document's first segment
    return inst.Corpus(tokens.astype(np.int32, copy=False), seg_cum, firsts,
                       np.append(firsts[1:], len(seg_doc)).astype(np.int64))


def _batch_stats(arrays: dict, target_seq_lengths: np.ndarray, vocab: inst.VocabIds,
                 options: inst.InstanceOptions, stats: dict) -> None:
    weights = arrays["masked_lm_weights"] > 0
    lengths = arrays["input_mask"].sum(axis=1)
    at_positions = np.take_along_axis(arrays["input_ids"], arrays["masked_lm_positions"], axis=1)
    as_mask = (at_positions == vocab.mask_id) & weights
    kept = (at_positions == arrays["masked_lm_ids"]) & weights & ~as_mask
    uncapped = np.rint(lengths * options.masked_lm_prob)  # numpy rounds half to even, like round
    max_num_tokens = options.max_seq_length - 3
    add = {
        "instances": len(target_seq_lengths),
        "tokens": int(lengths.sum()),
        "maskable_tokens": int((lengths - 3).sum()),
        "masked_tokens": int(weights.sum()),
        "masked_as_mask": int(as_mask.sum()),
        "masked_kept": int(kept.sum()),
        "random_next": int(arrays["next_sentence_labels"].sum()),
        "short_target_instances": int((target_seq_lengths < max_num_tokens).sum()),
        "capped_instances": int((uncapped > options.max_predictions_per_seq).sum()),
    }
    for key, value in add.items():
        stats[key] = stats.get(key, 0) + value


_ALLOCATOR_TUNED: list = []


def keep_freed_memory() -> None:
    """Has glibc's malloc keep freed memory for reuse instead of returning it (once/process).

    A shard's batches allocate and free the same multi-MB numpy temporaries again and again.
    By default glibc serves them with mmap, or trims the heap top after they are freed, so the
    next batch page-faults the memory back in: measured ~1-2 faults and 2-4 us per instance
    on this 2-core VM, as much as encoding takes. With these two settings (allocations below
    32 MB come from the heap; up to 64 MB of free heap top is kept) the faults are gone; the
    process keeps its peak heap instead of shrinking. Only glibc; elsewhere a no-op.
    """
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED.append(True)
    try:
        import ctypes
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 64 << 20)


def return_freed_memory() -> None:
    """Hands the heap's free pages back to the system (glibc malloc_trim; elsewhere a no-op).

    Reading a shard frees the small pieces its token ids were made in (once they are joined)
    and every block's text; keep_freed_memory's settings would keep those pages, resident
    and unused, while the instance table is built. Called once between the two.
    """
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _record_chunks(corpus: inst.Corpus, vocab: inst.VocabIds, settings: Settings, seed: int,
                   stats: dict, timings: dict) -> Iterator[tuple[np.ndarray, int]]:
    """-> (TFRecord file bytes, instance count) per batch of a shard, in final order; adds the
    summary counts to stats and the encoding seconds to timings["encode"]."""
    from data_prep.pretraining import records
    from data_prep.files import tfrecords
    options = settings.options
    if settings.task != "nsp" or settings.masking != "static":
        yield from _other_mode_chunks(corpus, vocab, settings, seed, stats, timings)
        return
    if settings.rng == "vectorized":  # the original's rules, numpy draws, padded batches
        for batch in instances_vectorized.iter_instance_batches(
                corpus, vocab, options, settings.dupe_factor, seed, stats):
            encode_start = time.time()
            _batch_stats(batch.features, batch.target_seq_length, vocab, options, stats)
            chunk = tfrecords.encode_tfrecords(batch.features)
            timings["encode"] = timings.get("encode", 0.0) + time.time() - encode_start
            yield chunk, len(batch)
        return
    # The original's instances, draw for draw, as one table; records straight from its rows.
    table = instances_compiled.create_table(corpus, vocab, options, settings.dupe_factor,
                                            random.Random(seed), stats)
    encode_start = time.time()
    for key, value in records.table_stats(table, vocab, options).items():
        stats[key] = stats.get(key, 0) + value
    for start in range(0, len(table), _ENCODE_BATCH):
        stop = min(start + _ENCODE_BATCH, len(table))
        chunk = records.encode(table, start, stop, vocab, options)
        timings["encode"] = timings.get("encode", 0.0) + time.time() - encode_start
        yield chunk, stop - start
        encode_start = time.time()


def _other_mode_chunks(corpus: inst.Corpus, vocab: inst.VocabIds, settings: Settings,
                       seed: int, stats: dict, timings: dict
                       ) -> Iterator[tuple[np.ndarray, int]]:
    """_record_chunks for --task=none or --masking=none (the static NSP path is unchanged).

    --task=none: data_prep/pretraining/instances_packed.py (numpy draws whatever --rng says). NSP pairs
    with --masking=none: the instances of --rng (the same pairs as with static masks, since
    the masks are drawn after the pair), written with their original token ids and without
    the masked-LM features.
    """
    from data_prep.files import tfrecords
    options = settings.options
    if settings.task == "none":
        batches = ((features, None) for features in instances_packed.iter_instance_batches(
            corpus, vocab, options, settings.dupe_factor, seed, settings.masking == "static",
            stats))
    else:
        batches = _unmasked_pair_batches(corpus, vocab, settings, seed, stats)
    encode_start = time.time()
    for features, targets in batches:
        _feature_stats(features, targets, vocab, options, stats)
        chunk = tfrecords.encode_tfrecords(features)
        timings["encode"] = timings.get("encode", 0.0) + time.time() - encode_start
        yield chunk, len(features["input_ids"])
        encode_start = time.time()


_MASKED_LM_FEATURES = ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")


def _unmasked_pair_batches(corpus: inst.Corpus, vocab: inst.VocabIds, settings: Settings,
                           seed: int, stats: dict) -> Iterator[tuple[dict, np.ndarray]]:
    """(features without the masked-LM ones, target lengths) of the NSP instances of
    settings.rng, their input_ids unmasked."""
    options = settings.options
    if settings.rng == "vectorized":
        for batch in instances_vectorized.iter_instance_batches(
                corpus, vocab, options, settings.dupe_factor, seed, stats):
            features = dict(batch.features)
            weights = features["masked_lm_weights"] > 0
            rows = np.nonzero(weights)[0]
            features["input_ids"][rows, features["masked_lm_positions"][weights]] = (
                features["masked_lm_ids"][weights])
            yield ({k: v for k, v in features.items() if k not in _MASKED_LM_FEATURES},
                   batch.target_seq_length)
        return
    table = instances_compiled.create_table(corpus, vocab, options, settings.dupe_factor,
                                            random.Random(seed), stats)
    rows = table.rows.copy()
    rows[:, 6] = 0  # no masked position: padded_batch writes the original ids
    table = dataclasses.replace(table, rows=rows)
    for start in range(0, len(table), _ENCODE_BATCH):
        batch = instances_compiled.padded_batch(
            table, start, min(start + _ENCODE_BATCH, len(table)), vocab, options)
        yield ({k: v for k, v in batch.features.items() if k not in _MASKED_LM_FEATURES},
               batch.target_seq_length)


def _feature_stats(features: dict, target_seq_lengths: np.ndarray | None,
                   vocab: inst.VocabIds, options: inst.InstanceOptions, stats: dict) -> None:
    """The summary counts of _batch_stats for a batch of any mode: the masked-LM counts only
    when it has masks, random_next only with NSP labels, short targets only for pairs."""
    ids = features["input_ids"]
    real = features["input_mask"] > 0
    lengths = real.sum(axis=1)
    add = {
        "instances": len(ids),
        "tokens": int(lengths.sum()),
        "maskable_tokens": int((real & (ids != vocab.cls_id) & (ids != vocab.sep_id)).sum()),
        "capped_instances": int((np.rint(lengths * options.masked_lm_prob)
                                 > options.max_predictions_per_seq).sum()),
    }
    if "masked_lm_weights" in features:
        weights = features["masked_lm_weights"] > 0
        at_positions = np.take_along_axis(ids, features["masked_lm_positions"], axis=1)
        as_mask = (at_positions == vocab.mask_id) & weights
        add["masked_tokens"] = int(weights.sum())
        add["masked_as_mask"] = int(as_mask.sum())
        add["masked_kept"] = int(((at_positions == features["masked_lm_ids"]) & weights
                                  & ~as_mask).sum())
    if "next_sentence_labels" in features:
        add["random_next"] = int(features["next_sentence_labels"].sum())
    if target_seq_lengths is not None:
        add["short_target_instances"] = int(
            (target_seq_lengths < options.max_seq_length - 3).sum())
    for key, value in add.items():
        stats[key] = stats.get(key, 0) + value


@contextlib.contextmanager
def _collector_skips_older_objects() -> Iterator[None]:
    """Keeps Python's cyclic garbage collector off the objects that exist before a shard.

    A shard allocates millions of short-lived objects, and now and then that starts a full
    collection, which walks every object of the process -- with TensorFlow imported, over a
    million: measured 0.2-0.25 s each, as long as tokenizing a whole book. `gc.freeze()` sets
    the existing objects aside, so collections during the shard walk only the shard's own;
    `gc.unfreeze()` afterwards hands them back to the collector (nothing is kept alive).
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def process_shard(job: ShardJob) -> dict:
    """Builds one shard (atomically) and returns its manifest: counts + fingerprint."""
    with _collector_skips_older_objects():
        return _process_shard(job)


def _process_shard(job: ShardJob) -> dict:
    from data_prep.files import tfrecords
    keep_freed_memory()
    settings = job.settings
    start = time.time()
    cpu_start = time.process_time()
    vocab = load_vocab_ids(settings.vocab_file)
    stats: dict = {}
    timings: dict = {}  # wall seconds per stage, and the shard's CPU seconds, for the manifest
    tokenizer = batch_tokenizer(settings.tokenizer, settings.vocab_file, settings.do_lower_case)
    corpus = read_corpus(job.inputs, tokenizer, stats, job.settings.invalid_utf8)
    return_freed_memory()
    timings["read_tokenize"] = time.time() - start
    stats["documents"] = len(corpus.doc_start)
    stats["segments"] = len(corpus.seg_cum) - 1
    stats["input_tokens"] = len(corpus.tokens)
    described = [span.describe() for span in job.inputs]
    if not stats["documents"]:
        logging.warning("shard %d (%s): no documents; writing an empty shard",
                        job.index, ", ".join(described))
    elif stats["documents"] == 1:
        logging.warning("shard %d (%s): only one document, so random-next segments come from "
                        "that same document", job.index, ", ".join(described))
    manifest = {"fingerprint": job.fingerprint, "shard": job.index,
                "input_files": described, "output_file": job.output_file,
                "seed": job.seed, "counts": stats, "seconds": timings}
    timings["write"] = 0.0

    def chunks() -> Iterator[np.ndarray]:
        """The shard's TFRecord file bytes, a batch at a time, each written (to the
        temporary file) before the next is encoded: only the instance table is held."""
        encoded = 0
        last_log = time.time()
        for chunk, count in _record_chunks(corpus, vocab, settings, job.seed, stats, timings):
            write_start = time.time()
            yield chunk
            timings["write"] += time.time() - write_start
            encoded += count
            if time.time() - last_log > _PROGRESS_SECONDS:
                last_log = time.time()
                logging.info("shard %d: %d instances, %.0f instances/s", job.index,
                             encoded, encoded / (last_log - start))

    def before_commit():
        stats.setdefault("instances", 0)
        timings["total"] = time.time() - start
        timings["instances"] = (timings["total"] - timings["read_tokenize"]
                                - timings.get("encode", 0.0) - timings["write"])
        timings["cpu"] = time.process_time() - cpu_start  # (this process: one shard at a time)
        for key in timings:
            timings[key] = round(timings[key], 3)
        _write_json(manifest_path(job.output_file), manifest)

    tfrecords.write_tfrecord_chunks(job.output_file, chunks(), settings.gzip, before_commit)
    return manifest


def _write_json(path: str, obj: dict) -> None:
    from data_prep.files import tfrecords
    with tfrecords.atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.write("\n")


# --- Planning, resume, workers, summary -------------------------------------------------------

def _fingerprint(settings: Settings, index: int, num_shards: int,
                 inputs: Sequence[str | InputSpan]) -> str:
    inputs = [input_spans.as_span(item) for item in inputs]
    h = hashlib.sha256()
    with open(settings.vocab_file, "rb") as f:
        h.update(f.read())
    described = {
        "version": FORMAT_VERSION, "shard": index, "num_shards": num_shards,
        # A whole file as [path, size] alone: shards of whole files keep their fingerprint.
        "inputs": [[os.path.abspath(span.path), os.path.getsize(span.path)]
                   + ([] if span.whole_file else [span.start, span.end]) for span in inputs],
        "do_lower_case": settings.do_lower_case, "options": dataclasses.asdict(settings.options),
        "dupe_factor": settings.dupe_factor, "random_seed": settings.random_seed,
        "gzip": settings.gzip,
    }
    if settings.rng != "original":  # (absent for original: earlier shards stay resumable)
        described["rng"] = settings.rng
        described["rng_algorithm_version"] = instances_vectorized.ALGORITHM_VERSION
    # (absent for the defaults too; present otherwise, so a resume never mixes modes)
    if settings.masking != "static":
        described["masking"] = settings.masking
    if settings.task != "nsp":
        described["task"] = settings.task
        described["packing_algorithm_version"] = instances_packed.ALGORITHM_VERSION
    h.update(json.dumps(described, sort_keys=True).encode())
    return h.hexdigest()


def _finished_manifest(job: ShardJob) -> dict | None:
    path = manifest_path(job.output_file)
    if not (os.path.exists(job.output_file) and os.path.exists(path)):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("fingerprint") == job.fingerprint else None


def _init_worker(verbosity: int) -> None:
    logging.set_verbosity(verbosity)


def _pool_context(settings: Settings):
    """Worker processes that never inherit a running TensorFlow, and start at once.

    Where this process has no other thread and has not imported TensorFlow (the command
    line: TFRecords are written without it), workers are forked from it ("fork"), after the
    vocabulary, the tokenizer and the compiled kernels are loaded here (prepare_workers):
    every worker starts with them, and they are loaded once.

    Forking is unsafe once TensorFlow has run (its thread pools do not survive a fork), so
    otherwise workers come from a fork server: a fresh interpreter that imports this module
    and loads the compiled kernels once (worker_preload.py), without running anything else,
    and forks each worker from that. Workers start in milliseconds instead of each importing
    TensorFlow, and the server is reused by later pools of this process. "spawn" where there
    is neither.
    """
    import threading
    methods = multiprocessing.get_all_start_methods()
    if ("fork" in methods and "tensorflow" not in sys.modules
            and threading.active_count() == 1):
        prepare_workers(settings)
        return multiprocessing.get_context("fork")
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", "data_prep.pretraining.worker_preload"])
    return context


def prepare_workers(settings: Settings) -> None:
    """Loads what every shard of these settings uses (vocabulary, tokenizer, compiled kernels
    from numba's cache), so that workers forked afterwards have it already."""
    from data_prep.pretraining import records
    from data_prep.tokenizer import token_table, wordpiece_compiled
    load_vocab_ids(settings.vocab_file)
    batch_tokenizer(settings.tokenizer, settings.vocab_file, settings.do_lower_case)
    token_table.warm_up()
    wordpiece_compiled.warm_up()
    if settings.rng == "original":
        instances_compiled.warm_up()
        if settings.task == "nsp" and settings.masking == "static":
            records.warm_up()


def validate(settings: Settings, num_workers: int) -> None:
    """Raises ValueError (one line, naming the flag) for unusable settings; warns on caps."""
    inst.validate_options(settings.options)
    if settings.dupe_factor < 1:
        raise ValueError(f"--dupe_factor must be >= 1, got {settings.dupe_factor}")
    if settings.tokenizer not in TOKENIZERS:
        raise ValueError(f"--tokenizer must be one of {TOKENIZERS}, got {settings.tokenizer!r}")
    if settings.invalid_utf8 not in text_files.INVALID_UTF8:
        raise ValueError(f"--invalid_utf8 must be one of {text_files.INVALID_UTF8}, got "
                         f"{settings.invalid_utf8!r}")
    if settings.rng not in RNG_MODES:
        raise ValueError(f"--rng must be one of {RNG_MODES}, got {settings.rng!r}")
    if settings.masking not in MASKING_MODES:
        raise ValueError(f"--masking must be one of {MASKING_MODES}, got {settings.masking!r}")
    if settings.task not in TASKS:
        raise ValueError(f"--task must be one of {TASKS}, got {settings.task!r}")
    if num_workers < 0:
        raise ValueError(f"--num_workers must be >= 0, got {num_workers}")
    if not settings.max_shard_mb >= 0:
        raise ValueError(f"--max_shard_mb must be >= 0, got {settings.max_shard_mb}")
    if settings.masking == "none" and settings.dupe_factor > 1:
        logging.warning(
            "--masking=none with --dupe_factor=%d writes the same text %d times (only the %s "
            "differ): run_pretraining --dynamic_masking draws new masks every epoch, so "
            "--dupe_factor=1 is enough", settings.dupe_factor, settings.dupe_factor,
            "pairings" if settings.task == "nsp" else "document order and packing")
    load_vocab_ids(settings.vocab_file)
    options = settings.options
    cap = inst.mask_cap_length(options)
    if cap is not None:
        logging.warning(
            "--max_predictions_per_seq=%d is too small for --masked_lm_prob=%g: sequences of "
            "%d+ tokens get only %d masked tokens (up to %d at --max_seq_length=%d), so the "
            "masked fraction will be below masked_lm_prob", options.max_predictions_per_seq,
            options.masked_lm_prob, cap, options.max_predictions_per_seq,
            int(round(options.max_seq_length * options.masked_lm_prob)), options.max_seq_length)


def plan_jobs(input_files: Sequence[str], output_files: Sequence[str],
              settings: Settings) -> list[ShardJob]:
    """One ShardJob per output file (contiguous input groups, seeds and fingerprints): the work
    list of any runner, local or distributed (data_prep/beam_pipeline.py)."""
    groups = group_inputs(plan_inputs(input_files, settings, len(output_files)),
                          len(output_files))
    check_shard_sizes(groups, settings)
    return [ShardJob(k, group, out, _fingerprint(settings, k, len(groups), group), settings)
            for k, (group, out) in enumerate(zip(groups, output_files))]


def create_pretraining_data(input_files: Sequence[str], output_files: Sequence[str],
                            settings: Settings, num_workers: int = 1,
                            summary_file: str | None = None) -> dict:
    """Builds one shard per output file from contiguous groups of the input files (cut at
    document breaks where a file is larger than settings.max_shard_mb or where there are more
    shards than files: plan_inputs).

    input_files: files in the input format (already expanded); output_files: one per shard.
    num_workers: processes (0 = all cores; 1 = this process).
    Returns the summary dict (also written to summary_file when given).
    """
    validate(settings, num_workers)
    jobs = plan_jobs(input_files, output_files, settings)
    for out in output_files:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        for stale in atomic_io.remove_stale_temporaries(out):
            logging.info("removed %s, left by a killed run", stale)
    manifests = {}
    for job in jobs:
        finished = _finished_manifest(job)
        if finished is not None:
            manifests[job.index] = finished
    pending = [job for job in jobs if job.index not in manifests]
    if manifests:
        logging.info("resuming: %d of %d shards already finished, skipping them",
                     len(manifests), len(jobs))
    sizes = {job.index: sum(span.size() for span in job.inputs) for job in pending}
    total_bytes, done_bytes, done_instances = sum(sizes.values()), 0, 0
    start = time.time()
    workers = min(num_workers or os.cpu_count() or 1, max(len(pending), 1))

    def record(manifest):
        nonlocal done_bytes, done_instances
        manifests[manifest["shard"]] = manifest
        done_bytes += sizes[manifest["shard"]]
        done_instances += manifest["counts"]["instances"]
        elapsed = time.time() - start
        eta = elapsed * (total_bytes - done_bytes) / max(done_bytes, 1)
        logging.info("shard %d done: %d/%d shards, %d instances, %.0f instances/s, ETA %.0fs",
                     manifest["shard"], len(manifests), len(jobs), done_instances,
                     done_instances / max(elapsed, 1e-9), eta)

    if workers <= 1:
        for job in pending:
            record(process_shard(job))
    else:
        context = _pool_context(settings)
        with context.Pool(workers, _init_worker, (logging.get_verbosity(),)) as pool:
            largest_first = sorted(pending, key=lambda job: -sizes[job.index])  # balances
            for manifest in pool.imap_unordered(process_shard, largest_first):
                record(manifest)
    return finish_summary([manifests[k] for k in sorted(manifests)], settings, start,
                          len(jobs) - len(pending), {"num_workers": workers}, summary_file)


def finish_summary(manifests: Sequence[dict], settings: Settings, start: float,
                   shards_skipped: int, extra: dict, summary_file: str | None) -> dict:
    """summarize(...) plus seconds since `start`, shards_skipped and `extra` (the runner's
    keys); logged, and written to summary_file when given. Shared with beam_pipeline."""
    summary = summarize(manifests, settings)
    summary["seconds"] = round(time.time() - start, 3)
    summary["shards_skipped"] = shards_skipped
    summary.update(extra)
    log_summary(summary)
    if summary_file:
        _write_json(summary_file, summary)
    return summary


def summarize(manifests: Sequence[dict], settings: Settings) -> dict:
    """Totals of shard manifests plus the rates that describe the data."""
    totals: dict = {}
    seconds: dict = {}  # summed over shards (CPU seconds across workers)
    for manifest in manifests:
        for key, value in manifest["counts"].items():
            totals[key] = totals.get(key, 0) + value
        for key, value in manifest.get("seconds", {}).items():
            seconds[key] = round(seconds.get(key, 0) + value, 3)

    def ratio(a, b):
        return round(totals.get(a, 0) / totals[b], 6) if totals.get(b) else None

    masked = totals.get("masked_tokens", 0)
    static, nsp = settings.masking == "static", settings.task == "nsp"
    return {
        "shards": len(manifests),
        "output_files": [m["output_file"] for m in manifests],
        "counts": totals,
        "masked_fraction": ratio("masked_tokens", "maskable_tokens") if static else None,
        "mask_split": {
            "mask": ratio("masked_as_mask", "masked_tokens"),
            "keep": ratio("masked_kept", "masked_tokens"),
            "random": (round((masked - totals["masked_as_mask"] - totals["masked_kept"])
                             / masked, 6) if masked else None),
        },
        "random_next_fraction": ratio("random_next", "instances") if nsp else None,
        "short_target_document_fraction": (ratio("short_targets", "document_passes")
                                           if nsp else None),
        "short_target_instance_fraction": (ratio("short_target_instances", "instances")
                                           if nsp else None),
        "capped_instance_fraction": ratio("capped_instances", "instances"),
        "shard_seconds": seconds,
        "settings": {"vocab_file": settings.vocab_file, "do_lower_case": settings.do_lower_case,
                     "dupe_factor": settings.dupe_factor, "random_seed": settings.random_seed,
                     "gzip": settings.gzip, "rng": settings.rng, "masking": settings.masking,
                     "task": settings.task, **dataclasses.asdict(settings.options)},
    }


def log_summary(summary: dict) -> None:
    c = summary["counts"]
    logging.info(
        "%d shards: %d documents, %d instances, %d tokens; masked %s of maskable tokens "
        "(mask/keep/random %s); random next %s; short-target documents %s",
        summary["shards"], c.get("documents", 0), c.get("instances", 0), c.get("tokens", 0),
        summary["masked_fraction"], "/".join(str(v) for v in summary["mask_split"].values()),
        summary["random_next_fraction"], summary["short_target_document_fraction"])
