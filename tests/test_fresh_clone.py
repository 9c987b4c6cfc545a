"""scripts/fresh_clone_check.py: the README's main-job command from a fresh clone and venv.

The whole run (install + main job, ~7-8 minutes on 2 cores) is slow-marked; the report
parsing and comparison it relies on are checked here on the README's own sample.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scripts import fresh_clone_check as check
from tests.conftest import REPO_ROOT


def _readme() -> str:
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_readme_commands_and_sample_report_are_found():
    readme = _readme()
    assert check.readme_command(readme, "main_job").endswith("python -m bert_tf.main_job")
    assert check.readme_command(readme, "tests").endswith("python -m pytest")
    sample = check.parse_report(check.readme_report(readme))
    assert set(sample["metrics"]) == {"masked_lm_accuracy", "next_sentence_accuracy",
                                      "eval_accuracy"}
    assert [label for _, label in sample["predictions"]] == ["positive", "negative", "negative"]
    assert check.compare(sample, sample, 0.0) == []


def test_compare_reports_what_differs():
    sample = check.parse_report(check.readme_report(_readme()))
    worse = {**sample, "metrics": {**sample["metrics"],
                                   "eval_accuracy": sample["metrics"]["eval_accuracy"] - 0.1},
             "predictions": sample["predictions"][:1] + [("x", "positive")],
             "lines": sample["lines"][1:]}
    problems = check.compare(sample, worse, 0.03)
    assert any(p.startswith("eval_accuracy") for p in problems)
    assert any(p.startswith("predictions") for p in problems)
    assert any("pretrained model:" in p for p in problems)


@pytest.mark.slow
def test_main_job_from_a_fresh_clone_matches_the_readme():
    done = subprocess.run([sys.executable, "scripts/fresh_clone_check.py"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "report matches README" in done.stdout
