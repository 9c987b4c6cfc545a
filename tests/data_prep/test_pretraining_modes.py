"""create_pretraining_data --masking=none and --task=none: packing, records, resume, summary."""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_prep.pretraining import shards as cpd, instances as inst, instances_packed
from data_prep.files import tfrecords
from tests.data_prep.test_create_pretraining_data import settings as base_settings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB_FILE = os.path.join(REPO, "tests", "data", "vocab_uncased.txt")
CORPUS_DIR = os.path.join(REPO, "data", "corpus_sentences")
BOOK = os.path.join(CORPUS_DIR, "blake-poems.txt")
CLS, SEP, MASK = 101, 102, 103


def settings(**kwargs):
    """test_create_pretraining_data's settings, with one copy of the data by default."""
    kwargs.setdefault("dupe_factor", 1)
    return base_settings(**kwargs)


def parse(path, seq=128, pred=20):
    """Every record of a file as numpy arrays, whatever features it has."""
    records = tfrecords.read_tfrecord(path)
    names = set(tf.train.Example.FromString(records[0]).features.feature)
    spec = {k: v for k, v in tfrecords.feature_spec(seq, pred).items() if k in names}
    return {k: v.numpy() for k, v in tf.io.parse_example(tf.constant(records), spec).items()}


def vocab_ids():
    return cpd.load_vocab_ids(VOCAB_FILE)


def toy_corpus():
    # Three documents; one sentence (12 tokens) longer than a whole sequence at length 8.
    documents = [[[5, 6, 7], [8, 9]], [[10, 11, 12, 13]], [list(range(20, 32)), [40, 41]]]
    return inst.Corpus.from_documents(documents), documents


def test_packing_crosses_documents_with_sep_and_loses_no_token():
    corpus, documents = toy_corpus()
    ids, lengths, separators = instances_packed.pack_corpus(corpus, vocab_ids(), 8,
                                                            np.arange(3))
    rows = [row[:n].tolist() for row, n in zip(ids, lengths)]
    assert rows == [[CLS, 5, 6, 7, 8, 9, SEP],  # [SEP] + the next document would not fit
                    [CLS, 10, 11, 12, 13, SEP],
                    [CLS, 20, 21, 22, 23, 24, 25, SEP],  # the long sentence is cut
                    [CLS, 26, 27, 28, 29, 30, 31, SEP],
                    [CLS, 40, 41, SEP]]
    assert separators == 0
    ids, lengths, separators = instances_packed.pack_corpus(corpus, vocab_ids(), 16,
                                                            np.array([1, 0, 2]))
    rows = [row[:n].tolist() for row, n in zip(ids, lengths)]
    assert rows[0] == [CLS, 10, 11, 12, 13, SEP, 5, 6, 7, 8, 9, SEP]  # crossed with a [SEP]
    assert separators == 1
    assert (ids[np.arange(ids.shape[1])[None, :] >= lengths[:, None]] == 0).all()


def test_task_none_on_a_book(tmp_path):
    """Lengths within max_seq_length, every token once per pass, documents joined by [SEP],
    no labels, no masks; the summary says what the records hold."""
    out = str(tmp_path / "packed.tfrecord")
    summary = cpd.create_pretraining_data([BOOK], [out], settings(
        masking="none", task="none", dupe_factor=2, max_seq_length=64))
    parsed = parse(out, seq=64)
    assert sorted(parsed) == ["input_ids", "input_mask", "segment_ids"]
    lengths = parsed["input_mask"].sum(axis=1)
    assert lengths.max() <= 64 and (parsed["segment_ids"] == 0).all()
    assert np.mean(lengths) > 0.7 * 64  # whole sentences: filled up to the next one
    ids = parsed["input_ids"]
    assert (ids[:, 0] == CLS).all() and (ids[np.arange(len(ids)), lengths - 1] == SEP).all()
    tokenizer = cpd.batch_tokenizer("python", VOCAB_FILE, True)
    corpus = cpd.read_corpus([BOOK], tokenizer)
    content = np.concatenate([ids[i, 1:lengths[i] - 1] for i in range(len(ids))])
    inner_seps = int((content == SEP).sum())
    words = np.sort(content[content != SEP])
    assert np.array_equal(words, np.sort(np.tile(corpus.tokens, 2)))  # no token lost
    c = summary["counts"]
    assert c["document_separators"] == inner_seps > 0
    assert c["instances"] == len(ids) and c["tokens"] == lengths.sum()
    assert summary["masked_fraction"] is None and summary["random_next_fraction"] is None
    assert summary["settings"]["masking"] == "none" and summary["settings"]["task"] == "none"
    # Each run between [SEP]s is a run of one document's tokens, in order.
    documents = [np.concatenate([corpus.tokens[corpus.seg_cum[s]:corpus.seg_cum[s + 1]]
                                 for s in range(a, b)]).tolist()
                 for a, b in zip(corpus.doc_start, corpus.doc_end)]
    text = {d: " " + " ".join(map(str, doc)) + " " for d, doc in enumerate(documents)}
    for i in range(0, len(ids), 7):
        runs = " ".join(map(str, ids[i, 1:lengths[i] - 1])).split(f" {SEP} ")
        for run in runs:
            assert any(f" {run} " in t for t in text.values()), run


