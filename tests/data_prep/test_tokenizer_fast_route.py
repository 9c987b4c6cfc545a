"""BertTextTokenizer's fast route (tensorflow-text's FastBertNormalizer with our
per-code-point model, then its FastWordpieceTokenizer): which strings take it,
that the model is exactly the original rules per code point, the capital sigma
rewrite, the 200-character word limit, and that batches mixing fast-route and
general-route strings give the reference ids in input order."""
import os
import random

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text as tf_text

from data_prep.tokenizer import char_tables, text_tokenizer, tokenization
from tests.data_prep import reference_tokenizer as ref

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNCASED = os.path.join(REPO, "tests", "data", "vocab_uncased.txt")
CASED = os.path.join(REPO, "tests", "data", "vocab_cased_small.txt")
CONFIGS = [(UNCASED, True), (UNCASED, False), (CASED, False)]
CONFIG_IDS = ["uncased", "uncased-vocab-no-lower", "cased-small"]

# Strings the fast route takes (in every configuration), long words included.
FAST = [
    "", "Hello, World!", "Café naïve ÉCOLE Ångström", "Straße groß ẞ",
    "中文分词，你好！", "ひらがなとカタカナ", "한국어 텍스트", "Привет, МИР!",
    "👨\u200d👩\u200d👧 👍🏽 🇩🇪 ❤\ufe0f", "a\x00b\x07c\ufffd d\x7f",
    "zero\u200bwidth soft\u00adhyphen \ufeffbom", "nbsp\u00a0ideo\u3000x\u2028y",
    "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ", "ﬁne ǅemal İstanbul", "“quotes” – dash… «»",
    "priv\ue000ate \U000f0000 unassigned\u0378", "e\u0301 a\u0323\u0302",
    "ภาษาไทยเป็นภาษาที่ไม่มีการเว้นวรรคระหว่างคำซึ่งทำให้การตัดคำเป็นเรื่องยากสำหรับคอมพิวเตอร์",
    "x" * 200, "x" * 201, "é" * 200, "é" * 201, "한" * 66, "한" * 67, "a\u200b" * 300,
    "ab " * 100, "a-" * 150, "ab" * 100 + "c", "\U0001f600" * 201,
]
# Capital sigma: the fast route takes it after rewriting the final ones.
SIGMA = [
    "ΟΔΥΣΣΕΥΣ", "σοφία Σ", "ΣΑΣ. ΑΣ' ΑΣ\u0301Α ΑΣ\u200bΒ ΑΣ\x07Β ΑΣ中", "AΣ\u00adb AΣ\u00ad",
    "ΣΣ ΑΣΣ ΑΣ'Σ Σ'", "x" * 30 + "Σ", "ΑΣ\x0bΒ ΑΣ\x1c ΑΣ\x85b Α\x0cΣ",  # Deleted, yet isspace().
    "Σ" * 201, "ΑΣ " + "é" * 201,
]
# Characters that NFD reorders: general route when lower-casing.
GENERAL_WHEN_LOWER = ["x\U0001d16d\U0001d165", "\u1b44\u0301 ok"]
# Invalid UTF-8: always the general route.
INVALID = [b"a\xffb", b"\xc3", b"ok \xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80"]


@pytest.fixture(scope="module")
def tokenizers():
    return {cfg: text_tokenizer.BertTextTokenizer(*cfg) for cfg in CONFIGS}


def ref_ids(cfg, texts):
    tok = ref.ReferenceTokenizer(*cfg)
    return [tok.ids(t.decode("utf-8", "ignore") if isinstance(t, bytes) else t)
            for t in texts]


