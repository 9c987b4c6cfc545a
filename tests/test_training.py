"""The shared training loop: learning, resume, preemption, distribution, precision."""
import glob
import logging
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf import optimization
from bert_tf.training import cpu_allocator, distribute, trainer
from bert_tf.tasks.pretraining import PretrainingTask
from tests.conftest import REPO_ROOT
from tests.multiworker_driver import start_workers
from tests.pretraining_data import write_pretraining_shards

CONFIG = bert_tf.BertConfig.from_preset("tiny", vocab_size=64, max_position_embeddings=64,
                                        hidden_dropout_prob=0.0,
                                        attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_pretraining_shards(str(tmp_path_factory.mktemp("shards")))


def _task(shards, batch=16):
    return PretrainingTask(CONFIG, shards, batch, 32, 5, eval_input_file=shards,
                           eval_batch_size=16)


def _run(task, out, steps, **kwargs):
    args = trainer.TrainingArgs(output_dir=str(out), train_batch_size=task.train_batch_size,
                                 num_train_steps=steps, steps_per_loop=10,
                                 save_checkpoints_steps=10, max_eval_steps=4, **kwargs)
    return trainer.run(task, args, lambda: optimization.create_optimizer(1e-3, steps, 4))


def test_learns_and_writes_results(shards, tmp_path):
    # Seeded: the initial weights otherwise depend on which tests ran before in the process
    # (one order gave 0.21 accuracy after 80 steps; seeds 0-5 give 0.36-0.49).
    keras.utils.set_random_seed(0)
    before = _run(_task(shards), tmp_path / "zero", 1, do_train=False)
    after = _run(_task(shards), tmp_path / "run", 80)
    assert after["global_step"] == 80
    assert after["masked_lm_accuracy"] > before["masked_lm_accuracy"] + 0.2
    assert after["masked_lm_loss"] < before["masked_lm_loss"] - 1.0
    results = (tmp_path / "run" / "eval_results.txt").read_text()
    for key in ("masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy",
                "next_sentence_loss", "global_step"):
        assert f"{key} = " in results
    events = list((tmp_path / "run" / "summaries" / "train").iterdir())
    assert events, "TensorBoard summaries were not written"


def test_resume_continues_step_and_data_position(shards, tmp_path):
    task = _task(shards)
    _run(task, tmp_path, 20, do_eval=False)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-20")
    # A save killed half-way leaves data files but never updates the `checkpoint` state file,
    # so "latest" still names the last complete checkpoint and resume ignores the debris.
    (tmp_path / "checkpoints" / "ckpt-25.index").write_bytes(b"partial")
    (tmp_path / "checkpoints" / "ckpt-25.data-00000-of-00001").write_bytes(b"\0" * 10)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-20")
    resumed = _run(task, tmp_path, 30, do_eval=False)
    assert resumed["global_step"] == 30
    # Skipping k batches lands on the batch an uninterrupted run would see next.
    context = tf.distribute.InputContext()
    full = list(task.train_dataset(context, skip_batches=0).take(4))
    skipped = next(iter(task.train_dataset(context, skip_batches=3)))
    np.testing.assert_array_equal(full[3]["input_ids"], skipped["input_ids"])


def test_checkpoints_hold_the_dropout_seeds_and_older_ones_still_resume(shards, tmp_path,
                                                                         caplog):
    config = bert_tf.BertConfig.from_preset("tiny", vocab_size=64, max_position_embeddings=64)
    task = PretrainingTask(config, shards, 16, 32, 5)  # BERT's dropout (0.1)
    _run(task, tmp_path / "new", 5, do_eval=False)
    names = [n for n, _ in tf.train.list_variables(str(tmp_path / "new" / "checkpoints"))]
    model = task.build_model("float32")
    seeds = trainer.dropout_seed_states(model)
    # Embeddings, and per layer: attention probabilities, attention output, FFN output.
    assert len(seeds) == 3 * config.num_hidden_layers + 1
    assert sum(n.startswith("dropout_seeds/") for n in names) == len(seeds)
    # A checkpoint written without them (model and optimizer only) resumes, with a warning.
    optimizer = optimization.create_optimizer(1e-3, 10, 4)
    optimizer.build(model.trainable_variables)
    optimizer.iterations.assign(5)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model, optimizer=optimizer),
                               str(tmp_path / "old" / "checkpoints"), 2).save(5)
    with caplog.at_level(logging.WARNING):
        resumed = _run(task, tmp_path / "old", 10, do_eval=False)
    assert resumed["global_step"] == 10
    assert "holds no dropout seed states" in caplog.text


