"""data_prep.tokenizer.line_tokenizer: the same ids as FullTokenizer, line for line."""
import numpy as np
import pytest

from data_prep.tokenizer import line_tokenizer, tokenization
from tests.data_prep.test_tokenization import (CONFIG_IDS, CONFIGS, MESSY, corpus_lines,
                                               random_texts)


@pytest.fixture(scope="module")
def fulls():
    return {cfg: tokenization.FullTokenizer(*cfg) for cfg in CONFIGS}


def expected_ids(full, texts):
    return [full.convert_tokens_to_ids(full.tokenize(t)) for t in texts]


def assert_same(full, texts, **kwargs):
    got = line_tokenizer.LineTokenizer(full, **kwargs)(texts)
    expected = expected_ids(full, texts)
    assert len(got) == len(expected)
    for text, g, e in zip(texts, got, expected):
        assert g == e, f"differs on {text!r}:\n  want {e}\n  got  {g}"
        assert type(g) is list


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_messy_and_random_lines(fulls, cfg):
    """One line per text (the joined route) and texts holding newlines (one at a time)."""
    lines = [line for text in MESSY + random_texts(seed=5, count=3000)
             for line in text.split("\n")]
    assert_same(fulls[cfg], lines)
    assert_same(fulls[cfg], MESSY)  # some hold "\n"
    assert_same(fulls[cfg], random_texts(seed=6, count=500))


def test_corpus_lines(fulls):
    lines = [line.strip() for line in corpus_lines()]
    assert len(lines) > 20000
    assert_same(fulls[CONFIGS[0]], lines)


def test_memo_limit_and_empty_batches(fulls):
    full = fulls[CONFIGS[0]]
    tokenizer = line_tokenizer.LineTokenizer(full, cache_limit=3)
    texts = ["Hello, World!", "the quick brown fox", "Hello again."] * 3
    assert tokenizer(texts) == expected_ids(full, texts)
    assert len(tokenizer._ids) == 3
    assert tokenizer([]) == []
    assert tokenizer([""]) == [[]]
    assert tokenizer(["", "a", ""]) == expected_ids(full, ["", "a", ""])


# --- flat(): the same ids through the compiled token table --------------------------------------

def assert_flat_same(tokenizer, full, texts):
    ids, lengths = tokenizer.flat(texts)
    expected = expected_ids(full, texts)
    assert ids.dtype == np.int32 and lengths.dtype == np.int64
    assert lengths.tolist() == [len(e) for e in expected]
    assert ids.tolist() == [i for e in expected for i in e]


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_flat_on_messy_random_and_corpus_lines(fulls, cfg):
    """Cold then warm (every token in the table), in batches as create_pretraining_data
    sends them; messy text has U+2028/U+2029 (split by Python, kept by the cleaning), NBSP,
    control characters, U+FFFD, CJK, emoji and texts holding newlines."""
    full = fulls[cfg]
    tokenizer = line_tokenizer.LineTokenizer(full)
    separators = ["a\u2028b c\u2029d", "x\u2028\u2029y", "\u2028", "e\u00a0f\u3000g", "\u2028z"]
    lines = [line for text in MESSY + random_texts(seed=7, count=2000) + separators
             for line in text.split("\n")]
    for _ in range(2):
        for start in range(0, len(lines), 700):
            assert_flat_same(tokenizer, full, lines[start:start + 700])
    assert_flat_same(tokenizer, full, MESSY)  # some hold "\n": the per-text route
    if cfg == CONFIGS[0]:
        corpus = [line.strip() for line in corpus_lines()][:5000]
        assert_flat_same(tokenizer, full, corpus)
        assert len(tokenizer._table) > 1000


def test_flat_when_the_table_is_full_and_empty_inputs(fulls):
    full = fulls[CONFIGS[0]]
    tokenizer = line_tokenizer.LineTokenizer(full, cache_limit=4)
    texts = ["Hello, World!", "the quick brown fox jumps", "Hello again."] * 3
    assert_flat_same(tokenizer, full, texts)
    assert len(tokenizer._table) == 4
    for texts in ([""], ["", "a", ""], ["   "]):
        assert_flat_same(tokenizer, full, texts)
    ids, lengths = tokenizer.flat([])
    assert ids.size == 0 and lengths.size == 0


