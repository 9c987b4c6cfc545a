"""GLUE processors on fixtures in the real layouts, feature conversion as the original, caching,
submission files."""
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from data_prep.tasks import classifier_features as cf, glue
from tests.conftest import TEST_DATA

GLUE = os.path.join(TEST_DATA, "glue")
VOCAB = os.path.join(TEST_DATA, "vocab_uncased.txt")
FOLDERS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP",
           "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI", "ax": "diagnostic"}


def _read(task, split):
    return glue.read_examples(glue.get_task(task), split, os.path.join(GLUE, FOLDERS[task]))


# (task, split, count, first example's guid, text_a, text_b, label)
FIRST_EXAMPLES = [
    ("cola", "train", 12, "train-0",
     "our friends wo n't buy this analysis , let alone the next one we propose", None, "1"),
    ("cola", "dev", 8, "dev-0", "we think for bill left", None, "0"),
    ("cola", "test", 6, "test-0", "he hurt himself with it when he tried to open it", None, None),
    ("sst2", "train", 64, "train-0", "a stirring , funny and finally transporting re imagining "
     "of beauty and the beast and 1930s horror films ", None, "1"),
    ("sst2", "test", 10, "test-0", "the film 's lack of personality permeates all its aspects "
     "from the tv movie esque , affected child acting to the dullest irish pub scenes ever "
     "filmed ", None, None),
    ("mrpc", "train", 4, "train-0", "The company said profits rose 5 percent in the quarter.",
     "Quarterly profit was up 5 percent, the company said.", "1"),
    ("mrpc", "test", 2, "test-0", "The plane landed safely in Denver.",
     "The aircraft landed without incident in Denver.", None),
    ("stsb", "train", 4, "train-0", "A plane is taking off.", "An air plane is taking off.", 5.0),
    ("stsb", "dev", 3, "dev-0", "A man with a hard hat is dancing.",
     "A man wearing a hard hat is dancing.", 5.0),
    ("stsb", "test", 2, "test-0", "A girl is styling her hair.", "A girl is brushing her hair.",
     None),
    ("qqp", "train", 4, "train-133273", "How is the life of a math student?",
     "Which level of math is needed to study physics?", "0"),
    ("qqp", "test", 2, "test-0", "Why do rockets look white?",
     "Why are rockets and boosters painted white?", None),
    ("mnli", "train", 3, "train-0", "The report was published in May.",
     "The report came out in May.", "entailment"),
    ("mnli", "dev_matched", 3, "dev_matched-0", "The hotel is close to the beach.",
     "The hotel is far from the sea.", "contradiction"),
    ("mnli", "dev_mismatched", 3, "dev_mismatched-0", "The inn is close to the beach.",
     "The hotel is far from the sea.", "contradiction"),
    ("mnli", "test_matched", 2, "test_matched-0", "The bridge was built in 1890.",
     "The bridge is over a century old.", None),
    ("mnli", "test_mismatched", 2, "test_mismatched-0", "The tower was built in 1890.",
     "The bridge is over a century old.", None),
    ("qnli", "dev", 2, "dev-0", "What is the capital of France?",
     "Paris is the capital and largest city of France.", "entailment"),
    ("rte", "train", 2, "train-0",
     "The trophy didn't fit in the suitcase because it was too big.",
     "The trophy was too big.", "entailment"),
    ("wnli", "dev", 2, "dev-0",
     "John couldn't see the stage with Billy in front of him because he is so short.",
     "John is so short.", "1"),
    ("ax", "test", 3, "test-0", "The cat sat on the mat.", "The cat did not sit on the mat.",
     None),
]


@pytest.mark.parametrize("task, split, count, guid, text_a, text_b, label", FIRST_EXAMPLES)
def test_columns_labels_and_guids(task, split, count, guid, text_a, text_b, label):
    examples = _read(task, split)
    assert len(examples) == count
    first = examples[0]
    assert (first.guid, first.text_a, first.text_b, first.label) == (guid, text_a, text_b, label)


