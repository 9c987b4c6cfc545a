"""trainer.run: periodic evaluation and the best checkpoint kept by a task metric."""
import json

import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf import optimization
from bert_tf.training import trainer
from bert_tf.tasks.pretraining import PretrainingTask
from tests.pretraining_data import write_pretraining_shards

CONFIG = bert_tf.BertConfig.from_preset("tiny", vocab_size=64, max_position_embeddings=64)


class ScriptedScore(PretrainingTask):
    """Pretraining whose eval also reports `score`, taken in turn from a script."""

    def __init__(self, shards, scores):
        super().__init__(CONFIG, shards, 16, 32, 5, eval_input_file=shards, eval_batch_size=16)
        self.scores = list(scores)

    def finalize_eval(self, totals):
        return {**super().finalize_eval(totals), "score": self.scores.pop(0)}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_pretraining_shards(str(tmp_path_factory.mktemp("shards")))


def _run(task, out, steps, **kwargs):
    args = trainer.TrainingArgs(output_dir=str(out), train_batch_size=16, num_train_steps=steps,
                                 steps_per_loop=10, save_checkpoints_steps=10,
                                 max_eval_steps=2, eval_every_steps=10, best_metric="score",
                                 **kwargs)
    return trainer.run(task, args, lambda: optimization.create_optimizer(1e-3, steps, 2))


def _kept(out):
    with open(out / "best" / "best_metric.json") as f:
        return json.load(f)


def _weights(task, prefix):
    model = task.build_model("float32")
    tf.train.Checkpoint(model=model).read(prefix).assert_existing_objects_matched() \
        .expect_partial()
    return model.get_weights()


def test_evaluates_periodically_and_keeps_the_best(shards, tmp_path):
    task = ScriptedScore(shards, [0.3, 0.7, 0.5])  # evals at steps 10, 20 and 30 (final)
    result = _run(task, tmp_path, 30)
    assert not task.scores, "expected an eval at steps 10, 20 and 30"
    assert result["score"] == 0.5 and result["global_step"] == 30
    assert _kept(tmp_path) == {"metric": "score", "value": 0.7, "mode": "max", "global_step": 20}
    # best/ holds exactly the step-20 weights.
    best = _weights(task, trainer.best_checkpoint(str(tmp_path)))
    step20 = _weights(task, str(tmp_path / "checkpoints" / "ckpt-20"))
    step30 = _weights(task, str(tmp_path / "checkpoints" / "ckpt-30"))
    for a, b in zip(best, step20, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(best, step30))
    assert not list(tmp_path.glob(".best.tmp-*")) and not (tmp_path / "best.old").exists()

    # A resumed run compares with the kept value: 0.6 does not replace 0.7, 0.9 does.
    _run(ScriptedScore(shards, [0.6]), tmp_path, 40)
    assert _kept(tmp_path)["global_step"] == 20
    _run(ScriptedScore(shards, [0.9]), tmp_path, 50)
    assert _kept(tmp_path) == {"metric": "score", "value": 0.9, "mode": "max", "global_step": 50}


def test_min_mode_and_bad_metric_name(shards, tmp_path):
    _run(ScriptedScore(shards, [0.3, 0.7]), tmp_path / "min", 20, best_metric_mode="min")
    assert _kept(tmp_path / "min")["global_step"] == 10
    with pytest.raises(ValueError, match="best_metric 'nope' is not among the eval metrics"):
        args = trainer.TrainingArgs(output_dir=str(tmp_path / "bad"), train_batch_size=16,
                                     num_train_steps=10, best_metric="nope")
        trainer.run(ScriptedScore(shards, [0.1]), args,
                     lambda: optimization.create_optimizer(1e-3, 10, 2))
    with pytest.raises(ValueError, match="eval_every_steps must be > 0"):
        trainer.TrainingArgs(output_dir="x", train_batch_size=1, num_train_steps=1,
                              eval_every_steps=0)
