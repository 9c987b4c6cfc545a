"""Real faults in real processes: a killed or preempted pretraining run, resumed by running
the same command again, ends with exactly the weights, optimizer state and step of a run that
was never interrupted (data order and dropout masks resume too), and leaves no partial
checkpoint behind.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO_ROOT
from tests.pretraining_data import write_pretraining_shards

STEPS = 120  # 5 steps per loop and per checkpoint: 24 saves


def _pretrain_cmd(shards: str, out: str) -> list[str]:
    # --model=tiny keeps BERT's dropout (0.1), so resuming must restore the dropout seeds.
    return [sys.executable, "-m", "bert_tf.run_pretraining", "--model=tiny", "--vocab_size=64",
            f"--input_file={shards}", f"--output_dir={out}", "--max_seq_length=32",
            "--max_predictions_per_seq=5", "--train_batch_size=8", f"--num_train_steps={STEPS}",
            "--num_warmup_steps=2", "--save_checkpoints_steps=5", "--steps_per_loop=5",
            "--learning_rate=1e-3", "--keep_checkpoint_max=100"]


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_pretraining_shards(str(tmp_path_factory.mktemp("fault_shards")))


@pytest.fixture(scope="module")
def uninterrupted(shards, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("uninterrupted"))
    done = subprocess.run(_pretrain_cmd(shards, out), cwd=REPO_ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return tf.train.latest_checkpoint(os.path.join(out, "checkpoints"))


def _interrupt(proc: subprocess.Popen, checkpoints: str, mode: str) -> None:
    """Waits until 10 checkpoints are complete, then: `mid-save` SIGKILLs the process while a
    checkpoint is being written (its ckpt-N_temp folder exists), `mid-step` SIGKILLs it
    between saves, `sigterm` asks it to stop."""
    deadline = time.time() + 300
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        names = os.listdir(checkpoints) if os.path.isdir(checkpoints) else []
        # The `checkpoint` state file is written after a save's files: read what it names.
        latest = tf.train.latest_checkpoint(checkpoints) if "checkpoint" in names else None
        if latest and int(latest.rsplit("-", 1)[1]) >= 50:
            saving = any(n.endswith("_temp") for n in names)
            if mode == "mid-save" and saving:
                proc.send_signal(signal.SIGKILL)
                return
            if mode != "mid-save" and not saving:
                proc.send_signal(signal.SIGKILL if mode == "mid-step" else signal.SIGTERM)
                return
        time.sleep(0.001)
    raise AssertionError(f"no moment to interrupt ({mode}) came")


@pytest.mark.parametrize("mode", ["mid-step", "mid-save", "sigterm"])
def test_interrupted_pretraining_resumes_to_the_uninterrupted_result(mode, shards,
                                                                      uninterrupted, tmp_path):
    out = str(tmp_path / "run")
    checkpoints = os.path.join(out, "checkpoints")
    log_path = tmp_path / "interrupted.log"
    with open(log_path, "w") as log_file:  # a file, not a pipe nobody reads while we poll
        proc = subprocess.Popen(_pretrain_cmd(shards, out), cwd=REPO_ROOT, env=_env(),
                                stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _interrupt(proc, checkpoints, mode)
            proc.wait(timeout=120)
        finally:
            proc.kill()
            proc.wait()
    log = log_path.read_text()
    assert proc.returncode == (143 if mode == "sigterm" else -signal.SIGKILL), log[-3000:]

    # Every checkpoint the state file names is complete and reads back.
    state = tf.train.get_checkpoint_state(checkpoints)
    interrupted_at = int(state.model_checkpoint_path.rsplit("-", 1)[1])
    assert 50 <= interrupted_at < STEPS
    for path in state.all_model_checkpoint_paths:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)

    done = subprocess.run(_pretrain_cmd(shards, out), cwd=REPO_ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"at step {interrupted_at}." in done.stderr
    assert not [n for n in os.listdir(checkpoints) if n.endswith("_temp")]

    final = tf.train.latest_checkpoint(checkpoints)
    assert os.path.basename(final) == os.path.basename(uninterrupted) == f"ckpt-{STEPS}"
    ours, theirs = tf.train.load_checkpoint(final), tf.train.load_checkpoint(uninterrupted)
    names = sorted(n for n in theirs.get_variable_to_shape_map()
                   if n != "_CHECKPOINTABLE_OBJECT_GRAPH")
    assert sorted(n for n in ours.get_variable_to_shape_map()
                  if n != "_CHECKPOINTABLE_OBJECT_GRAPH") == names
    assert any(n.startswith("dropout_seeds/") for n in names)
    for name in names:  # weights, optimizer slots and step, dropout seeds: bit for bit
        np.testing.assert_array_equal(ours.get_tensor(name), theirs.get_tensor(name),
                                      err_msg=name)
