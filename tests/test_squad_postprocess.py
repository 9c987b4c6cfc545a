"""SQuAD post-processing on hand-built logits: n-best order and probabilities, invalid spans,
max context across windows, the v2.0 null answer and threshold, text realignment."""
import json
import math
import os

import numpy as np
import pytest

from bert_tf.tasks.squad.postprocess import (NO_SPAN_NULL_ODDS, best_indexes, compute_predictions,
                                       detokenize, get_final_text, softmax, write_predictions)
from data_prep.tasks.squad_examples import SquadExample, split_doc_tokens
from data_prep.tasks.squad_features import FIRST_UNIQUE_ID, convert_examples_to_features
from data_prep.tokenizer.tokenization import FullTokenizer
from tests.conftest import REPO_ROOT, TEST_DATA

LOW = -10.0


@pytest.fixture(scope="module")
def tokenizer():
    return FullTokenizer(os.path.join(TEST_DATA, "squad", "vocab_small.txt"), True)


def _features(tokenizer, context, max_seq_length=16, doc_stride=8, qas_id="q"):
    example = SquadExample(qas_id, "w50", split_doc_tokens(context)[0])
    features = list(convert_examples_to_features([example], tokenizer, max_seq_length,
                                                 doc_stride, is_training=False))
    return example, features


def _logits(num_features, seq, spots):
    """[num_features, seq] arrays at LOW except {(feature, index): value}."""
    out = np.full((num_features, seq), LOW, np.float32)
    for (feature, index), value in spots.items():
        out[feature, index] = value
    return out


def _predict(example, features, start, end, **kwargs):
    ids = np.array([f.unique_id for f in features])
    return compute_predictions([example], features, ids, start, end, **kwargs)


# --- helpers ------------------------------------------------------------------------------

def test_best_indexes_largest_first_ties_keep_index_order():
    assert best_indexes([1.0, 3.0, 2.0, 3.0, 0.5], 3) == [1, 3, 2]
    assert best_indexes([1.0, 2.0], 5) == [1, 0]


def test_softmax_and_detokenize():
    assert softmax([]) == []
    assert softmax([0.0, math.log(3.0)]) == pytest.approx([0.25, 0.75])
    assert softmax([1000.0, 1000.0]) == pytest.approx([0.5, 0.5])  # no overflow
    assert detokenize(["un", "##believ", "##able", "john", "smith"]) == "unbelievable john smith"
    assert detokenize(["##s", "a"]) == "s a"


@pytest.mark.parametrize("pred, orig, lower, expected", [
    ("steve smith", "Steve Smith's", True, "Steve Smith"),       # drops the extra "'s"
    ("muller", "Müller's", True, "Müller"),                      # accents and case restored
    ("cafe muller", "Café Müller", True, "Café Müller"),
    ("1895", "(1895-1943).", True, "1895"),                       # punctuation split off
    ("Steve", "Steve Smith's", False, "Steve"),                   # cased model
    ("steve", "Steve Smith's", False, "Steve Smith's"),           # not found: the whole text
    ("abcd", "ab\u200bcd", True, "ab\u200bcd"),                   # lengths differ: whole text
])
def test_get_final_text(pred, orig, lower, expected):
    assert get_final_text(pred, orig, lower) == expected


# --- n-best -------------------------------------------------------------------------------

def test_nbest_order_probabilities_and_invalid_spans(tokenizer):
    # tokens: [CLS]0 w50 1 [SEP]2 w0..w9 3..12 [SEP]13, padding 14 15
    example, features = _features(tokenizer, " ".join(f"w{i}" for i in range(10)))
    assert len(features) == 1 and features[0].tokens[3] == "w0"
    start = _logits(1, 16, {(0, 15): 9.0,   # padding
                            (0, 1): 8.0,    # the query
                            (0, 3): 5.0,    # w0
                            (0, 6): 4.0,    # w3: only ends before it are left
                            (0, 0): 0.0})
    end = _logits(1, 16, {(0, 14): 9.0, (0, 2): 7.0, (0, 4): 5.0, (0, 5): 3.0, (0, 0): 0.0})
    result = _predict(example, features, start, end, n_best_size=5)
    nbest = result.nbest["q"]
    assert [e["text"] for e in nbest] == ["w0 w1", "w0 w1 w2"]
    assert [(e["start_logit"], e["end_logit"]) for e in nbest] == [(5.0, 5.0), (5.0, 3.0)]
    p = 1 / (1 + math.exp(-2.0))  # softmax of scores 10 and 8
    assert [e["probability"] for e in nbest] == pytest.approx([p, 1 - p])
    assert result.predictions == {"q": "w0 w1"} and result.null_odds is None

    # Longer than max_answer_length (2 tokens): dropped.
    short = _predict(example, features, start, end, n_best_size=5, max_answer_length=2)
    assert [e["text"] for e in short.nbest["q"]] == ["w0 w1"]
    # Only the top n_best_size starts/ends are tried: with 3, start w0 pairs with end w1 only.
    top3 = _predict(example, features, start, end, n_best_size=3)
    assert [e["text"] for e in top3.nbest["q"]] == ["w0 w1"]


