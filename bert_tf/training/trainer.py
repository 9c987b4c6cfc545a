"""The one training/evaluation loop that every bert_tf task uses.

What it gives every task: `tf.distribute` strategies, mixed precision (dynamic loss scaling for
float16), XLA for the forward/backward pass, gradient accumulation, many steps per
`tf.function` call (no per-step Python overhead), `tf.train.CheckpointManager` checkpoints
that resume with the same step, optimizer state and data position, a checkpoint on SIGTERM
(preemption), TensorBoard summaries and a progress line with rate and ETA. Optionally it
evaluates every `eval_every_steps` and keeps the weights with the best `best_metric` in
`output_dir/best/`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import os
import shutil
import signal
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from bert_tf.training import bucketing, cpu_allocator, distribute, inputs
from bert_tf.tasks.base import Task
from data_prep.files.atomic_io import write_text

_LOG = logging.getLogger("bert_tf.training.trainer")

BEST_DIR = "best"  # output_dir/best/: `model` checkpoint + best_metric.json
POSITIONS_LOG = "_token_positions"  # train loop output: token positions the steps computed
BEST_METRIC_FILE = "best_metric.json"


@dataclasses.dataclass(frozen=True)
class TrainingArgs:
    """Plain arguments of `run` (scripts fill them from flags)."""

    output_dir: str
    train_batch_size: int
    num_train_steps: int
    steps_per_loop: int = 100
    save_checkpoints_steps: int = 1000
    keep_checkpoint_max: int = 5
    num_accumulation_steps: int = 1
    max_eval_steps: int | None = None
    dtype: str = "float32"
    jit_compile: bool = False
    do_train: bool = True
    do_eval: bool = True
    # Evaluate every N steps while training (None: only at the end).
    eval_every_steps: int | None = None
    # Keep the weights of the best evaluation by this metric (a key of the task's eval
    # metrics, e.g. "eval_accuracy") in output_dir/best/; None: do not keep a best copy.
    best_metric: str | None = None
    best_metric_mode: str = "max"  # "max" or "min" (e.g. for a loss)

    def __post_init__(self):
        for name in ("train_batch_size", "num_train_steps", "steps_per_loop",
                     "save_checkpoints_steps", "keep_checkpoint_max", "num_accumulation_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        if self.eval_every_steps is not None and self.eval_every_steps <= 0:
            raise ValueError(f"eval_every_steps must be > 0 or None, got {self.eval_every_steps}.")
        if self.best_metric_mode not in ("max", "min"):
            raise ValueError(f"best_metric_mode must be 'max' or 'min', got "
                             f"{self.best_metric_mode!r}.")
        distribute.check_dtype(self.dtype)


class _Preemption:
    """Turns SIGTERM into a flag the loop checks between `tf.function` calls."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no handler, nothing to restore
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.requested = True
        _LOG.warning("SIGTERM received: saving a checkpoint and stopping.")

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _split_micro_batches(batch: dict, count: int) -> dict:
    """[per_replica, ...] -> [count, per_replica // count, ...] for every tensor."""
    return {k: tf.reshape(v, tf.concat([[count, -1], tf.shape(v)[1:]], 0))
            for k, v in batch.items()}


def has_eval(task: Task) -> bool:
    """Whether the task has eval data (see `Task.has_eval`)."""
    return task.has_eval()


def best_checkpoint(output_dir: str) -> str | None:
    """The prefix of the best-metric model checkpoint in `output_dir/best/`, if there is one."""
    path = os.path.join(output_dir, BEST_DIR, "model")
    return path if tf.io.gfile.exists(path + ".index") else None


