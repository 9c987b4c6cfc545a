"""The main job: the whole pipeline on the data the repo ships, end to end, on CPU.

    python -m bert_tf.main_job            # or the console script `bert-demo`

Stages (each is also a standalone script run from its own flagfile in flags/):
  1. build a WordPiece vocab from the shipped corpus         flags/build_vocab_tiny.flags
  2. write pretraining TFRecords (NSP pairs + masked LM)    flags/create_pretraining_data_tiny.flags
  3. pretrain a tiny BERT                                   flags/pretrain_tiny.flags
  4. fine-tune and evaluate it on the shipped SST-2         flags/glue_sst2_demo.flags
  5. export the classifier as a raw-text SavedModel         flags/export_demo.flags
  6. answer predictions from the SavedModel
Every stage resumes or skips finished work when the job is run again.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from absl import app, flags

from data_prep import command
from data_prep.files.atomic_io import write_text

FLAGS = flags.FLAGS
DEFAULT_WORK_DIR = "runs/demo"  # the directory the stages' flagfiles name
flags.DEFINE_string("work_dir", DEFAULT_WORK_DIR, "Where the stages read and write: the "
                    "flagfiles' runs/demo/ paths are moved here.")
flags.DEFINE_list("skip", [], "Stage names to skip: vocab,pretraining_data,pretrain,finetune,"
                  "export,predict.")

STAGES = (
    ("vocab", "data_prep.build_vocab", "flags/build_vocab_tiny.flags"),
    ("pretraining_data", "data_prep.create_pretraining_data",
     "flags/create_pretraining_data_tiny.flags"),
    ("pretrain", "bert_tf.run_pretraining", "flags/pretrain_tiny.flags"),
    ("finetune", "bert_tf.run_classifier", "flags/glue_sst2_demo.flags"),
    ("export", "bert_tf.export_savedmodel", "flags/export_demo.flags"),
)
EXAMPLES = ("a gripping, beautifully acted film that stays with you",
            "a dull, lifeless mess with nothing to say",
            "")


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stage_flagfile(flagfile: str, work_dir: str) -> str:
    """`flagfile` itself for the default work_dir; else a copy under work_dir/flags/ in which
    every runs/demo path is moved to work_dir (the shipped flagfiles stay the recipes)."""
    if os.path.abspath(work_dir) == os.path.abspath(DEFAULT_WORK_DIR):
        return flagfile
    target = os.path.abspath(work_dir)
    with open(flagfile, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    moved = [line if line.lstrip().startswith("#") else
             re.sub(rf"(?<![\w/.]){re.escape(DEFAULT_WORK_DIR)}(?=/|$|\s)", target, line)
             for line in lines]
    path = os.path.join(target, "flags", os.path.basename(flagfile))
    write_text(path, "".join(moved))
    return path


def _run_stage(index: int, total: int, name: str, module: str, flagfile: str) -> float:
    print(f"\n=== [{index}/{total}] {name}: python -m {module} --flagfile={flagfile}",
          flush=True)
    start = time.time()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    done = subprocess.run([sys.executable, "-m", module, f"--flagfile={flagfile}"],
                          cwd=_repo_root(), env=env)
    elapsed = time.time() - start
    if done.returncode:
        command.fail("bert-demo", f"stage {name!r} failed (exit {done.returncode}); rerun "
                     f"the job to resume, or run the stage alone: python -m {module} "
                     f"--flagfile={flagfile}")
    print(f"=== [{index}/{total}] {name} done in {elapsed:.0f}s", flush=True)
    return elapsed


def _read_results(path: str) -> dict[str, str]:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return dict(line.strip().split(" = ", 1) for line in f if " = " in line)


def predict(export_dir: str, texts: tuple[str, ...] = EXAMPLES) -> list[tuple[str, str, float]]:
    """(text, label name, probability) from the exported SavedModel's text signature."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)
    model = tf.saved_model.load(export_dir)
    out = model.signatures["serving_default"](text=tf.constant(list(texts)))
    names = [n.decode() for n in out["label_name"].numpy()]
    probs = out["probabilities"].numpy().max(-1)
    return list(zip(texts, names, [float(p) for p in probs]))


def main(argv) -> None:
    del argv
    os.chdir(_repo_root())
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    timings: dict[str, float] = {}
    stages = [s for s in STAGES if s[0] not in FLAGS.skip]
    total = len(stages) + 1
    job_start = time.time()
    for i, (name, module, flagfile) in enumerate(stages, 1):
        timings[name] = _run_stage(i, total, name, module,
                                   stage_flagfile(flagfile, FLAGS.work_dir))
    work = FLAGS.work_dir
    export_dir = os.path.join(work, "export", "sst2_classifier")
    print(f"\n=== [{total}/{total}] predict from {export_dir}", flush=True)
    start = time.time()
    answers = predict(export_dir)
    timings["predict"] = time.time() - start

    pre = _read_results(os.path.join(work, "pretrain", "eval_results.txt"))
    fine = _read_results(os.path.join(work, "classifier", "eval_results.txt"))
    print("\n================ bert_tf main job: report ================")
    print(f"vocab:              {os.path.join(work, 'vocab.txt')}")
    print(f"pretraining data:   {os.path.join(work, 'pretraining_data')}")
    print(f"pretrained model:   {os.path.join(work, 'pretrain')}  " + ", ".join(
        f"{k}={float(pre[k]):.4f}" for k in ("masked_lm_accuracy", "next_sentence_accuracy")
        if k in pre))
    print(f"fine-tuned SST-2:   {os.path.join(work, 'classifier')}  " + ", ".join(
        f"{k}={v}" for k, v in fine.items()))
    print(f"SavedModel:         {export_dir}")
    for text, label, prob in answers:
        print(f"  predict {text!r:60.60} -> {label} ({prob:.2f})")
    print("timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()) +
          f", total {time.time() - job_start:.0f}s")


def run() -> None:
    """Console entry point `bert-demo`."""
    command.run(main, "bert-demo")


if __name__ == "__main__":
    run()