def test_label_sets_and_metrics_are_glue_s():
    get = glue.get_task
    assert get("mnli").labels == ("contradiction", "entailment", "neutral")
    assert get("ax").labels == get("mnli").labels
    assert get("qnli").labels == get("rte").labels == ("entailment", "not_entailment")
    assert get("cola").labels == get("wnli").labels == ("0", "1")
    assert get("stsb").is_regression and get("stsb").num_classes == 1
    assert get("cola").metrics == ("matthews_corr",)
    assert get("mrpc").metrics == get("qqp").metrics == ("f1", "accuracy")
    assert get("stsb").metrics == ("pearson", "spearman")
    assert get("SST-2") is get("sst2") and get("STS-B") is get("stsb")
    assert get("mnli").dev_splits == ["dev_matched", "dev_mismatched"]
    assert [get("mnli").splits[s].submission for s in get("mnli").test_splits] == \
        ["MNLI-m", "MNLI-mm"]
    assert list(get("ax").splits) == ["test"] and get("ax").splits["test"].submission == "AX"
    with pytest.raises(ValueError, match="Unknown GLUE task 'squad'"):
        get("squad")


def test_labels_of_every_row_and_test_ids():
    assert [e.label for e in _read("cola", "dev")] == ["0", "0", "1", "1", "0", "1", "1", "1"]
    assert [e.label for e in _read("mnli", "dev_matched")] == \
        ["contradiction", "entailment", "neutral"]
    assert [e.label for e in _read("stsb", "train")] == [5.0, 3.8, 0.0, 3.2]
    assert [e.index for e in _read("qqp", "dev")] == ["40066", "36441"]
    assert [e.index for e in _read("sst2", "test")] == [str(i) for i in range(10)]
    assert all(e.text_b is None for e in _read("sst2", "train"))


def test_mrpc_byte_order_mark_does_not_leak(tmp_path):
    with open(os.path.join(GLUE, "MRPC", "train.tsv"), "rb") as f:
        assert f.read(3) == b"\xef\xbb\xbf"  # the fixture keeps GLUE's BOM
    assert len(_read("mrpc", "train")) == 4


def test_qqp_malformed_rows_are_skipped_and_counted(caplog):
    with caplog.at_level(logging.WARNING, logger="data_prep.tasks.glue"):
        examples = _read("qqp", "train")
    assert len(examples) == 4
    assert "skipped 2 malformed row(s)" in caplog.text and "lines 5, 7" in caplog.text


def _copy_task(tmp_path, task):
    folder = tmp_path / FOLDERS[task]
    shutil.copytree(os.path.join(GLUE, FOLDERS[task]), folder)
    return folder


def test_bad_input_names_file_and_line(tmp_path):
    task = glue.get_task("rte")
    folder = _copy_task(tmp_path, "rte")
    with pytest.raises(FileNotFoundError, match=r"rte train file not found: .*nowhere/train\.tsv"):
        glue.read_examples(task, "train", str(tmp_path / "nowhere"))
    with open(folder / "dev.tsv", "a", encoding="utf-8") as f:
        f.write("2\tOnly one sentence here.\n")
    with pytest.raises(ValueError, match=r"dev\.tsv:4: expected at least 4 .* found 2"):
        glue.read_examples(task, "dev", str(folder))
    with open(folder / "train.tsv", "a", encoding="utf-8") as f:
        f.write("2\tA man sleeps.\tA man is awake.\tcontradiction\n")
    with pytest.raises(ValueError, match=r"train\.tsv:4: unknown label 'contradiction' for rte"):
        glue.read_examples(task, "train", str(folder))
    with pytest.raises(ValueError, match="no 'dev_matched' split"):
        glue.read_examples(task, "dev_matched", str(folder))


def test_regression_label_must_be_a_number(tmp_path):
    folder = _copy_task(tmp_path, "stsb")
    with open(folder / "dev.tsv", "a", encoding="utf-8") as f:
        f.write("3\tg\tf\ty\to\ts\ts\tA cat.\tA dog.\tfive\n")
    with pytest.raises(ValueError, match=r"dev\.tsv:5: label 'five' is not a number"):
        glue.read_examples(glue.get_task("stsb"), "dev", str(folder))


# --- features ---------------------------------------------------------------------------------

@pytest.mark.parametrize("len_a, len_b, max_length, kept_a, kept_b", [
    (3, 2, 7, 3, 2),  # fits: untouched
    (10, 1, 5, 4, 1),  # only the longer side shrinks
    (1, 10, 5, 1, 4),
    (4, 4, 6, 3, 3),  # equal lengths: B first (4,3), then A (3,3)
    (5, 4, 6, 3, 3),  # A (4,4), B (4,3), A (3,3)
    (7, 3, 4, 2, 2),
    (2, 2, 0, 0, 0),
])
def test_truncate_seq_pair_pops_from_the_longer_end(len_a, len_b, max_length, kept_a, kept_b):
    a = [f"a{i}" for i in range(len_a)]
    b = [f"b{i}" for i in range(len_b)]
    cf.truncate_seq_pair(a, b, max_length)
    assert a == [f"a{i}" for i in range(kept_a)]  # always the tail is removed
    assert b == [f"b{i}" for i in range(kept_b)]


