"""The official SQuAD v1.1 / v2.0 metrics, against numbers computed by hand."""
import pytest

from bert_tf.tasks.squad import metrics as m


def _data(*qas):
    """A SQuAD `data` list holding one paragraph with these (id, [gold texts]) questions."""
    return [{"title": "t", "paragraphs": [{"context": "...", "qas": [
        {"id": qid, "question": "?", "answers": [{"text": t, "answer_start": 0} for t in golds]}
        for qid, golds in qas]}]}]


@pytest.mark.parametrize("text, expected", [
    ("The Cat!", "cat"),
    ("a  b, an apple", "b apple"),          # articles go after punctuation, spaces collapse
    ("theater", "theater"),                 # whole words only
    ("Hello-world", "helloworld"),          # punctuation is removed, not replaced
    ("  Ärger  über A.B.C. ", "ärger über abc"),
    ("", ""),
])
def test_normalize_answer(text, expected):
    assert m.normalize_answer(text) == expected


def test_v1_token_f1_and_exact_by_hand():
    # [big, red, dog] vs [red, dog, barked]: 2 shared, P = R = 2/3.
    assert m.f1_v1("the big red dog", "a red dog barked") == pytest.approx(2 / 3)
    # [1807, and, 1810] vs [1810]: P = 1/3, R = 1 -> 2 * (1/3) / (4/3) = 0.5
    assert m.f1_v1("1807 and 1810", "1810") == pytest.approx(0.5)
    assert m.f1_v1("dog dog", "dog") == pytest.approx(2 * 0.5 * 1 / 1.5)  # counts clip
    assert m.exact_match_v1("The Denver Broncos.", "denver broncos") == 1.0
    assert m.f1_v1("", "") == 0.0 and m.exact_match_v1("", "") == 1.0  # v1.1's empty rule


def test_v1_evaluate_multiple_golds_and_a_missing_prediction():
    data = _data(("q1", ["Denver Broncos", "The Denver Broncos"]),
                 ("q2", ["red dog barked", "cat"]),
                 ("q3", ["1807"]))
    result = m.evaluate_v1(data, {"q1": "denver broncos!", "q2": "the big red dog"})
    # q1: EM 1, F1 1; q2: EM 0, F1 max(2/3, 0); q3: no prediction, 0 - over 3 questions.
    assert result == pytest.approx({"exact_match": 100 / 3, "f1": 100 * (1 + 2 / 3) / 3})


def test_v2_empty_answers():
    assert m.f1_v2("", "") == 1.0 and m.exact_v2("", "") == 1
    assert m.f1_v2("Paris", "") == 0.0 and m.f1_v2("", "Paris") == 0.0
    assert m.f1_v2("in 1810", "1807 and 1810") == pytest.approx(2 * (1 / 3) * (1 / 2) / (5 / 6))


V2_DATA = _data(("a1", ["Paris"]), ("a2", ["in 1810", "1810"]), ("n1", []), ("n2", []))
V2_PREDICTIONS = {"a1": "Paris", "a2": "1807 and 1810", "n1": "", "n2": "Rome"}
V2_ODDS = {"a1": -2.0, "a2": 1.0, "n1": 3.0, "n2": 2.0}
# Raw scores by hand: exact a1 1, a2 0, n1 1 (empty for unanswerable), n2 0;
# f1 a1 1, a2 max(0.4, 0.5) = 0.5, n1 1, n2 0.


def test_v2_scores_as_predicted():
    result = m.evaluate_v2(V2_DATA, V2_PREDICTIONS, V2_ODDS, na_prob_thresh=5.0)
    expected = {"exact": 50.0, "f1": 62.5, "total": 4,
                "HasAns_exact": 50.0, "HasAns_f1": 75.0, "HasAns_total": 2,
                "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2,
                # Best thresholds (start: all answered "" = 2 of 4 right). Rising odds:
                #   exact: a1 +1 -> 3 (best, at -2), a2 +0 -> 3, n2 -1 -> 2, n1 +0 -> 2
                #   f1:    a1 +1 -> 3, a2 +0.5 -> 3.5 (best, at 1.0), n2 -1, n1 +0
                "best_exact": 75.0, "best_exact_thresh": -2.0,
                "best_f1": 87.5, "best_f1_thresh": 1.0}
    assert result == pytest.approx(expected)


def test_v2_official_default_threshold_forces_high_odds_to_no_answer():
    # na_prob_thresh 1.0: n1 (3.0) and n2 (2.0) count as answered "" -> n2 becomes right.
    result = m.evaluate_v2(V2_DATA, V2_PREDICTIONS, V2_ODDS)
    assert result["exact"] == 75.0 and result["f1"] == pytest.approx(87.5)
    assert result["NoAns_exact"] == 100.0 and result["HasAns_f1"] == pytest.approx(75.0)


def test_v2_without_odds_and_with_a_missing_prediction():
    predictions = {k: v for k, v in V2_PREDICTIONS.items() if k != "a2"}
    result = m.evaluate_v2(V2_DATA, predictions)
    # a2 is left out of every total (as the official script); no threshold keys.
    assert result == pytest.approx({"exact": 200 / 3, "f1": 200 / 3, "total": 3,
                                    "HasAns_exact": 100.0, "HasAns_f1": 100.0,
                                    "HasAns_total": 1, "NoAns_exact": 50.0,
                                    "NoAns_f1": 50.0, "NoAns_total": 2})


def test_best_threshold_keeps_zero_when_answering_nothing_is_best():
    data = _data(("a", ["x"]), ("n", []))
    score, threshold = m.find_best_threshold({"a": "y", "n": "z"}, {"a": 0.0, "n": 0.0},
                                             {"a": 0.5, "n": 1.5}, {"a": True, "n": False})
    assert (score, threshold) == (50.0, 0.0)
    assert m.has_gold_answers(data) and not m.has_gold_answers(_data(("n", [])))