def test_no_valid_span_gives_the_original_placeholder(tokenizer):
    example, features = _features(tokenizer, "w0 w1 w2")
    start = _logits(1, 16, {(0, 1): 5.0})  # the query token
    end = _logits(1, 16, {(0, 1): 5.0})
    result = _predict(example, features, start, end, n_best_size=1)
    assert result.predictions["q"] == "empty"
    assert result.nbest["q"] == [{"text": "empty", "probability": 1.0, "start_logit": 0.0,
                                  "end_logit": 0.0}]
    v2 = _predict(example, features, start, end, n_best_size=1, version_2_with_negative=True)
    assert v2.predictions["q"] == "" and v2.null_odds["q"] == NO_SPAN_NULL_ODDS


def test_start_must_be_in_its_max_context_window(tokenizer):
    # 30 words, 16 per window, stride 8: windows 0-15, 8-23, 16-29. w15 sits at the right edge
    # of window 0 (score 0.16) and mid window 1 (7.16): only window 1 may start an answer there.
    example, features = _features(tokenizer, " ".join(f"w{i}" for i in range(30)),
                                  max_seq_length=20)
    assert len(features) == 3
    assert features[0].tokens[18] == features[1].tokens[10] == "w15"
    start = _logits(3, 20, {(0, 18): 10.0, (0, 5): 1.0, (1, 10): 3.0})
    end = _logits(3, 20, {(0, 18): 10.0, (0, 5): 1.0, (1, 10): 3.0})
    result = _predict(example, features, start, end, max_answer_length=5)
    assert result.predictions["q"] == "w15"
    assert result.nbest["q"][0]["start_logit"] == 3.0  # window 1's, not window 0's 10
    assert [e["text"] for e in result.nbest["q"][:2]] == ["w15", "w2"]


def test_rows_in_any_order_with_padding_rows(tokenizer):
    example, features = _features(tokenizer, " ".join(f"w{i}" for i in range(30)),
                                  max_seq_length=20)
    start = _logits(3, 20, {(1, 10): 3.0})
    end = _logits(3, 20, {(1, 11): 3.0})
    expected = _predict(example, features, start, end)
    order = [2, 0, 1]
    ids = np.array([features[i].unique_id for i in order] + [0, 0])
    pad = np.zeros((2, 20), np.float32)
    shuffled = compute_predictions([example], features, ids,
                                   np.concatenate([start[order], pad]),
                                   np.concatenate([end[order], pad]))
    assert shuffled.nbest == expected.nbest and shuffled.predictions["q"] == "w15 w16"
    with pytest.raises(ValueError, match=f"No logits for feature.*{FIRST_UNIQUE_ID + 1}"):
        compute_predictions([example], features, ids[:1], start[:1], end[:1])


# --- v2.0 null answer ---------------------------------------------------------------------

def test_null_score_is_the_min_cls_score_over_windows_and_threshold_both_ways(tokenizer):
    example, features = _features(tokenizer, " ".join(f"w{i}" for i in range(30)),
                                  max_seq_length=20)
    # [CLS] scores 6, 2 (the min: window 1) and 4; best span w15 (window 1) scores 1.5.
    spots_start = {(0, 0): 3.0, (1, 0): 1.0, (2, 0): 2.0, (1, 10): 0.5}
    spots_end = {(0, 0): 3.0, (1, 0): 1.0, (2, 0): 2.0, (1, 10): 1.0}
    start, end = _logits(3, 20, spots_start), _logits(3, 20, spots_end)
    result = _predict(example, features, start, end, version_2_with_negative=True)
    assert result.null_odds["q"] == pytest.approx(2.0 - 1.5)
    assert result.predictions["q"] == ""  # 0.5 > threshold 0.0
    nbest = result.nbest["q"]
    assert nbest[0] == pytest.approx({"text": "", "probability": nbest[0]["probability"],
                                      "start_logit": 1.0, "end_logit": 1.0})
    assert nbest[1]["text"] == "w15"
    assert nbest[0]["probability"] == pytest.approx(1 / (1 + math.exp(-0.5)), rel=1e-3)

    lenient = _predict(example, features, start, end, version_2_with_negative=True,
                       null_score_diff_threshold=0.6)
    assert lenient.predictions["q"] == "w15" and lenient.null_odds["q"] == pytest.approx(0.5)
    assert lenient.nbest == result.nbest  # the threshold only picks among them
    # "" only when the odds exceed the threshold: equal is still an answer.
    equal = _predict(example, features, start, end, version_2_with_negative=True,
                     null_score_diff_threshold=0.5)
    assert equal.predictions["q"] == "w15"