def is_fast(bert, texts):
    """Which strings the fast route takes (after the capital sigma rewrite)."""
    strings = tf.constant(texts, tf.string)
    return bert._second_chance(strings, bert._is_fast(strings))[1].numpy().tolist()


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_routes(tokenizers, cfg):
    bert = tokenizers[cfg]
    assert all(is_fast(bert, FAST)), [t for t, f in zip(FAST, is_fast(bert, FAST)) if not f]
    assert all(is_fast(bert, SIGMA))
    # With lower-casing, only the rewrite (second chance) lets sigma through.
    assert bert._is_fast(tf.constant(SIGMA)).numpy().tolist() == [not cfg[1]] * len(SIGMA)
    assert is_fast(bert, GENERAL_WHEN_LOWER) == [not cfg[1]] * 2
    assert not any(is_fast(bert, INVALID))


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_mixed_batches_match_reference(tokenizers, cfg):
    """Fast and general strings interleaved at random: ids come back right,
    in input order; also all-fast and all-general batches."""
    bert = tokenizers[cfg]
    strings = FAST + SIGMA + GENERAL_WHEN_LOWER + INVALID
    rng = random.Random(5)
    for _ in range(5):
        batch = [rng.choice(strings) for _ in range(40)]
        assert bert.tokenize(tf.constant(batch)).to_list() == ref_ids(cfg, batch)
    for batch in (FAST, INVALID, SIGMA, SIGMA + FAST, SIGMA + INVALID, [INVALID[0]],
                  [FAST[1]], FAST[:1], [SIGMA[0]], GENERAL_WHEN_LOWER):
        assert bert.tokenize(tf.constant(batch)).to_list() == ref_ids(cfg, batch)
    assert bert.tokenize(tf.constant([], tf.string)).to_list() == []


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_word_length_limit_on_the_fast_route(tokenizers, cfg):
    """The original limits words to 200 characters, tf-text to some number
    of bytes: words around both, of 1-4 byte characters, characters that
    normalise to several (한 -> 3 jamo) or none (accents, deleted ones),
    several long words in one string and in one batch."""
    bert = tokenizers[cfg]
    texts = []
    for n in (1, 50, 51, 66, 67, 68, 100, 199, 200, 201, 202, 267, 400, 801):
        for unit in ("x", "é", "e\u0301", "한", "ж", "中", "\U0001f600", "\u0301",
                     "Ab", "a\u200b", "ab"):
            word = unit * n
            texts += [word, f"é {word} 中", f"{word}, {word}!", f"Σ {word} ΟΔΥΣ"]
    expected = ref_ids(cfg, texts)
    assert np.mean(is_fast(bert, texts)) > 0.95
    got = bert.tokenize(tf.constant(texts)).to_list()
    for text, e, g in zip(texts, expected, got):
        assert g == e, repr(text)
    # One string per call too (the all-fast branch).
    for text, e in zip(texts[::7], expected[::7]):
        assert bert.tokenize(tf.constant([text])).to_list() == [e], repr(text)


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_invalid_utf8_is_dropped_as_the_original_does(tokenizers, cfg):
    bert = tokenizers[cfg]
    full = tokenization.FullTokenizer(*cfg)
    texts = [b"caf\xc3\xa9 ok", b"a\xffb c", b"\xe4\xb8 x", b"tr\xc3", b"ok \xed\xa0\x80 no",
             b"\xf0\x9f\x98", "Hello world".encode(), "中文 ok".encode()]
    expected = ref_ids(cfg, texts)
    assert bert.tokenize(tf.constant(texts)).to_list() == expected
    assert [full.convert_tokens_to_ids(full.tokenize(t)) for t in texts] == expected


@pytest.mark.parametrize("lower", [True, False])
def test_normaliser_model_is_the_original_rules_per_code_point(lower):
    """Our FastBertNormalizer model maps every code point (surrogates aside)
    to what cleaning (+ lower-casing, NFD, dropping Mn) makes of it alone;
    capital sigma, whose result depends on context, never takes the route."""
    route = text_tokenizer._fast_route(lower)
    normalizer = tf_text.FastBertNormalizer(model_buffer=route.model)
    cps = np.array([c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF], np.int32)
    out = normalizer.normalize(tf.strings.unicode_encode(
        tf.RaggedTensor.from_uniform_row_length(cps, 1), "UTF-8")).numpy()
    wrong = []
    for cp, got in zip(cps.tolist(), out):
        ch = chr(cp)
        expected = ref.clean_text(ch)
        if expected.isspace():  # U+2028/9 stay until the original splits on them.
            expected = " "
        if lower and expected not in ("", " "):
            expected = ref.lower_and_strip_accents(expected)
        if got.decode("utf-8") != expected and cp != tokenization.CAPITAL_SIGMA:
            wrong.append(f"U+{cp:04X}")
    assert not wrong, wrong[:20]
    assert tf.strings.regex_full_match("\u03a3", route.pattern).numpy() != lower