class _WordTokenizer:
    """Whitespace tokens; id = len(token) + 10 ([CLS] 1, [SEP] 2)."""

    def tokenize(self, text):
        return text.split()

    def convert_tokens_to_ids(self, tokens):
        return [{"[CLS]": 1, "[SEP]": 2}.get(t, len(t) + 10) for t in tokens]


def test_convert_pair_truncates_and_lays_out_as_the_original():
    example = glue.InputExample("x", "a bb ccc dddd eeeee", "ff g", label="neutral")
    f = cf.convert_example(example, {"contradiction": 0, "neutral": 2}, 8, _WordTokenizer())
    # 5 + 2 tokens > 8 - 3: A shrinks to 3.
    assert f.input_ids == [1, 11, 12, 13, 2, 12, 11, 2]
    assert f.segment_ids == [0, 0, 0, 0, 0, 1, 1, 1]
    assert f.input_mask == [1] * 8
    assert f.label_id == 2 and f.is_real_example


def test_convert_single_and_empty_b_and_padding():
    tok = _WordTokenizer()
    long = glue.InputExample("x", "a b c d e f g", None, label="1")
    f = cf.convert_example(long, {"0": 0, "1": 1}, 6, tok)
    assert f.input_ids == [1, 11, 11, 11, 11, 2]  # cut to max_seq_length - 2
    # An empty B, or one with no tokens, is a single sentence: no second [SEP].
    for text_b in ("", "   "):
        g = cf.convert_example(glue.InputExample("y", "a bb", text_b, "0"), {"0": 0, "1": 1},
                               6, tok)
        assert g.input_ids == [1, 11, 12, 2, 0, 0]
        assert g.input_mask == [1, 1, 1, 1, 0, 0] and g.segment_ids == [0] * 6
    test = cf.convert_example(glue.InputExample("z", "a", None, None), {"0": 0, "1": 1}, 4, tok)
    assert test.label_id == 0  # test examples have no label
    regression = cf.convert_example(glue.InputExample("r", "a", "b", 3.8), None, 6, tok)
    assert regression.label_id == pytest.approx(3.8)
    with pytest.raises(ValueError, match="unknown label 'maybe'"):
        cf.convert_example(glue.InputExample("u", "a", None, "maybe"), {"0": 0}, 4, tok)


def test_feature_ids_with_the_real_vocab():
    from data_prep.tokenizer.tokenization import FullTokenizer
    tokenizer = FullTokenizer(VOCAB, do_lower_case=True)
    example = glue.InputExample("x", "Hello, World!", "The unaffable.", label="entailment")
    f = cf.convert_example(example, {"entailment": 0}, 16, tokenizer)
    # [CLS] hello , world ! [SEP] the una ##ffa ##ble . [SEP] + 4 padding
    assert f.input_ids == [101, 7592, 1010, 2088, 999, 102,
                           1996, 14477, 20961, 3468, 1012, 102, 0, 0, 0, 0]
    assert f.segment_ids == [0] * 6 + [1] * 6 + [0] * 4
    assert f.input_mask == [1] * 12 + [0] * 4


def _parse_all(path, seq, regression):
    records = tf.data.TFRecordDataset(path).batch(100)
    return {k: v.numpy() for k, v in
            cf.parse_classifier_examples(next(iter(records)), seq, regression).items()}


