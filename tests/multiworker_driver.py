"""One worker of the two-process multi_worker_mirrored test (run as a subprocess).

argv: data_glob output_dir result_file [num_train_steps, default 6]. TF_CONFIG comes from
the environment. `start_workers` starts two of them, as the tests do.
"""
import json
import os
import socket
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import bert_tf  # noqa: E402
from bert_tf import optimization  # noqa: E402
from bert_tf.training import distribute, trainer
from bert_tf.tasks.pretraining import PretrainingTask  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_workers(data_glob: str, output_dir: str, prefix: str, steps: int,
                  env: dict[str, str], cwd: str) -> list[subprocess.Popen]:
    """Two workers of one cluster on fresh local ports; worker i writes its weights to
    `{prefix}_{i}.npy` and its output to `{prefix}_{i}.log`."""
    cluster = {"worker": [f"localhost:{_free_port()}" for _ in range(2)]}
    procs = []
    for index in range(2):
        worker_env = {**env, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})}
        with open(f"{prefix}_{index}.log", "w") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tests.multiworker_driver", data_glob, output_dir,
                 f"{prefix}_{index}.npy", str(steps)], cwd=cwd, env=worker_env, stdout=log,
                stderr=subprocess.STDOUT))
    return procs


def main(data_glob: str, output_dir: str, result_file: str, steps: str = "6") -> None:
    steps = int(steps)
    keras.utils.set_random_seed(7)
    strategy = distribute.get_strategy("multi_worker_mirrored")
    config = bert_tf.BertConfig.from_preset("tiny", vocab_size=64, max_position_embeddings=64)
    task = PretrainingTask(config, data_glob, train_batch_size=8, max_seq_length=32,
                           max_predictions_per_seq=5)
    args = trainer.TrainingArgs(output_dir=output_dir, train_batch_size=8, num_train_steps=steps,
                                 steps_per_loop=3, save_checkpoints_steps=3, do_eval=False)
    runner = trainer.Trainer(task, strategy, args,
                               lambda: optimization.create_optimizer(1e-3, steps, 1))
    runner.restore_or_initialize(None)
    print(f"starting at step {runner.step}", flush=True)
    runner.train()
    weights = np.concatenate([np.ravel(w) for w in runner.model.get_weights()])
    np.save(result_file, weights)


if __name__ == "__main__":
    main(*sys.argv[1:5])
