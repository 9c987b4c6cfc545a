"""SQuAD v1.1 / v2.0 JSON -> `SquadExample`s, with the original run_squad's whitespace rules.

    examples, stats = read_squad_examples("train-v2.0.json", is_training=True,
                                          version_2_with_negative=True)

The context is split into `doc_tokens` on whitespace (space, tab, CR, LF and U+202F, nothing
else: the answer character offsets refer to this split). `char_to_word_offset[i]` is the word
that character i belongs to; a whitespace character maps to the word before it (-1 before the
first word), which is where an answer starting on a space is counted.

Training examples carry their answer as word positions. An answer whose (whitespace-normalised)
text is not found in the words its offsets cover - annotation noise, or offsets that do not fit
the context - is skipped with a warning naming the question, and counted in `ReadStats`; it is
never dropped silently. Malformed files fail with the file and line (bad JSON) or the
article/paragraph/question index (missing or mistyped keys).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

_LOG = logging.getLogger("data_prep.tasks.squad")

_WHITESPACE = frozenset(" \t\r\n\u202f")


def is_whitespace(ch: str) -> bool:
    """The original run_squad's whitespace: space, \\t, \\r, \\n and U+202F only."""
    return ch in _WHITESPACE


def split_doc_tokens(text: str) -> tuple[list[str], list[int]]:
    """Context -> (doc_tokens, char_to_word_offset [len(text)]), as the original.

    Runs of non-whitespace characters are the words; every character, whitespace included,
    records the index of the last word started so far.
    """
    doc_tokens: list[str] = []
    char_to_word_offset: list[int] = []
    previous_is_whitespace = True
    for ch in text:
        if is_whitespace(ch):
            previous_is_whitespace = True
        else:
            if previous_is_whitespace:
                doc_tokens.append(ch)
            else:
                doc_tokens[-1] += ch
            previous_is_whitespace = False
        char_to_word_offset.append(len(doc_tokens) - 1)
    return doc_tokens, char_to_word_offset


@dataclasses.dataclass
class SquadExample:
    """One question about one context.

    doc_tokens: the context's whitespace words (shared by the questions of a paragraph).
    orig_answer_text / start_position / end_position: training only - the answer text and
      its first/last word (inclusive) in doc_tokens; None when not training, "" / -1 / -1 for
      an impossible question.
    is_impossible: v2.0, question has no answer in the context (read whenever present).
    answers: the gold answer texts (all of them; for evaluation and reference).
    plausible_answers: v2.0 unanswerable questions' plausible (wrong) answer texts; not used
      for training, as in the original.
    """

    qas_id: str
    question_text: str
    doc_tokens: list[str]
    orig_answer_text: str | None = None
    start_position: int | None = None
    end_position: int | None = None
    is_impossible: bool = False
    answers: list[str] = dataclasses.field(default_factory=list)
    plausible_answers: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ReadStats:
    """What reading one file did besides producing examples."""

    num_questions: int = 0
    num_skipped: int = 0  # training answers not found in the context (warned one by one)
    num_multi_answer: int = 0  # training questions with several answers (the first is used)


def load_squad_json(path: str) -> list[dict]:
    """The `data` list (articles) of a SQuAD file; a JSON error names the file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            dataset = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno} column {e.colno}: invalid JSON: "
                         f"{e.msg}") from None
    if not isinstance(dataset, dict) or not isinstance(dataset.get("data"), list):
        raise ValueError(f"{path}: not a SQuAD file (expected an object with a 'data' list).")
    return dataset["data"]


def _get(node: Any, key: str, kind: type | tuple, where: str) -> Any:
    """node[key], checked to be a `kind`; errors say where in the file it is."""
    if not isinstance(node, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(node).__name__}.")
    if key not in node:
        raise ValueError(f"{where}: missing key {key!r}.")
    value = node[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ValueError(f"{where}: {key!r} has type {type(value).__name__}.")
    return value


def _answer_texts(qa: dict, key: str, where: str) -> list[tuple[str, int]]:
    """(text, answer_start) of each entry of qa[key] (absent key: none)."""
    out = []
    for k, answer in enumerate(qa.get(key) or []):
        spot = f"{where}.{key}[{k}]"
        out.append((_get(answer, "text", str, spot), _get(answer, "answer_start", int, spot)))
    return out


def _training_positions(example: SquadExample, answer: tuple[str, int],
                        char_to_word_offset: list[int]) -> bool:
    """Sets the answer's word span on `example`; False if its text is not where it says."""
    text, start = answer
    end = start + len(text) - 1
    if not text or start < 0 or end >= len(char_to_word_offset):
        return False
    example.orig_answer_text = text
    example.start_position = char_to_word_offset[start]
    example.end_position = char_to_word_offset[end]
    # Offsets can be off (annotation noise); train only on answers found where they point.
    # Whitespace is normalised on both sides, so spacing differences are not noise.
    actual = " ".join(example.doc_tokens[example.start_position:example.end_position + 1])
    return " ".join(text.split()) in actual


