"""Full-sentence packing without next-sentence pairs (`create_pretraining_data --task=none`).

RoBERTa's FULL-SENTENCES inputs (Liu et al. 2019): each sequence is `[CLS] s1 s2 ... [SEP]`,
whole sentences taken contiguously from one document and on into the next, with one extra
`[SEP]` where a document ends inside a sequence. A sequence holds at most max_seq_length
tokens; a sentence that does not fit in what is left starts the next sequence, and a
sentence longer than a whole sequence (max_seq_length - 2 tokens) is cut into pieces, so
every token of the corpus is in exactly one sequence per pass. Segment ids are all 0 and
there is no next-sentence label; `short_seq_prob` does not apply (sequences are filled).

Randomness (numpy PCG64 seeded with random_seed + shard, instances_vectorized.make_generator):
each of dupe_factor passes packs the documents in a new random order, so a pass pairs other
documents across its boundaries; the sequences of all passes are then shuffled. With static
masking the masks are drawn by instances_vectorized's masker (the original's rules: round(15%)
of the tokens capped by max_predictions_per_seq, 80/10/10, whole words); with --masking=none
the sequences are written unmasked for bert_tf.training.dynamic_masking to mask while training.

Cost: one Python step per sentence to lay the sequences out (a few us each, about the cost of
tokenizing it), then numpy over whole arrays.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from data_prep.pretraining import instances as inst, instances_vectorized

# Part of the output's definition: change it with anything that changes the bytes, so a
# resumed run never mixes shards of two versions (it is in the shard fingerprint).
ALGORITHM_VERSION = 1
BATCH_SIZE = 2048


def _layout(corpus: inst.Corpus, order: np.ndarray, budget: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over the documents in `order`, packed into sequences of <= budget tokens.

    Returns (piece_start, piece_len, piece_seq, piece_offset: int64 [pieces] -- a run of
    corpus.tokens, the sequence it goes to and its offset after [CLS]; sep_seq, sep_offset:
    int64 [separators] -- the inner [SEP]s between documents; lengths int64 [sequences], the
    tokens of each sequence between [CLS] and its last [SEP]).
    """
    seg_cum = corpus.seg_cum.tolist()
    doc_start, doc_end = corpus.doc_start.tolist(), corpus.doc_end.tolist()
    pieces: list[tuple[int, int, int, int]] = []
    seps: list[tuple[int, int]] = []
    lengths: list[int] = []
    used = 0  # tokens in the open sequence (number len(lengths))
    for d in order.tolist():
        for s in range(doc_start[d], doc_end[d]):
            start, size = seg_cum[s], seg_cum[s + 1] - seg_cum[s]
            sep = 1 if s == doc_start[d] and used else 0  # a new document inside a sequence
            if used and used + sep + size > budget:  # does not fit: close the sequence
                lengths.append(used)
                used, sep = 0, 0
            if sep:
                seps.append((len(lengths), used))
                used += 1
            while size > budget - used:  # longer than a whole sequence: cut it
                take = budget - used
                pieces.append((start, take, len(lengths), used))
                lengths.append(budget)
                start, size, used = start + take, size - take, 0
            if size:
                pieces.append((start, size, len(lengths), used))
                used += size
    if used:
        lengths.append(used)
    p = np.array(pieces, np.int64).reshape(-1, 4)
    q = np.array(seps, np.int64).reshape(-1, 2)
    return p[:, 0], p[:, 1], p[:, 2], p[:, 3], q[:, 0], q[:, 1], np.array(lengths, np.int64)


def pack_corpus(corpus: inst.Corpus, vocab: inst.VocabIds, max_seq_length: int,
                order: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The documents of corpus in `order` as packed sequences (one pass, not shuffled).

    order: int [num_documents], a permutation of the document indices. Returns (input_ids
    int32 [n, max_seq_length] zero padded, lengths int64 [n] including [CLS] and the final
    [SEP], the number of inner [SEP]s between documents).
    """
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length must be >= 3, got {max_seq_length}")
    budget = max_seq_length - 2
    p_start, p_len, p_seq, p_off, s_seq, s_off, lengths = _layout(corpus, order, budget)
    n = len(lengths)
    ids = np.zeros((n, max_seq_length), np.int32)
    ids[:, 0] = vocab.cls_id
    ids[np.arange(n), lengths + 1] = vocab.sep_id
    ids[s_seq, s_off + 1] = vocab.sep_id
    total = int(p_len.sum())
    if total:
        # Token k of piece i goes to row p_seq[i], column 1 + p_off[i] + k.
        first = np.zeros(len(p_len), np.int64)
        np.cumsum(p_len[:-1], out=first[1:])
        within = np.arange(total, dtype=np.int64) - np.repeat(first, p_len)
        source = np.repeat(p_start, p_len) + within
        flat = np.repeat(p_seq * max_seq_length + 1 + p_off, p_len) + within
        ids.reshape(-1)[flat] = corpus.tokens[source]
    return ids, lengths + 2, len(s_seq)


def _unmasked(ids: np.ndarray, lengths: np.ndarray) -> dict:
    input_mask = (np.arange(ids.shape[1])[None, :] < lengths[:, None]).astype(np.int32)
    return {"input_ids": ids, "input_mask": input_mask,
            "segment_ids": np.zeros_like(input_mask)}


def iter_instance_batches(corpus: inst.Corpus, vocab: inst.VocabIds,
                          options: inst.InstanceOptions, dupe_factor: int, seed: int,
                          masked: bool, counters: dict | None = None,
                          batch_size: int = BATCH_SIZE) -> Iterator[dict]:
    """All packed sequences of dupe_factor passes, shuffled, as batches of feature arrays.

    Each batch: int32 input_ids, input_mask, segment_ids [n, max_seq_length]; with `masked`
    also masked_lm_positions, masked_lm_ids [n, max_predictions_per_seq] int32 and
    masked_lm_weights float32, input_ids then holding the masked ids (data_prep.files.tfrecords
    schema, without next_sentence_labels). counters, if given, gets "document_passes" and
    "document_separators" added. Deterministic in (corpus, vocab, options, dupe_factor, seed,
    batch_size).
    """
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}")
    rng = instances_vectorized.make_generator(seed)
    num_docs = len(corpus.doc_start)
    passes = []
    for _ in range(dupe_factor):
        passes.append(pack_corpus(corpus, vocab, options.max_seq_length,
                                  rng.permutation(num_docs)))
    ids = np.concatenate([p[0] for p in passes])
    lengths = np.concatenate([p[1] for p in passes])
    if counters is not None:
        separators = sum(p[2] for p in passes)
        counters["document_passes"] = counters.get("document_passes", 0) + dupe_factor * num_docs
        counters["document_separators"] = counters.get("document_separators", 0) + separators
    order = rng.permutation(len(ids))
    ids, lengths = ids[order], lengths[order]
    masker = instances_vectorized.padded_masker(corpus, vocab, options) if masked else None
    for start in range(0, len(ids), batch_size):
        features = _unmasked(ids[start:start + batch_size], lengths[start:start + batch_size])
        if masker is not None:
            features = masker.mask_padded(features, rng)
        yield features
