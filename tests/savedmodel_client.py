"""Loads an exported SavedModel the way a client would: TensorFlow (+ TF-Text ops), no bert_tf.

argv: export_dir output.npz kind. Runs the text and id signatures on fixed inputs.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402,F401  (registers the tokenizer ops)

TEXTS = ["The man who was Thursday.", "", "naïve café — Straße 東京 🙂 " * 3,
         "word " * 300, "Hello [MASK] world [MASK]!"]


def _plain(array):
    """Object arrays of bytes -> fixed-width bytes, which np.load reads without pickle."""
    return array.astype("S") if array.dtype == object else array


def main(export_dir: str, out_path: str, kind: str) -> None:
    assert "bert_tf" not in sys.modules
    model = tf.saved_model.load(export_dir)
    out = {}
    if kind == "span_labeler":
        result = model.signatures["serving_default"](question=tf.constant(TEXTS[:2]),
                                                    context=tf.constant(TEXTS[2:4]))
    else:
        result = model.signatures["serving_default"](text=tf.constant(TEXTS))
    out.update({f"text/{k}": _plain(v.numpy()) for k, v in result.items()})
    rng = np.random.default_rng(0)
    ids = {"input_ids": rng.integers(0, 100, (2, 8)).astype("int32"),
           "input_mask": np.array([[1] * 8, [1] * 5 + [0] * 3], "int32"),
           "segment_ids": np.zeros((2, 8), "int32")}
    if kind == "fill_mask":
        ids["masked_lm_positions"] = np.array([[1, 2], [3, 0]], "int32")
    result = model.signatures["serve_ids"](**{k: tf.constant(v) for k, v in ids.items()})
    out.update({f"ids/{k}": _plain(v.numpy()) for k, v in result.items()})
    out.update({f"in/{k}": v for k, v in ids.items()})
    np.savez(out_path, **out)
    assert "bert_tf" not in sys.modules


if __name__ == "__main__":
    main(*sys.argv[1:4])