def read_squad_examples(path: str, is_training: bool, version_2_with_negative: bool = False,
                        articles: list[dict] | None = None
                        ) -> tuple[list[SquadExample], ReadStats]:
    """All questions of a SQuAD file, in file order.

    is_training: compute answer positions (the first answer if there are several; skip and
      count answers not found in the context).
    version_2_with_negative: honour `is_impossible` when training (v2.0).
    articles: the already loaded `data` list of `path` (else it is read).
    """
    if articles is None:
        articles = load_squad_json(path)
    examples: list[SquadExample] = []
    stats = ReadStats()
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(_get(article, "paragraphs", list, f"{path}: data[{a}]")):
            where_p = f"{path}: data[{a}].paragraphs[{p}]"
            doc_tokens, char_to_word_offset = split_doc_tokens(
                _get(paragraph, "context", str, where_p))
            for q, qa in enumerate(_get(paragraph, "qas", list, where_p)):
                where = f"{where_p}.qas[{q}]"
                qas_id = str(_get(qa, "id", (str, int), where))
                answers = _answer_texts(qa, "answers", where)
                is_impossible = bool(qa.get("is_impossible", False))
                example = SquadExample(
                    qas_id=qas_id, question_text=_get(qa, "question", str, where),
                    doc_tokens=doc_tokens, is_impossible=is_impossible,
                    answers=[t for t, _ in answers],
                    plausible_answers=[t for t, _ in _answer_texts(qa, "plausible_answers",
                                                                    where)])
                stats.num_questions += 1
                if is_training and not _set_training_answer(
                        example, answers, char_to_word_offset, version_2_with_negative,
                        where, stats):
                    continue
                examples.append(example)
    if stats.num_skipped:
        _LOG.warning("%s: skipped %d of %d training questions whose answer text is not in the "
                     "context where answer_start says.", path, stats.num_skipped,
                     stats.num_questions)
    if stats.num_multi_answer:
        _LOG.info("%s: %d training questions have several answers; the first one is used.",
                  path, stats.num_multi_answer)
    return examples, stats


def _set_training_answer(example: SquadExample, answers: list[tuple[str, int]],
                         char_to_word_offset: list[int], version_2_with_negative: bool,
                         where: str, stats: ReadStats) -> bool:
    """Fills the training answer of `example`; False (warned, counted) to skip it."""
    if example.is_impossible and not version_2_with_negative:
        raise ValueError(f"{where}: question {example.qas_id} is_impossible (a SQuAD v2.0 "
                         "file): train with version_2_with_negative.")
    if example.is_impossible:
        example.orig_answer_text, example.start_position, example.end_position = "", -1, -1
        return True
    if not answers:
        raise ValueError(f"{where}: question {example.qas_id} has no answer and is not marked "
                         "is_impossible; a training question needs one.")
    # The original requires exactly one training answer; dev files (several) are still
    # usable for training this way.
    stats.num_multi_answer += len(answers) > 1
    if _training_positions(example, answers[0], char_to_word_offset):
        return True
    stats.num_skipped += 1
    _LOG.warning("Question %s: answer %r not found in the context at answer_start %d; "
                 "skipped.", example.qas_id, answers[0][0], answers[0][1])
    return False
