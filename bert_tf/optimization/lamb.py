"""LAMB (You et al., 2019): Adam with a per-layer trust ratio, for large-batch pretraining."""
from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from bert_tf.optimization.base import DEFAULT_EXCLUDE, AdamMomentsOptimizer


@keras.saving.register_keras_serializable(package="bert_tf")
class Lamb(AdamMomentsOptimizer):
    """m, v with bias correction; u = m_hat / (sqrt(v_hat) + eps) + wd * w;
    w <- w - lr * r * u with trust ratio r = ||w|| / ||u|| (1 when either norm is 0, and for
    variables excluded from weight decay — LayerNorm and biases — as in the reference LAMB).
    """

    def __init__(self, learning_rate=1e-3, weight_decay_rate: float = 0.01,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-6,
                 exclude_from_weight_decay: Sequence[str] = DEFAULT_EXCLUDE,
                 global_clipnorm: float | None = 1.0, name: str = "lamb", **kwargs):
        super().__init__(learning_rate, weight_decay_rate, beta_1, beta_2, epsilon,
                         exclude_from_weight_decay, global_clipnorm, name, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        index = self._get_variable_index(variable)
        m, v = self._m[index], self._v[index]
        self.assign(m, self.beta_1 * m + (1.0 - self.beta_1) * gradient)
        self.assign(v, self.beta_2 * v + (1.0 - self.beta_2) * ops.square(gradient))
        m_hat = m / (1.0 - ops.power(self.beta_1, step))
        v_hat = v / (1.0 - ops.power(self.beta_2, step))
        update = m_hat / (ops.sqrt(v_hat) + self.epsilon)
        ratio = 1.0
        if self._decays[index]:
            if self.weight_decay_rate:
                update = update + self.weight_decay_rate * variable
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            u_norm = ops.sqrt(ops.sum(ops.square(update)))
            ratio = ops.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, 1.0)
        self.assign_sub(variable, lr * ratio * update)
