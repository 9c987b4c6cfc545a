"""Run google-research/bert's own create_pretraining_data.py (PyPI bert-tensorflow==1.0.4).

    python benchmarks/run_original.py --input_file=... --output_file=... --vocab_file=... \
        [--max_seq_length=128 --max_predictions_per_seq=20 --masked_lm_prob=0.15 ...]

The flags are the original script's own. The installed files are not edited: this module
only makes sure that the TF1 names the original uses (`tf.flags`, `tf.gfile`,
`tf.python_io`, `tf.logging`, `tf.app`) exist on the `tensorflow.compat.v1` module it
imports (and on `tensorflow` itself, for the older releases that import it directly),
mapping any that TensorFlow 2.21 lacks to absl flags and the tf.compat.v1 / tf.io
equivalents, before `bert.create_pretraining_data` is imported; then it runs that module's
`main` through `tf.compat.v1.app.run`, as `python create_pretraining_data.py` would.

bert-tensorflow is installed with `pip install --no-deps bert-tensorflow==1.0.4` (its only
required dependency, six, comes with TensorFlow's environment here).
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def patch_tensorflow() -> list[str]:
    """Give tensorflow and tensorflow.compat.v1 the TF1 names; returns the names it added."""
    from absl import flags as absl_flags
    import tensorflow as tf

    v1 = tf.compat.v1
    names = {
        "flags": lambda: getattr(v1, "flags", None) or absl_flags,
        "gfile": lambda: getattr(v1, "gfile", None) or tf.io.gfile,
        "python_io": lambda: v1.python_io,
        "logging": lambda: v1.logging,
        "app": lambda: v1.app,
    }
    added = []
    for module in (v1, tf):
        for name, target in names.items():
            if not hasattr(module, name):
                setattr(module, name, target())
                added.append(f"{module.__name__}.{name}")
    return added


def main() -> None:
    patch_tensorflow()
    import tensorflow as tf
    from bert import create_pretraining_data as original

    for name in ("input_file", "output_file", "vocab_file"):
        original.flags.mark_flag_as_required(name)
    tf.compat.v1.app.run(original.main, argv=sys.argv)


if __name__ == "__main__":
    main()
