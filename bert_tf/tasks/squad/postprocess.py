"""Start/end logits of SQuAD features -> answer texts, as the original run_squad writes them.

Per example, over all its features (windows):
  1. candidates: the `n_best_size` best start and end positions of each feature; a pair is
     kept if both are context tokens of that feature, the start is in its max-context window,
     end >= start and the span is at most `max_answer_length` tokens;
  2. v2.0: the null answer, scored by the smallest [CLS] start + end logit over the features;
  3. candidates by start + end logit, best first; each becomes text - the WordPiece tokens
     joined ("##" removed) and realigned to the original words (`get_final_text`) - and the
     first `n_best_size` distinct texts are the n-best, with softmax probabilities;
  4. the prediction: the best text (v1.1); v2.0: "" when null score - best non-null score
     > `null_score_diff_threshold`, else the best non-null text.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Sequence

import numpy as np

from data_prep.tasks.squad_examples import SquadExample
from data_prep.tasks.squad_features import SquadFeature
from data_prep.tokenizer.tokenization import BasicTokenizer
from data_prep.files.atomic_io import write_json

_LOG = logging.getLogger("bert_tf.squad")

# null_odds of a v2.0 question none of whose candidates is a valid span: it can only be
# answered "" (JSON has no infinity).
NO_SPAN_NULL_ODDS = 1e9


@dataclasses.dataclass(frozen=True)
class _Candidate:
    feature_index: int
    start_index: int
    end_index: int
    start_logit: float
    end_logit: float


@dataclasses.dataclass
class SquadPredictions:
    """predictions: qas_id -> answer text. nbest: qas_id -> list of {text, probability,
    start_logit, end_logit}, best first. null_odds: qas_id -> null score - best non-null
    score (v2.0 only, else None)."""

    predictions: dict[str, str]
    nbest: dict[str, list[dict]]
    null_odds: dict[str, float] | None


def best_indexes(logits: Sequence[float], n_best_size: int) -> list[int]:
    """Indexes of the `n_best_size` largest logits, largest first (ties: lower index first)."""
    order = np.argsort(-np.asarray(logits, np.float64), kind="stable")
    return order[:n_best_size].tolist()


def softmax(scores: Sequence[float]) -> list[float]:
    """Probabilities of float scores (shifted by the max for stability); [] for []."""
    if not len(scores):
        return []
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def detokenize(tokens: Sequence[str]) -> str:
    """WordPiece tokens -> text: "##" continuations glued, whitespace collapsed."""
    text = " ".join(tokens).replace(" ##", "").replace("##", "")
    return " ".join(text.split())


def _strip_spaces(text: str) -> tuple[str, dict[int, int]]:
    """text without spaces, and each of its characters' index in `text`."""
    kept: list[str] = []
    to_original: dict[int, int] = {}
    for i, ch in enumerate(text):
        if ch == " ":
            continue
        to_original[len(kept)] = i
        kept.append(ch)
    return "".join(kept), to_original


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool) -> str:
    """The part of `orig_text` (original words, e.g. "Café Müller's") that `pred_text`
    (normalised, e.g. "muller") covers, e.g. "Müller".

    The prediction is found in the BasicTokenizer version of `orig_text` (lower-cased,
    accents stripped, punctuation split off); both are then compared character by character
    with spaces removed, which maps the prediction's first and last character back to
    `orig_text`. When that is impossible (not found, or normalisation changed the number of
    non-space characters) the whole `orig_text` is returned, as the original does.
    """
    tok_text = " ".join(BasicTokenizer(do_lower_case).tokenize(orig_text))
    start = tok_text.find(pred_text)
    if start == -1:
        _LOG.debug("Cannot find %r in %r.", pred_text, orig_text)
        return orig_text
    end = start + len(pred_text) - 1
    orig_ns, orig_ns_to_s = _strip_spaces(orig_text)
    tok_ns, tok_ns_to_s = _strip_spaces(tok_text)
    if len(orig_ns) != len(tok_ns):
        _LOG.debug("Length not equal after stripping spaces: %r vs %r.", orig_ns, tok_ns)
        return orig_text
    tok_s_to_ns = {s: ns for ns, s in tok_ns_to_s.items()}
    # A prediction starting or ending on a space has no counterpart: give up (as the original).
    if start not in tok_s_to_ns or end not in tok_s_to_ns:
        return orig_text
    orig_start = orig_ns_to_s.get(tok_s_to_ns[start])
    orig_end = orig_ns_to_s.get(tok_s_to_ns[end])
    if orig_start is None or orig_end is None:
        return orig_text
    return orig_text[orig_start:orig_end + 1]


def _candidates(feature: SquadFeature, feature_index: int, start_logits: np.ndarray,
                end_logits: np.ndarray, n_best_size: int,
                max_answer_length: int) -> list[_Candidate]:
    """The valid (start, end) pairs among the feature's best starts and ends."""
    num_tokens = len(feature.tokens)
    ends = best_indexes(end_logits, n_best_size)
    out = []
    for start in best_indexes(start_logits, n_best_size):
        for end in ends:
            # Only context tokens (not query, [CLS], [SEP] or padding) can be answers; the start
            # must be where this window has the most context around it.
            if start >= num_tokens or end >= num_tokens:
                continue
            if feature.token_to_orig_map[start] < 0 or feature.token_to_orig_map[end] < 0:
                continue
            if not feature.token_is_max_context[start]:
                continue
            if end < start or end - start + 1 > max_answer_length:
                continue
            out.append(_Candidate(feature_index, start, end, float(start_logits[start]),
                                  float(end_logits[end])))
    return out


