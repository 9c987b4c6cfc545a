"""GLUE metrics in plain numpy: accuracy, F1, Matthews correlation, Pearson and Spearman.

Degenerate inputs have one rule everywhere: a ratio whose denominator is zero is 0.0 (F1 with
no positive prediction nor label, Matthews with one predicted or true class only, a
correlation where either side has zero variance). That is what sklearn returns for F1 and
Matthews; scipy returns NaN for the correlations, which would poison averages and
best-checkpoint comparisons, so we return 0.0 ("no measurable association") instead.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np


def _pair(predictions, labels, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(predictions, dtype).reshape(-1), np.asarray(labels, dtype).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"{p.shape[0]} predictions but {y.shape[0]} labels.")
    return p, y


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def accuracy(predictions, labels) -> float:
    """Fraction of predictions equal to the labels (int [n] each); 0.0 for n = 0."""
    p, y = _pair(predictions, labels)
    return _ratio(np.sum(p == y), p.size)


def f1_score(predictions, labels, positive: int = 1) -> float:
    """F1 of the `positive` class: 2·TP / (2·TP + FP + FN), as GLUE scores MRPC and QQP."""
    p, y = _pair(predictions, labels)
    tp = np.sum((p == positive) & (y == positive))
    fp = np.sum((p == positive) & (y != positive))
    fn = np.sum((p != positive) & (y == positive))
    return _ratio(2 * tp, 2 * tp + fp + fn)


def matthews_corrcoef(predictions, labels) -> float:
    """Matthews correlation (CoLA), the multi-class form (Gorodkin 2004); binary is a case of it.

    With confusion matrix C, t_k = row sums (true), p_k = column sums (predicted), c = trace,
    s = n: MCC = (c·s − Σ p_k·t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)).
    """
    p, y = _pair(predictions, labels)
    classes, codes = np.unique(np.concatenate([y, p]), return_inverse=True)
    k = classes.size
    confusion = np.zeros((k, k), np.float64)
    np.add.at(confusion, (codes[:y.size], codes[y.size:]), 1.0)
    t, pr = confusion.sum(axis=1), confusion.sum(axis=0)
    s, c = float(y.size), float(np.trace(confusion))
    den = np.sqrt((s * s - pr @ pr) * (s * s - t @ t))
    return _ratio(c * s - pr @ t, den)


def pearson(predictions, labels) -> float:
    """Pearson correlation of two float [n] vectors; 0.0 if either is constant."""
    x, y = _pair(predictions, labels, np.float64)
    if x.size == 0:
        return 0.0
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x @ x) * (y @ y))
    return _ratio(x @ y, den)


def rankdata(values) -> np.ndarray:
    """1-based ranks of float [n] values, ties sharing their average rank (scipy's "average")."""
    v = np.asarray(values, np.float64).reshape(-1)
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    # Each run of equal values [start, end) gets rank (start + 1 + end) / 2.
    new_run = np.concatenate([[True], sorted_v[1:] != sorted_v[:-1]])
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], v.size)
    run_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(v.size, np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def spearman(predictions, labels) -> float:
    """Spearman's rho: Pearson of the average ranks (ties averaged); 0.0 if either is constant."""
    x, y = _pair(predictions, labels, np.float64)
    return pearson(rankdata(x), rankdata(y))


METRICS: Mapping[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": f1_score,
    "matthews_corr": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}


def compute(names: Sequence[str], predictions, labels) -> dict[str, float]:
    """{name: value} for each metric name in `names` (keys of `METRICS`).

    predictions/labels: int class ids [n] for accuracy/f1/matthews_corr, floats [n] for
    pearson/spearman.
    """
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"Unknown metric(s) {unknown}; known: {sorted(METRICS)}.")
    return {name: METRICS[name](predictions, labels) for name in names}


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', '')."""
    return (tag[0], tag[2:]) if len(tag) > 2 and tag[1] == "-" else ("O", "")


def entity_chunks(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """(type, start, end-inclusive) chunks of one tag sequence, by conlleval's rules.

    A chunk starts at B-/S-, or at an I-/E- that follows O or a different type (so IOB1
    files and stray I- tags count as starts, as conlleval and seqeval's default mode do);
    it ends before O, B-, S-, a type change, or after E-/S-.
    """
    chunks = set()
    start, kind = None, ""
    prev_prefix = "O"
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, typ = _split_tag(tag)
        ends = start is not None and (
            prefix in ("O", "B", "S") or typ != kind or prev_prefix in ("E", "S"))
        if ends:
            chunks.add((kind, start, i - 1))
            start = None
        if prefix != "O" and start is None:
            start, kind = i, typ
        prev_prefix = prefix
    return chunks


def entity_f1(true_tags: Sequence[Sequence[str]],
              pred_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision/recall/F1 of exact entity chunks over sentences (conlleval/seqeval).

    true_tags/pred_tags: per sentence, the tag of every word (same lengths).
    """
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"{len(true_tags)} gold sentences but {len(pred_tags)} predicted.")
    correct = num_true = num_pred = 0
    for i, (gold, pred) in enumerate(zip(true_tags, pred_tags)):
        if len(gold) != len(pred):
            raise ValueError(f"sentence {i}: {len(gold)} gold tags but {len(pred)} predicted.")
        gold_chunks, pred_chunks = entity_chunks(gold), entity_chunks(pred)
        correct += len(gold_chunks & pred_chunks)
        num_true += len(gold_chunks)
        num_pred += len(pred_chunks)
    precision, recall = _ratio(correct, num_pred), _ratio(correct, num_true)
    return {"precision": precision, "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall)}