class Trainer:
    """Holds the model, optimizer, checkpoint and compiled step functions of one run."""

    def __init__(self, task: Task, strategy: tf.distribute.Strategy, args: TrainingArgs,
                 optimizer_fn: Callable[[], keras.optimizers.Optimizer]):
        self.task, self.strategy, self.args = task, strategy, args
        replicas = strategy.num_replicas_in_sync
        if args.train_batch_size % (replicas * args.num_accumulation_steps):
            raise ValueError(
                f"train_batch_size ({args.train_batch_size}) must be divisible by the number of "
                f"replicas ({replicas}) times num_accumulation_steps "
                f"({args.num_accumulation_steps}).")
        self.chief = distribute.is_chief(strategy)
        on_cpu = not tf.config.list_physical_devices("GPU")  # as distribute.get_strategy
        if on_cpu and not cpu_allocator.bfc_cpu_allocator_active():
            _LOG.info("Training on CPU with TensorFlow's malloc-based allocator: set %s=true "
                      "before the process starts for faster steps (bert_tf/training/cpu_allocator.py).",
                      cpu_allocator.ENV_VAR)
        with strategy.scope():
            self.model = task.build_model(args.dtype)
            optimizer = optimizer_fn()
            if args.dtype == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(self.model.trainable_variables)
            self.optimizer = optimizer
            # The dropout layers' seed states are not among the model's checkpointed
            # dependencies; without them a resumed run would draw the first run's masks again.
            self.checkpoint = tf.train.Checkpoint(
                model=self.model, optimizer=self.optimizer,
                dropout_seeds=dropout_seed_states(self.model))
        # Only the chief's checkpoints are kept; other workers must still take part in saving
        # (it is a collective), so they write to a scratch directory that is then removed.
        self._checkpoint_dir = os.path.join(args.output_dir, "checkpoints")
        write_dir = self._checkpoint_dir if self.chief else os.path.join(
            args.output_dir, f".worker_{distribute.task_id(strategy)}_checkpoints")
        self.manager = tf.train.CheckpointManager(self.checkpoint, write_dir,
                                                  max_to_keep=args.keep_checkpoint_max,
                                                  checkpoint_name="ckpt")
        self._grads_fn = tf.function(self._grads, jit_compile=args.jit_compile)
        # The update is elementwise work over every weight plus the global-norm clip; XLA fuses
        # it into a few loops (measured 4-9% of a step on CPU: benchmarks/README.md), so it is
        # compiled whatever `jit_compile` says. Only on one device: under other strategies
        # `apply` aggregates across replicas (a merge_call), which XLA cannot compile.
        self._apply_fn = (tf.function(self._apply, jit_compile=True)
                          if isinstance(strategy, tf.distribute.OneDeviceStrategy) else self._apply)
        self._eval_fn = None
        self._best: tuple[float | None] | None = None  # (best value,) once read from best/

    # --- checkpoints -------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def restore_or_initialize(self, init_fn: Callable[[keras.Model], None] | None) -> bool:
        """Resumes from the newest checkpoint in output_dir; else runs `init_fn`. True if resumed."""
        if self.chief:
            _remove_partial_checkpoints(self._checkpoint_dir)
        latest = tf.train.latest_checkpoint(self._checkpoint_dir)
        if latest:
            checkpoint = self.checkpoint
            if not any(name.startswith("dropout_seeds/")
                       for name, _ in tf.train.list_variables(latest)):
                _LOG.warning("%s holds no dropout seed states: the resumed run's dropout masks "
                             "start over, so it will not reproduce an uninterrupted run.", latest)
                checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
            checkpoint.restore(latest).assert_existing_objects_matched()
            _LOG.info("Resumed from %s at step %d.", latest, self.step)
            return True
        if init_fn is not None:
            init_fn(self.model)
        return False

    def save(self) -> str | None:
        # CheckpointManager writes the data files first and then replaces the `checkpoint`
        # state file atomically, so a kill mid-save never leaves a corrupt "latest".
        path = self.manager.save(checkpoint_number=self.step)
        if not self.chief:
            shutil.rmtree(self.manager.directory, ignore_errors=True)
            return None
        _LOG.info("Saved checkpoint %s", path)
        return path

    # --- compiled steps ----------------------------------------------------------------------
    def _grads(self, batch):
        """Loss, logs and gradients of one micro-batch (XLA-compiled when jit_compile)."""
        with tf.GradientTape() as tape:
            loss, logs = self.task.compute_loss(self.model, batch, training=True)
            # Gradients are summed across replicas by the optimizer: scale for their mean.
            scaled = loss / self.strategy.num_replicas_in_sync
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                scaled = self.optimizer.scale_loss(scaled)
        grads = tape.gradient(scaled, self.model.trainable_variables)
        return loss, logs, grads

    def _apply(self, grads):
        """The optimizer update (XLA-compiled on one device, see __init__)."""
        self.optimizer.apply(grads, self.model.trainable_variables)

    def _replica_step(self, batch):
        grads_fn = self._grads_fn
        count = self.args.num_accumulation_steps
        if count == 1:
            loss, logs, grads = grads_fn(batch)
        else:
            micro = _split_micro_batches(batch, count)
            loss, logs, grads = grads_fn({k: v[0] for k, v in micro.items()})
            # Embedding gradients arrive as IndexedSlices; a running sum needs dense tensors.
            grads = [tf.convert_to_tensor(g) for g in grads]
            for i in tf.range(1, count):
                l_i, logs_i, g_i = grads_fn({k: v[i] for k, v in micro.items()})
                loss = loss + l_i
                logs = {k: logs[k] + logs_i[k] for k in logs}
                grads = [a + tf.convert_to_tensor(b) for a, b in zip(grads, g_i)]
            loss = loss / count
            logs = {k: v / count for k, v in logs.items()}
            grads = [g / count for g in grads]
        self._apply_fn(grads)
        return {"loss": loss, **logs}

    def _build_train_loop(self):
        strategy = self.strategy

        def positions(batch):
            # The token positions the step computes: with length bucketing a batch is only
            # as wide as its bucket, so this is not train_batch_size * max_seq_length.
            return tf.cast(tf.size(batch["input_ids"]), tf.float32)

        @tf.function
        def train_loop(iterator, num_steps):
            """Mean of each log over num_steps steps, plus the summed POSITIONS_LOG."""
            def one_step():
                batch = next(iterator)
                out = strategy.run(self._replica_step, args=(batch,))
                out = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                       for k, v in out.items()}
                return out, strategy.reduce(tf.distribute.ReduceOp.SUM,
                                            strategy.run(positions, args=(batch,)), axis=None)

            totals, tokens = one_step()
            for _ in tf.range(num_steps - 1):
                out, more = one_step()
                totals = {k: totals[k] + out[k] for k in totals}
                tokens += more
            means = {k: v / tf.cast(num_steps, tf.float32) for k, v in totals.items()}
            return {**means, POSITIONS_LOG: tokens}

        return train_loop

    # --- train / eval ------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        args, strategy = self.args, self.strategy
        start_step = self.step
        if start_step >= args.num_train_steps:
            _LOG.info("Already at step %d of %d: nothing to train.", start_step,
                      args.num_train_steps)
            return {}
        dataset = strategy.distribute_datasets_from_function(
            lambda ctx: self.task.train_dataset(ctx, skip_batches=start_step))
        iterator = iter(dataset)
        train_loop = self._build_train_loop()
        writer = _summary_writer(args.output_dir, "train", self.chief)
        seq_per_step = args.train_batch_size
        logs: dict[str, float] = {}
        periodic_eval = bool(args.eval_every_steps and args.do_eval and has_eval(self.task))
        t_run = time.time()
        with _Preemption() as preemption:
            while self.step < args.num_train_steps:
                step = self.step
                next_save = (step // args.save_checkpoints_steps + 1) * args.save_checkpoints_steps
                num_steps = min(args.steps_per_loop, args.num_train_steps - step, next_save - step)
                if periodic_eval:
                    every = args.eval_every_steps
                    num_steps = min(num_steps, (step // every + 1) * every - step)
                t0 = time.time()
                out = train_loop(iterator, tf.constant(num_steps, tf.int32))
                logs = {k: float(v) for k, v in out.items()}
                elapsed = time.time() - t0
                token_rate = logs.pop(POSITIONS_LOG) / elapsed
                step = self.step
                rate = num_steps * seq_per_step / elapsed
                lr = float(keras.ops.convert_to_tensor(self._learning_rate()))
                done = step - start_step
                eta = (args.num_train_steps - step) * (time.time() - t_run) / max(done, 1)
                _LOG.info("step %d/%d  loss %.4f  %s  %.1f seq/s  %.0f tok/s  lr %.3g  ETA %s",
                          step, args.num_train_steps, logs["loss"],
                          "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if k != "loss"),
                          rate, token_rate, lr, _format_eta(eta))
                if writer is not None:
                    with writer.as_default(step=step):
                        for k, v in logs.items():
                            tf.summary.scalar(k, v)
                        tf.summary.scalar("learning_rate", lr)
                        tf.summary.scalar("sequences_per_second", rate)
                        tf.summary.scalar("tokens_per_second", token_rate)
                if step % args.save_checkpoints_steps == 0 or step >= args.num_train_steps:
                    self.save()
                if preemption.requested:
                    if step % args.save_checkpoints_steps:
                        self.save()
                    raise SystemExit(143)
                # The final step's evaluation is `run`'s, whether or not it is periodic.
                if periodic_eval and step % args.eval_every_steps == 0 \
                        and step < args.num_train_steps:
                    self.keep_best(self.evaluate())
        if writer is not None:
            writer.flush()
        return logs

    def _learning_rate(self):
        opt = self.optimizer
        inner = getattr(opt, "inner_optimizer", opt)
        return inner.learning_rate

    def _build_eval_step(self):
        strategy = self.strategy

        def combine(value):
            # Scalars are totals: summed over replicas. Anything with a batch axis is a
            # per-example output (logits, labels): gathered, for metrics that are not sums.
            if strategy.experimental_local_results(value)[0].shape.rank == 0:
                return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            return strategy.gather(value, axis=0)

        # reduce_retracing: length-bucketed batches come in a few sequence lengths (and a
        # short last batch); after the second shape one trace with unknown dims serves all.
        @tf.function(reduce_retracing=True)
        def eval_step(batch):
            out = strategy.run(self.task.eval_step, args=(self.model, batch))
            return {k: combine(v) for k, v in out.items()}

        return eval_step

    def evaluate(self) -> dict[str, float]:
        """Task metrics on the eval set (at most max_eval_steps batches), logged and written.

        `task.eval_step` returns scalars (summed over batches into floats) and/or tensors with
        a leading batch axis (concatenated into numpy arrays); `finalize_eval` gets both.
        """
        args, strategy = self.args, self.strategy
        if isinstance(strategy, tf.distribute.OneDeviceStrategy):
            # One replica: the plain dataset, whose iterator is dropped at once at the end of
            # the pass (the distributed one's sometimes waited 2-15 s for tf.data's tuner).
            dataset = inputs.one_pass(self.task.eval_dataset(tf.distribute.InputContext(),
                                                             args.max_eval_steps))
        else:
            dataset = strategy.distribute_datasets_from_function(
                lambda context: self.task.eval_dataset(context, args.max_eval_steps))
        if self._eval_fn is None:  # built once: periodic evals reuse the traced function
            self._eval_fn = self._build_eval_step()

        totals: dict = {}
        per_example: dict[str, list[np.ndarray]] = {}
        for i, batch in enumerate(dataset):
            if args.max_eval_steps is not None and i >= args.max_eval_steps:
                break
            for k, v in self._eval_fn(batch).items():
                if v.shape.rank == 0:
                    totals[k] = totals.get(k, 0.0) + float(v)
                else:
                    per_example.setdefault(k, []).append(v.numpy())
        totals.update({k: np.concatenate(v) for k, v in per_example.items()})
        # Length-bucketed eval batches are grouped by length: back to file order.
        totals = bucketing.restore_order(totals)
        metrics = self.task.finalize_eval(totals)
        metrics["global_step"] = self.step
        _LOG.info("eval at step %d: %s", self.step,
                  "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "global_step"))
        writer = _summary_writer(args.output_dir, "eval", self.chief)
        if writer is not None:
            with writer.as_default(step=self.step):
                for k, v in metrics.items():
                    if k != "global_step":
                        tf.summary.scalar(k, v)
            writer.flush()
            write_eval_results(os.path.join(args.output_dir, "eval_results.txt"), metrics)
        return metrics

    # --- best checkpoint ---------------------------------------------------------------------
    def best_so_far(self) -> float | None:
        """The best `best_metric` value kept in output_dir/best/ (survives restarts).

        Read from disk once, then tracked in memory: every worker must reach the same
        keep/skip decision, because writing the checkpoint is collective.
        """
        if self._best is None:
            best_dir = os.path.join(self.args.output_dir, BEST_DIR)
            if self.chief and not os.path.isdir(best_dir) and os.path.isdir(best_dir + ".old"):
                os.replace(best_dir + ".old", best_dir)  # died between keep_best's renames
            path = os.path.join(best_dir, BEST_METRIC_FILE)
            value = None
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    kept = json.load(f)
                if kept.get("metric") != self.args.best_metric:
                    raise ValueError(
                        f"{path} keeps the best {kept.get('metric')!r}, but best_metric is "
                        f"{self.args.best_metric!r}: use another output_dir or remove it.")
                value = float(kept["value"])
            self._best = (value,)
        return self._best[0]

    def keep_best(self, metrics: dict[str, float]) -> bool:
        """Exports the model to output_dir/best/ if `metrics` beat the best so far.

        Returns whether it did. Written to a temporary directory first and then renamed, so
        best/ always holds a complete checkpoint with its best_metric.json.
        """
        args = self.args
        if not args.best_metric:
            return False
        if args.best_metric not in metrics:
            raise ValueError(f"best_metric {args.best_metric!r} is not among the eval metrics "
                             f"{sorted(metrics)}.")
        value = float(metrics[args.best_metric])
        best = self.best_so_far()
        better = not np.isnan(value) and (
            best is None or (value > best if args.best_metric_mode == "max" else value < best))
        if not better:
            return False
        self._best = (value,)
        best_dir = os.path.join(args.output_dir, BEST_DIR)
        # Every worker takes part in writing (a collective under multi-worker strategies);
        # only the chief's copy becomes best/.
        tmp = os.path.join(args.output_dir, f".best.tmp-{distribute.task_id(self.strategy)}")
        shutil.rmtree(tmp, ignore_errors=True)
        tf.train.Checkpoint(model=self.model).write(os.path.join(tmp, "model"))
        if not self.chief:
            shutil.rmtree(tmp, ignore_errors=True)
            return True
        with open(os.path.join(tmp, BEST_METRIC_FILE), "w", encoding="utf-8") as f:
            json.dump({"metric": args.best_metric, "value": value, "mode": args.best_metric_mode,
                       "global_step": self.step}, f, indent=1)
        old = best_dir + ".old"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.isdir(best_dir):
            os.replace(best_dir, old)
        os.replace(tmp, best_dir)
        shutil.rmtree(old, ignore_errors=True)
        _LOG.info("New best %s %.4f at step %d (was %s): saved to %s", args.best_metric, value,
                  self.step, "none" if best is None else f"{best:.4f}", best_dir)
        return True


def run(task: Task, args: TrainingArgs, optimizer_fn: Callable[[], keras.optimizers.Optimizer],
        strategy: tf.distribute.Strategy | None = None,
        init_fn: Callable[[keras.Model], None] | None = None) -> dict[str, float]:
    """Trains (resuming if output_dir has checkpoints) and evaluates `task`.

    Returns the eval metrics (empty when not evaluating) plus `global_step`.
    """
    strategy = strategy or distribute.get_strategy("one_device")
    os.makedirs(args.output_dir, exist_ok=True)
    trainer = Trainer(task, strategy, args, optimizer_fn)
    trainer.restore_or_initialize(init_fn)
    results: dict[str, float] = {}
    with _naming_corrupt_input(task):
        if args.do_train:
            results.update({f"train_{k}": v for k, v in trainer.train().items()})
        if args.do_eval and has_eval(task):
            metrics = trainer.evaluate()
            if args.do_train:
                trainer.keep_best(metrics)
            results.update(metrics)
    results["global_step"] = trainer.step
    return results


@contextlib.contextmanager
def _naming_corrupt_input(task: Task):
    """Turns TensorFlow's DataLossError, which names no file, into one that names it."""
    try:
        yield
    except tf.errors.DataLossError as e:
        where = inputs.find_corrupt_record(task.input_files())
        raise ValueError(f"corrupt TFRecord input: {where or inputs.data_loss_reason(e)}") from e


def dropout_seed_states(model: keras.Model) -> list:
    """The state variables of the model's `keras.random.SeedGenerator`s (one per dropout
    layer: int [2] each), in the model's variable order."""
    return [v for v in model.non_trainable_variables if v.name == "seed_generator_state"]


def _remove_partial_checkpoints(directory: str) -> None:
    """Removes the `ckpt-N_temp` folders a save killed midway leaves (TensorFlow writes a
    checkpoint's files there before renaming them; `checkpoint` never names such a save)."""
    for path in glob.glob(os.path.join(glob.escape(directory), "ckpt-*_temp")):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
            _LOG.info("Removed %s, a checkpoint save that was cut short.", path)


def write_eval_results(path: str, metrics: dict[str, float]) -> None:
    """`key = value` lines, as the original's eval_results.txt, written atomically."""
    text = "".join(f"{k} = {metrics[k]}\n" for k in sorted(metrics))
    write_text(path, text)


def _summary_writer(output_dir: str, name: str, chief: bool):
    if not chief:
        return None
    return tf.summary.create_file_writer(os.path.join(output_dir, "summaries", name))


def _format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
