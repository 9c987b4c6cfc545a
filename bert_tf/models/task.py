"""Shared (de)serialisation for models that wrap a `BertEncoder`."""
from __future__ import annotations

from typing import Any

import keras


class TaskModel(keras.Model):
    """Base of the task models: their config holds the serialized encoder plus own arguments.

    Subclasses build a functional graph in `__init__(encoder, **own_args)` and implement
    `get_config` as `self._config_with_encoder(**own_args)`.
    """

    def _config_with_encoder(self, **own_args: Any) -> dict[str, Any]:
        config = {"name": self.name, "trainable": self.trainable,
                  "encoder": keras.saving.serialize_keras_object(self.encoder)}
        config.update(own_args)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