def test_task_none_with_static_masks(tmp_path):
    out = str(tmp_path / "packed.tfrecord")
    summary = cpd.create_pretraining_data(
        [os.path.join(CORPUS_DIR, "chesterton-thursday.txt")], [out],
        settings(task="none", dupe_factor=2))
    assert abs(summary["masked_fraction"] - 0.15) < 0.01
    assert abs(summary["mask_split"]["mask"] - 0.8) < 0.02
    assert abs(summary["mask_split"]["keep"] - 0.1) < 0.02
    parsed = parse(out)
    assert "next_sentence_labels" not in parsed
    weights = parsed["masked_lm_weights"] > 0
    lengths = parsed["input_mask"].sum(axis=1)
    expected = np.minimum(20, np.maximum(1, np.rint(lengths * 0.15)))
    np.testing.assert_array_equal(weights.sum(axis=1), expected)
    assert not np.isin(parsed["masked_lm_ids"][weights], [CLS, SEP, 0]).any()


@pytest.mark.parametrize("rng", ["original", "vectorized"])
def test_masking_none_keeps_the_static_pairs_unmasked(tmp_path, rng):
    """--masking=none with NSP writes the instances of --masking=static, original ids and
    labels, and no masked-LM feature."""
    static, plain = str(tmp_path / "static.tfrecord"), str(tmp_path / "plain.tfrecord")
    cpd.create_pretraining_data([BOOK], [static], settings(rng=rng, dupe_factor=2))
    summary = cpd.create_pretraining_data([BOOK], [plain], settings(
        rng=rng, dupe_factor=2, masking="none"))
    a, b = parse(static), parse(plain)
    assert sorted(b) == ["input_ids", "input_mask", "next_sentence_labels", "segment_ids"]
    restored = a["input_ids"].copy()
    w = a["masked_lm_weights"] > 0
    restored[np.nonzero(w)[0], a["masked_lm_positions"][w]] = a["masked_lm_ids"][w]
    np.testing.assert_array_equal(restored, b["input_ids"])
    for name in ("input_mask", "segment_ids", "next_sentence_labels"):
        np.testing.assert_array_equal(a[name], b[name])
    assert summary["masked_fraction"] is None and summary["random_next_fraction"] > 0.4
    assert os.path.getsize(plain) < 0.8 * os.path.getsize(static)


def test_modes_are_in_the_fingerprint_so_resume_never_mixes_them(tmp_path, caplog):
    out = [str(tmp_path / "s.tfrecord")]
    cpd.create_pretraining_data([BOOK], out, settings())
    static_bytes = open(out[0], "rb").read()
    with caplog.at_level(logging.INFO):
        cpd.create_pretraining_data([BOOK], out, settings())
    assert "resuming: 1 of 1 shards" in caplog.text
    for mode in ({"masking": "none"}, {"task": "none"}, {"masking": "none", "task": "none"}):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            summary = cpd.create_pretraining_data([BOOK], out, settings(**mode))
        assert "resuming" not in caplog.text and summary["shards_skipped"] == 0, mode
    assert open(out[0], "rb").read() != static_bytes
    # Back to the defaults: the fingerprint is the one shards had before the modes existed.
    default = cpd._fingerprint(settings(), 0, 1, [BOOK])
    assert default == cpd._fingerprint(settings(masking="static", task="nsp"), 0, 1, [BOOK])
    assert len({default, cpd._fingerprint(settings(masking="none"), 0, 1, [BOOK]),
                cpd._fingerprint(settings(task="none"), 0, 1, [BOOK])}) == 3


def test_bad_modes_and_dupe_factor_warning(tmp_path, caplog):
    out = [str(tmp_path / "x.tfrecord")]
    with pytest.raises(ValueError, match="--masking must be one of"):
        cpd.create_pretraining_data([BOOK], out, settings(masking="dynamic"))
    with pytest.raises(ValueError, match="--task must be one of"):
        cpd.create_pretraining_data([BOOK], out, settings(task="sop"))
    with caplog.at_level(logging.WARNING):
        cpd.create_pretraining_data([BOOK], out, settings(masking="none", dupe_factor=3))
    assert "--dupe_factor=1 is enough" in caplog.text


def test_the_tiny_dynamic_flagfile_runs(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.create_pretraining_data",
         "--flagfile=flags/create_pretraining_data_tiny_dynamic.flags", f"--input_file={BOOK}",
         f"--vocab_file={VOCAB_FILE}", f"--output_dir={out}", "--num_shards=0",
         "--num_workers=1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(out / "summary.json") as f:
        summary = json.load(f)
    assert summary["settings"]["masking"] == "none" and summary["settings"]["task"] == "none"
    assert summary["settings"]["dupe_factor"] == 1 and summary["counts"]["instances"] > 0
    assert sorted(parse(str(out / "pretraining_data-00000-of-00001.tfrecord"))) == [
        "input_ids", "input_mask", "segment_ids"]
