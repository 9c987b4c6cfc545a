"""SST-2 fine-tuning throughput and accuracy: bert_tf bucketed vs fixed length vs keras-hub vs HF.

    python -m benchmarks.bench_finetune                      # mini, seq 128, 200 steps, 2 reps
    python -m benchmarks.bench_finetune --config=small --train_steps=100
    python -m benchmarks.bench_finetune --contenders=ours_bucketed,ours_fixed

Every contender fine-tunes the same model size (`--config`, a bert_tf preset, from a seeded
random initialisation: no pretrained weights are downloaded) with the same recipe on the real
sentences of data/sst2 (train.tsv: 6,048 sentences; dev.tsv: 872), each in its own process,
one after the other, `--repetitions` times in a rotating order:

* ours_bucketed: `bert_tf.ClassificationTask` with `bucket_lengths` (multiples of 16 up to
  `--seq`): batches padded to their bucket (bert_tf/training/bucketing.py), the Trainer's own train
  loop (`steps_per_loop` steps per tf.function call), `AdamWeightDecay`; eval by
  `Trainer.evaluate` (bucketed too).
* ours_fixed: the same with every batch padded to `--seq` (`--length_bucketing=false`).
* keras_hub: `keras_hub.models.BertClassifier` on a `BertBackbone` of the same size, with
  its own `BertTextClassifierPreprocessor` (`BertTokenizer` on the repo's vocab,
  sequence_length `--seq`: it pads every sentence to it), `keras.optimizers.AdamW` with the
  same schedule (bert_tf's WarmupPolynomialDecay), weight decay, epsilon and clipping, and
  `steps_per_execution=steps_per_loop`. Sentences are preprocessed once and cached, so its
  tokenizer is not timed (ours are pre-tokenized TFRecords). Timed calls call the
  `train_function` that `fit` built (as benchmarks/bench_pretraining.py); eval is
  `model.evaluate`.
* hf (when torch and transformers are installed): `transformers.BertForSequenceClassification`
  with `BertTokenizerFast` on the same vocab and `DataCollatorWithPadding` (each batch padded
  to its longest sentence), eager PyTorch, `torch.optim.AdamW` + linear warmup/decay,
  gradients clipped to 1.0. No torch.compile.

All: batch `--batch` (32), peak learning rate 1e-4, 10% warmup, weight decay 0.01 (not on
biases and LayerNorm), dropout 0.1, `--train_steps` steps (the first `--warmup_steps` are not
timed: tracing and kernel caches), then the whole dev set in batches of `--batch`, timed on
the second of two passes. Reported: training and eval examples/s, each against the best other
contender of the same repetition, the fraction of the tokens fed to the model that are real
(not padding), and dev accuracy after the same number of steps.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2 = os.path.join(REPO, "data", "sst2")
VOCAB = os.path.join(REPO, "tests", "data", "vocab_uncased.txt")
CONTENDERS = ("ours_bucketed", "ours_fixed", "keras_hub", "hf")
LEARNING_RATE, WEIGHT_DECAY, WARMUP_PROPORTION = 1e-4, 0.01, 0.1


def _sentences(split: str) -> tuple[list[str], list[int]]:
    with open(os.path.join(SST2, f"{split}.tsv"), encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    return [r[0] for r in rows], [int(r[1]) for r in rows]


def _result(name: str, train_examples: int, train_s: float, eval_examples: int, eval_s: float,
            real_train: int, fed_train: int, real_eval: int, fed_eval: int,
            accuracy: float) -> dict:
    return {"contender": name, "train_examples_per_s": train_examples / train_s,
            "eval_examples_per_s": eval_examples / eval_s,
            "real_fraction_train": real_train / fed_train,
            "real_fraction_eval": real_eval / fed_eval, "eval_accuracy": accuracy}


# --- bert_tf -----------------------------------------------------------------------------------
def run_ours(args, bucketed: bool) -> dict:
    from benchmarks import common  # noqa: F401 (pins the Keras backend, quiets TensorFlow)
    from bert_tf.training import cpu_allocator

    cpu_allocator.use_bfc_cpu_allocator(True)  # as the scripts
    import keras
    import numpy as np
    import tensorflow as tf

    from bert_tf import optimization
    from bert_tf.training import bucketing, distribute, trainer
    from bert_tf.tasks.classification import ClassificationTask
    from bert_tf.config import BertConfig

    keras.utils.set_random_seed(args.seed)
    config = BertConfig.from_preset(args.config, vocab_size=30522)
    lengths = bucketing.default_bucket_lengths(args.seq) if bucketed else None
    task = ClassificationTask(config, 2, args.seq, args.batch, args.batch,
                              train_file=args.train_file, eval_file=args.dev_file,
                              seed=args.seed, bucket_lengths=lengths)
    out = tempfile.mkdtemp(prefix="bench_finetune_")
    try:
        train_args = trainer.TrainingArgs(output_dir=out, train_batch_size=args.batch,
                                           num_train_steps=args.train_steps,
                                           steps_per_loop=args.steps_per_loop,
                                           jit_compile=args.jit_compile)
        strategy = distribute.get_strategy("one_device")
        warmup = int(args.train_steps * WARMUP_PROPORTION)
        runner = trainer.Trainer(task, strategy, train_args, lambda: optimization.create_optimizer(
            LEARNING_RATE, args.train_steps, warmup, weight_decay_rate=WEIGHT_DECAY))
        loop = runner._build_train_loop()  # what Trainer.train() runs, minus logging/saving
        # The same batches the loop sees, counted for the real-token fraction.
        real_train = fed_train = 0
        for batch in task.dataset(args.train_file, args.batch, True).take(args.train_steps):
            real_train += int(tf.reduce_sum(batch["input_mask"]))
            fed_train += int(tf.size(batch["input_mask"]))
        iterator = iter(strategy.distribute_datasets_from_function(
            lambda ctx: task.train_dataset(ctx, skip_batches=0)))
        chunk = tf.constant(args.steps_per_loop, tf.int32)
        for _ in range(args.warmup_steps // args.steps_per_loop):
            loop(iterator, chunk)
        timed = args.train_steps - args.warmup_steps // args.steps_per_loop * args.steps_per_loop
        t0 = time.perf_counter()
        for _ in range(timed // args.steps_per_loop):
            loss = float(loop(iterator, chunk)["loss"])
        train_s = time.perf_counter() - t0
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss {loss}")
        runner.evaluate()  # traces the eval step
        t0 = time.perf_counter()
        metrics = runner.evaluate()
        eval_s = time.perf_counter() - t0
        stats = bucketing.padding_stats(task.dataset(args.dev_file, args.batch, False))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return _result("ours_bucketed" if bucketed else "ours_fixed", timed * args.batch, train_s,
                   int(metrics["eval_num_examples"]), eval_s, real_train, fed_train,
                   int(stats["real_tokens"]), int(stats["processed_tokens"]),
                   metrics["eval_accuracy"])


# --- keras-hub ---------------------------------------------------------------------------------
def run_keras_hub(args) -> dict:
    from benchmarks import common
    from bert_tf.training import cpu_allocator

    cpu_allocator.use_bfc_cpu_allocator(True)
    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    from bert_tf.optimization import WarmupPolynomialDecay

    keras.utils.set_random_seed(args.seed)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=args.seq)
    model = keras_hub.models.BertClassifier(common.keras_hub_backbone(args.config, "float32"),
                                            num_classes=2, preprocessor=None, dropout=0.1)
    warmup = int(args.train_steps * WARMUP_PROPORTION)
    optimizer = keras.optimizers.AdamW(
        learning_rate=WarmupPolynomialDecay(LEARNING_RATE, args.train_steps, warmup),
        weight_decay=WEIGHT_DECAY, beta_1=0.9, beta_2=0.999, epsilon=1e-6, global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["sparse_categorical_accuracy"], jit_compile=args.jit_compile,
                  steps_per_execution=args.steps_per_loop)

    def features(split):
        sentences, labels = _sentences(split)
        ds = tf.data.Dataset.from_tensor_slices((sentences, labels))
        return ds.batch(256).map(preprocessor).unbatch().cache()

    train = features("train")
    dev = features("dev")
    real_dev = int(sum(int(np.sum(x["padding_mask"])) for x, _ in dev))
    num_dev = sum(1 for _ in dev)
    train = train.shuffle(10000, seed=args.seed).repeat().batch(args.batch, drop_remainder=True)
    real_train = sum(int(np.sum(x["padding_mask"])) for x, _ in train.take(args.train_steps))
    train = train.prefetch(tf.data.AUTOTUNE)
    model.fit(train, steps_per_epoch=args.steps_per_loop, epochs=1, verbose=0)  # builds it
    iterator = iter(train)
    warm_calls = max(args.warmup_steps // args.steps_per_loop - 1, 0)
    for _ in range(warm_calls):
        model.train_function(iterator)
    done = (warm_calls + 1) * args.steps_per_loop
    timed = args.train_steps - done
    t0 = time.perf_counter()
    for _ in range(timed // args.steps_per_loop):
        out = model.train_function(iterator)
    if hasattr(out, "get_value"):
        out = out.get_value()
    float(out["loss"])
    train_s = time.perf_counter() - t0
    dev = dev.batch(args.batch)
    model.evaluate(dev, verbose=0)
    t0 = time.perf_counter()
    scores = model.evaluate(dev, verbose=0, return_dict=True)
    eval_s = time.perf_counter() - t0
    return _result("keras_hub", timed * args.batch, train_s, num_dev, eval_s, real_train,
                   args.train_steps * args.batch * args.seq, real_dev, num_dev * args.seq,
                   float(scores["sparse_categorical_accuracy"]))


# --- Hugging Face on PyTorch -------------------------------------------------------------------
def run_hf(args) -> dict:
    import torch
    import transformers

    from benchmarks.common import SIZES

    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    layers, hidden, heads = SIZES[args.config]
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=4 * hidden, hidden_act="gelu_new",
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
        num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    tokenizer = transformers.BertTokenizerFast(vocab_file=VOCAB, do_lower_case=True)
    collator = transformers.DataCollatorWithPadding(tokenizer)

    def encoded(split):
        sentences, labels = _sentences(split)
        enc = tokenizer(sentences, truncation=True, max_length=args.seq)
        return [{"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": y}
                for ids, types, mask, y in zip(enc["input_ids"], enc["token_type_ids"],
                                                enc["attention_mask"], labels)]

    train, dev = encoded("train"), encoded("dev")
    generator = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(train, batch_size=args.batch, shuffle=True,
                                         drop_last=True, collate_fn=collator,
                                         generator=generator)
    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=LEARNING_RATE, eps=1e-6)
    schedule = transformers.get_linear_schedule_with_warmup(
        optimizer, int(args.train_steps * WARMUP_PROPORTION), args.train_steps)

    def batches():
        while True:
            yield from loader

    stream = batches()
    real_train = fed_train = 0
    model.train()

    def step():
        nonlocal real_train, fed_train
        batch = next(stream)
        real_train += int(batch["attention_mask"].sum())
        fed_train += batch["attention_mask"].numel()
        optimizer.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        return float(loss)

    for _ in range(args.warmup_steps):
        step()
    timed = args.train_steps - args.warmup_steps
    t0 = time.perf_counter()
    for _ in range(timed):
        step()
    train_s = time.perf_counter() - t0

    def evaluate():
        model.eval()
        right = real = fed = 0
        with torch.no_grad():
            for i in range(0, len(dev), args.batch):
                batch = collator(dev[i:i + args.batch])
                real += int(batch["attention_mask"].sum())
                fed += batch["attention_mask"].numel()
                labels = batch.pop("labels")
                right += int((model(**batch).logits.argmax(-1) == labels).sum())
        return right / len(dev), real, fed

    evaluate()
    t0 = time.perf_counter()
    accuracy, real_eval, fed_eval = evaluate()
    eval_s = time.perf_counter() - t0
    return _result("hf", timed * args.batch, train_s, len(dev), eval_s, real_train, fed_train,
                   real_eval, fed_eval, accuracy)


# --- driver ------------------------------------------------------------------------------------
def _worker(args) -> int:
    name = args.worker
    result = (run_ours(args, True) if name == "ours_bucketed" else
              run_ours(args, False) if name == "ours_fixed" else
              run_keras_hub(args) if name == "keras_hub" else run_hf(args))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def _available(name: str) -> str | None:
    """None when the contender can run here, else why not."""
    import importlib.util

    needs = {"keras_hub": ["keras_hub"], "hf": ["torch", "transformers"]}.get(name, [])
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        hint = ("pip install --no-deps keras-hub" if name == "keras_hub"
                else "pip install torch transformers")
        return f"{', '.join(missing)} not installed ({hint})"
    return None


def _features(args) -> tuple[str, str]:
    """bert_tf's cached SST-2 feature files (written once, before anything is timed)."""
    from benchmarks import common  # noqa: F401
    from data_prep.tasks import glue

    task = glue.get_task("sst2")
    cache = os.path.join(args.work_dir, "features")
    train = glue.cached_features(task, "train", SST2, cache, VOCAB, True, args.seq)
    dev = glue.cached_features(task, "dev", SST2, cache, VOCAB, True, args.seq)
    return train.path, dev.path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="mini", help="bert_tf preset: tiny mini small ...")
    parser.add_argument("--seq", type=int, default=128, help="max_seq_length / sequence_length")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--train_steps", type=int, default=200)
    parser.add_argument("--warmup_steps", type=int, default=20,
                        help="first steps not timed (a multiple of --steps_per_loop)")
    parser.add_argument("--steps_per_loop", type=int, default=10)
    parser.add_argument("--jit_compile", action="store_true",
                        help="XLA for ours and keras-hub (HF stays eager)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--train_file", help=argparse.SUPPRESS)
    parser.add_argument("--dev_file", help=argparse.SUPPRESS)
    parser.add_argument("--work_dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup_steps % args.steps_per_loop or args.train_steps % args.steps_per_loop:
        parser.error("--warmup_steps and --train_steps must be multiples of --steps_per_loop")
    if not args.warmup_steps < args.train_steps:
        parser.error("--warmup_steps must be below --train_steps")
    if args.worker:
        return _worker(args)

    from benchmarks import common

    names = common.parse_list(args.contenders)
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        parser.error(f"--contenders: unknown {unknown}; choose from {CONTENDERS}")
    print("\n".join(common.environment_lines(
        ["tensorflow", "keras", "keras-hub", "torch", "transformers"])))
    print(f"config {args.config}, seq {args.seq}, batch {args.batch}, {args.train_steps} steps "
          f"({args.warmup_steps} untimed), steps per call {args.steps_per_loop}, "
          f"jit_compile {args.jit_compile}, {args.repetitions} repetitions")
    skipped = {n: why for n in names if (why := _available(n))}
    for name, why in skipped.items():
        print(f"  skipping {name}: {why}")
    names = [n for n in names if n not in skipped]
    work_dir = tempfile.mkdtemp(prefix="bench_finetune_")
    try:
        args.work_dir = work_dir
        train_file, dev_file = _features(args)
        runs: dict[str, list[dict]] = {n: [] for n in names}
        for rep in range(args.repetitions):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                flags = [f"--worker={name}", f"--config={args.config}", f"--seq={args.seq}",
                         f"--batch={args.batch}", f"--train_steps={args.train_steps}",
                         f"--warmup_steps={args.warmup_steps}",
                         f"--steps_per_loop={args.steps_per_loop}", f"--seed={args.seed}",
                         f"--train_file={train_file}", f"--dev_file={dev_file}",
                         f"--work_dir={work_dir}"] + (["--jit_compile"] if args.jit_compile
                                                      else [])
                t0 = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "benchmarks.bench_finetune", *flags],
                                      cwd=REPO, capture_output=True, text=True,
                                      env={**os.environ, "PYTHONPATH": REPO})
                lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
                if done.returncode or not lines:
                    print(f"  rep {rep + 1} {name}: failed\n{done.stderr[-2000:]}")
                    continue
                runs[name].append(json.loads(lines[-1][len("RESULT "):]))
                r = runs[name][-1]
                print(f"  rep {rep + 1} {name}: {time.perf_counter() - t0:.0f}s, train "
                      f"{r['train_examples_per_s']:.1f} ex/s, eval "
                      f"{r['eval_examples_per_s']:.1f} ex/s, acc {r['eval_accuracy']:.4f}",
                      flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    for rep in range(args.repetitions):
        results = {n: r[rep] for n, r in runs.items() if len(r) > rep}
        _print_table(f"SST-2 fine-tuning, {args.config}, seq {args.seq}, batch {args.batch}: "
                     f"repetition {rep + 1}", results)
    if args.repetitions > 1:
        medians = {n: {k: (statistics.median(x[k] for x in r) if k != "contender" else n)
                       for k in r[0]} for n, r in runs.items() if r}
        _print_table(f"Median of {args.repetitions} repetitions", medians)
    return 0


def _print_table(title: str, results: dict[str, dict]) -> None:
    from benchmarks import common

    def versus(name, key):
        others = [r[key] for n, r in results.items() if n != name]
        return f"{results[name][key] / max(others):.2f}x" if others else ""

    rows = [[name, f"{r['train_examples_per_s']:.1f}", versus(name, "train_examples_per_s"),
             f"{r['eval_examples_per_s']:.1f}", versus(name, "eval_examples_per_s"),
             f"{r['real_fraction_train']:.3f}", f"{r['real_fraction_eval']:.3f}",
             f"{r['eval_accuracy']:.4f}"] for name, r in results.items()]
    common.print_table(title, ["contender", "train ex/s", "vs best other", "eval ex/s",
                               "vs best other", "real tokens (train)", "real tokens (eval)",
                               "dev accuracy"], rows)


if __name__ == "__main__":
    sys.exit(main())
