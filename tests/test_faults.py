"""Real faults in real processes: a killed or preempted training run, resumed by running the
same command again, ends with exactly the weights, optimizer state, step and metrics of a run
that was never interrupted (data order and dropout masks resume too), and leaves no partial
checkpoint behind. Pretraining is interrupted three ways (and a two-worker run loses a
worker); each fine-tuning command is
SIGKILLed mid-epoch (slow tests: `python -m pytest -m slow tests/test_faults.py`).
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
from tests.multiworker_driver import start_workers
from tests.pretraining_data import write_pretraining_shards

DATA = os.path.join(REPO_ROOT, "tests", "data")
VOCAB = os.path.join(DATA, "vocab_uncased.txt")
STEPS = 120  # 5 steps per loop and per checkpoint: 24 saves
# Every job keeps BERT's dropout (0.1): resuming must restore the dropout seeds.
COMMON = ["--model=tiny", f"--num_train_steps={STEPS}", "--save_checkpoints_steps=5",
          "--steps_per_loop=5", "--keep_checkpoint_max=100", "--learning_rate=1e-3"]
SQUAD_V2 = os.path.join(DATA, "squad", "tiny-v2.0.json")


def _job_args(job: str, shards: str) -> tuple[str, list[str], str | None]:
    """(module, flags without --output_dir, the results file that must match)."""
    if job == "pretraining":
        return "bert_tf.run_pretraining", COMMON + [
            "--vocab_size=64", f"--input_file={shards}", "--max_seq_length=32",
            "--max_predictions_per_seq=5", "--train_batch_size=8", "--num_warmup_steps=2"], None
    if job == "classifier":
        return "bert_tf.run_classifier", COMMON + [
            "--task_name=sst2", f"--data_dir={DATA}/glue/SST-2", f"--vocab_file={VOCAB}",
            "--max_seq_length=32", "--train_batch_size=8"], "eval_results.txt"
    if job == "squad":
        return "bert_tf.run_squad", COMMON + [
            f"--vocab_file={VOCAB}", "--max_seq_length=64", "--doc_stride=32",
            "--max_query_length=16", "--predict_batch_size=4", f"--train_file={SQUAD_V2}",
            f"--predict_file={SQUAD_V2}", "--do_train", "--do_predict",
            "--version_2_with_negative", "--train_batch_size=4"], "eval_results.txt"
    if job == "tagger":
        return "bert_tf.run_tagger", COMMON + [
            f"--vocab_file={VOCAB}", f"--train_file={DATA}/conll/train.txt",
            f"--eval_file={DATA}/conll/dev.txt", "--do_train", "--do_eval",
            "--max_seq_length=32", "--train_batch_size=16"], "eval_results.txt"
    raise ValueError(job)


def _command(job: str, shards: str, out: str) -> list[str]:
    module, flags, _ = _job_args(job, shards)
    return [sys.executable, "-m", module, *flags, f"--output_dir={out}"]


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_pretraining_shards(str(tmp_path_factory.mktemp("fault_shards")))


@pytest.fixture(scope="module")
def uninterrupted(shards, tmp_path_factory):
    """job -> output_dir of an uninterrupted run (run once per job, on first use)."""
    runs = {}

    def run(job: str) -> str:
        if job not in runs:
            out = str(tmp_path_factory.mktemp(f"uninterrupted_{job}"))
            done = subprocess.run(_command(job, shards, out), cwd=REPO_ROOT, env=_env(),
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
            runs[job] = out
        return runs[job]
    return run


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


CASES = [("pretraining", "mid-step"), ("pretraining", "mid-save"), ("pretraining", "sigterm"),
         pytest.param("classifier", "mid-step", marks=pytest.mark.slow),
         pytest.param("squad", "mid-step", marks=pytest.mark.slow),
         pytest.param("tagger", "mid-step", marks=pytest.mark.slow)]


@pytest.mark.parametrize("job,mode", CASES)
def test_interrupted_run_resumes_to_the_uninterrupted_result(job, mode, shards, uninterrupted,
                                                             tmp_path):
    out = str(tmp_path / "run")
    checkpoints = os.path.join(out, "checkpoints")
    log_path = tmp_path / "interrupted.log"
    with open(log_path, "w") as log_file:  # a file, not a pipe nobody reads while we poll
        proc = subprocess.Popen(_command(job, shards, out), cwd=REPO_ROOT, env=_env(),
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

    done = subprocess.run(_command(job, shards, out), cwd=REPO_ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"at step {interrupted_at}." in done.stderr
    assert not [n for n in os.listdir(checkpoints) if n.endswith("_temp")]

    reference = uninterrupted(job)
    final = tf.train.latest_checkpoint(checkpoints)
    expected = tf.train.latest_checkpoint(os.path.join(reference, "checkpoints"))
    assert os.path.basename(final) == os.path.basename(expected) == f"ckpt-{STEPS}"
    ours, theirs = tf.train.load_checkpoint(final), tf.train.load_checkpoint(expected)
    names = sorted(n for n in theirs.get_variable_to_shape_map()
                   if n != "_CHECKPOINTABLE_OBJECT_GRAPH")
    assert sorted(n for n in ours.get_variable_to_shape_map()
                  if n != "_CHECKPOINTABLE_OBJECT_GRAPH") == names
    assert any(n.startswith("dropout_seeds/") for n in names)
    for name in names:  # weights, optimizer slots and step, dropout seeds: bit for bit
        np.testing.assert_array_equal(ours.get_tensor(name), theirs.get_tensor(name),
                                      err_msg=name)
    results = _job_args(job, shards)[2]
    if results:
        with open(os.path.join(out, results)) as a, open(os.path.join(reference, results)) as b:
            assert a.read() == b.read()


def _start_workers(shards: str, out: str, prefix: str, steps: int) -> list[subprocess.Popen]:
    return start_workers(shards, out, prefix, steps, _env(), REPO_ROOT)


@pytest.mark.slow
def test_two_worker_run_with_one_worker_killed_resumes_to_the_uninterrupted_result(
        shards, tmp_path):
    steps = 90  # 3 per loop and per checkpoint
    whole = _start_workers(shards, str(tmp_path / "whole"), str(tmp_path / "whole"), steps)
    assert [p.wait(timeout=600) for p in whole] == [0, 0]

    out = str(tmp_path / "run")
    checkpoints = os.path.join(out, "checkpoints")
    procs = _start_workers(shards, out, str(tmp_path / "first"), steps)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            assert procs[0].poll() is None and procs[1].poll() is None
            latest = (tf.train.latest_checkpoint(checkpoints)
                      if os.path.exists(os.path.join(checkpoints, "checkpoint")) else None)
            if latest and int(latest.rsplit("-", 1)[1]) >= 30:
                break
            time.sleep(0.005)
        procs[1].send_signal(signal.SIGKILL)
        # The survivor's collective fails: it exits with an error instead of hanging.
        assert procs[0].wait(timeout=120) != 0
    finally:
        for p in procs:
            p.kill()
            p.wait()
    interrupted_at = int(tf.train.latest_checkpoint(checkpoints).rsplit("-", 1)[1])
    assert 30 <= interrupted_at < steps

    again = _start_workers(shards, out, str(tmp_path / "again"), steps)
    assert [p.wait(timeout=600) for p in again] == [0, 0]
    for index in range(2):
        assert f"starting at step {interrupted_at}\n" in (
            tmp_path / f"again_{index}.log").read_text()
    for index in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"again_{index}.npy"),
                                      np.load(tmp_path / f"whole_{index}.npy"))
