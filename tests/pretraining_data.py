"""Synthetic pretraining TFRecords in data_prep's schema, for fast training-loop tests.

The text is a learnable pattern (token i+1 follows token i), so a tiny model's masked-LM
accuracy must rise when training works.
"""
import os

import numpy as np

from data_prep.files.tfrecords import serialize_examples, write_tfrecord


def write_pretraining_shards(directory: str, num_shards: int = 2, per_shard: int = 64,
                             seq_len: int = 32, max_pred: int = 5, vocab_size: int = 64,
                             seed: int = 0) -> str:
    """Writes shards; returns a glob for them."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    for shard in range(num_shards):
        n = per_shard
        lengths = rng.integers(seq_len // 2, seq_len + 1, n)
        starts = rng.integers(5, vocab_size, n)
        ids = np.zeros((n, seq_len), np.int64)
        mask = np.zeros((n, seq_len), np.int64)
        segments = np.zeros((n, seq_len), np.int64)
        positions = np.zeros((n, max_pred), np.int64)
        labels = np.zeros((n, max_pred), np.int64)
        weights = np.zeros((n, max_pred), np.float32)
        nsp = rng.integers(0, 2, (n, 1)).astype(np.int64)
        for i, length in enumerate(lengths):
            row = 5 + (np.arange(starts[i], starts[i] + length) - 5) % (vocab_size - 5)
            row[0], row[-1] = 2, 3  # [CLS] ... [SEP]
            ids[i, :length], mask[i, :length] = row, 1
            segments[i, length // 2:length] = 1
            k = int(rng.integers(1, max_pred + 1))
            pos = np.sort(rng.choice(np.arange(1, length - 1), k, replace=False))
            positions[i, :k], labels[i, :k], weights[i, :k] = pos, ids[i, pos], 1.0
            ids[i, pos] = 4  # [MASK]
        records = serialize_examples({
            "input_ids": ids, "input_mask": mask, "segment_ids": segments,
            "masked_lm_positions": positions, "masked_lm_ids": labels,
            "masked_lm_weights": weights, "next_sentence_labels": nsp})
        write_tfrecord(os.path.join(directory, f"shard-{shard:03d}.tfrecord"), records)
    return os.path.join(directory, "*.tfrecord")
