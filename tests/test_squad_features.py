"""SQuAD reading and features: whitespace words, answer positions, windows, max context,
answer-span improvement, impossible questions, TFRecords and their cache, bad input."""
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from data_prep.tasks import squad
from data_prep.tasks.squad_examples import (SquadExample, read_squad_examples, split_doc_tokens)
from data_prep.tasks.squad_features import (FIRST_UNIQUE_ID, DocSpan, check_is_max_context,
                                      convert_examples_to_features, improve_answer_span,
                                      make_doc_spans, parse_squad_features, write_features)
from data_prep.tokenizer.tokenization import FullTokenizer
from tests.conftest import TEST_DATA

SQUAD = os.path.join(TEST_DATA, "squad")


@pytest.fixture(scope="module")
def tokenizer():
    return FullTokenizer(os.path.join(SQUAD, "vocab_small.txt"), do_lower_case=True)


def _write_squad(path, paragraphs, version="v2.0"):
    path.write_text(json.dumps({"version": version,
                                "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return str(path)


def _qa(qid, question, context, answer=None, impossible=False):
    answers = [] if answer is None else [{"text": answer, "answer_start": context.index(answer)}]
    return {"id": qid, "question": question, "answers": answers, "is_impossible": impossible}


# --- whitespace words ---------------------------------------------------------------------

def test_char_to_word_offset_multiple_spaces_tabs_and_narrow_nbsp():
    tokens, offsets = split_doc_tokens("ab  c\td\u202fe f")
    assert tokens == ["ab", "c", "d", "e", "f"]
    # a b ' ' ' ' c \t d U+202F e ' ' f : whitespace maps to the word before it.
    assert offsets == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4]


def test_leading_whitespace_maps_to_minus_one_and_nbsp_is_not_whitespace():
    tokens, offsets = split_doc_tokens(" x\u00a0y")
    assert tokens == ["x\u00a0y"] and offsets == [-1, 0, 0, 0]


# --- reading ------------------------------------------------------------------------------

def test_training_answer_word_positions_and_v2_fields(tmp_path):
    context = "The leader  was John Smith (1895-1943)."
    path = _write_squad(tmp_path / "a.json", [{"context": context, "qas": [
        _qa("q1", "Who was the leader?", context, "John Smith"),
        {**_qa("q2", "Who was born in 1800?", context, impossible=True),
         "plausible_answers": [{"text": "John Smith", "answer_start": 16}]}]}])
    examples, stats = read_squad_examples(path, is_training=True, version_2_with_negative=True)
    assert stats.num_questions == 2 and stats.num_skipped == 0
    first, second = examples
    assert first.doc_tokens == ["The", "leader", "was", "John", "Smith", "(1895-1943)."]
    assert (first.start_position, first.end_position) == (3, 4)
    assert first.orig_answer_text == "John Smith" and not first.is_impossible
    assert second.is_impossible and (second.start_position, second.end_position) == (-1, -1)
    assert second.orig_answer_text == "" and second.plausible_answers == ["John Smith"]
    # The paragraph's words are shared, not copied per question.
    assert first.doc_tokens is second.doc_tokens

    # Not training: no positions, every question kept, gold answers available.
    examples, _ = read_squad_examples(path, is_training=False)
    assert [e.start_position for e in examples] == [None, None]
    assert examples[0].answers == ["John Smith"]


def test_answer_not_in_context_is_skipped_counted_and_warned(tmp_path, caplog):
    context = "alpha beta gamma delta"
    path = _write_squad(tmp_path / "a.json", [{"context": context, "qas": [
        {"id": "bad-1", "question": "q?", "answers": [{"text": "epsilon", "answer_start": 6}]},
        {"id": "bad-2", "question": "q?", "answers": [{"text": "beta", "answer_start": 90}]},
        # Spacing differences are not noise: "beta  gamma" is found as "beta gamma".
        {"id": "ok", "question": "q?", "answers": [{"text": "beta  gamma", "answer_start": 6}]},
    ]}])
    with caplog.at_level(logging.WARNING, logger="data_prep.tasks.squad"):
        examples, stats = read_squad_examples(path, is_training=True)
    assert [e.qas_id for e in examples] == ["ok"]
    assert stats.num_skipped == 2 and stats.num_questions == 3
    assert "bad-1" in caplog.text and "bad-2" in caplog.text
    assert "skipped 2 of 3 training questions" in caplog.text


def test_malformed_json_names_file_and_line():
    path = os.path.join(SQUAD, "malformed.json")
    with pytest.raises(ValueError, match=r"malformed\.json: line 5 column 42: invalid JSON"):
        read_squad_examples(path, is_training=False)


@pytest.mark.parametrize("qa, message", [
    ({"id": "x", "answers": []}, r"data\[0\]\.paragraphs\[0\]\.qas\[1\]: missing key 'question'"),
    ({"id": "x", "question": "q?", "answers": [{"text": "a"}]},
     r"qas\[1\]\.answers\[0\]: missing key 'answer_start'"),
    ({"id": "x", "question": "q?", "answers": [{"text": "a", "answer_start": "0"}]},
     r"qas\[1\]\.answers\[0\]: 'answer_start' has type str"),
])
def test_missing_or_mistyped_keys_name_the_question(tmp_path, qa, message):
    context = "a b"
    path = _write_squad(tmp_path / "a.json", [{"context": context, "qas": [
        _qa("ok", "q?", context, "a"), qa]}])
    with pytest.raises(ValueError, match=message):
        read_squad_examples(path, is_training=False)


def test_training_question_without_answer_is_an_error(tmp_path):
    path = _write_squad(tmp_path / "a.json", [{"context": "a b", "qas": [
        {"id": "x", "question": "q?", "answers": []}]}])
    with pytest.raises(ValueError, match=r"qas\[0\]: question x has no answer"):
        read_squad_examples(path, is_training=True)


# --- windows and max context --------------------------------------------------------------

def _example(context, question, answer=None, impossible=False, occurrence=0):
    doc_tokens, offsets = split_doc_tokens(context)
    example = SquadExample("q", question, doc_tokens, is_impossible=impossible)
    if impossible:
        example.orig_answer_text, example.start_position, example.end_position = "", -1, -1
    elif answer is not None:
        start = context.index(answer)
        example.orig_answer_text = answer
        example.start_position = offsets[start]
        example.end_position = offsets[start + len(answer) - 1]
    return example


def test_doc_spans_by_hand():
    assert make_doc_spans(40, 18, 16) == [DocSpan(0, 18), DocSpan(16, 18), DocSpan(32, 8)]
    assert make_doc_spans(30, 18, 8) == [DocSpan(0, 18), DocSpan(8, 18), DocSpan(16, 14)]
    assert make_doc_spans(5, 18, 8) == [DocSpan(0, 5)]
    assert make_doc_spans(0, 18, 8) == []
    with pytest.raises(ValueError):
        make_doc_spans(5, 0, 8)


def test_max_context_score_by_hand():
    spans = [DocSpan(0, 18), DocSpan(16, 18), DocSpan(32, 8)]
    # word 16: span 0 min(16, 1) + .18 = 1.18 beats span 1 min(0, 17) + .18 = .18
    assert check_is_max_context(spans, 0, 16) and not check_is_max_context(spans, 1, 16)
    # word 17: span 0 gives 0.18, span 1 gives 1.18
    assert check_is_max_context(spans, 1, 17) and not check_is_max_context(spans, 0, 17)
    # word 32: span 1 min(16, 1) + .18 = 1.18, span 2 min(0, 7) + .08 = .08
    assert check_is_max_context(spans, 1, 32)
    # word 33: span 1 0.18, span 2 min(1, 6) + .08 = 1.08
    assert check_is_max_context(spans, 2, 33)
    # Equal scores: the earlier window keeps it.
    assert check_is_max_context([DocSpan(0, 4), DocSpan(0, 4)], 0, 2)


def test_windows_positions_and_max_context_on_a_long_context(tokenizer):
    context = " ".join(f"w{i}" for i in range(40))
    example = _example(context, "w50 w51 w52", "w20 w21")
    # 24 - 3 query tokens - 3 = 18 context tokens per window, stride 16.
    features = list(convert_examples_to_features([example], tokenizer, max_seq_length=24,
                                                 doc_stride=16, max_query_length=64,
                                                 is_training=True))
    assert [f.unique_id for f in features] == [FIRST_UNIQUE_ID + i for i in range(3)]
    assert [f.doc_span_index for f in features] == [0, 1, 2]
    second = features[1]
    assert second.tokens == (["[CLS]", "w50", "w51", "w52", "[SEP]"]
                             + [f"w{i}" for i in range(16, 34)] + ["[SEP]"])
    assert second.segment_ids.tolist() == [0] * 5 + [1] * 19
    assert second.token_to_orig_map.tolist() == [-1] * 5 + list(range(16, 34)) + [-1]
    # The answer (words 20-21) is only in the second window: 20 - 16 + 5 = 9.
    assert [(f.start_position, f.end_position) for f in features] == [(0, 0), (9, 10), (0, 0)]
    assert second.tokens[9:11] == ["w20", "w21"]
    assert second.input_ids.tolist() == tokenizer.convert_tokens_to_ids(second.tokens)
    # Max context, by hand above: word 16 -> window 0, 17 -> 1, 32 -> 1, 33 -> 2.
    first, third = features[0], features[2]
    assert first.token_is_max_context[5 + 16] and not second.token_is_max_context[5 + 0]
    assert second.token_is_max_context[5 + 1] and not first.token_is_max_context[5 + 17]
    assert second.token_is_max_context[5 + 16] and not third.token_is_max_context[5 + 0]
    assert third.token_is_max_context[5 + 1] and not second.token_is_max_context[5 + 17]
    # Every context word is max context in exactly one window; never a query token.
    assert sum(int(f.token_is_max_context.sum()) for f in features) == 40
    assert not any(f.token_is_max_context[:5].any() for f in features)


def test_answer_across_a_window_edge_gets_cls_and_query_is_truncated(tokenizer):
    context = " ".join(f"w{i}" for i in range(30))
    example = _example(context, "w50 w51 w52 w53 w54 w55", "w17 w18")
    features = list(convert_examples_to_features([example], tokenizer, max_seq_length=24,
                                                 doc_stride=8, max_query_length=3,
                                                 is_training=True))
    assert features[0].tokens[:5] == ["[CLS]", "w50", "w51", "w52", "[SEP]"]
    # Windows (0..17), (8..25), (16..29): the first holds only w17 of the answer.
    assert [(f.start_position, f.end_position) for f in features] == [(0, 0), (14, 15), (6, 7)]


def test_improve_answer_span_finds_the_sub_token_answer(tokenizer):
    context = "The leader was John Smith (1895-1943)."
    example = _example(context, "what year was john smith born?", "1895")
    assert (example.start_position, example.end_position) == (5, 5)  # the word "(1895-1943)."
    (feature,) = convert_examples_to_features([example], tokenizer, max_seq_length=32,
                                              is_training=True)
    query_length = len(tokenizer.tokenize(example.question_text))
    doc = feature.tokens[query_length + 2:-1]
    assert doc == ["the", "leader", "was", "john", "smith", "(", "1895", "-", "1943", ")", "."]
    assert feature.start_position == feature.end_position == query_length + 2 + 6
    assert feature.tokens[feature.start_position] == "1895"
    # Direct: within the word's sub-tokens (5..10) the exact answer is found; an answer that
    # is only part of a sub-token ("japan" in "japanese") keeps the whole span.
    assert improve_answer_span(doc, 5, 10, tokenizer, "1895") == (6, 6)
    assert improve_answer_span(doc, 5, 10, tokenizer, "1895-1943") == (6, 8)
    assert improve_answer_span(["the", "japanese", "industry"], 1, 1, tokenizer, "Japan") == (1, 1)


def test_answer_in_the_last_word_spans_to_the_last_sub_token(tokenizer):
    example = _example("who made it unbelievable", "who?", "unbelievable")
    (feature,) = convert_examples_to_features([example], tokenizer, max_seq_length=16,
                                              is_training=True)
    assert feature.tokens[feature.start_position:feature.end_position + 1] == [
        "un", "##believ", "##able"]


def test_impossible_question_targets_cls_in_every_window(tokenizer):
    context = " ".join(f"w{i}" for i in range(30))
    example = _example(context, "w50", impossible=True)
    features = list(convert_examples_to_features([example], tokenizer, max_seq_length=20,
                                                 doc_stride=8, is_training=True))
    assert len(features) > 1
    assert all((f.start_position, f.end_position, f.is_impossible) == (0, 0, True)
               for f in features)


def test_too_short_max_seq_length_is_an_error(tokenizer):
    example = _example("w1 w2", "w3 w4 w5")
    with pytest.raises(ValueError, match="Question q: max_seq_length .6. leaves no room"):
        list(convert_examples_to_features([example], tokenizer, max_seq_length=6))


# --- TFRecords and the cache --------------------------------------------------------------

def test_tfrecord_round_trip_with_padding(tmp_path, tokenizer):
    examples = [_example(" ".join(f"w{i}" for i in range(30)), "w50", "w3 w4"),
                _example("w1 w2 w3", "w51", "w2")]
    features = list(convert_examples_to_features(examples, tokenizer, max_seq_length=20,
                                                 doc_stride=8, is_training=True))
    path = str(tmp_path / "f.tfrecord")
    written, real, kept = write_features(path, iter(features), 20, pad_to_multiple=3,
                                         keep=True)
    assert (written, real, len(features), len(kept)) == (6, 4, 4, 4)
    batch = next(iter(tf.data.TFRecordDataset(path).batch(16).map(
        lambda s: parse_squad_features(s, 20))))
    assert set(batch) == {"unique_ids", "input_ids", "input_mask", "segment_ids",
                          "start_positions", "end_positions", "is_impossible"}
    assert all(v.dtype == tf.int32 for v in batch.values())
    ids = batch["unique_ids"].numpy()
    np.testing.assert_array_equal(ids[:real], [f.unique_id for f in features])
    np.testing.assert_array_equal(ids[real:], 0)  # padding records
    last = features[-1]
    n = len(last.tokens)
    np.testing.assert_array_equal(batch["input_ids"][real - 1, :n], last.input_ids)
    np.testing.assert_array_equal(batch["input_ids"][real - 1, n:], 0)
    np.testing.assert_array_equal(batch["input_mask"][real - 1], [1] * n + [0] * (20 - n))
    np.testing.assert_array_equal(batch["segment_ids"][real - 1, :n], last.segment_ids)
    np.testing.assert_array_equal(batch["start_positions"][:real],
                                  [f.start_position for f in features])
    np.testing.assert_array_equal(batch["end_positions"][:real],
                                  [f.end_position for f in features])


def test_squad_data_caches_training_features(tmp_path, caplog):
    source = os.path.join(SQUAD, "tiny-v2.0.json")
    vocab = os.path.join(TEST_DATA, "vocab_uncased.txt")
    cache = str(tmp_path / "features")
    kwargs = dict(max_seq_length=64, doc_stride=32, max_query_length=16,
                  version_2_with_negative=True)
    with caplog.at_level(logging.INFO, logger="data_prep.tasks.squad"):
        train = squad.squad_data(source, cache, vocab, is_training=True, **kwargs)
        again = squad.squad_data(source, cache, vocab, is_training=True, **kwargs)
    assert train.num_examples == 13 and train.num_features > 13  # the river needs 2+ windows
    assert (again.path, again.num_features) == (train.path, train.num_features)
    assert caplog.text.count("Wrote") == 1 and caplog.text.count("Reusing") == 1
    assert again.examples is None  # a cached training file is only read

    predict = squad.squad_data(source, cache, vocab, is_training=False, pad_to_multiple=8,
                               **kwargs)
    assert predict.num_records % 8 == 0 and predict.num_features == len(predict.features)
    assert predict.path != train.path and len(predict.examples) == 13
    changed = squad.squad_data(source, cache, vocab, is_training=True,
                               **{**kwargs, "doc_stride": 16})
    assert changed.path != train.path and changed.num_features > train.num_features
    records = sum(1 for _ in tf.data.TFRecordDataset(predict.path))
    assert records == predict.num_records
