"""BERT's Adam with decoupled weight decay, exactly as the original `AdamWeightDecayOptimizer`."""
from __future__ import annotations

import re
from typing import Sequence

import keras
from keras import ops

# The original excludes "LayerNorm", "layer_norm" and "bias"; bert_tf's variable paths spell
# every LayerNorm `..._layer_norm/...` / `layer_norm/...` and every bias `.../bias` or
# `output_bias`, so these patterns select the same variables.
DEFAULT_EXCLUDE = ("layer_norm", "LayerNorm", "bias")


def uses_weight_decay(path: str, exclude: Sequence[str]) -> bool:
    """True unless one of the `exclude` regexes matches the variable `path`."""
    return not any(re.search(pattern, path) for pattern in exclude)


@keras.saving.register_keras_serializable(package="bert_tf")
class AdamWeightDecay(keras.optimizers.Optimizer):
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
        super().__init__(learning_rate=learning_rate, global_clipnorm=global_clipnorm,
                         name=name, **kwargs)
        self.weight_decay_rate = weight_decay_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.exclude_from_weight_decay = tuple(exclude_from_weight_decay)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._m, self._v = self.add_optimizer_variables(variables, ["m", "v"])
        # Decided once from the Keras variable paths: update_step may only see backend values.
        self._decays = [uses_weight_decay(v.path, self.exclude_from_weight_decay)
                        for v in variables]

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

    def get_config(self):
        config = super().get_config()
        config.update(weight_decay_rate=self.weight_decay_rate, beta_1=self.beta_1,
                      beta_2=self.beta_2, epsilon=self.epsilon,
                      exclude_from_weight_decay=list(self.exclude_from_weight_decay))
        return config
