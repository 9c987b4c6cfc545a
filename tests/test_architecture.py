"""The tree's dependency rules, checked over every module's imports (ast, nothing imported):

* data_prep never imports bert_tf (bert_tf builds on data_prep, not the reverse);
* library code never imports a command (the scripts a user runs import the library);
* no import cycle among first-party modules, counting imports inside functions too (a lazy
  import still ties the two modules together);
* docs/architecture.md names every module and subpackage of both packages, and the top
  level of each holds only its public API and its commands.
"""
from __future__ import annotations

import ast
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("bert_tf", "data_prep")
# The commands: absl programs with console entry points, and the flag helpers only they use.
COMMANDS = {f"bert_tf.{name}" for name in (
    "run_pretraining", "run_classifier", "run_squad", "run_tagger", "main_job",
    "convert_checkpoint", "export_savedmodel", "extract_features", "script_flags")}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def _resolve(name: str, modules: dict[str, pathlib.Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """The first-party modules `path` imports. `from pkg import mod` is an edge to pkg.mod,
    not to pkg's __init__ (whose re-exports would otherwise make every package a cycle)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [_resolve(a.name, modules) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                       else _resolve(node.module, modules) for a in node.names]
        else:
            continue
        found.update(t for t in targets if t)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_data_prep_never_imports_bert_tf():
    bad = sorted(f"{m} imports {d}" for m, deps in _graph().items() if m.startswith("data_prep")
                 for d in deps if d.split(".")[0] == "bert_tf")
    assert not bad, bad


def test_library_never_imports_a_command():
    bad = sorted(f"{m} imports {d}" for m, deps in _graph().items() if m not in COMMANDS
                 for d in deps if d in COMMANDS)
    assert not bad, bad


def test_no_import_cycles():
    graph = _graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, cycles


def test_the_checks_see_a_cycle_and_a_wrong_way_import(tmp_path, monkeypatch):
    # The rules above must be able to fail: a planted cycle and a planted data_prep ->
    # bert_tf import are found.
    package = tmp_path / "data_prep"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from data_prep import b\n")
    (package / "b.py").write_text("def f():\n    from data_prep import a\n")
    (package / "c.py").write_text("import bert_tf.config\n")
    (tmp_path / "bert_tf").mkdir()
    (tmp_path / "bert_tf" / "__init__.py").write_text("")
    (tmp_path / "bert_tf" / "config.py").write_text("")
    monkeypatch.setattr(__import__(__name__, fromlist=["REPO"]), "REPO", tmp_path)
    graph = _graph()
    assert graph["data_prep.a"] == {"data_prep.b"} and graph["data_prep.b"] == {"data_prep.a"}
    assert graph["data_prep.c"] == {"bert_tf.config"}


def test_architecture_doc_names_every_module_and_subpackage():
    # Every module, at any depth, is named in the doc (as `name.py`), and every subpackage
    # as `name/`.
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*")):
            if path.suffix == ".py" and path.stem != "__init__" and not re.search(
                    rf"`{re.escape(path.name)}`", text):
                missing.append(str(path.relative_to(REPO)))
            if path.is_dir() and (path / "__init__.py").exists() and f"`{path.name}/`" not in text:
                missing.append(f"{path.relative_to(REPO)}/")
    assert not missing, f"docs/architecture.md does not mention {missing}"


def test_the_top_level_is_the_front_door():
    # A package's top level holds its public API and the commands a user runs; library code
    # lives in subpackages named for what they hold.
    front = {"bert_tf": {"__init__", "config"} | {c.split(".")[1] for c in COMMANDS},
             "data_prep": {"__init__", "command", "compiled", "create_pretraining_data",
                           "build_vocab", "prepare_corpus", "beam_pipeline"}}
    extra = sorted(f"{package}/{path.name}" for package in PACKAGES
                   for path in (REPO / package).glob("*.py") if path.stem not in front[package])
    assert not extra, f"library modules at a package's top level: {extra}"
