"""Linear warmup followed by polynomial decay, as the original `optimization.py`."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="bert_tf")
class WarmupPolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = peak * step / warmup_steps while step < warmup_steps, else
    (peak - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end.

    As in the original, the decay is computed from step 0 (not from the end of warmup) and the
    warmup replaces it while step < warmup_steps; `decay_steps` is normally num_train_steps.
    `step` is a scalar int (the optimizer's iteration count); returns float32 scalar.
    """

    def __init__(self, learning_rate: float, decay_steps: int, warmup_steps: int = 0,
                 end_learning_rate: float = 0.0, power: float = 1.0):
        if decay_steps <= 0:
            raise ValueError(f"decay_steps (num_train_steps) must be > 0, got {decay_steps}.")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")
        self.learning_rate = float(learning_rate)
        self.decay_steps = int(decay_steps)
        self.warmup_steps = int(warmup_steps)
        self.end_learning_rate = float(end_learning_rate)
        self.power = float(power)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        done = ops.minimum(step, float(self.decay_steps)) / float(self.decay_steps)
        decayed = (self.learning_rate - self.end_learning_rate) * \
            ops.power(1.0 - done, self.power) + self.end_learning_rate
        if self.warmup_steps == 0:
            return decayed
        warmup = self.learning_rate * step / float(self.warmup_steps)
        return ops.where(step < float(self.warmup_steps), warmup, decayed)

    def get_config(self):
        return dict(learning_rate=self.learning_rate, decay_steps=self.decay_steps,
                    warmup_steps=self.warmup_steps, end_learning_rate=self.end_learning_rate,
                    power=self.power)
