"""GLUE fine-tuning end to end: ClassificationTask in the shared loop, and the run_classifier
script on the fixtures with a tiny model."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import bert_tf
from bert_tf import optimization
from bert_tf.training import trainer
from bert_tf.tasks.classification import ClassificationTask, evaluate_logits, predict
from data_prep.tasks import glue
from tests.conftest import REPO_ROOT, TEST_DATA

GLUE = os.path.join(TEST_DATA, "glue")
VOCAB = os.path.join(TEST_DATA, "vocab_uncased.txt")
CONFIG = bert_tf.BertConfig.from_preset("tiny", vocab_size=30522, max_position_embeddings=64)


def _features(task, split, tmp_path, folder, pad=1):
    return glue.cached_features(glue.get_task(task), split, os.path.join(GLUE, folder),
                                str(tmp_path / "features"), VOCAB, True, 32, pad)


@pytest.mark.parametrize("name, folder, split", [("stsb", "STS-B", "dev"),
                                                 ("cola", "CoLA", "dev")])
def test_loop_eval_equals_metrics_on_predictions(tmp_path, name, folder, split):
    task = glue.get_task(name)
    train = _features(name, "train", tmp_path, folder)
    dev = _features(name, split, tmp_path, folder, pad=4)
    cls = ClassificationTask(CONFIG, task.num_classes, 32, train_batch_size=4,
                             eval_batch_size=4, train_file=train.path, eval_file=dev.path,
                             metric_names=task.metrics)
    args = trainer.TrainingArgs(output_dir=str(tmp_path / "run"), train_batch_size=4,
                                 num_train_steps=3, steps_per_loop=3)
    result = trainer.run(cls, args, lambda: optimization.create_optimizer(1e-3, 3, 1))
    expected_keys = {"eval_loss", "eval_num_examples"} | {f"eval_{m}" for m in task.metrics}
    assert expected_keys <= set(result) and result["eval_num_examples"] == dev.num_examples

    # Same weights through `predict`: same metrics, padding dropped.
    model = cls.build_model("float32")
    tf.train.Checkpoint(model=model).read(
        tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))).expect_partial()
    out = predict(model, cls.dataset(dev.path, 4, is_training=False))
    assert out["logits"].shape == (dev.num_records, task.num_classes)
    again = evaluate_logits(out["logits"], out["label_ids"], out["is_real_example"],
                            task.metrics, task.is_regression)
    for key in expected_keys:
        assert again[key] == pytest.approx(result[key], abs=1e-5), key
    if task.is_regression:
        real = out["is_real_example"].astype(bool)
        x, y = out["logits"][real, 0], out["label_ids"][real]
        assert result["eval_spearman"] == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-5)


def _script(*flags, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
    return subprocess.run([sys.executable, "-m", "bert_tf.run_classifier", *flags],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_run_classifier_sst2_end_to_end(tmp_path):
    out = tmp_path / "sst2"
    common = ["--task_name=sst2", f"--data_dir={GLUE}/SST-2", f"--vocab_file={VOCAB}",
              "--model=tiny", f"--output_dir={out}", "--max_seq_length=32"]
    done = _script(*common, "--train_batch_size=8", "--num_train_steps=6", "--steps_per_loop=3",
                   "--eval_every_steps=3", "--do_predict")
    assert done.returncode == 0, done.stderr[-4000:]
    # 64 examples / batch 8 * 3 epochs would be 24 steps; --num_train_steps wins.
    assert "64 training examples, batch 8: 6 steps (0 warmup)" in done.stderr

    results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().split("\n")
                   if line)
    assert set(results) == {"eval_accuracy", "eval_loss", "eval_num_examples", "global_step"}
    assert results["global_step"] == "6" and float(results["eval_num_examples"]) == 21
    assert 0.0 <= float(results["eval_accuracy"]) <= 1.0

    submission = (out / "SST-2.tsv").read_text().splitlines()
    assert submission[0] == "index\tprediction" and len(submission) == 11
    assert [row.split("\t")[0] for row in submission[1:]] == [str(i) for i in range(10)]
    assert {row.split("\t")[1] for row in submission[1:]} <= {"0", "1"}
    probabilities = np.loadtxt(out / "test_results.tsv", delimiter="\t")
    assert probabilities.shape == (10, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    predicted = [int(row.split("\t")[1]) for row in submission[1:]]
    np.testing.assert_array_equal(predicted, probabilities.argmax(axis=1))
    assert (out / "best" / "best_metric.json").exists() and (out / "model.keras").exists()
    assert len(glob.glob(str(out / "features" / "*.tfrecord"))) == 3  # train, dev, test

    # A second run reuses the cached features and the trained weights.
    again = _script(*common, "--do_train=false", "--do_eval")
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stderr.count("Reusing") == 1 and "Wrote" not in again.stderr
    rerun = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().split("\n")
                 if line)
    assert rerun == results


def test_run_classifier_errors_name_the_file(tmp_path):
    done = _script("--task_name=rte", f"--data_dir={tmp_path}", f"--vocab_file={VOCAB}",
                   "--model=tiny", f"--output_dir={tmp_path / 'out'}")
    assert done.returncode != 0
    assert f"rte train file not found: {tmp_path}/train.tsv" in done.stderr


def test_flagfiles_parse_and_name_known_tasks():
    files = sorted(glob.glob(os.path.join(REPO_ROOT, "flags", "glue_*.flags")))
    names = {os.path.basename(f) for f in files}
    for task in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "ax",
                 "sst2_demo"):
        assert f"glue_{task}.flags" in names
    code = ("import sys\nfrom absl import flags\nfrom bert_tf import run_classifier\n"
            "from data_prep.tasks import glue\n"
            "for f in sys.argv[1:]:\n"
            "    flags.FLAGS(['x', '--flagfile=' + f])\n"
            "    glue.get_task(flags.FLAGS.task_name)\n"
            "    flags.FLAGS.unparse_flags()\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
    done = subprocess.run([sys.executable, "-c", code, *files], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
