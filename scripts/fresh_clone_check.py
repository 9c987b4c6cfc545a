"""Runs a README set-up command as a new user would: fresh clone, fresh venv, command as written.

    python scripts/fresh_clone_check.py                 # the main job; compare with README
    python scripts/fresh_clone_check.py --command=tests # the test command (what .ci/run runs)

The command is read from README.md of the clone (the bash block under "**The main job**" or
"**The tests**"), run with `bash -c` inside a virtual environment made for the run (no
system site-packages), from the root of a `git clone` of the committed `--ref`: uncommitted
changes are not part of what a user clones, so they are not part of the check either.

For the main job, the final report is compared with the sample report that README.md shows:
the same report lines, the same predicted labels, and metrics within `--tolerance` (the
demo is seeded, but float rounding differs between CPUs, so the last digits may too).
Exit status 0 when the command succeeded and (for the main job) the report matches.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADINGS = {"main_job": "**The main job**", "tests": "**The tests**"}
METRICS = ("masked_lm_accuracy", "next_sentence_accuracy", "eval_accuracy")


def readme_command(readme: str, which: str) -> str:
    """The one-line bash command under `which`'s heading in README.md."""
    start = readme.index(HEADINGS[which])
    match = re.compile(r"```bash\n(.*?)\n```", re.S).search(readme, start)
    if not match or "\n" in match.group(1).strip():
        raise ValueError(f"README.md: no one-line bash block under {HEADINGS[which]}")
    return match.group(1).strip()


def readme_report(readme: str) -> str:
    """The sample main-job report shown in README.md (the block with 'pretrained model:')."""
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", readme, re.S | re.M):
        if "pretrained model:" in block and "timings:" in block:
            return block
    raise ValueError("README.md: no sample main-job report block")


def parse_report(text: str) -> dict[str, object]:
    """Metrics and predictions of a main-job report (the README sample or a run's output)."""
    text = text[text.rfind("pretrained model:"):] if "pretrained model:" in text else text
    metrics = {k: float(v) for k, v in re.findall(r"\b(\w+_accuracy)=([0-9.]+)", text)}
    predictions = re.findall(r"^\s*predict (.*?)\s+-> (\w+) \(([0-9.]+)\)", text, re.M)
    lines = [label for label in ("pretrained model:", "fine-tuned SST-2:", "SavedModel:",
                                 "timings:") if label in text]
    return {"metrics": metrics, "predictions": [(t.strip(), lab) for t, lab, _ in predictions],
            "lines": lines}


def compare(expected: dict, got: dict, tolerance: float) -> list[str]:
    """Differences that matter between README's report and a run's; empty when they agree."""
    problems = [f"report line {line!r} missing" for line in expected["lines"]
                if line not in got["lines"]]
    for name in METRICS:
        if name not in expected["metrics"]:
            continue
        if name not in got["metrics"]:
            problems.append(f"{name} missing from the report")
        elif abs(got["metrics"][name] - expected["metrics"][name]) > tolerance:
            problems.append(f"{name}: README {expected['metrics'][name]:.4f}, this run "
                            f"{got['metrics'][name]:.4f} (tolerance {tolerance})")
    if got["predictions"] != expected["predictions"]:
        problems.append(f"predictions: README {expected['predictions']}, this run "
                        f"{got['predictions']}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--command", choices=sorted(HEADINGS), default="main_job")
    parser.add_argument("--ref", default="HEAD", help="commit of this repository to clone")
    parser.add_argument("--work_dir", default=None, help="default: a new temporary directory")
    parser.add_argument("--tolerance", type=float, default=0.03,
                        help="largest accepted difference of each accuracy vs README")
    parser.add_argument("--keep", action="store_true", help="keep the clone and venv")
    args = parser.parse_args()

    work = args.work_dir or tempfile.mkdtemp(prefix="bert_tf_fresh_")
    clone, venv = os.path.join(work, "clone"), os.path.join(work, "venv")
    try:
        subprocess.run(["git", "clone", "-q", "--no-local", REPO, clone], check=True)
        subprocess.run(["git", "-C", clone, "checkout", "-q", args.ref], check=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        with open(os.path.join(clone, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        command = readme_command(readme, args.command)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(VIRTUAL_ENV=venv, PATH=os.path.join(venv, "bin") + os.pathsep + env["PATH"],
                   PIP_DISABLE_PIP_VERSION_CHECK="1")
        print(f"fresh clone {clone} ({args.ref}), venv {venv}\n$ {command}", flush=True)
        start = time.time()
        proc = subprocess.Popen(["bash", "-c", command], cwd=clone, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = []
        for line in proc.stdout:
            sys.stdout.write(line)
            output.append(line)
        rc = proc.wait()
        print(f"\nexit {rc} after {time.time() - start:.0f}s")
        if rc or args.command != "main_job":
            return rc
        expected, got = parse_report(readme_report(readme)), parse_report("".join(output))
        problems = compare(expected, got, args.tolerance)
        for name in METRICS:
            if name in expected["metrics"]:
                print(f"  {name:24} README {expected['metrics'][name]:.4f}   this run "
                      f"{got['metrics'].get(name, float('nan')):.4f}")
        print("report matches README" if not problems else
              "report differs from README:\n  " + "\n  ".join(problems))
        return 1 if problems else 0
    finally:
        if not args.keep and not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
