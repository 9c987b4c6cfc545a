"""Every third-party module imported anywhere in the tree is declared in setup.py.

Each must be in `install_requires` or in an extra (`test`, `bench`, `beam`: an extra's
module is imported only by the tests, benchmarks or optional modules that need it). The PyTorch peers (`torch`, `transformers`)
are deliberately undeclared (a plain `torch` requirement pulls a multi-GB CUDA build), so they
may only be imported inside a function, where a missing one is handled.
Also: the README's test command is exactly what `.ci/run` runs.
"""
from __future__ import annotations

import ast
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
FIRST_PARTY = {"bert_tf", "data_prep", "tests", "benchmarks", "scripts"}

# Import name -> distribution name on PyPI. A new third-party import fails this test until it
# is added here and declared in setup.py.
DISTRIBUTIONS = {
    "absl": "absl-py", "apache_beam": "apache-beam", "bert": "bert-tensorflow",
    "flatbuffers": "flatbuffers",
    "keras": "keras", "keras_hub": "keras-hub", "llvmlite": "llvmlite",
    "ml_dtypes": "ml_dtypes", "numba": "numba", "numpy": "numpy", "pytest": "pytest",
    "safetensors": "safetensors", "scipy": "scipy", "setuptools": "setuptools",
    "tensorboard": "tensorboard", "tensorflow": "tensorflow",
    "tensorflow_datasets": "tensorflow-datasets", "tensorflow_text": "tensorflow-text",
    "tokenizers": "tokenizers", "torch": "torch", "transformers": "transformers",
}
UNDECLARED_PEERS = {"torch", "transformers"}


def _setup_requirements() -> tuple[set[str], set[str]]:
    """(install_requires, every extra's requirements) as lower-case distribution names."""
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "id", None) == "setup")
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords
                if k.arg in ("install_requires", "extras_require")}

    def name(requirement: str) -> str:
        return re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower().replace("_", "-")

    extras = {name(r) for reqs in keywords.get("extras_require", {}).values() for r in reqs}
    return {name(r) for r in keywords["install_requires"]}, extras


def _imports(path: pathlib.Path):
    """(top-level module, imported at module level?) for each absolute import in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            yield module.split(".")[0], id(node) in top_level, node.lineno


def _third_party_imports():
    for path in sorted(REPO.rglob("*.py")):
        if ".git" in path.parts or "build" in path.parts:
            continue
        for module, at_top, line in _imports(path):
            if module not in sys.stdlib_module_names and module not in FIRST_PARTY:
                yield path.relative_to(REPO), module, at_top, line


def test_every_import_is_declared_in_setup_py():
    required, extras = _setup_requirements()
    problems = []
    for rel, module, at_top, line in _third_party_imports():
        where = f"{rel}:{line}: import {module}"
        dist = DISTRIBUTIONS.get(module)
        if dist is None:
            problems.append(f"{where}: unknown module; add it to DISTRIBUTIONS and setup.py")
            continue
        dist = dist.lower().replace("_", "-")
        if module in UNDECLARED_PEERS:
            if at_top:
                problems.append(f"{where}: an undeclared peer imported at module level")
        elif dist == "setuptools":
            continue  # setup.py itself; pip provides it to the build
        elif dist not in required and dist not in extras:
            problems.append(f"{where}: {dist} is in neither install_requires nor an extra")
    assert not problems, "\n".join(problems)


def test_checker_notices_an_undeclared_import(tmp_path, monkeypatch):
    # The checker itself must fail on a module that setup.py does not declare.
    monkeypatch.setitem(DISTRIBUTIONS, "scipy", "not-a-declared-package")
    try:
        test_every_import_is_declared_in_setup_py()
    except AssertionError as e:
        assert "tests/test_metrics.py" in str(e) and "not-a-declared-package" in str(e)
    else:
        raise AssertionError("an undeclared dependency was not reported")


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"\*\*The tests\*\*.*?```bash\n(.*?)\n```", readme, re.S)
    assert block, "README.md has no 'The tests' command block"
    command = block.group(1).strip()
    assert "\n" not in command
    ci = (REPO / ".ci" / "run").read_text()
    assert command in ci.splitlines(), f".ci/run does not run the README command: {command}"
    # ...inside a virtual environment that .ci/run makes itself, without system packages.
    assert "-m venv" in ci and "system-site-packages" not in ci
