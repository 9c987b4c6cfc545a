"""run_squad end to end on the crafted fixtures with a tiny model: training, periodic and final
prediction, the three JSON files, eval_results.txt, cached features, predict-only reruns,
v1.1, bad input and the flagfiles."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf import optimization
from bert_tf.tasks.squad import metrics as squad_metrics
from bert_tf.training import trainer
from bert_tf.tasks.squad.postprocess import NO_SPAN_NULL_ODDS
from bert_tf.tasks.squad.task import SquadTask, predict_logits
from data_prep.tasks import squad
from data_prep.tasks.squad_examples import load_squad_json
from tests.conftest import REPO_ROOT, TEST_DATA

SQUAD = os.path.join(TEST_DATA, "squad")
VOCAB = os.path.join(TEST_DATA, "vocab_uncased.txt")
SMALL = ["--model=tiny", f"--vocab_file={VOCAB}", "--max_seq_length=64", "--doc_stride=32",
         "--max_query_length=16", "--predict_batch_size=4"]
V2_KEYS = {"exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact",
           "NoAns_f1", "NoAns_total", "best_exact", "best_exact_thresh", "best_f1",
           "best_f1_thresh", "global_step"}


def _script(*flags, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
    return subprocess.run([sys.executable, "-m", "bert_tf.run_squad", *flags], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def _results(out):
    lines = (out / "eval_results.txt").read_text().splitlines()
    return {k: float(v) for k, v in (line.split(" = ") for line in lines)}


def _json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_squad_task_in_the_loop(tmp_path):
    """Loss = mean of the start/end cross-entropies; the loop's gathered eval logits are the
    model's (same as `predict_logits`), padding records included."""
    config = bert_tf.BertConfig.from_preset("tiny", vocab_size=30522, max_position_embeddings=64)
    source = os.path.join(SQUAD, "tiny-v2.0.json")
    kwargs = dict(max_seq_length=64, doc_stride=32, max_query_length=16,
                  version_2_with_negative=True)
    train = squad.squad_data(source, str(tmp_path / "f"), VOCAB, True, **kwargs)
    dev = squad.squad_data(source, str(tmp_path / "f"), VOCAB, False, pad_to_multiple=4,
                           **kwargs)
    seen = {}

    def evaluate(unique_ids, start_logits, end_logits):
        seen.update(ids=unique_ids, start=start_logits, end=end_logits)
        return {"rows": float(len(unique_ids))}

    task = SquadTask(config, 64, 4, 4, train.path, dev.path, evaluate)
    args = trainer.TrainingArgs(output_dir=str(tmp_path / "run"), train_batch_size=4,
                                 num_train_steps=2, steps_per_loop=2)
    result = trainer.run(task, args, lambda: optimization.create_optimizer(1e-3, 2, 0))
    assert result["rows"] == dev.num_records and seen["start"].shape == (dev.num_records, 64)

    model = task.build_model("float32")
    tf.train.Checkpoint(model=model).read(
        tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))).expect_partial()
    out = predict_logits(model, task.dataset(dev.path, 4, is_training=False))
    np.testing.assert_array_equal(out["unique_ids"], seen["ids"])
    np.testing.assert_allclose(out["start_logits"], seen["start"], atol=1e-5)
    np.testing.assert_allclose(out["end_logits"], seen["end"], atol=1e-5)
    assert sorted(out["unique_ids"])[-dev.num_features:] == [f.unique_id for f in dev.features]

    batch = next(iter(task.dataset(train.path, 4, is_training=False)))
    loss, _ = task.compute_loss(model, batch, training=False)
    logits = model({k: batch[k] for k in ("input_ids", "input_mask", "segment_ids")})
    nll = []
    for name, positions in (("start_logits", "start_positions"), ("end_logits", "end_positions")):
        x = logits[name].numpy().astype(np.float64)
        log_probs = x - np.logaddexp.reduce(x, axis=-1, keepdims=True)
        nll.append(-log_probs[np.arange(4), batch[positions].numpy()].mean())
    assert float(loss) == pytest.approx(sum(nll) / 2, rel=1e-5)


