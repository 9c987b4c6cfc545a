"""The BFC CPU allocator switch: each training script turns it on before any tensor exists.

Each case runs in a fresh interpreter, because TensorFlow picks its CPU allocator once per
process (the test process has long since picked one)."""
import functools
import os
import subprocess
import sys

import pytest

from bert_tf.training.cpu_allocator import ENV_VAR
from tests.conftest import REPO_ROOT

SCRIPTS = ["run_pretraining", "run_classifier", "run_squad", "run_tagger"]


def _python(code: str, env_value: str | None = None) -> list[str]:
    """Runs `code` in a new interpreter; returns its stdout lines."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if env_value is not None:
        env[ENV_VAR] = env_value
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


_PROBE = """
from bert_tf.training import cpu_allocator
print(cpu_allocator.bfc_cpu_allocator_active())
"""


@functools.lru_cache(maxsize=None)
def _default_is_bfc() -> bool:
    """Whether this machine's TensorFlow pools CPU memory in a BFC allocator without being asked.

    With oneDNN on some CPUs (seen on an AVX-512 VM), TensorFlow's default CPU allocator is
    oneDNN's `mklcpu`, itself a BFC allocator: there is then no malloc-based allocator to see.
    """
    return _python(_PROBE, env_value="false") == ["True"]


def _skip_off_checks_if_default_is_bfc():
    if _default_is_bfc():
        pytest.skip("this TensorFlow's default CPU allocator is already BFC-based (oneDNN's "
                    "mklcpu); the switch has nothing to turn off here")


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_main_turns_it_on_unless_the_flag_says_no(script):
    # main stops at a missing required flag, after its first line chose the allocator.
    code = f"""
from absl import app, flags
import bert_tf.{script} as script
from bert_tf.training import cpu_allocator
flags.FLAGS(["prog"] + ARGS)
try:
    script.main([])
except app.UsageError:
    pass
print(cpu_allocator.bfc_cpu_allocator_active())
"""
    assert _python("ARGS = []\n" + code) == ["True"]
    _skip_off_checks_if_default_is_bfc()
    assert _python("ARGS = ['--nobfc_cpu_allocator']\n" + code) == ["False"]


def test_the_environment_wins_and_a_late_call_warns():
    code = """
import logging, sys
logging.basicConfig(stream=sys.stdout, format="%(levelname)s")
from bert_tf.training import cpu_allocator
print(cpu_allocator.use_bfc_cpu_allocator(True))
"""
    assert _python(code, env_value="1") == ["True"]
    _skip_off_checks_if_default_is_bfc()
    assert _python(code, env_value="false") == ["False"]
    late = """
import logging, sys
logging.basicConfig(stream=sys.stdout, format="%(levelname)s")
import tensorflow as tf
tf.constant([1.0]) + 1.0  # the first tensor creates the default allocator
from bert_tf.training import cpu_allocator
print(cpu_allocator.use_bfc_cpu_allocator(True))
"""
    assert _python(late) == ["WARNING", "False"]
