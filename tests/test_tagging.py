"""Token classification: CoNLL reading, first-piece labels, entity F1, run_tagger end to end."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bert_tf.training import metrics
from data_prep.tasks import conll
from data_prep.tokenizer.tokenization import FullTokenizer
from tests.conftest import REPO_ROOT, TEST_DATA

VOCAB = os.path.join(TEST_DATA, "vocab_uncased.txt")
CONLL = os.path.join(TEST_DATA, "conll")


def test_read_conll_and_errors(tmp_path):
    sentences = conll.read_conll(os.path.join(CONLL, "train.txt"))
    assert len(sentences) == 160
    assert sentences[0].words[:3] == ("The", "Royal", "Society")
    assert sentences[0].tags[:3] == ("O", "B-ORG", "I-ORG")
    assert conll.label_list(sentences) == ["O", "B-LOC", "B-ORG", "B-PER", "I-ORG"]
    bad = tmp_path / "bad.txt"
    bad.write_text("John B-PER\nsmith\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        conll.read_conll(str(bad))
    bad.write_text("John PERSON\n")
    with pytest.raises(ValueError, match="bad.txt:1: tag 'PERSON'"):
        conll.read_conll(str(bad))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="no sentences"):
        conll.read_conll(str(empty))


def test_label_on_first_piece_only():
    tokenizer = FullTokenizer(VOCAB, True)
    sentence = conll.TaggedSentence(("Wentworth", "visited", "Kellynch", "."),
                                    ("B-PER", "O", "B-LOC", "O"))
    labels = ["O", "B-LOC", "B-PER"]
    row = conll.convert_sentence(sentence, tokenizer, {t: i for i, t in enumerate(labels)}, 16)
    pieces = [tokenizer.tokenize(w) for w in sentence.words]
    assert len(pieces[2]) > 1  # "Kellynch" splits, so continuation pieces exist
    n = 1 + sum(len(p) for p in pieces) + 1
    assert row["input_mask"].sum() == n
    first = np.cumsum([1] + [len(p) for p in pieces[:-1]])
    np.testing.assert_array_equal(np.flatnonzero(row["label_weights"]), first)
    np.testing.assert_array_equal(row["label_ids"][first], [2, 0, 1, 0])
    with pytest.raises(ValueError, match="unknown tag 'B-ORG'"):
        conll.convert_sentence(conll.TaggedSentence(("x",), ("B-ORG",)), tokenizer,
                               {"O": 0}, 8, "f.txt:3")


def test_entity_f1_by_conlleval_rules():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "I-ORG", "O"]]
    # gold chunks: PER(0-1), LOC(3), ORG(1-3); predicted: PER(0-1), ORG(3), ORG(1-2): 1 right.
    scores = metrics.entity_f1(gold, pred)
    assert scores["precision"] == pytest.approx(1 / 3)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(1 / 3)
    # An I- after O starts a chunk (IOB1 / stray I-), a type change splits one.
    assert metrics.entity_chunks(["O", "I-PER", "I-PER", "I-LOC"]) == {("PER", 1, 2),
                                                                       ("LOC", 3, 3)}
    assert metrics.entity_chunks(["B-PER", "B-PER"]) == {("PER", 0, 0), ("PER", 1, 1)}
    assert metrics.entity_f1([["O"]], [["O"]])["f1"] == 0.0
    with pytest.raises(ValueError, match="sentence 0"):
        metrics.entity_f1([["O"]], [["O", "O"]])


def test_run_tagger_end_to_end(tmp_path):
    out = tmp_path / "ner"
    cmd = [sys.executable, "-m", "bert_tf.run_tagger", "--model=tiny", f"--vocab_file={VOCAB}",
           f"--train_file={CONLL}/train.txt", f"--eval_file={CONLL}/dev.txt",
           f"--predict_file={CONLL}/dev.txt", f"--output_dir={out}", "--do_train", "--do_eval",
           "--do_predict", "--max_seq_length=32", "--train_batch_size=16",
           "--learning_rate=2e-3", "--num_train_epochs=20", "--steps_per_loop=50",
           "--save_checkpoints_steps=100", "--eval_every_epoch"]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().split("\n")
                   if " = " in line)
    # The templates are learnable: a tiny model from scratch finds most entities.
    assert float(results["eval_f1"]) > 0.5, results
    lines = [l for l in (out / "predictions.txt").read_text().split("\n") if l]
    assert len(lines) == sum(len(s.words) for s in conll.read_conll(f"{CONLL}/dev.txt"))
    assert all(len(l.split()) == 3 for l in lines)
    assert (out / "model.keras").exists() and (out / "labels.txt").read_text().startswith("O\n")
    best = json.loads((out / "best" / "best_metric.json").read_text())
    assert best["metric"] == "eval_f1" and best["value"] >= float(results["eval_f1"]) - 1e-9