def test_run_squad_v2_end_to_end(tmp_path):
    out = tmp_path / "v2"
    data = os.path.join(SQUAD, "tiny-v2.0.json")
    done = _script(*SMALL, f"--train_file={data}", f"--predict_file={data}", "--do_train",
                   "--do_predict", "--version_2_with_negative", f"--output_dir={out}",
                   "--train_batch_size=4", "--num_train_steps=4", "--steps_per_loop=2",
                   "--eval_every_steps=2", "--learning_rate=1e-3")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "13 training examples" in done.stderr and "4 steps (0 warmup)" in done.stderr

    predictions = _json(out / "predictions.json")
    nbest = _json(out / "nbest_predictions.json")
    odds = _json(out / "null_odds.json")
    ids = [qa["id"] for a in load_squad_json(data) for p in a["paragraphs"] for qa in p["qas"]]
    assert list(predictions) == list(nbest) == list(odds) == ids
    for qid in ids:
        entries = nbest[qid]
        assert 1 <= len(entries) <= 20 and "" in [e["text"] for e in entries]
        assert sum(e["probability"] for e in entries) == pytest.approx(1.0)
        # Best first; the null answer may be appended after the n-best as the last entry.
        scores = [e["start_logit"] + e["end_logit"] for e in entries][:-1]
        assert scores == sorted(scores, reverse=True)
        # The default threshold 0.0: "" exactly when the null odds are positive.
        best = next((e["text"] for e in entries if e["text"]), None)
        assert predictions[qid] == ("" if odds[qid] > 0.0 else best)
        if best is None:
            assert odds[qid] == NO_SPAN_NULL_ODDS

    results = _results(out)
    assert set(results) == V2_KEYS and results["global_step"] == 4
    assert (results["total"], results["HasAns_total"], results["NoAns_total"]) == (13, 10, 3)
    # eval_results.txt is the official v2.0 scoring of the files just written.
    again = squad_metrics.evaluate_v2(load_squad_json(data), predictions, odds,
                                      na_prob_thresh=0.0)
    assert {k: pytest.approx(v) for k, v in again.items()} == {
        k: v for k, v in results.items() if k != "global_step"}
    assert (out / "best" / "best_metric.json").exists()  # --eval_every_steps keeps the best f1
    assert (out / "model.keras").exists()
    assert len(glob.glob(str(out / "features" / "*.tfrecord"))) == 2  # train + predict

    # Predict only, answering more (a threshold above every odds): the cached features and the
    # trained weights are reused; predictions change, global_step does not.
    rerun = _script(*SMALL, f"--predict_file={data}", "--do_predict", "--do_train=false",
                    "--version_2_with_negative", f"--output_dir={out}",
                    "--null_score_diff_threshold=1e10")
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert "Reusing" in rerun.stderr and "Wrote " + str(out / "features") not in rerun.stderr
    answered = _json(out / "predictions.json")
    assert all(answered[q] for q in ids if odds[q] != NO_SPAN_NULL_ODDS)
    assert _results(out)["global_step"] == 4


def test_run_squad_v1_end_to_end_and_predict_file_without_answers(tmp_path):
    out = tmp_path / "v1"
    data = os.path.join(SQUAD, "tiny-v1.1.json")
    done = _script(*SMALL, f"--train_file={data}", f"--predict_file={data}", "--do_train",
                   "--do_predict", f"--output_dir={out}", "--train_batch_size=3",
                   "--num_train_steps=2", "--steps_per_loop=2")
    assert done.returncode == 0, done.stderr[-4000:]
    results = _results(out)
    assert set(results) == {"exact_match", "f1", "global_step"}
    predictions = _json(out / "predictions.json")
    assert len(predictions) == 10 and all(isinstance(v, str) and v for v in predictions.values())
    assert not (out / "null_odds.json").exists()
    expected = squad_metrics.evaluate_v1(load_squad_json(data), predictions)
    assert results["exact_match"] == pytest.approx(expected["exact_match"])
    assert results["f1"] == pytest.approx(expected["f1"])

    # A test file (no gold answers): predictions are written, nothing is scored.
    test_file = tmp_path / "test.json"
    articles = load_squad_json(data)
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa.pop("answers")
    test_file.write_text(json.dumps({"version": "1.1", "data": articles}))
    blind = _script(*SMALL, f"--predict_file={test_file}", "--do_predict", "--do_train=false",
                    f"--output_dir={out}")
    assert blind.returncode == 0, blind.stderr[-4000:]
    assert "has no gold answers" in blind.stderr
    assert set(_json(out / "predictions.json")) == set(predictions)
    assert set(_results(out)) == {"global_step"}


def test_run_squad_bad_input(tmp_path):
    malformed = os.path.join(SQUAD, "malformed.json")
    done = _script(*SMALL, f"--train_file={malformed}", f"--output_dir={tmp_path / 'a'}")
    assert done.returncode != 0
    assert f"{malformed}: line 5 column 42: invalid JSON" in done.stderr
    done = _script(*SMALL, "--do_predict", f"--output_dir={tmp_path / 'b'}",
                   f"--train_file={malformed}")
    assert done.returncode != 0 and "--do_predict needs --predict_file" in done.stderr


def test_flagfiles_parse():
    files = [os.path.join(REPO_ROOT, "flags", f"squad_{name}.flags")
             for name in ("v1.1", "v2.0", "v2.0_demo")]
    code = ("import sys\nfrom absl import flags\nfrom bert_tf import run_squad\n"
            "for f in sys.argv[1:]:\n"
            "    flags.FLAGS(['x', '--flagfile=' + f])\n"
            "    assert flags.FLAGS.do_train and flags.FLAGS.do_predict, f\n"
            "    assert flags.FLAGS.train_file and flags.FLAGS.predict_file, f\n"
            "    flags.FLAGS.unparse_flags()\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
    done = subprocess.run([sys.executable, "-c", code, *files], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    demo = open(files[2]).read()
    assert "--train_file=data/squad/dev-v2.0-2articles.json" in demo
    assert os.path.exists(os.path.join(REPO_ROOT, "data", "squad", "dev-v2.0-2articles.json"))
