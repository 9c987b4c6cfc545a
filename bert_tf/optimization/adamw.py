"""BERT's Adam with decoupled weight decay, exactly as the original `AdamWeightDecayOptimizer`."""
from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from bert_tf.optimization.base import DEFAULT_EXCLUDE, AdamMomentsOptimizer


@keras.saving.register_keras_serializable(package="bert_tf")
class AdamWeightDecay(AdamMomentsOptimizer):
    """Adam without bias correction plus decoupled weight decay (the original BERT update).

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    u <- m / (sqrt(v) + eps) + weight_decay * w   (decay only where `uses_weight_decay`)
    w <- w - lr * u

    Gradients are clipped to global norm `global_clipnorm` (1.0 in BERT) before the update.
    """

    def __init__(self, learning_rate=1e-4, weight_decay_rate: float = 0.01,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-6,
                 exclude_from_weight_decay: Sequence[str] = DEFAULT_EXCLUDE,
                 global_clipnorm: float | None = 1.0, name: str = "adam_weight_decay",
                 **kwargs):
        super().__init__(learning_rate, weight_decay_rate, beta_1, beta_2, epsilon,
                         exclude_from_weight_decay, global_clipnorm, name, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        m, v = self._m[index], self._v[index]
        self.assign(m, self.beta_1 * m + (1.0 - self.beta_1) * gradient)
        self.assign(v, self.beta_2 * v + (1.0 - self.beta_2) * ops.square(gradient))
        update = m / (ops.sqrt(v) + self.epsilon)
        if self.weight_decay_rate and self._decays[index]:
            update = update + self.weight_decay_rate * variable
        self.assign_sub(variable, lr * update)