def test_pretokenizer_disagreements_are_routed_away(tokenizers):
    """Characters that tf-text's pre-tokenizer splits differently from the
    original (e.g. punctuation newer than this Python's Unicode) exist, and
    strings with them take the general route, giving the reference ids."""
    classes = text_tokenizer._pretokenizer_classes()
    ours = char_tables.original_word_classes()
    deleted = (char_tables.all_entries() & char_tables.F_DELETE) != 0
    differ = np.flatnonzero((classes != ours) & ~deleted)
    differ = [int(c) for c in differ if not 0xD800 <= c <= 0xDFFF]
    assert classes[ord(" ")] == char_tables.SPACE
    assert classes[ord(",")] == classes[0x4E2D] == char_tables.ALONE
    assert classes[ord("x")] == classes[ord("é")] == char_tables.WORD
    texts = [f"a{chr(c)}b x" for c in differ]
    for cfg in CONFIGS:
        bert = tokenizers[cfg]
        assert not any(is_fast(bert, texts))
        assert bert.tokenize(tf.constant(texts)).to_list() == ref_ids(cfg, texts)


def test_random_mixed_text_matches_reference(tokenizers):
    """Random strings built from typical pieces of messy text, most of them
    on the fast route (with lower-casing some not: U+1D165 needs NFD's
    reordering)."""
    rng = random.Random(11)
    pieces = (["the", "Quick", "BROWN", "fox", ",", ".", "!", "'s", " ", "  ", "\t", "\n"] * 3 +
              ["Café", "naïve", "ÉCOLE", "Straße", "ΟΔΥΣ", "σοφία", "Σ", "中文", "，", "ひら",
               "한국어", "Привет", "👍🏽", "\u200d", "\u200b", "\x00", "\x07", "\ufffd",
               "\u00a0", "\u3000", "\u00ad", "“", "”", "—", "…", "ﬁ", "İ", "\u0301",
               "\U0001d165", "\u0378", "ｆｕｌｌ", "x" * 30, "é" * 25])
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
             for _ in range(3000)]
    for cfg in CONFIGS:
        bert = tokenizers[cfg]
        fast = np.mean(is_fast(bert, texts))
        assert 0.2 < fast and (fast < 1 or not cfg[1]), fast  # Both routes used.
        got = bert.tokenize(tf.constant(texts)).to_list()
        expected = ref_ids(cfg, texts)
        for text, e, g in zip(texts, expected, got):
            assert g == e, repr(text)


def _trie_lookup(units, key: bytes):
    """Lookup as tensorflow-text's darts_clone_trie_wrapper.h does it."""
    def offset(unit):
        return (unit >> 10) << ((unit & 0x200) >> 6)
    node, unit = 0, int(units[0])
    for ch in key:
        node ^= offset(unit) ^ ch
        if node >= len(units):
            return None
        unit = int(units[node])
        if unit & 0x800000FF != ch:
            return None
    if not unit & 0x100:
        return None
    at = node ^ offset(unit)
    return int(units[at]) & 0x7FFFFFFF if at < len(units) else None


def test_darts_clone_trie_builder():
    rng = random.Random(3)
    keys = sorted({bytes(rng.randint(1, 255) for _ in range(rng.randint(1, 4)))
                   for _ in range(3000)} | {b"a", b"ab", b"abc", b"\xff" * 3})
    values = [rng.randrange(1 << 30) for _ in keys]
    units = char_tables.darts_clone_trie(keys, values)
    for key, value in zip(keys, values):
        assert _trie_lookup(units, key) == value, key
    missing = {bytes(rng.randint(1, 255) for _ in range(rng.randint(1, 5)))
               for _ in range(3000)} - set(keys)
    assert all(_trie_lookup(units, key) is None for key in missing)
