"""Learning is real: a tiny BERT pretrained on the shipped corpus beats its step-0 accuracy.

Slow (a few minutes on 2 cores): run with `python -m pytest -m slow`.
"""
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, TEST_DATA

pytestmark = pytest.mark.slow


def _run(args, timeout=1200):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _results(path):
    with open(path) as f:
        return {k: float(v) for k, v in (line.strip().split(" = ") for line in f)}


def test_tiny_model_learns_on_shipped_corpus(tmp_path):
    vocab = os.path.join(TEST_DATA, "vocab_uncased.txt")
    data = tmp_path / "data"
    _run(["data_prep.create_pretraining_data",
          f"--input_file={REPO_ROOT}/data/corpus_sentences/*.txt", f"--vocab_file={vocab}",
          f"--output_dir={data}", "--num_shards=5", "--dupe_factor=2", "--num_workers=2"])
    train = str(data / "pretraining_data-0000[0-3]-of-00005.tfrecord")
    held_out = str(data / "pretraining_data-00004-of-00005.tfrecord")
    common = ["bert_tf.run_pretraining", "--model=tiny", f"--vocab_file={vocab}",
              f"--input_file={train}", f"--eval_input_file={held_out}", "--train_batch_size=32",
              "--eval_batch_size=64", "--max_eval_steps=10", "--learning_rate=1e-3",
              "--num_warmup_steps=60", "--steps_per_loop=50", "--jit_compile=true"]
    _run(common + [f"--output_dir={tmp_path / 'step0'}", "--do_train=false",
                   "--num_train_steps=600"])
    _run(common + [f"--output_dir={tmp_path / 'trained'}", "--num_train_steps=600"])
    before = _results(tmp_path / "step0" / "eval_results.txt")
    after = _results(tmp_path / "trained" / "eval_results.txt")
    assert after["global_step"] == 600
    # Frequent-token prediction alone takes accuracy well above a random model's ~0.
    assert after["masked_lm_accuracy"] > before["masked_lm_accuracy"] + 0.05, (before, after)
    assert after["masked_lm_loss"] < before["masked_lm_loss"] - 2.0, (before, after)