def test_token_table_compares_keys_not_hashes():
    """Many keys in a small table: probing and byte comparison, growth and rehashing."""
    from data_prep.tokenizer import token_table
    table = token_table.TokenTable()
    keys = [f"k{i}".encode() for i in range(5000)] + ["é", "é\u2028"[:1], "\U0001F600"]
    keys = list(dict.fromkeys(k if isinstance(k, bytes) else k.encode() for k in keys))
    table.add(keys, [(i, i + 1) for i in range(len(keys))])
    data = np.frombuffer(b" ".join(keys) + b"\nk5000 k1", np.uint8)
    ids, lengths, missing = table.tokenize(data)
    assert ids.tolist() == [v for i in range(len(keys)) for v in (i, i + 1)] + [1, 2]
    assert lengths.tolist() == [2 * len(keys), 2]
    assert bytes(data[missing[0, 0]:missing[0, 1]]) == b"k5000"


# --- the compiled BasicTokenizer + WordPiece for printable-ASCII tokens -------------------------

def _ascii_words(seed, count):
    import random
    rng = random.Random(seed)
    alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    printable = "".join(chr(c) for c in range(0x21, 0x7F))
    words = ["".join(rng.choice(alnum if rng.random() < 0.9 else printable)
                     for _ in range(rng.choice([1, 2, 3, 5, 8, 13, 21])))
             for _ in range(count)]
    return words + ["a" * 200, "a" * 201, "B" * 199 + "c", "x" * 450, "0", "Z", "QQQQ",
                    "a" * 201 + "," + "b" * 3, ",,," + "c" * 200 + "!", "'", "#", "##ing",
                    "don't", "U.S.A.", "(hello)", "x_y", "a-b", "~`|\\{}"]


def _ranges(words):
    raw = "\n".join(words).encode("utf-8")
    sizes = np.array([len(w.encode("utf-8")) for w in words])
    ends = np.cumsum(sizes + 1) - 1
    return np.frombuffer(raw, np.uint8), np.stack([ends - sizes, ends], axis=1)


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_ascii_wordpiece_equals_the_python_rules(fulls, cfg):
    """AsciiWordPiece gives FullTokenizer's ids for every printable-ASCII token (punctuation
    split off, lower-cased or not, the 200/201-character bounds per word) and hands every
    other token back."""
    from data_prep.tokenizer import wordpiece_compiled
    full = fulls[cfg]
    compiled = wordpiece_compiled.AsciiWordPiece(full)
    others = ["caf\u00e9", "", "\u00bd", "q\u0301", "a\u2019b", "\u4e2d", "x\x7fy", "tab\tx"]
    words = _ascii_words(3, 4000) + list(dict.fromkeys(
        t for line in corpus_lines() for t in line.split()))[:6000] + others
    data, ranges = _ranges(words)
    ids, counts = compiled.compute(data, ranges)
    got, at = {}, 0
    for word, count in zip(words, counts.tolist()):
        if count >= 0:
            got[word] = tuple(ids[at:at + count].tolist())
            at += count
    assert at == len(ids)
    printable = [w for w in words if w and all(0x21 <= ord(c) <= 0x7E for c in w)]
    assert set(got) == set(printable) and not set(got) & set(others)
    assert len(printable) > 8000
    for word in printable:
        assert list(got[word]) == full.convert_tokens_to_ids(full.tokenize(word)), word
    assert got["a" * 201] == got["x" * 450] == (full.unk_id,)


def test_ascii_wordpiece_unmatched_positions_give_unk(tmp_path):
    """A position no piece matches makes that word [UNK] (not the whole token), as in the
    original; a punctuation character missing from the vocab is [UNK] too."""
    from data_prep.tokenizer import wordpiece_compiled
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff",
                                "##able", "a", "##b", "Ab", "##", "##\u00e9", "caf", ","]) + "\n")
    for lower in (True, False):
        full = tokenization.FullTokenizer(str(vocab), lower)
        words = ["unaffable", "unaffablex", "ab", "Ab", "AB", "abb", "ba", "un", "unaff", "x",
                 "un,ab", "x.un", "##", ",,"]
        data, ranges = _ranges(words)
        ids, counts = wordpiece_compiled.AsciiWordPiece(full).compute(data, ranges)
        assert (counts >= 1).all()
        splits = np.split(ids, np.cumsum(counts)[:-1])
        for word, got in zip(words, splits):
            assert got.tolist() == full.convert_tokens_to_ids(full.tokenize(word)), word
        assert splits[0].tolist() == [5, 6, 7] and splits[1].tolist() == [1]
        assert splits[11].tolist() == [1, 1, 5]  # "x" and "." unknown, "un" known
