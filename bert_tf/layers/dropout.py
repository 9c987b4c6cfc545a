"""Dropout whose keep decisions come from a keyed integer hash of each element's index."""
from __future__ import annotations

import keras
import tensorflow as tf

_LEVELS = 1 << 32  # equally likely values of one decision
_GOLDEN = 0x9E3779B9  # odd, so i * _GOLDEN is a bijection on uint32


def keep_threshold(rate: float) -> int:
    """The uint32 threshold T for `rate`: an element is kept when its 32 random bits are >= T.

    T = round(rate * 2**32), so the keep probability is exactly (2**32 - T) / 2**32, within
    2**-33 (1.2e-10) of 1 - rate.
    """
    return min(max(int(round(rate * _LEVELS)), 0), _LEVELS - 1)


def keep_probability(rate: float) -> float:
    """The exact probability that `stateless_dropout` keeps an element at `rate`."""
    return (_LEVELS - keep_threshold(rate)) / _LEVELS


def _mix(x: tf.Tensor) -> tf.Tensor:
    """A bijective uint32 -> uint32 mixer: xor-shift / multiply rounds with the constants of
    C. Wellons' "lowbias32" (each input bit flips each output bit with probability ~1/2)."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def random_bits(shape, seed) -> tf.Tensor:
    """uint32 [shape]: 32 pseudo-random bits per element, a function of (`seed`, position).

    `seed`: int32 [2], e.g. a Keras SeedGenerator's state. Each element's flat index goes
    through two rounds of `_mix`, keyed by two words derived from both seed words, so seeds
    that differ in any bit (Keras steps them by one) give unrelated streams, not shifted copies
    of one stream. Elementwise integer work that XLA fuses into the one loop that uses it.
    """
    xor, golden = tf.bitwise.bitwise_xor, tf.constant(_GOLDEN, tf.uint32)
    seed = tf.cast(seed, tf.uint32)  # wraps modulo 2**32, whatever Keras' state dtype
    key_a = _mix(xor(seed[1], _mix(seed[0] + golden)))
    key_b = _mix(key_a + golden)
    index = tf.bitcast(tf.range(tf.reduce_prod(shape), dtype=tf.int32), tf.uint32)
    return tf.reshape(_mix(xor(_mix(xor(index * golden, key_a)), key_b)), shape)


@tf.function(jit_compile=True, autograph=False, reduce_retracing=True)
def _apply_mask(x, seed, threshold, scale):
    """x * mask with mask = scale where random_bits(shape(x), seed) >= threshold, else 0: one
    XLA loop that reads x and writes the result (no mask is stored). Inside an XLA-compiled
    step it is inlined into the step."""
    keep = random_bits(tf.shape(x), seed) >= threshold
    return tf.where(keep, x * tf.cast(scale, x.dtype), tf.zeros_like(x))


def stateless_dropout(inputs: tf.Tensor, rate: float, seed) -> tf.Tensor:
    """Inverted dropout of `inputs` (float, any shape; same shape and dtype out): each element
    is kept with probability keep_probability(rate) and scaled by its inverse, or zeroed.
    `seed`: int32 [2]; the same seed gives the same mask.

    The gradient is upstream * the same mask, recomputed from the seed rather than stored
    (the hash costs less than reading a stored mask back).
    """
    threshold = tf.constant(keep_threshold(rate), tf.uint32)
    scale = tf.constant(1.0 / keep_probability(rate), tf.float32)

    @tf.autograph.experimental.do_not_convert
    @tf.custom_gradient
    def dropout(x):
        return _apply_mask(x, seed, threshold, scale), lambda upstream: _apply_mask(
            upstream, seed, threshold, scale)

    return dropout(inputs)


@keras.saving.register_keras_serializable(package="bert_tf")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` with cheaper masks; same arguments and config as Keras' layer.

    Input and output: float [...], any shape. In training each element is kept with
    probability `keep_probability(rate)` ((2**32 - round(2**32 * rate)) / 2**32, within
    1.2e-10 of 1 - rate) and kept elements are scaled by its inverse, so the expected output
    equals the input. The decisions are a keyed integer hash of each element's index against
    an integer threshold (`stateless_dropout`), computed by XLA in the loop that applies them,
    forward and backward: on CPU, TensorFlow's Philox masks inside an XLA-compiled step cost
    several times the hash (benchmarks/README.md). The masks differ from Keras' for the same
    seed (same distribution up to the rounding of the rate). A `noise_shape` (or a rate of 1)
    falls back to Keras' layer.
    """

    def call(self, inputs, training=False):
        if not training or self.rate == 0 or self.rate >= 1 or self.noise_shape is not None:
            return super().call(inputs, training=training)
        return stateless_dropout(inputs, self.rate, self.seed_generator.next())
