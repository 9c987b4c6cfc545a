"""BERT's optimizers and learning-rate schedule."""
from __future__ import annotations

from bert_tf.optimization.adamw import AdamWeightDecay
from bert_tf.optimization.base import DEFAULT_EXCLUDE, uses_weight_decay
from bert_tf.optimization.lamb import Lamb
from bert_tf.optimization.schedule import WarmupPolynomialDecay

OPTIMIZERS = ("adamw", "lamb")


def create_optimizer(learning_rate: float, num_train_steps: int, num_warmup_steps: int,
                     optimizer: str = "adamw", weight_decay_rate: float = 0.01,
                     end_learning_rate: float = 0.0, power: float = 1.0,
                     global_clipnorm: float | None = 1.0):
    """The original's `create_optimizer`: warmup + polynomial decay feeding AdamW or LAMB."""
    schedule = WarmupPolynomialDecay(learning_rate, num_train_steps, num_warmup_steps,
                                     end_learning_rate, power)
    if optimizer == "adamw":
        return AdamWeightDecay(schedule, weight_decay_rate=weight_decay_rate,
                               global_clipnorm=global_clipnorm)
    if optimizer == "lamb":
        return Lamb(schedule, weight_decay_rate=weight_decay_rate,
                    global_clipnorm=global_clipnorm)
    raise ValueError(f"Unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}.")


__all__ = ["DEFAULT_EXCLUDE", "OPTIMIZERS", "AdamWeightDecay", "Lamb", "WarmupPolynomialDecay",
           "create_optimizer", "uses_weight_decay"]
