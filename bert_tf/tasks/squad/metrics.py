"""The official SQuAD v1.1 and v2.0 evaluation (EM / F1), re-implemented from their spec.

Both compare normalised answers: lower-cased, punctuation removed, the articles a/an/the
removed, whitespace collapsed. EM is 1 if the prediction equals a gold answer; F1 is the
token-overlap F1 against it; each question scores its best gold answer, and the totals are
percentages.

v1.1 (`evaluate_v1`): `exact_match`, `f1` over all questions (a missing prediction scores 0).
v2.0 (`evaluate_v2`): an unanswerable question's only gold answer is "", and an empty
prediction or gold has F1 1 if both are empty, else 0. `exact`, `f1`, `total` over questions
with a prediction, the same restricted to answerable (`HasAns_*`) and unanswerable (`NoAns_*`)
questions, and with no-answer scores (`na_probs`, here the null odds): the threshold that would
have maximised EM / F1 had every question whose odds exceed it been answered ""
(`best_exact`, `best_exact_thresh`, `best_f1`, `best_f1_thresh`).
"""
from __future__ import annotations

import collections
import logging
import re
import string
from typing import Iterator, Mapping

_LOG = logging.getLogger("bert_tf.squad")

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop articles, collapse whitespace (in that order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _overlap_f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    common = collections.Counter(prediction_tokens) & collections.Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


# --- v1.1 -------------------------------------------------------------------------------------

def exact_match_v1(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_v1(prediction: str, gold: str) -> float:
    """Token F1; 0 when nothing is shared (two empty answers included)."""
    return _overlap_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


def _questions(articles: list[dict]) -> Iterator[dict]:
    for article in articles:
        for paragraph in article["paragraphs"]:
            yield from paragraph["qas"]


def evaluate_v1(articles: list[dict], predictions: Mapping[str, str]) -> dict[str, float]:
    """`exact_match` and `f1` (percent) of `predictions` (id -> text) on the SQuAD `data` list.

    Questions without a prediction score 0 (warned); questions without gold answers cannot
    be scored in v1.1 and are left out (warned).
    """
    total = exact = f1 = 0.0
    missing = no_gold = 0
    for qa in _questions(articles):
        golds = [answer["text"] for answer in qa.get("answers") or []]
        if not golds:
            no_gold += 1
            continue
        total += 1
        if qa["id"] not in predictions:
            missing += 1
            continue
        prediction = predictions[qa["id"]]
        exact += max(exact_match_v1(prediction, gold) for gold in golds)
        f1 += max(f1_v1(prediction, gold) for gold in golds)
    if missing:
        _LOG.warning("%d questions have no prediction; they score 0.", missing)
    if no_gold:
        _LOG.warning("%d questions have no gold answer (a v2.0 file?); not scored.", no_gold)
    total = max(total, 1.0)
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}


# --- v2.0 -------------------------------------------------------------------------------------

def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_v2(gold: str, prediction: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def f1_v2(gold: str, prediction: str) -> float:
    """Token F1, except that an empty side gives 1 if both are empty, else 0."""
    gold_tokens, prediction_tokens = answer_tokens(gold), answer_tokens(prediction)
    if not gold_tokens or not prediction_tokens:
        return float(gold_tokens == prediction_tokens)
    return _overlap_f1(prediction_tokens, gold_tokens)


def raw_scores_v2(articles: list[dict], predictions: Mapping[str, str]
                  ) -> tuple[dict[str, int], dict[str, float], dict[str, bool]]:
    """Per question with a prediction: (exact, f1) against its best gold, and for every
    question whether it has an answer at all."""
    exact: dict[str, int] = {}
    f1: dict[str, float] = {}
    has_answer: dict[str, bool] = {}
    missing = 0
    for qa in _questions(articles):
        qid = qa["id"]
        has_answer[qid] = bool(qa.get("answers"))
        golds = [a["text"] for a in qa.get("answers") or [] if normalize_answer(a["text"])]
        golds = golds or [""]  # unanswerable: the only right answer is no answer
        if qid not in predictions:
            missing += 1
            continue
        prediction = predictions[qid]
        exact[qid] = max(exact_v2(gold, prediction) for gold in golds)
        f1[qid] = max(f1_v2(gold, prediction) for gold in golds)
    if missing:
        _LOG.warning("%d questions have no prediction; left out of the v2.0 totals.", missing)
    return exact, f1, has_answer


def apply_no_answer_threshold(scores: Mapping[str, float], na_probs: Mapping[str, float],
                              has_answer: Mapping[str, bool],
                              threshold: float) -> dict[str, float]:
    """Scores had every question with na_prob > threshold been answered "" (scores 1 exactly
    when it has no answer)."""
    return {qid: float(not has_answer[qid]) if na_probs.get(qid, 0.0) > threshold else s
            for qid, s in scores.items()}


def _summary(exact: Mapping[str, float], f1: Mapping[str, float],
             qids: list[str] | None = None) -> dict[str, float]:
    qids = list(exact) if qids is None else qids
    total = len(qids)
    return {"exact": 100.0 * sum(exact[q] for q in qids) / max(total, 1),
            "f1": 100.0 * sum(f1[q] for q in qids) / max(total, 1), "total": total}


def find_best_threshold(predictions: Mapping[str, str], scores: Mapping[str, float],
                        na_probs: Mapping[str, float],
                        has_answer: Mapping[str, bool]) -> tuple[float, float]:
    """(best score in percent, its threshold) over thresholds at each question's na_prob.

    Starts from "every question answered ''" (score: the unanswerable ones) and lets the
    questions answer in order of rising na_prob: an answerable one gains its score, an
    unanswerable one loses 1 if its prediction is not "". The best running total wins (the
    first one on ties; threshold 0.0 if answering none is best).
    """
    current = best = float(sum(1 for q in has_answer if not has_answer[q]))
    best_threshold = 0.0
    for qid in sorted(na_probs, key=lambda q: na_probs[q]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            current += scores[qid]
        elif predictions[qid]:
            current -= 1
        if current > best:
            best, best_threshold = current, na_probs[qid]
    return 100.0 * best / max(len(scores), 1), best_threshold


def evaluate_v2(articles: list[dict], predictions: Mapping[str, str],
                na_probs: Mapping[str, float] | None = None,
                na_prob_thresh: float = 1.0) -> dict[str, float]:
    """The official v2.0 result dict (keys in the module docstring).

    na_probs: qid -> no-answer score (null odds); None: 0 for all, and no best-threshold keys.
    na_prob_thresh: questions scoring above it count as answered "" (1.0 as the official
    script; pass the null_score_diff_threshold used for the predictions to score them as
    they are).
    """
    exact_raw, f1_raw, has_answer = raw_scores_v2(articles, predictions)
    probs = dict(na_probs) if na_probs is not None else {k: 0.0 for k in predictions}
    exact = apply_no_answer_threshold(exact_raw, probs, has_answer, na_prob_thresh)
    f1 = apply_no_answer_threshold(f1_raw, probs, has_answer, na_prob_thresh)
    result = _summary(exact, f1)
    # Subsets of the scored questions (the official script assumes every one is scored).
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [q for q in exact if has_answer[q] == wanted]
        if qids:
            result.update({f"{prefix}_{k}": v for k, v in _summary(exact, f1, qids).items()})
    if na_probs is not None:
        best_exact, exact_threshold = find_best_threshold(predictions, exact_raw, probs,
                                                          has_answer)
        best_f1, f1_threshold = find_best_threshold(predictions, f1_raw, probs, has_answer)
        result.update(best_exact=best_exact, best_exact_thresh=exact_threshold,
                      best_f1=best_f1, best_f1_thresh=f1_threshold)
    return result


def has_gold_answers(articles: list[dict]) -> bool:
    """Whether any question of the file has a gold answer (else there is nothing to score)."""
    return any(qa.get("answers") for qa in _questions(articles))