def test_cached_features_roundtrip_padding_and_reuse(tmp_path):
    task = glue.get_task("sst2")
    data = os.path.join(GLUE, "SST-2")
    out = glue.cached_features(task, "dev", data, str(tmp_path), VOCAB, True, 32,
                               pad_to_multiple=8)
    assert (out.num_examples, out.num_records) == (21, 24)
    parsed = _parse_all(out.path, 32, regression=False)
    assert parsed["input_ids"].shape == (24, 32) and parsed["input_ids"].dtype == np.int32
    np.testing.assert_array_equal(parsed["is_real_example"], [1] * 21 + [0] * 3)
    assert not parsed["input_ids"][21:].any() and not parsed["input_mask"][21:].any()
    expected = [int(e.label) for e in _read("sst2", "dev")]
    np.testing.assert_array_equal(parsed["label_ids"][:21], expected)
    assert (parsed["input_ids"][:21, 0] == 101).all()

    class NoTokenizer:  # a cache hit must not tokenize again
        def tokenize(self, text):
            raise AssertionError("cache not reused")

    again = glue.cached_features(task, "dev", data, str(tmp_path), VOCAB, True, 32,
                                 pad_to_multiple=8, tokenizer=NoTokenizer())
    assert again == out
    other = glue.cached_features(task, "dev", data, str(tmp_path), VOCAB, True, 16,
                                 pad_to_multiple=8)  # another length: another file
    assert other.path != out.path and _parse_all(other.path, 16, False)["input_ids"].shape[1] == 16
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_regression_features_keep_float_labels(tmp_path):
    out = glue.cached_features(glue.get_task("stsb"), "train", os.path.join(GLUE, "STS-B"),
                               str(tmp_path), VOCAB, True, 32)
    parsed = _parse_all(out.path, 32, regression=True)
    np.testing.assert_allclose(parsed["label_ids"], [5.0, 3.8, 0.0, 3.2], rtol=1e-6)
    assert parsed["label_ids"].dtype == np.float32
    assert (parsed["segment_ids"].sum(axis=1) > 0).all()  # pairs: segment B present


def test_submission_and_probability_files(tmp_path):
    task = glue.get_task("mnli")
    examples = _read("mnli", "test_mismatched")
    path = tmp_path / "MNLI-mm.tsv"
    glue.write_submission(str(path), task, examples, np.array([2, 0]))
    assert path.read_text() == "index\tprediction\n0\tneutral\n1\tcontradiction\n"
    stsb = tmp_path / "STS-B.tsv"
    glue.write_submission(str(stsb), glue.get_task("stsb"), _read("stsb", "test"),
                          np.array([4.25, 0.5]))
    assert stsb.read_text() == "index\tprediction\n0\t4.250000\n1\t0.500000\n"
    probs = tmp_path / "test_results.tsv"
    glue.write_probabilities(str(probs), np.array([[0.25, 0.75], [1.0, 0.0]]))
    assert probs.read_text() == "0.25\t0.75\n1.0\t0.0\n"
    with pytest.raises(ValueError, match="1 predictions for 2 examples"):
        glue.write_submission(str(path), task, examples, np.array([1]))


# --- TFDS ---------------------------------------------------------------------------------------

def test_tfds_records_map_to_glue_labels():
    mnli, sst2, stsb = glue.get_task("mnli"), glue.get_task("sst2"), glue.get_task("stsb")
    tfds_mnli_names = ["entailment", "neutral", "contradiction"]  # TFDS's order, not BERT's
    record = {"premise": b"A man sleeps.", "hypothesis": b"A man is awake.", "label": 2,
              "idx": 7}
    example = glue.example_from_tfds(mnli, "dev_matched", record, tfds_mnli_names)
    assert (example.guid, example.text_a, example.text_b, example.label, example.index) == \
        ("dev_matched-7", "A man sleeps.", "A man is awake.", "contradiction", "7")
    test = glue.example_from_tfds(mnli, "test_matched", {**record, "label": -1},
                                  tfds_mnli_names)
    assert test.label is None
    binary = glue.example_from_tfds(sst2, "train", {"sentence": b"fine", "label": 1, "idx": 0},
                                    ["negative", "positive"])
    assert (binary.label, binary.text_b) == ("1", None)
    score = glue.example_from_tfds(
        stsb, "dev", {"sentence1": b"a", "sentence2": b"b", "label": 3.5, "idx": 1}, [])
    assert score.label == 3.5


def test_tfds_local_data_or_clear_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match="not prepared .* never downloads"):
        glue.read_tfds_examples(glue.get_task("rte"), "dev", str(tmp_path))
    local = os.environ.get("TFDS_DATA_DIR")
    if not local or not os.path.isdir(os.path.join(local, "glue", "rte")):
        pytest.skip("no prepared TFDS glue/rte under $TFDS_DATA_DIR")
    examples = glue.read_tfds_examples(glue.get_task("rte"), "dev", local)
    assert examples and {e.label for e in examples} <= {"entailment", "not_entailment"}
