"""data_prep.line_tokenizer: the same ids as FullTokenizer, line for line."""
import pytest

from data_prep import line_tokenizer, tokenization
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