def _candidate_text(candidate: _Candidate, feature: SquadFeature, example: SquadExample,
                    do_lower_case: bool) -> str:
    tok_text = detokenize(feature.tokens[candidate.start_index:candidate.end_index + 1])
    orig_start = int(feature.token_to_orig_map[candidate.start_index])
    orig_end = int(feature.token_to_orig_map[candidate.end_index])
    orig_text = " ".join(example.doc_tokens[orig_start:orig_end + 1])
    return get_final_text(tok_text, orig_text, do_lower_case)


def _predict_example(example: SquadExample, features: list[SquadFeature],
                     logits: list[tuple[np.ndarray, np.ndarray]], n_best_size: int,
                     max_answer_length: int, do_lower_case: bool, version_2: bool,
                     threshold: float) -> tuple[str, list[dict], float | None]:
    candidates: list[_Candidate] = []
    null: _Candidate | None = None
    for index, (feature, (start_logits, end_logits)) in enumerate(zip(features, logits)):
        if version_2:
            score = float(start_logits[0]) + float(end_logits[0])
            if null is None or score < null.start_logit + null.end_logit:
                null = _Candidate(index, 0, 0, float(start_logits[0]), float(end_logits[0]))
        candidates += _candidates(feature, index, start_logits, end_logits, n_best_size,
                                  max_answer_length)
    if version_2 and null is None:  # no feature at all (empty context): null scores 0
        null = _Candidate(0, 0, 0, 0.0, 0.0)
    if null is not None:
        candidates.append(null)
    # sorted() is stable: equal scores keep the order above, as the original.
    candidates.sort(key=lambda c: c.start_logit + c.end_logit, reverse=True)

    nbest: list[tuple[str, float, float]] = []
    seen: set[str] = set()
    for candidate in candidates:
        if len(nbest) >= n_best_size:
            break
        text = ""  # the null answer ([CLS]); it is never a duplicate, as in the original
        if candidate.start_index > 0:
            text = _candidate_text(candidate, features[candidate.feature_index], example,
                                   do_lower_case)
            if text in seen:
                continue
        seen.add(text)
        nbest.append((text, candidate.start_logit, candidate.end_logit))
    if null is not None and "" not in seen:  # the null answer always has an n-best entry
        nbest.append(("", null.start_logit, null.end_logit))
    if not nbest:  # v1.1 with no valid span at all: the original's placeholder
        nbest.append(("empty", 0.0, 0.0))

    probabilities = softmax([s + e for _, s, e in nbest])
    nbest_json = [{"text": t, "probability": p, "start_logit": s, "end_logit": e}
                  for (t, s, e), p in zip(nbest, probabilities)]
    if not version_2:
        return nbest[0][0], nbest_json, None
    best_non_null = next((entry for entry in nbest if entry[0]), None)
    if best_non_null is None:
        return "", nbest_json, NO_SPAN_NULL_ODDS
    odds = null.start_logit + null.end_logit - best_non_null[1] - best_non_null[2]
    return ("" if odds > threshold else best_non_null[0]), nbest_json, odds


def compute_predictions(examples: Sequence[SquadExample], features: Sequence[SquadFeature],
                        unique_ids: np.ndarray, start_logits: np.ndarray,
                        end_logits: np.ndarray, n_best_size: int = 20,
                        max_answer_length: int = 30, do_lower_case: bool = True,
                        version_2_with_negative: bool = False,
                        null_score_diff_threshold: float = 0.0) -> SquadPredictions:
    """Answer texts of `examples` from the model outputs of their `features`.

    unique_ids: int [n]; start_logits / end_logits: float [n, max_seq_length], the rows of
    any order and possibly with padding rows (unique id not among the features: ignored).
    Every feature needs its row.
    """
    rows = {int(uid): row for row, uid in enumerate(np.asarray(unique_ids).reshape(-1))}
    start_logits = np.asarray(start_logits, np.float64)
    end_logits = np.asarray(end_logits, np.float64)
    by_example: dict[int, list[SquadFeature]] = {}
    for feature in features:
        by_example.setdefault(feature.example_index, []).append(feature)
    out = SquadPredictions({}, {}, {} if version_2_with_negative else None)
    for example_index, example in enumerate(examples):
        own = by_example.get(example_index, [])
        missing = [f.unique_id for f in own if f.unique_id not in rows]
        if missing:
            raise ValueError(f"No logits for feature(s) {missing[:5]} of question "
                             f"{example.qas_id}: predictions need every feature.")
        logits = [(start_logits[rows[f.unique_id]], end_logits[rows[f.unique_id]]) for f in own]
        text, nbest, odds = _predict_example(
            example, own, logits, n_best_size, max_answer_length, do_lower_case,
            version_2_with_negative, null_score_diff_threshold)
        out.predictions[example.qas_id] = text
        out.nbest[example.qas_id] = nbest
        if out.null_odds is not None:
            out.null_odds[example.qas_id] = odds
    return out


def write_predictions(output_dir: str, result: SquadPredictions) -> dict[str, str]:
    """predictions.json, nbest_predictions.json and (v2.0) null_odds.json, each written
    atomically; returns {name: path}."""
    os.makedirs(output_dir, exist_ok=True)
    files = {"predictions": result.predictions, "nbest_predictions": result.nbest}
    if result.null_odds is not None:
        files["null_odds"] = result.null_odds
    paths = {}
    for name, value in files.items():
        paths[name] = os.path.join(output_dir, f"{name}.json")
        write_json(paths[name], value, indent=4, sort_keys=False)  # keeps question order
    return paths