@pytest.mark.parametrize("bfc", [False, True])
def test_cpu_training_without_the_bfc_allocator_logs_how_to_turn_it_on(
        shards, tmp_path, monkeypatch, caplog, bfc):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("the hint is for CPU training")
    monkeypatch.setattr(cpu_allocator, "bfc_cpu_allocator_active", lambda: bfc)
    args = trainer.TrainingArgs(output_dir=str(tmp_path), train_batch_size=16,
                                 num_train_steps=1)
    with caplog.at_level(logging.INFO, logger="bert_tf.training.trainer"):
        trainer.Trainer(_task(shards), distribute.get_strategy(), args,
                         lambda: optimization.create_optimizer(1e-3, 1, 0))
    hints = [r for r in caplog.records if cpu_allocator.ENV_VAR in r.getMessage()]
    assert len(hints) == (0 if bfc else 1)


def test_accumulation_counts_optimizer_steps(shards, tmp_path):
    result = _run(_task(shards), tmp_path, 10, num_accumulation_steps=4, do_eval=False)
    assert result["global_step"] == 10
    with pytest.raises(ValueError, match="divisible"):
        _run(_task(shards, batch=6), tmp_path / "bad", 10, num_accumulation_steps=4)


def test_pretraining_task_builds_the_requested_last_layer(shards):
    for full in (False, True):
        task = PretrainingTask(CONFIG, shards, 8, 32, 5, full_last_layer=full)
        assert task.build_model("float32").full_last_layer is full


@pytest.mark.parametrize("dtype, jit", [("mixed_float16", False), ("mixed_bfloat16", True)])
def test_mixed_precision_and_xla_train(shards, tmp_path, dtype, jit):
    result = _run(_task(shards), tmp_path, 20, dtype=dtype, jit_compile=jit)
    assert np.isfinite(result["masked_lm_loss"]) and result["global_step"] == 20


def _pretrain_cmd(shards, out, steps):
    return [sys.executable, "-m", "bert_tf.run_pretraining", "--model=tiny", "--vocab_size=64",
            f"--input_file={shards}", f"--output_dir={out}", "--max_seq_length=32",
            "--max_predictions_per_seq=5", "--train_batch_size=8", f"--num_train_steps={steps}",
            "--num_warmup_steps=2", "--save_checkpoints_steps=5", "--steps_per_loop=5",
            "--learning_rate=1e-3"]


def _wait_for_checkpoint(out, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if tf.train.latest_checkpoint(os.path.join(out, "checkpoints")):
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}


