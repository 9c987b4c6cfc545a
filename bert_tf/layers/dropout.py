"""Dropout whose decisions are 16 random bits each, two per 32-bit Philox output."""
from __future__ import annotations

import keras
import tensorflow as tf

_LEVELS = 1 << 16  # equally likely values of one decision


def keep_threshold(rate: float) -> int:
    """The uint16 threshold T for `rate`: an element is kept when its 16 random bits are >= T.

    T = round(rate * 65536), so the keep probability is exactly (65536 - T) / 65536, within
    2**-17 (7.6e-6) of 1 - rate; for rate 0.1, T = 6554 and keep = 58982 / 65536 = 0.8999939.
    """
    return min(max(int(round(rate * _LEVELS)), 0), _LEVELS - 1)


def keep_probability(rate: float) -> float:
    """The exact probability that `dropout_mask` keeps an element at `rate`."""
    return (_LEVELS - keep_threshold(rate)) / _LEVELS


def random_bits16(shape, seed) -> tf.Tensor:
    """uint16 [shape]: independent uniform 16-bit values from Philox (stateless; `seed` int32
    [2]). Each 32-bit Philox output gives two of them, so half as many are drawn as for a
    float mask, which takes one 32-bit output per element."""
    shape = tf.convert_to_tensor(shape, tf.int32)
    size = tf.reduce_prod(shape)
    words = tf.random.stateless_uniform(tf.reshape((size + 1) // 2, [1]), seed=seed,
                                        minval=None, maxval=None, dtype=tf.uint32,
                                        alg="philox")
    # [n/2] uint32 -> [n/2, 2] uint16 is a bitcast (no copy); the slice is the identity
    # unless the size is odd.
    halves = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size]
    return tf.reshape(halves, shape)


def dropout_mask(shape, rate: float, seed, dtype) -> tf.Tensor:
    """`dtype` [shape]: 1 / keep_probability(rate) where kept, 0 where dropped; each element
    is kept independently with probability keep_probability(rate)."""
    keep = random_bits16(shape, seed) >= tf.constant(keep_threshold(rate), tf.uint16)
    return tf.where(keep, tf.constant(1.0 / keep_probability(rate), dtype),
                    tf.constant(0.0, dtype))


def stateless_dropout(inputs: tf.Tensor, rate: float, seed) -> tf.Tensor:
    """Inverted dropout: inputs * dropout_mask(...). Same shape and dtype as `inputs`.

    The gradient is upstream * mask, one multiply; `tf.nn.experimental.stateless_dropout`
    draws one 32-bit value per element and runs a scale, a compare and a select forward and a
    select and a multiply backward.
    """
    return inputs * dropout_mask(tf.shape(inputs), rate, seed, inputs.dtype)


@keras.saving.register_keras_serializable(package="bert_tf")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` with cheaper masks; same arguments and config as Keras' layer.

    Input and output: float [...], any shape. In training each element is kept with
    probability `keep_probability(rate)` ((65536 - round(65536 * rate)) / 65536, within 7.6e-6
    of 1 - rate) and kept elements are scaled by its inverse, so the expected output equals
    the input. The decisions are 16 random bits against an integer threshold, two per 32-bit
    Philox output (`stateless_dropout`): at BERT-base about 10% of a mixed_bfloat16 training
    step's op time was the float masks. Philox is named explicitly because inside an
    XLA-compiled function on CPU the "auto_select" generator measured about 100x slower. The
    masks differ from Keras' for the same seed (same distribution up to the rounding of the
    rate). A `noise_shape` (or a rate of 1) falls back to Keras' layer.
    """

    def call(self, inputs, training=False):
        if not training or self.rate == 0 or self.rate >= 1 or self.noise_shape is not None:
            return super().call(inputs, training=training)
        seed = self.seed_generator.next()
        if seed.dtype != tf.int32:  # stateless ops take int32 seeds; Keras maps them the same way
            seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
        return stateless_dropout(inputs, self.rate, seed)
