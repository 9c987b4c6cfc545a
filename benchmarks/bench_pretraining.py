"""Pretraining-step throughput: bert_tf's BertPretrainer vs keras-hub's BertMaskedLM.

    python -m benchmarks.bench_pretraining    # tiny+mini, seq 128, both dtypes, XLA on+off
    python -m benchmarks.bench_pretraining --configs=base --batch=8
    python -m benchmarks.bench_pretraining --configs=base --seq=512 --batch=2
    python -m benchmarks.bench_pretraining --peers=keras_hub,torch   # add Hugging Face on PyTorch
    python -m benchmarks.bench_pretraining --configs=base --batch=256 --dtype=mixed_bfloat16 \
        --xla=on --steps_per_loop=10 --peak_tflops=989.4   # on an H100: adds MFU

What each side runs, per timed call (`--steps_per_loop` steps, 5 by default):

* ours: `bert_tf.training.trainer.Trainer`'s own train loop - the `tf.function` that runs
  `steps_per_loop` steps, each `PretrainingTask.compute_loss` (BertPretrainer forward, masked-LM
  loss over the gathered positions + next-sentence loss) under a GradientTape, gradients
  (XLA-compiled with `--xla=on`, i.e. `TrainingArgs(jit_compile=True)`), and
  `AdamWeightDecay.apply` (global-norm clipping to 1.0, decoupled weight decay, BERT's warmup +
  polynomial-decay schedule).
* keras_hub: `keras_hub.models.BertMaskedLM` (no preprocessor), compiled with
  `SparseCategoricalCrossentropy(from_logits=True)` weighted by the masked-LM weights,
  no metrics, `keras.optimizers.AdamW` (lr 1e-4, weight decay 0.01 except biases and
  LayerNorm, epsilon 1e-6, global_clipnorm 1.0), `steps_per_execution=steps_per_loop` and
  `jit_compile` on/off. The model is warmed up with one `fit` call; timed calls then call the
  very `train_function` that `fit` uses, so that the per-call `fit` setup (callbacks, data
  adapter) is not charged to it. keras-hub's masked LM has no next-sentence head and no
  pooler in its loss, so it does slightly less work than ours.
* torch (optional): Hugging Face `transformers.BertForPreTraining` (MLM + NSP), eager PyTorch,
  `torch.optim.AdamW` with gradient clipping to 1.0, bfloat16 via `torch.autocast` for the
  mixed dtype. Its MLM head scores every position, not only the masked ones (that is how the
  model is written). No torch.compile.

Both sides get the same synthetic in-memory batch repeated (`Dataset.from_tensors(...).repeat()`),
so the input pipeline costs nothing and only the step is timed. All contenders of one
(config, dtype) are built in one process and timed interleaved (see `benchmarks/common.py`).
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time

from benchmarks import common

if any("torch" in arg for arg in sys.argv[1:]):
    # Importing transformers' BERT after TensorFlow 2.21 segfaults here (seen with torch 2.14,
    # transformers 5.24); imported first, both work in one process.
    import torch  # noqa: F401
    from transformers import BertForPreTraining  # noqa: F401

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

DEFAULT_BATCH = {"tiny": 32, "mini": 32, "small": 16, "medium": 16, "base": 8}


# --- ours ------------------------------------------------------------------------------------
def build_ours(size: str, data: dict, dtype: str, xla: bool, steps: int, hidden_act: str,
               package: str = "bert_tf"):
    """`package` lets an A/B script time a renamed copy of bert_tf in the same process."""
    import importlib

    config_lib = importlib.import_module(f"{package}.config")
    distribute = importlib.import_module(f"{package}.training.distribute")
    optimization = importlib.import_module(f"{package}.optimization")
    training = importlib.import_module(f"{package}.training.trainer")
    PretrainingTask = importlib.import_module(f"{package}.tasks.pretraining").PretrainingTask

    class SyntheticPretraining(PretrainingTask):
        """PretrainingTask fed from an in-memory batch instead of TFRecords."""

        def __init__(self, bert_config):  # pylint: disable=super-init-not-called
            self.bert_config = bert_config
            self.train_batch_size = data["input_ids"].shape[0]
            self.max_seq_length = data["input_ids"].shape[1]
            self.max_predictions_per_seq = data["masked_lm_positions"].shape[1]
            self.full_last_layer = False

        def train_dataset(self, input_context, skip_batches):
            return tf.data.Dataset.from_tensors(data).repeat()

    bert_config = config_lib.BertConfig.from_preset(size, vocab_size=common.VOCAB_SIZE,
                                                    hidden_act=hidden_act)
    task = SyntheticPretraining(bert_config)
    output_dir = tempfile.mkdtemp(prefix="bench_bert_tf_")  # nothing is saved; removed at exit
    atexit.register(shutil.rmtree, output_dir, ignore_errors=True)
    args = training.TrainingArgs(output_dir=output_dir,
                                 train_batch_size=task.train_batch_size,
                                 num_train_steps=10**9, steps_per_loop=steps, dtype=dtype,
                                 jit_compile=xla)
    strategy = distribute.get_strategy("one_device")
    trainer = training.Trainer(task, strategy, args, lambda: optimization.create_optimizer(
        1e-4, num_train_steps=10**6, num_warmup_steps=10**4))
    loop = trainer._build_train_loop()  # the loop Trainer.train() runs, minus logging/saving
    iterator = iter(strategy.distribute_datasets_from_function(
        lambda ctx: task.train_dataset(ctx, 0)))
    num_steps = tf.constant(steps, tf.int32)

    def run():
        out = loop(iterator, num_steps)
        loss = float(out["loss"])
        if not np.isfinite(loss):
            raise FloatingPointError(f"ours: loss {loss}")
        return loss

    return run


# --- keras-hub -------------------------------------------------------------------------------
def build_keras_hub(size: str, data: dict, dtype: str, xla: bool, steps: int):
    import keras_hub

    backbone = common.keras_hub_backbone(size, dtype)
    model = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
    optimizer = keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.01, beta_1=0.9,
                                       beta_2=0.999, epsilon=1e-6, global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[], jit_compile=xla, steps_per_execution=steps)
    x = {"token_ids": data["input_ids"], "segment_ids": data["segment_ids"],
         "padding_mask": data["input_mask"], "mask_positions": data["masked_lm_positions"]}
    dataset = tf.data.Dataset.from_tensors(
        (x, data["masked_lm_ids"], data["masked_lm_weights"])).repeat()
    # One public fit() builds the optimizer and metrics and creates model.train_function.
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    iterator = iter(dataset)

    def run():
        out = model.train_function(iterator)
        if hasattr(out, "get_value"):
            out = out.get_value()
        loss = float(out["loss"])
        if not np.isfinite(loss):
            raise FloatingPointError(f"keras_hub: loss {loss}")
        return loss

    return run


# --- Hugging Face on PyTorch (optional) ------------------------------------------------------
def build_torch(size: str, data: dict, dtype: str, steps: int):
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count() or 1)
    layers, hidden, heads = common.SIZES[size]
    config = transformers.BertConfig(
        vocab_size=common.VOCAB_SIZE, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=4 * hidden, hidden_act="gelu_new",
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        max_position_embeddings=512)
    model = transformers.BertForPreTraining(config)
    model.train()
    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-4, eps=1e-6)
    labels = np.full(data["input_ids"].shape, -100, np.int64)
    rows = np.arange(labels.shape[0])[:, None]
    valid = data["masked_lm_weights"] > 0
    labels[np.broadcast_to(rows, valid.shape)[valid], data["masked_lm_positions"][valid]] = \
        data["masked_lm_ids"][valid]
    inputs = {"input_ids": torch.from_numpy(data["input_ids"].astype(np.int64)),
              "attention_mask": torch.from_numpy(data["input_mask"].astype(np.int64)),
              "token_type_ids": torch.from_numpy(data["segment_ids"].astype(np.int64)),
              "labels": torch.from_numpy(labels),
              "next_sentence_label": torch.from_numpy(
                  data["next_sentence_labels"][:, 0].astype(np.int64))}
    autocast = dtype == "mixed_bfloat16"

    def run():
        loss = None
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        return float(loss)

    return run


def flops_cells(c: common.Contender, flops_per_sequence: float,
                peak_tflops: float | None) -> list[str]:
    """Model TFLOP/s at the median rate and, with `peak_tflops`, that over the peak (MFU)."""
    if c.error:
        return [""] * (2 if peak_tflops else 1)
    tflops = c.rate * flops_per_sequence / 1e12
    return [f"{tflops:.4g}"] + ([f"{100 * tflops / peak_tflops:.1f}%"] if peak_tflops else [])


# --- driver ----------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="tiny,mini",
                        help="comma list of " + ",".join(common.SIZES))
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=None,
                        help="sequences per step (default per config: %s)" % DEFAULT_BATCH)
    parser.add_argument("--max_predictions", type=int, default=20)
    parser.add_argument("--dtype", default="float32,mixed_bfloat16")
    parser.add_argument("--xla", default="both", choices=("both", "on", "off"))
    parser.add_argument("--peers", default="keras_hub",
                        help="comma list of keras_hub,torch (empty: ours only)")
    parser.add_argument("--steps_per_loop", type=int, default=5,
                        help="train steps per timed call (ours: steps_per_loop; keras-hub: "
                             "steps_per_execution)")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--hidden_act", default="gelu_approximate",
                        help="our encoder's activation (keras-hub's encoder uses the tanh "
                             "approximation, as BERT; its MLM head uses exact gelu)")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="the device's peak dense TFLOP/s for the one --dtype of the run "
                             "(H100 SXM: 989.4 bf16, 494.7 TF32); adds an MFU column")
    common.add_allocator_argument(parser)
    args = parser.parse_args(argv)
    if args.peak_tflops and len(common.parse_list(args.dtype)) != 1:
        parser.error("--peak_tflops is one dtype's peak: give exactly one --dtype with it")
    allocator_line = common.choose_allocator(args.cpu_allocator)

    peers = common.parse_list(args.peers)
    xla_modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.xla]
    print("\n".join(common.environment_lines(
        ["tensorflow", "keras", "keras-hub", "torch", "transformers"])))
    print(allocator_line)
    print(f"intra-op threads: {tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}"
          f", steps per timed call: {args.steps_per_loop}, repetitions: {args.repetitions}")
    rows, summary = [], []
    for size in common.parse_list(args.configs):
        batch = args.batch or DEFAULT_BATCH[size]
        data = common.synthetic_batch(batch, args.seq,
                                      max_predictions=args.max_predictions)
        # Model FLOPs (a plain BERT's), charged alike to every side: see the function.
        flops_per_sequence = common.pretraining_flops_per_sequence(size, args.seq,
                                                                   args.max_predictions)
        for dtype in common.parse_list(args.dtype):
            print(f"\n== {size} seq {args.seq} batch {batch} {dtype}")
            contenders = {}
            for xla in xla_modes:
                tag = "xla" if xla else "no-xla"
                t0 = time.perf_counter()
                contenders[("ours", tag)] = common.Contender(
                    f"ours/{tag}", build_ours(size, data, dtype, xla, args.steps_per_loop,
                                              args.hidden_act), batch * args.steps_per_loop)
                if "keras_hub" in peers:
                    contenders[("keras_hub", tag)] = common.Contender(
                        f"keras_hub/{tag}", build_keras_hub(size, data, dtype, xla,
                                                            args.steps_per_loop),
                        batch * args.steps_per_loop)
                print(f"  built {tag} in {time.perf_counter() - t0:.1f}s")
            if "torch" in peers:
                contenders[("torch", "eager")] = common.Contender(
                    "torch/eager", build_torch(size, data, dtype, args.steps_per_loop),
                    batch * args.steps_per_loop)
            common.interleave(list(contenders.values()), args.repetitions)
            for (side, tag), c in contenders.items():
                rows.append([size, dtype, side, tag]
                            + common.timing_cells(c, args.steps_per_loop, seq=args.seq)
                            + flops_cells(c, flops_per_sequence, args.peak_tflops))
            ours = common.best([c for (s, _), c in contenders.items() if s == "ours"])
            for peer in peers:
                other = common.best([c for (s, _), c in contenders.items() if s == peer])
                if ours and other:
                    summary.append([size, dtype, ours.name, f"{ours.rate:.1f}", other.name,
                                    f"{other.rate:.1f}", f"{ours.rate / other.rate:.2f}x",
                                    f"{other.cpu_median / ours.cpu_median:.2f}x"])
            del contenders
            keras.backend.clear_session()
    common.print_table(f"Pretraining step, seq {args.seq} ({args.steps_per_loop} steps per "
                       f"call, median of {args.repetitions})",
                       ["config", "dtype", "model", "mode"]
                       + common.timing_columns("seq", "step", tokens=True)
                       + ["model TFLOP/s"] + (["MFU"] if args.peak_tflops else []), rows)
    if summary:
        common.print_table("Best of each side (ours / peer)",
                           ["config", "dtype", "ours (best)", "seq/s", "peer (best)", "seq/s",
                            "ours/peer (median)", "peer/ours (cpu time)"], summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