def test_sigkill_then_restart_loses_no_completed_steps(shards, tmp_path):
    out = str(tmp_path)
    cmd = _pretrain_cmd(shards, out, 4000)
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for_checkpoint(out, proc)
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    killed_at = int(tf.train.latest_checkpoint(os.path.join(out, "checkpoints")).split("-")[-1])
    assert 0 < killed_at < 4000
    # Restart with a short target: the run resumes from the last checkpoint and finishes.
    final = killed_at + 10
    done = subprocess.run(_pretrain_cmd(shards, out, final), cwd=REPO_ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"at step {killed_at}" in done.stderr
    assert tf.train.latest_checkpoint(os.path.join(out, "checkpoints")).endswith(f"ckpt-{final}")


def test_sigterm_saves_before_exit(shards, tmp_path):
    out = str(tmp_path)
    cmd = _pretrain_cmd(shards, out, 4000) + ["--save_checkpoints_steps=1000"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    log = ""
    # Wait until training is under way (a progress line), then ask it to stop.
    while "step " not in log and time.time() < deadline:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, log
        log += line
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, log + rest
    latest = tf.train.latest_checkpoint(os.path.join(out, "checkpoints"))
    assert latest is not None and 0 < int(latest.split("-")[-1]) < 1000


def test_two_worker_processes_agree_on_weights(shards, tmp_path):
    prefix = str(tmp_path / "weights")
    procs = start_workers(shards, str(tmp_path / "out"), prefix, 6, _env(), REPO_ROOT)
    for index, p in enumerate(procs):
        assert p.wait(timeout=400) == 0, open(f"{prefix}_{index}.log").read()[-3000:]
    w0, w1 = (np.load(tmp_path / f"weights_{i}.npy") for i in range(2))
    np.testing.assert_array_equal(w0, w1)
    # Only the chief keeps checkpoints; the other worker's scratch copy is removed.
    assert tf.train.latest_checkpoint(str(tmp_path / "out" / "checkpoints")).endswith("ckpt-6")
    assert not (tmp_path / "out" / ".worker_1_checkpoints").exists()


def test_phase2_continues_at_longer_sequences(tmp_path):
    from bert_tf.checkpoints.init_checkpoint import checkpoint_format, init_from_checkpoint
    short = write_pretraining_shards(str(tmp_path / "seq32"), seq_len=32)
    long = write_pretraining_shards(str(tmp_path / "seq64"), seq_len=64, max_pred=10)
    phase1 = PretrainingTask(CONFIG, short, 8, 32, 5)
    _run(phase1, tmp_path / "phase1", 10, do_eval=False)
    assert checkpoint_format(str(tmp_path / "phase1" / "checkpoints"))[0] == "bert_tf"
    # A direct full restore of phase 1 gives the reference weights (variables may be stored
    # under the optimizer's path in the object graph, so compare through a restore).
    phase1_model = phase1.build_model("float32")
    fresh = phase1_model.encoder.position_embeddings.embeddings.numpy()
    tf.train.Checkpoint(model=phase1_model).read(tf.train.latest_checkpoint(
        str(tmp_path / "phase1" / "checkpoints"))).expect_partial()
    trained = phase1_model.encoder.position_embeddings.embeddings.numpy()
    assert not np.array_equal(fresh, trained)
    phase2 = PretrainingTask(CONFIG, long, 8, 64, 10, eval_input_file=long)
    seen = {}

    def init(model):
        init_from_checkpoint(model, str(tmp_path / "phase1" / "checkpoints"))
        seen["pos"] = model.encoder.position_embeddings.embeddings.numpy()

    args = trainer.TrainingArgs(output_dir=str(tmp_path / "phase2"), train_batch_size=8,
                                 num_train_steps=5, steps_per_loop=5, max_eval_steps=2)
    result = trainer.run(phase2, args, lambda: optimization.create_optimizer(1e-3, 5, 1),
                          init_fn=init)
    assert result["global_step"] == 5 and np.isfinite(result["masked_lm_loss"])
    np.testing.assert_array_equal(seen["pos"], trained)


def test_init_checkpoint_errors_name_the_path(tmp_path):
    from bert_tf.checkpoints.init_checkpoint import init_from_checkpoint
    model = bert_tf.BertEncoder.from_bert_config(CONFIG)
    with pytest.raises(ValueError, match="no checkpoint"):
        init_from_checkpoint(model, str(tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        init_from_checkpoint(model, str(tmp_path / "nothing" / "ckpt-3"))


def test_truncated_input_shard_is_named_with_its_offset(tmp_path):
    pattern = write_pretraining_shards(str(tmp_path / "data"))
    files = sorted(glob.glob(pattern))
    with open(files[1], "rb") as f:
        data = f.read()
    with open(files[1], "wb") as f:
        f.write(data[: len(data) * 3 // 5])  # what a copy cut short leaves
    with pytest.raises(ValueError) as raised:
        _run(_task(pattern), tmp_path / "run", 40)
    message = str(raised.value)
    prefix = f"corrupt TFRecord input: {files[1]}: "
    assert message.startswith(prefix), message
    assert re.fullmatch(r"truncated record at \d+", message[len(prefix):]), message
