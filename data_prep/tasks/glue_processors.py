"""GLUE tasks: where each split's TSV is, which columns hold what, and the label set.

Every task is one `GlueTask` value (data, not a class per task): the file of each split and
its `Layout` (header row or not, 0-based columns of text_a, text_b, label and the GLUE id).
Column positions are those of the files that GLUE's download script writes, e.g. CoLA
train/dev have no header and `source label mark sentence`, MNLI has its sentences in
columns 8 and 9 and the gold label last.

    task = get_task("mnli")
    examples = read_examples(task, "dev_matched", "glue_data/MNLI")

Bad input fails loudly with the file and line: a missing file, too few columns, an unknown
label. The one exception is QQP, whose train file really contains broken rows: those are
skipped and counted in a warning.
"""
from __future__ import annotations

import dataclasses
import logging
import os

_LOG = logging.getLogger("data_prep.tasks.glue")


@dataclasses.dataclass(frozen=True)
class InputExample:
    """One GLUE example.

    guid: "<split>-<id>" (id = the file's id column, else the 0-based data-row number).
    text_a / text_b: the sentence(s); text_b None for single-sentence tasks.
    label: the label string (a name of `GlueTask.labels`), a float for regression, None for
      test examples (GLUE does not publish test labels).
    index: the GLUE id column (what a submission file's `index` column holds), or None.
    """

    guid: str
    text_a: str
    text_b: str | None = None
    label: str | float | None = None
    index: str | None = None


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where things are in one split's TSV (0-based columns; negative counts from the end)."""

    header: bool
    text_a: int
    text_b: int | None = None
    label: int | None = None
    index: int | None = None

    @property
    def min_columns(self) -> int:
        """Fewest columns a valid row has. A label counted from the end (-1) must not be able
        to land on a text column, so it needs one more column than the last text column."""
        used = [c for c in (self.text_a, self.text_b, self.index) if c is not None]
        need = max(used) + 1
        if self.label is not None:
            need = max(need, self.label + 1) if self.label >= 0 else max(need + 1, -self.label)
        return need


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: its file name and layout; test splits also name their submission files."""

    file: str
    layout: Layout
    submission: str | None = None  # GLUE submission file stem, e.g. "MNLI-m" -> MNLI-m.tsv
    results: str | None = None  # probabilities file, e.g. "test_results" -> test_results.tsv


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """A GLUE task: label names ("" = regression), splits, metrics.

    `splits` keys: "train", the dev splits (the first one is the one evaluated during
    training) and the test splits, in that order. `metrics` are names of
    `bert_tf.training.metrics.METRICS`; `primary_metric` is the one GLUE ranks by first.
    """

    name: str
    labels: tuple[str, ...]
    splits: dict[str, Split]
    metrics: tuple[str, ...] = ("accuracy",)
    skip_malformed: bool = False  # QQP only: drop (and count) rows with too few columns
    tfds_name: str | None = None

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def num_classes(self) -> int:
        """Width of the classifier output: the label count, 1 for regression."""
        return len(self.labels) or 1

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    @property
    def dev_splits(self) -> list[str]:
        return [s for s in self.splits if s.startswith("dev")]

    @property
    def test_splits(self) -> list[str]:
        return [s for s in self.splits if s.startswith("test")]


def _sentence_pair_task(name: str, labels: tuple[str, ...], stem: str, tfds_name: str,
                        metrics: tuple[str, ...] = ("accuracy",)) -> GlueTask:
    """QNLI, RTE, WNLI: `index sentence1 sentence2 label` (QNLI: question, sentence)."""
    labeled = Layout(header=True, index=0, text_a=1, text_b=2, label=-1)
    return GlueTask(name, labels, {
        "train": Split("train.tsv", labeled),
        "dev": Split("dev.tsv", labeled),
        "test": Split("test.tsv", Layout(header=True, index=0, text_a=1, text_b=2),
                      stem, "test_results"),
    }, metrics, tfds_name=tfds_name)


_BINARY = ("0", "1")
_MNLI_LABELS = ("contradiction", "entailment", "neutral")  # the original run_classifier order
_NLI_LABELS = ("entailment", "not_entailment")
_MNLI_LABELED = Layout(header=True, index=0, text_a=8, text_b=9, label=-1)
_MNLI_TEST = Layout(header=True, index=0, text_a=8, text_b=9)

TASKS: dict[str, GlueTask] = {t.name: t for t in [
    GlueTask("cola", _BINARY, {
        "train": Split("train.tsv", Layout(header=False, label=1, text_a=3)),
        "dev": Split("dev.tsv", Layout(header=False, label=1, text_a=3)),
        "test": Split("test.tsv", Layout(header=True, index=0, text_a=1), "CoLA",
                      "test_results"),
    }, ("matthews_corr",), tfds_name="cola"),
    GlueTask("sst2", _BINARY, {
        "train": Split("train.tsv", Layout(header=True, text_a=0, label=1)),
        "dev": Split("dev.tsv", Layout(header=True, text_a=0, label=1)),
        "test": Split("test.tsv", Layout(header=True, index=0, text_a=1), "SST-2",
                      "test_results"),
    }, tfds_name="sst2"),
    GlueTask("mrpc", _BINARY, {
        "train": Split("train.tsv", Layout(header=True, label=0, text_a=3, text_b=4)),
        "dev": Split("dev.tsv", Layout(header=True, label=0, text_a=3, text_b=4)),
        "test": Split("test.tsv", Layout(header=True, index=0, text_a=3, text_b=4), "MRPC",
                      "test_results"),
    }, ("f1", "accuracy"), tfds_name="mrpc"),
    GlueTask("stsb", (), {
        "train": Split("train.tsv", Layout(header=True, index=0, text_a=7, text_b=8, label=9)),
        "dev": Split("dev.tsv", Layout(header=True, index=0, text_a=7, text_b=8, label=9)),
        "test": Split("test.tsv", Layout(header=True, index=0, text_a=7, text_b=8), "STS-B",
                      "test_results"),
    }, ("pearson", "spearman"), tfds_name="stsb"),
    GlueTask("qqp", _BINARY, {
        "train": Split("train.tsv", Layout(header=True, index=0, text_a=3, text_b=4, label=5)),
        "dev": Split("dev.tsv", Layout(header=True, index=0, text_a=3, text_b=4, label=5)),
        "test": Split("test.tsv", Layout(header=True, index=0, text_a=1, text_b=2), "QQP",
                      "test_results"),
    }, ("f1", "accuracy"), skip_malformed=True, tfds_name="qqp"),
    GlueTask("mnli", _MNLI_LABELS, {
        "train": Split("train.tsv", _MNLI_LABELED),
        "dev_matched": Split("dev_matched.tsv", _MNLI_LABELED),
        "dev_mismatched": Split("dev_mismatched.tsv", _MNLI_LABELED),
        "test_matched": Split("test_matched.tsv", _MNLI_TEST, "MNLI-m", "test_results"),
        "test_mismatched": Split("test_mismatched.tsv", _MNLI_TEST, "MNLI-mm",
                                 "test_mismatched_results"),
    }, tfds_name="mnli"),
    _sentence_pair_task("qnli", _NLI_LABELS, "QNLI", "qnli"),
    _sentence_pair_task("rte", _NLI_LABELS, "RTE", "rte"),
    _sentence_pair_task("wnli", _BINARY, "WNLI", "wnli"),
    # The diagnostic set: test only, scored with a model fine-tuned on MNLI (same labels).
    GlueTask("ax", _MNLI_LABELS, {
        "test": Split("diagnostic.tsv", Layout(header=True, index=0, text_a=1, text_b=2), "AX",
                      "test_results"),
    }, tfds_name="ax"),
]}

# Spellings people use for the same tasks (GLUE's own folder names among them).
_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "diagnostic": "ax"}


def get_task(name: str) -> GlueTask:
    """The task by name (case-insensitive; "SST-2", "STS-B" and "diagnostic" also work)."""
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in TASKS:
        raise ValueError(f"Unknown GLUE task {name!r}; known: {', '.join(TASKS)}.")
    return TASKS[key]


def split_path(task: GlueTask, split: str, data_dir: str) -> str:
    if split not in task.splits:
        raise ValueError(f"GLUE task {task.name} has no {split!r} split; it has "
                         f"{', '.join(task.splits)}.")
    return os.path.join(data_dir, task.splits[split].file)


def existing_split_path(task: GlueTask, split: str, data_dir: str) -> str:
    """`split_path`, or FileNotFoundError naming the file and what --data_dir should be."""
    path = split_path(task, split, data_dir)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GLUE {task.name} {split} file not found: {path} (--data_dir "
                                f"should be the task's folder, e.g. glue_data/SST-2).")
    return path


def _read_rows(path: str) -> list[tuple[int, list[str]]]:
    """(1-based line number, tab-separated fields) of each non-empty line.

    No quoting (GLUE sentences contain bare quotes); lines end at "\\n" only, so a stray
    "\\r" inside a sentence does not split a row; "utf-8-sig" drops the BOM that MRPC has.
    """
    with open(path, encoding="utf-8-sig", newline="\n") as f:
        return [(number, line.rstrip("\r\n").split("\t"))
                for number, line in enumerate(f, start=1) if line.strip("\r\n")]


def _parse_label(task: GlueTask, raw: str, where: str) -> str | float:
    if task.is_regression:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{where}: label {raw!r} is not a number ({task.name} is a "
                             "regression task).") from None
    label = raw.strip()
    if label not in task.labels:
        raise ValueError(f"{where}: unknown label {raw!r} for {task.name}; expected one of "
                         f"{list(task.labels)}.")
    return label


def read_examples(task: GlueTask, split: str, data_dir: str) -> list[InputExample]:
    """The examples of one split, read from `<data_dir>/<split file>`.

    Raises FileNotFoundError naming the file when it is missing, ValueError naming file and
    line for a row with too few columns (QQP: skipped and counted instead) or an unknown label.
    """
    path = existing_split_path(task, split, data_dir)
    layout = task.splits[split].layout
    rows = _read_rows(path)
    if layout.header:
        rows = rows[1:]
    examples, malformed = [], []
    for row_number, (line, fields) in enumerate(rows):
        where = f"{path}:{line}"
        if len(fields) < layout.min_columns:
            if task.skip_malformed:
                malformed.append(line)
                continue
            raise ValueError(f"{where}: expected at least {layout.min_columns} tab-separated "
                             f"columns for {task.name} {split}, found {len(fields)}.")
        index = fields[layout.index] if layout.index is not None else None
        label = None if layout.label is None else _parse_label(task, fields[layout.label], where)
        examples.append(InputExample(
            guid=f"{split}-{index if index is not None else row_number}",
            text_a=fields[layout.text_a],
            text_b=fields[layout.text_b] if layout.text_b is not None else None,
            label=label, index=index))
    if malformed:
        shown = ", ".join(map(str, malformed[:10])) + (", ..." if len(malformed) > 10 else "")
        _LOG.warning("%s: skipped %d malformed row(s) with fewer than %d columns (lines %s).",
                     path, len(malformed), layout.min_columns, shown)
    _LOG.info("Read %d %s %s examples from %s.", len(examples), task.name, split, path)
    return examples
