"""What BERT's AdamW and LAMB share: Adam moments, decay exclusions, serialisation."""
from __future__ import annotations

import re
from typing import Sequence

import keras

# The original excludes "LayerNorm", "layer_norm" and "bias"; bert_tf's variable paths spell
# every LayerNorm `..._layer_norm/...` / `layer_norm/...` and every bias `.../bias` or
# `output_bias`, so these patterns select the same variables.
DEFAULT_EXCLUDE = ("layer_norm", "LayerNorm", "bias")


def uses_weight_decay(path: str, exclude: Sequence[str]) -> bool:
    """True unless one of the `exclude` regexes matches the variable `path`."""
    return not any(re.search(pattern, path) for pattern in exclude)


class AdamMomentsOptimizer(keras.optimizers.Optimizer):
    """Holds first/second moments `m`, `v` per variable and which variables decay.

    Subclasses implement `update_step`; `self._m[i]`, `self._v[i]` and `self._decays[i]` are
    indexed by `self._get_variable_index(variable)`.
    """

    def __init__(self, learning_rate, weight_decay_rate: float, beta_1: float, beta_2: float,
                 epsilon: float, exclude_from_weight_decay: Sequence[str],
                 global_clipnorm: float | None, name: str, **kwargs):
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

    def get_config(self):
        config = super().get_config()
        config.update(weight_decay_rate=self.weight_decay_rate, beta_1=self.beta_1,
                      beta_2=self.beta_2, epsilon=self.epsilon,
                      exclude_from_weight_decay=list(self.exclude_from_weight_decay))
        return config