def test_final_text_is_realigned_to_the_original_words(tokenizer):
    # Sub-tokens: cafe | muller ' s | by | pina | bausch ; the span "muller" alone maps back
    # to "Müller" (not the whole word "Müller's", not the normalised "muller").
    example, features = _features(tokenizer, "Café Müller's by Pina Bausch", max_seq_length=20)
    tokens = features[0].tokens
    muller, bausch = tokens.index("muller"), tokens.index("bausch")
    start = _logits(1, 20, {(0, muller): 4.0, (0, muller - 1): 3.0, (0, bausch - 1): 1.0})
    end = _logits(1, 20, {(0, muller): 4.0, (0, bausch): 1.0})
    nbest = _predict(example, features, start, end).nbest["q"]
    # Scores 8, 7, 5, 4, 2; a span ending after "##s" keeps the original "Müller's".
    assert [e["text"] for e in nbest[:5]] == [
        "Müller", "Café Müller", "Müller's by Pina Bausch", "Café Müller's by Pina Bausch",
        "Pina Bausch"]


def test_write_predictions_files(tmp_path, tokenizer):
    example, features = _features(tokenizer, "w0 w1 w2")
    start = _logits(1, 16, {(0, 4): 2.0})
    end = _logits(1, 16, {(0, 4): 2.0})
    v1 = _predict(example, features, start, end)
    paths = write_predictions(str(tmp_path / "v1"), v1)
    assert sorted(paths) == ["nbest_predictions", "predictions"]
    assert json.loads((tmp_path / "v1" / "predictions.json").read_text()) == {"q": "w1"}
    v2 = _predict(example, features, start, end, version_2_with_negative=True)
    write_predictions(str(tmp_path / "v2"), v2)
    odds = json.loads((tmp_path / "v2" / "null_odds.json").read_text())
    assert odds == {"q": pytest.approx(2 * LOW - 4.0)}
    nbest = json.loads((tmp_path / "v2" / "nbest_predictions.json").read_text())["q"]
    assert nbest[0]["text"] == "w1" and {"", "w1"} <= {e["text"] for e in nbest}
    assert sum(e["probability"] for e in nbest) == pytest.approx(1.0)
    assert not list(tmp_path.glob("*/*.tmp-*"))


# --- the whole pipeline with a perfect model ----------------------------------------------

def test_oracle_logits_reproduce_every_gold_answer_on_real_squad():
    """Logits that point at the training targets give 100 EM/F1 on the shipped real v2.0 file:
    windows, max context, null scores, text realignment and metrics all agree."""
    from bert_tf.tasks.squad import metrics as squad_metrics
    from data_prep.tasks.squad_examples import load_squad_json, read_squad_examples

    path = os.path.join(REPO_ROOT, "data", "squad", "dev-v2.0-2articles.json")
    tokenizer = FullTokenizer(os.path.join(TEST_DATA, "vocab_uncased.txt"), True)
    train, stats = read_squad_examples(path, is_training=True, version_2_with_negative=True)
    predict, _ = read_squad_examples(path, is_training=False, version_2_with_negative=True)
    assert stats.num_skipped == 0 and len(train) == len(predict) == 626
    # Short windows (64 tokens, stride 16): most questions span several features.
    targets = list(convert_examples_to_features(train, tokenizer, 64, 16, 16, True))
    features = list(convert_examples_to_features(predict, tokenizer, 64, 16, 16, False))
    assert [f.unique_id for f in targets] == [f.unique_id for f in features]
    assert len(features) > 5 * len(predict)
    start = np.full((len(features), 64), LOW, np.float32)
    end = start.copy()
    rows = np.arange(len(features))
    start[rows, [f.start_position for f in targets]] = 10.0
    end[rows, [f.end_position for f in targets]] = 10.0
    result = compute_predictions(predict, features, np.array([f.unique_id for f in features]),
                                 start, end, version_2_with_negative=True)
    scores = squad_metrics.evaluate_v2(load_squad_json(path), result.predictions,
                                       result.null_odds, na_prob_thresh=0.0)
    assert scores["HasAns_exact"] == scores["NoAns_exact"] == scores["f1"] == 100.0
    assert (scores["HasAns_total"], scores["NoAns_total"]) == (293, 333)
