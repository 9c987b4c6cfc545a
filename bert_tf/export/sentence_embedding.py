"""Sentence embeddings: one vector per input from a layer's token vectors.

`cls` takes the [CLS] token's vector of the layer (not the tanh pooler, which is trained for
next-sentence prediction and is a poor similarity space); `mean` averages the real tokens,
[CLS] and [SEP] included, padding excluded (what sentence-transformers models such as
all-MiniLM-L6-v2 are trained with); `max` takes each dimension's maximum over the real tokens.
"""
from __future__ import annotations

import tensorflow as tf

POOLINGS = ("cls", "mean", "max")


def pool_tokens(token_vectors: tf.Tensor, input_mask: tf.Tensor, pooling: str,
                normalize: bool = False) -> tf.Tensor:
    """float [batch, seq, hidden] x int [batch, seq] (1 = token) -> float32 [batch, hidden].

    `normalize` scales each vector to unit L2 norm (cosine similarity becomes a dot product).
    A row without real tokens (all padding) pools to zeros for `mean` and `max`.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    vectors = tf.cast(token_vectors, tf.float32)
    mask = tf.cast(input_mask, tf.float32)[:, :, None]  # [batch, seq, 1]
    if pooling == "cls":
        pooled = vectors[:, 0, :]
    elif pooling == "mean":
        count = tf.reduce_sum(mask, axis=1)
        pooled = tf.reduce_sum(vectors * mask, axis=1) / tf.maximum(count, 1.0)
    else:
        lowest = tf.float32.min
        masked = tf.where(mask > 0, vectors, lowest)
        pooled = tf.reduce_max(masked, axis=1)
        pooled = tf.where(tf.reduce_sum(mask, axis=1) > 0, pooled, 0.0)
    if normalize:
        # The same epsilon floor as torch.nn.functional.normalize, so that an all-zero
        # vector stays zero instead of becoming NaN.
        norm = tf.norm(pooled, axis=-1, keepdims=True)
        pooled = pooled / tf.maximum(norm, 1e-12)
    return pooled
