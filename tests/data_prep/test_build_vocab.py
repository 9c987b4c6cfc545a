"""data_prep.build_vocab: a vocab learned from a corpus slice is well formed, covers its
alphabet, tokenizes that corpus with few [UNK]s and exactly like the reference; errors
and the command line."""
import glob
import os
import subprocess
import sys

import pytest

from data_prep.tokenizer import vocab_builder as bv, text_tokenizer, tokenization
from tests.data_prep import reference_tokenizer as ref

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS_GLOB = os.path.join(REPO, "data", "corpus", "*.txt")
LINES_PER_FILE = 500


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """(vocab path, tokens) learned from the first 500 lines of each book."""
    tokens = bv.build_vocab([CORPUS_GLOB], vocab_size=1000, do_lower_case=True,
                            lower_thresh=2, max_lines=LINES_PER_FILE)
    path = str(tmp_path_factory.mktemp("vocab") / "vocab.txt")
    bv.write_vocab(tokens, path)
    return path, tokens


def slice_lines():
    lines = []
    for path in sorted(glob.glob(CORPUS_GLOB)):
        with open(path, encoding="utf-8") as f:
            lines.extend(f.read().split("\n")[:LINES_PER_FILE])
    return lines


def test_vocab_is_well_formed(learned):
    path, tokens = learned
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert 900 <= len(tokens) <= 1000 + 20, len(tokens)
    assert len(set(tokens)) == len(tokens)
    vocab = tokenization.load_vocab(path)
    tokenization.validate_vocab(vocab, path)
    assert list(vocab) == tokens


def test_every_character_and_suffix_form_is_present(learned):
    _, tokens = learned
    present = set(tokens)
    basic = tokenization.BasicTokenizer(do_lower_case=True)
    chars = {ch for line in slice_lines() for word in basic.tokenize(line) for ch in word}
    missing = sorted(t for ch in chars for t in (ch, "##" + ch) if t not in present)
    assert not missing


def test_tokenizes_its_corpus_with_few_unknowns_and_like_the_reference(learned):
    path, _ = learned
    lines = slice_lines()
    reference = ref.ReferenceTokenizer(path, do_lower_case=True)
    expected = [reference.ids(line) for line in lines]
    ids = text_tokenizer.BertTextTokenizer(path, do_lower_case=True).batch_tokenize(lines)
    assert ids == expected
    flat = [i for row in ids for i in row]
    unk = reference.vocab["[UNK]"]
    assert flat.count(unk) <= 0.001 * len(flat)
    # Pieces are real sub-words, not just characters.
    assert len(flat) < 1.6 * sum(len(r) for r in
                                 (ref.basic_tokenize(line, True) for line in lines))


def test_write_vocab_is_atomic_and_round_trips(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("old\n", encoding="utf-8")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##é"]
    bv.write_vocab(tokens, str(path))
    assert list(tokenization.load_vocab(str(path))) == tokens
    assert os.listdir(tmp_path) == ["v.txt"]  # No temp file left behind.
    nested = tmp_path / "new" / "dir" / "vocab.txt"
    bv.write_vocab(tokens, str(nested))
    assert list(tokenization.load_vocab(str(nested))) == tokens


def test_errors_name_the_input(tmp_path):
    with pytest.raises(ValueError, match="no file matches"):
        bv.build_vocab([str(tmp_path / "nothing*.txt")], 100, True)
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\x00\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no words in .*empty\.txt"):
        bv.build_vocab([str(empty)], 100, True)
    with pytest.raises(ValueError, match=r"reserved_tokens.*\[PAD\]"):
        bv.build_vocab([CORPUS_GLOB], 100, True,
                       reserved_tokens=["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "data_prep.build_vocab", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_command_line(tmp_path):
    out = tmp_path / "vocab.txt"
    done = run_cli(f"--input_file={CORPUS_GLOB},{tmp_path}/none*.txt", f"--output_file={out}",
                   "--vocab_size=300", "--do_lower_case=false", "--max_lines=200",
                   "--lower_thresh=2")
    assert done.returncode == 0, done.stderr
    tokens = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert tokens[0] == "[PAD]" and "T" in tokens  # Cased.
    bad = run_cli(f"--input_file={tmp_path}/none*.txt", f"--output_file={out}")
    assert bad.returncode != 0 and "--input_file" in bad.stderr
