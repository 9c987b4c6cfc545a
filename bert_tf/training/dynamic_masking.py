"""Masked-LM masks drawn while training, in the tf.data pipeline (`run_pretraining --dynamic_masking`).

Static masking (the original) writes every instance `dupe_factor` times with different masks;
here the records hold only token ids (create_pretraining_data --masking=none) and each batch
gets fresh masks as it is read, as in RoBERTa (Liu et al. 2019), so one copy of the data
suffices and every epoch sees new masks.

Rules (those of data_prep/pretraining/instances.py, i.e. the original's, per sequence):
  * candidates: real tokens (input_mask 1) other than [CLS], [SEP] and [PAD];
  * num_to_predict = min(max_predictions_per_seq, max(1, round(length * masked_lm_prob))),
    length counting [CLS]/[SEP] as the original does; without whole words that many
    candidates (or all, if fewer) are chosen uniformly at random;
  * whole words (`whole_word_masking`): a "##" piece belongs to the word before it; the words
    are visited in uniformly random order and each is taken if it still fits in
    num_to_predict, as the original's loop. One difference: a "##" piece right after a
    [SEP] starts a word of its own (the original joins it to the word before the [SEP]);
  * each chosen piece becomes [MASK] with probability 0.8, stays with 0.1, and becomes a
    uniformly random vocabulary id with 0.1;
  * masked_lm_positions sorted ascending, zero padded to max_predictions_per_seq, with
    masked_lm_ids (the original ids) and masked_lm_weights (1.0 real, 0.0 padding).

Vectorised: a batch is masked with a few dozen batched ops ([batch, seq_len] keys, one sort);
whole-word masking adds a tf.scan of seq_len small steps over the batch.

Seeded and resumable: the masks of batch b of input pipeline p come from stateless random ops
keyed on (seed, p, b), so they depend only on the data position, not on what ran before. A
run resumed with `skip_batches` = the steps already trained (bert_tf/training/inputs.py
record_dataset) numbers its batches from there and draws exactly the masks of an
uninterrupted run. Evaluation uses its own key (seed, EVAL_STREAM, b): the same held-out
masks at every evaluation.

Records written with static masks (--masking=static) are accepted: their input_ids are first
restored from masked_lm_positions / masked_lm_ids, and the stored masks are then ignored
(each of the dupe_factor copies gets new masks like any other record).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from bert_tf.training import inputs

EVAL_STREAM = 2**31 - 1  # the pipeline index the eval masks are keyed on (no real pipeline)
_MASKED_LM_FEATURES = ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")
_COL_BITS = 16  # sort keys: random bits above, the column below (so no two keys tie)


@dataclasses.dataclass(frozen=True)
class MaskingOptions:
    """What dynamic masking needs from the vocabulary and the flags.

    is_subword: is_subword[id] is True for "##" pieces (used with whole_word_masking).
    """

    vocab_size: int
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    is_subword: tuple[bool, ...]
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    whole_word_masking: bool = False

    def __post_init__(self):
        if not 0.0 < self.masked_lm_prob <= 1.0:
            raise ValueError(f"--masked_lm_prob must be in (0, 1], got {self.masked_lm_prob}")
        if self.max_predictions_per_seq < 1:
            raise ValueError("--max_predictions_per_seq must be >= 1, got "
                             f"{self.max_predictions_per_seq}")

    @classmethod
    def from_vocab_file(cls, vocab_file: str, **kwargs) -> "MaskingOptions":
        """Reads the special ids and the "##" pieces from a WordPiece vocab file.

        Raises ValueError naming --vocab_file when [CLS], [SEP], [PAD] or [MASK] is missing.
        """
        from data_prep.tokenizer.tokenization import load_vocab
        vocab = load_vocab(vocab_file)
        missing = [t for t in ("[CLS]", "[SEP]", "[PAD]", "[MASK]") if t not in vocab]
        if missing:
            raise ValueError(f"--vocab_file {vocab_file} lacks {', '.join(missing)}, which "
                             "dynamic masking needs")
        size = max(vocab.values()) + 1
        is_subword = [False] * size
        for word, index in vocab.items():
            if word.startswith("##"):
                is_subword[index] = True
        return cls(size, vocab["[CLS]"], vocab["[SEP]"], vocab["[PAD]"], vocab["[MASK]"],
                   tuple(is_subword), **kwargs)


def restore_static_masks(features: dict) -> tf.Tensor:
    """input_ids with the original ids put back at the stored masked positions.

    features: int32 input_ids [batch, seq]; masked_lm_positions, masked_lm_ids [batch, pred];
    float32 masked_lm_weights [batch, pred] (all zeros for records without masks).
    Returns int32 [batch, seq].
    """
    ids = features["input_ids"]
    seq = tf.shape(ids)[1]
    real = tf.cast(features["masked_lm_weights"] > 0, ids.dtype)[..., None]
    hits = tf.one_hot(features["masked_lm_positions"], seq, dtype=ids.dtype) * real
    stored = tf.reduce_sum(hits * features["masked_lm_ids"][..., None], axis=1)
    return ids * (1 - tf.reduce_max(hits, axis=1)) + stored


def _sort_keys(valid: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """int64 [batch, n] keys: random bits with the column in the low bits (no ties), invalid
    columns above every valid one; sorting them gives the valid columns in uniform order."""
    shape = tf.shape(valid, out_type=tf.int64)
    random_bits = tf.random.stateless_uniform(shape, seed, minval=0, maxval=2**46,
                                              dtype=tf.int64)
    col = tf.range(shape[1], dtype=tf.int64)[None, :]
    return tf.where(valid, random_bits * 2**_COL_BITS + col, 2**62 + col)


def _choose_pieces(candidate: tf.Tensor, limit: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """bool [batch, seq]: min(limit, candidates) candidates per row, uniformly at random."""
    keys = _sort_keys(candidate, seed)
    take = tf.minimum(limit, tf.reduce_sum(tf.cast(candidate, tf.int32), axis=1))
    sorted_keys = tf.sort(keys, axis=1)
    threshold = tf.gather(sorted_keys, tf.maximum(take - 1, 0), batch_dims=1)
    return candidate & (keys <= threshold[:, None]) & (take > 0)[:, None]


def _choose_words(ids: tf.Tensor, candidate: tf.Tensor, limit: tf.Tensor,
                  is_subword: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """bool [batch, seq]: whole words in random order, each taken while it fits in limit."""
    batch, seq = tf.shape(ids)[0], tf.shape(ids)[1]
    previous = tf.pad(candidate[:, :-1], [[0, 0], [1, 0]])
    starts = candidate & ~(tf.gather(is_subword, ids) & previous)
    word = tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1  # word index of each piece
    num_words = tf.reduce_sum(tf.cast(starts, tf.int32), axis=1)
    # Pieces per word: segment b * seq + word for candidates, one spare segment for the rest.
    segment = tf.where(candidate, tf.range(batch)[:, None] * seq + word, batch * seq)
    sizes = tf.math.unsorted_segment_sum(tf.ones_like(ids), segment, batch * seq + 1)
    sizes = tf.reshape(sizes[:-1], [batch, seq])
    col = tf.range(seq)[None, :]
    order = tf.argsort(_sort_keys(col < num_words[:, None], seed), axis=1)
    sorted_sizes = tf.gather(sizes, order, batch_dims=1)

    def visit(left, size):  # one word rank over the whole batch: take it if it fits
        return left - tf.where((size > 0) & (size <= left), size, 0)

    sizes_by_rank = tf.transpose(sorted_sizes)  # [seq, batch]
    left_after = tf.scan(visit, sizes_by_rank, initializer=limit)
    left_before = tf.concat([limit[None, :], left_after[:-1]], axis=0)
    taken_sorted = tf.transpose((sizes_by_rank > 0) & (sizes_by_rank <= left_before))
    taken_word = tf.gather(taken_sorted, tf.argsort(order, axis=1), batch_dims=1)
    return candidate & tf.gather(taken_word, tf.maximum(word, 0), batch_dims=1)


def mask_batch(features: dict, options: MaskingOptions, seed: tf.Tensor) -> dict:
    """Draws masks for one batch.

    features: int32 input_ids, input_mask [batch, seq] (unmasked ids), and any other features
    (passed through; stored masked-LM features are replaced). seed: int64 [2], the stateless
    key. Returns features with input_ids masked and int32 masked_lm_positions,
    masked_lm_ids [batch, max_predictions_per_seq], float32 masked_lm_weights.
    """
    ids = features["input_ids"]
    seq = ids.shape[1] if ids.shape[1] is not None else tf.shape(ids)[1]
    real = features["input_mask"] > 0
    candidate = real & (ids != options.cls_id) & (ids != options.sep_id) & (
        ids != options.pad_id)
    length = tf.reduce_sum(tf.cast(real, tf.float64), axis=1)
    # round() of Python and tf.round both round half to even; float64 like the original.
    rounded = tf.cast(tf.round(length * options.masked_lm_prob), tf.int32)
    limit = tf.minimum(options.max_predictions_per_seq, tf.maximum(1, rounded))
    choose_seed, decide_seed, random_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3))
    if options.whole_word_masking:
        is_subword = tf.constant(np.asarray(options.is_subword, bool))
        chosen = _choose_words(ids, candidate, limit, is_subword, choose_seed)
    else:
        chosen = _choose_pieces(candidate, limit, choose_seed)
    u = tf.random.stateless_uniform(tf.shape(ids), decide_seed)
    random_ids = tf.random.stateless_uniform(tf.shape(ids), random_seed, minval=0,
                                             maxval=options.vocab_size, dtype=tf.int32)
    new_ids = tf.where(chosen & (u < 0.8), tf.cast(options.mask_id, ids.dtype),
                       tf.where(chosen & (u >= 0.9), tf.cast(random_ids, ids.dtype), ids))
    # Chosen columns first, ascending (their column as key), the rest after.
    pred = options.max_predictions_per_seq
    col = tf.range(tf.shape(ids)[1])[None, :]
    width = min(pred, seq) if isinstance(seq, int) else tf.minimum(pred, seq)
    top = -tf.math.top_k(-tf.where(chosen, col, col + tf.shape(ids)[1]), k=width).values
    weights = top < tf.shape(ids)[1]
    positions = tf.where(weights, top, 0)
    if isinstance(width, int) and width < pred:
        positions = tf.pad(positions, [[0, 0], [0, pred - width]])
        weights = tf.pad(weights, [[0, 0], [0, pred - width]])
    masked_ids = tf.where(weights, tf.gather(ids, positions, batch_dims=1), 0)
    out = {k: v for k, v in features.items() if k not in _MASKED_LM_FEATURES}
    out.update(input_ids=new_ids, masked_lm_positions=tf.cast(positions, ids.dtype),
               masked_lm_ids=tf.cast(masked_ids, ids.dtype),
               masked_lm_weights=tf.cast(weights, tf.float32))
    return out


def batch_seed(seed: int, stream: tf.Tensor | int, index: tf.Tensor) -> tf.Tensor:
    """The stateless key of batch `index` of `stream` (an input pipeline): int64 [2]."""
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(stream, tf.int64)])
    return tf.random.experimental.stateless_fold_in(key, tf.cast(index, tf.int64))


def feature_spec(max_seq_length: int, max_predictions_per_seq: int,
                 next_sentence: bool) -> dict:
    """Parse spec for records of either --masking: the masked-LM features default to zeros
    (absent in --masking=none records); next_sentence_labels only when `next_sentence`."""
    seq, pred = [max_seq_length], [max_predictions_per_seq]
    spec = {name: tf.io.FixedLenFeature(seq, tf.int64)
            for name in ("input_ids", "input_mask", "segment_ids")}
    for name in ("masked_lm_positions", "masked_lm_ids"):
        spec[name] = tf.io.FixedLenFeature(pred, tf.int64, default_value=[0] * max_predictions_per_seq)
    spec["masked_lm_weights"] = tf.io.FixedLenFeature(pred, tf.float32,
                                                      default_value=[0.0] * max_predictions_per_seq)
    if next_sentence:
        spec["next_sentence_labels"] = tf.io.FixedLenFeature([1], tf.int64)
    return spec


def record_parser(max_seq_length: int, max_predictions_per_seq: int, next_sentence: bool,
                  restore: bool):
    """[batch] serialized records -> dict of tensors (int features as int32), by
    feature_spec; `restore`: input_ids with any stored masks undone (restore_static_masks).
    The static path without NSP (run_pretraining --nsp=false on stored masks) uses it with
    restore=False."""
    spec = feature_spec(max_seq_length, max_predictions_per_seq, next_sentence)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        parsed = {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v
                  for k, v in parsed.items()}
        if restore:
            parsed["input_ids"] = restore_static_masks(parsed)
        return parsed

    return parse


def dynamic_pretraining_dataset(input_file: str, batch_size: int, max_seq_length: int,
                                options: MaskingOptions, is_training: bool,
                                next_sentence: bool = True, input_context=None,
                                skip_batches: int = 0, seed: int = 12345,
                                flag_name: str = "input_file") -> tf.data.Dataset:
    """inputs.pretraining_dataset's batches, with masks drawn here instead of read.

    Each batch: int32 input_ids (masked), input_mask, segment_ids [batch, max_seq_length];
    int32 masked_lm_positions, masked_lm_ids and float32 masked_lm_weights
    [batch, options.max_predictions_per_seq]; int32 next_sentence_labels [batch, 1] when
    `next_sentence`. Training batch b (counting the skipped ones) of pipeline p is masked
    with batch_seed(seed, p, b); eval batches with batch_seed(seed, EVAL_STREAM, b).
    """
    files = inputs.list_files(input_file, flag_name)
    parse = record_parser(max_seq_length, options.max_predictions_per_seq, next_sentence,
                          restore=True)
    ds = inputs.record_dataset(files, batch_size, is_training, parse, input_context,
                               skip_batches, seed)
    stream = (input_context.input_pipeline_id if input_context else 0) if is_training else (
        EVAL_STREAM)
    ds = ds.enumerate(start=skip_batches if is_training else 0)
    ds = ds.map(lambda index, batch: mask_batch(batch, options, batch_seed(seed, stream, index)),
                num_parallel_calls=inputs.AUTOTUNE, deterministic=True)
    return ds.prefetch(inputs.AUTOTUNE)


def record_features(files: list[str]) -> list[frozenset[str]]:
    """The feature names of the first record of each file (empty for an empty or unreadable
    file)."""
    compression = "GZIP" if files and files[0].endswith(".gz") else ""
    names = []
    for file in files:
        try:
            first = list(tf.data.TFRecordDataset(file, compression_type=compression).take(1))
        except tf.errors.OpError:  # unreadable: left to the training loop, which names it
            first = []
        names.append(frozenset(tf.train.Example.FromString(first[0].numpy()).features.feature)
                     if first else frozenset())
    return names


def check_records(files: list[str], flag_name: str, dynamic_masking: bool,
                  next_sentence: bool) -> None:
    """ValueError naming the flag and the file when records lack what the run needs:
    masks without dynamic masking (--masking=none records), next_sentence_labels with NSP
    (--task=none records)."""
    for file, names in zip(files, record_features(files)):
        if not names:
            continue
        if not dynamic_masking and not set(_MASKED_LM_FEATURES) <= names:
            raise ValueError(f"--{flag_name}: {file} has no masked-LM features (written with "
                             "create_pretraining_data --masking=none): pass --dynamic_masking")
        if next_sentence and "next_sentence_labels" not in names:
            raise ValueError(f"--{flag_name}: {file} has no next_sentence_labels (written "
                             "with create_pretraining_data --task=none): pass --nsp=false")
