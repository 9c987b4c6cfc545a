"""data_prep.tokenizer.tokenization: FullTokenizer and BertTextTokenizer give exactly the
ids of the original BERT rules (tests/data_prep/reference_tokenizer.py) on
messy multilingual text, random Unicode and the whole shipped corpus; plus
vocab checks, tf.function/tf.data use, offsets and a SavedModel round trip."""
import glob
import os
import random
import sys
import unicodedata

import pytest
import tensorflow as tf

from data_prep.tokenizer import text_tokenizer, tokenization
from tests.data_prep import reference_tokenizer as ref

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNCASED = os.path.join(REPO, "tests", "data", "vocab_uncased.txt")
CASED = os.path.join(REPO, "tests", "data", "vocab_cased_small.txt")
CORPUS = sorted(glob.glob(os.path.join(REPO, "data", "corpus", "*.txt")))

# (vocab, do_lower_case): the real uncased setting, the uncased vocab without
# lower-casing (many capitalised [UNK]s), and a learned cased vocab.
CONFIGS = [(UNCASED, True), (UNCASED, False), (CASED, False)]
CONFIG_IDS = ["uncased", "uncased-vocab-no-lower", "cased-small"]

MESSY = [
    "", " ", "   \t\n\r  ", "\u3000\u00a0\u2009",
    "Hello, World! The quick brown fox -- isn't it?",
    # Accents, German, Nordic, Spanish, Turkish dotted I.
    "Café résumé naïve ÉCOLE Ångström señor NIÑO", "Straße STRASSE ẞ groß",
    "İstanbul ıi ǅemal ﬁne", "e\u0301 E\u0301 a\u0323\u0302 x\u0302\u0323",
    # Greek with final sigma in every context, Cyrillic.
    "ΟΔΥΣΣΕΥΣ Σ ΣΑΣ. ΑΣ' ΑΣ\u0301Α ΑΣ\u200bΒ ΑΣ\x07Β ς σ",
    "Ἀθῆναι ΐ ΰ", "Привет, МИР! Ёлка ёжик", "Їжак ґанок",
    # CJK: Chinese, compatibility ideographs, Japanese kana, Korean hangul.
    "中文分词测试，你好！", "\uf900\uf901\U0002f800 \U00020000\U0002a6df",
    "日本語のテキスト、ひらがなとカタカナ。", "한국어 텍스트입니다. 서울특별시",
    "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ１２３",
    # Emoji, ZWJ sequences, flags, skin tones, variation selectors.
    "👨\u200d👩\u200d👧\u200d👦 family 👍🏽 🇩🇪 ❤\ufe0f ok",
    # Control characters and replacement character.
    "a\x00b\x07c\x1bd\x85e\ufffdf\x7fg", "tab\tnew\nline\rcr\x0bvt\x0cff",
    "\x1c\x1d\x1e\x1fsep",
    # Zero-width and format characters.
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom soft\u00adhyphen",
    "rtl\u200emark\u200f \u2060wj \u202aembed\u202c",
    # Every kind of space and line/paragraph separators.
    "a\u00a0b\u1680c\u2000d\u2005e\u200af\u202fg\u205fh\u3000i",
    "line\u2028sep\u2029para\u0085nel",
    # Combining marks on their own and stacked.
    "\u0301\u0302 a\u0300\u0301\u0302\u0303 \u20dd \u0e01\u0e31\u0e49",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334a\u0359\u0324l",
    # Punctuation of all kinds.
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "¡¿«»‹›„“”‘’—–…·•‰′″§¶†‡",
    "【括号】「引用」『二重』（全角）、。・", "$5.00 50% a+b=c x^2 `code` |pipe| ~",
    # Private use and unassigned code points (kept by the original).
    "priv\ue000ate \U000f0000 unassigned\u0378x \U0001fffe",
    # Indic, Arabic, Hebrew, Thai.
    "हिन्दी क़ ज़", "العربية مرحبا", "עברית שלום", "ภาษาไทย",
    # Words of exactly 200 and 201 characters, ASCII and not.
    "x" * 200, "x" * 201, "a " + "é" * 200 + " b", "a " + "é" * 201 + " b",
    "한" * 66, "한" * 67, "Ab" * 100 + "!", "pre " + "ab" * 100 + "c",
]


def ref_ids(vocab_file, lower, texts):
    tok = ref.ReferenceTokenizer(vocab_file, lower)
    return [tok.ids(t) for t in texts]


@pytest.fixture(scope="module")
def tokenizers():
    """(FullTokenizer, BertTextTokenizer) per config, built once."""
    return {cfg: (tokenization.FullTokenizer(*cfg),
                  text_tokenizer.BertTextTokenizer(*cfg)) for cfg in CONFIGS}


def full_ids(full, texts):
    return [full.convert_tokens_to_ids(full.tokenize(t)) for t in texts]


def graph_ids(bert, texts):
    return bert.tokenize(tf.constant(texts, tf.string)).to_list()


def assert_same(texts, expected, got, what):
    for text, e, g in zip(texts, expected, got):
        assert g == e, f"{what} differs on {text!r}:\n  ref {e}\n  got {g}"
    assert len(got) == len(expected)


def corpus_lines():
    lines = []
    for path in CORPUS:
        with open(path, encoding="utf-8") as f:
            lines.extend(f.read().split("\n"))
    return lines


def random_texts(seed, count):
    """Seeded random strings mixing every kind of character we special-case."""
    rng = random.Random(seed)
    pools = [
        [chr(c) for c in range(0x20, 0x7f)] * 3,                     # ASCII
        [chr(c) for c in range(0xa0, 0x250)],                        # Latin
        [chr(c) for c in range(0x300, 0x370)],                       # Mn
        [chr(c) for c in range(0x370, 0x400)] + ["\u03a3"] * 30,     # Greek
        [chr(c) for c in range(0x400, 0x530)],                       # Cyrillic
        [chr(c) for c in range(0x4e00, 0x4e80)] + ["\uf900", "\U00020001"],
        [chr(c) for c in range(0xac00, 0xac80)] + [chr(c) for c in range(0x3040, 0x3100)],
        ["\U0001f600", "\U0001f468", "\u200d", "\ufe0f", "\U0001f3fd"],
        [chr(c) for c in range(0x00, 0x20)] + ["\x7f", "\x85", "\ufffd"],
        ["\u200b", "\u200c", "\u200d", "\ufeff", "\u00ad", "\u2060", "\u061c"],
        [" ", "\t", "\n", "\u00a0", "\u3000", "\u2009", "\u2028", "\u2029"] * 4,
        ["'", ".", ":", "\u2019", "^", "`", "\u00b7", "-"],          # case-ignorable
        ["\u1715", "\u1b44", "\u302e", "\u302f", "\U0001d165", "\U0001d16d",
         "\U0001d16e", "\u0323", "\u0301", "\u0e31"],                # reordering
        ["\ue000", "\U000f0000", "\u0378", "\U0001fffe"],            # Co / Cn
    ]
    texts = []
    for _ in range(count):
        n = rng.randint(0, 30)
        chars = []
        for _ in range(n):
            if rng.random() < 0.08:  # Anywhere in Unicode, minus surrogates.
                cp = rng.randrange(0x110000)
                chars.append(chr(cp) if not 0xd800 <= cp <= 0xdfff else "?")
            else:
                chars.append(rng.choice(rng.choice(pools)))
        texts.append("".join(chars))
    return texts


# --- exactness --------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_messy_text_matches_reference(tokenizers, cfg):
    full, bert = tokenizers[cfg]
    expected = ref_ids(*cfg, MESSY)
    assert_same(MESSY, expected, full_ids(full, MESSY), "FullTokenizer")
    assert_same(MESSY, expected, graph_ids(bert, MESSY), "BertTextTokenizer")
    # One string at a time too (the pure-ASCII route is chosen per batch).
    for text, e in zip(MESSY, expected):
        assert graph_ids(bert, [text]) == [e], text


def test_messy_words_match_reference(tokenizers):
    for cfg in [(UNCASED, True), (UNCASED, False)]:
        _, bert = tokenizers[cfg]
        got = bert.basic_tokenize(tf.constant(MESSY)).to_list()
        for text, words in zip(MESSY, got):
            assert [w.decode() for w in words] == ref.basic_tokenize(text, cfg[1]), text


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_whole_corpus_matches_reference(tokenizers, cfg):
    full, bert = tokenizers[cfg]
    lines = corpus_lines()
    assert len(lines) > 20000
    expected = ref_ids(*cfg, lines)
    assert_same(lines, expected, full_ids(full, lines), "FullTokenizer")
    assert_same(lines, expected, bert.batch_tokenize(lines, batch_size=4096),
                "BertTextTokenizer")


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_random_unicode_matches_reference(tokenizers, cfg):
    full, bert = tokenizers[cfg]
    texts = random_texts(seed=1234, count=3000)
    expected = ref_ids(*cfg, texts)
    assert_same(texts, expected, full_ids(full, texts), "FullTokenizer")
    assert_same(texts, expected, graph_ids(bert, texts), "BertTextTokenizer")


def test_random_unicode_words_match_reference(tokenizers):
    """Word level (before WordPiece): catches errors that [UNK] would hide."""
    texts = random_texts(seed=99, count=3000)
    for lower in (True, False):
        _, bert = tokenizers[(UNCASED, lower)]
        got = bert.basic_tokenize(tf.constant(texts)).to_list()
        for text, words in zip(texts, got):
            assert [w.decode() for w in words] == ref.basic_tokenize(text, lower), text


@pytest.mark.slow
def test_every_code_point_in_context(tokenizers):
    """Every assigned code point (plus a sample of unassigned and private
    ones), alone and in contexts that exercise word splitting, final sigma and
    NFD reordering: in-graph words and ids, and FullTokenizer words, equal the
    reference. About a minute per configuration."""
    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and (
        unicodedata.category(chr(cp)) not in ("Cn", "Co") or cp % 97 == 0)]
    templates = ("{}", "a{}b", "A\u03a3{}", "{}\u03a3", "A\u03a3{}B", "x{}\u0301y",
                 "{}\u0323\u0301")
    for lower in (True, False):
        full, bert = tokenizers[(UNCASED, lower)]
        reference = ref.ReferenceTokenizer(UNCASED, lower)
        for template in templates:
            texts = [template.format(chr(cp)) for cp in cps]
            for i in range(0, len(texts), 20000):
                chunk = texts[i:i + 20000]
                words = bert.basic_tokenize(tf.constant(chunk)).to_list()
                ids = graph_ids(bert, chunk)
                for text, w, got in zip(chunk, words, ids):
                    expected = ref.basic_tokenize(text, lower)
                    assert [x.decode() for x in w] == expected, text
                    assert full.basic_tokenizer.tokenize(text) == expected, text
                    assert got == reference.ids(text), text


def _inert_punctuation() -> list[str]:
    """Non-ASCII punctuation that no rule changes and that is its own word.

    Not deleted, not whitespace, not CJK, combining class 0, and unchanged
    by lower-casing and NFD (e.g. “ ” ‘ ’ – — … « »): typical text punctuation.
    """
    out = []
    for cp in range(0x80, 0x110000):
        ch = chr(cp)
        if (0xD800 <= cp <= 0xDFFF or not tokenization.is_punctuation(ch) or
                tokenization.is_deleted(ch) or tokenization.is_whitespace(ch) or
                ch.isspace() or tokenization.is_cjk(cp) or unicodedata.combining(ch) or
                ch.lower() != ch or unicodedata.normalize("NFD", ch) != ch):
            continue
        out.append(ch)
    return out


def test_random_fast_route_text_matches_reference(tokenizers):
    """ASCII (plus punctuation like “ ” – —) takes the FastBertTokenizer
    route: check it hard, including the 200-character limit next to that
    punctuation."""
    rng = random.Random(7)
    punct = _inert_punctuation()
    alphabet = [chr(c) for c in range(128)] + list("abcde  ") * 10
    texts = ["".join(rng.choice(alphabet if rng.random() < 0.9 else punct)
                     for _ in range(rng.randint(0, 60))) for _ in range(5000)]
    texts += ["a" * n for n in (199, 200, 201)] + ["A" * 201, "ab" * 100 + "a",
                                                 "“" + "a" * 200 + "”—" + "b" * 201 + "…"]
    _, bert = tokenizers[(UNCASED, True)]
    fast = tf.strings.regex_full_match(tf.constant(texts), bert._fast_pattern).numpy()
    assert fast.mean() > 0.9  # Really exercises the fast route.
    for cfg in CONFIGS:
        _, bert = tokenizers[cfg]
        assert_same(texts, ref_ids(*cfg, texts), graph_ids(bert, texts), str(cfg))


def test_canonical_reordering_edge_case(tokenizers):
    """NFD reorders non-starters: the two musical stems below swap places."""
    text = "x\U0001d16d\U0001d165 \u1b44\u0301\u1715 \u302f\u0323\u302e"
    expected = ref.basic_tokenize(text, True)
    per_char = ["".join(ref.lower_and_strip_accents(c) for c in w)
                for w in ref.clean_text(text).split()]
    assert expected != per_char  # The case really needs the reordering.
    _, bert = tokenizers[(UNCASED, True)]
    words = bert.basic_tokenize(tf.constant([text])).to_list()[0]
    assert [w.decode() for w in words] == expected


def test_word_length_limit_counts_characters(tokenizers):
    full, bert = tokenizers[(UNCASED, True)]
    unk = full.vocab["[UNK]"]
    # 66 Hangul syllables -> 198 jamo (kept); 67 -> 201 jamo ([UNK]).
    ok, long = graph_ids(bert, ["한" * 66, "한" * 67])
    assert len(ok) > 1 and long == [unk]
    assert graph_ids(bert, ["é" * 200, "é" * 201])[1] == [unk]


# --- graph use --------------------------------------------------------------------------------

def test_works_in_tf_function_and_dataset(tokenizers):
    full, bert = tokenizers[(UNCASED, True)]
    texts = MESSY[:20]
    expected = full_ids(full, texts)

    @tf.function
    def lengths(x):
        return bert.tokenize(x).row_lengths()

    assert lengths(tf.constant(texts)).numpy().tolist() == [len(e) for e in expected]
    ds = tf.data.Dataset.from_tensor_slices(texts).batch(7).map(bert.tokenize)
    got = [row for batch in ds for row in batch.to_list()]
    assert got == expected


def test_saved_model_round_trip(tmp_path, tokenizers):
    full, bert = tokenizers[(UNCASED, True)]
    path = str(tmp_path / "tokenizer")
    tf.saved_model.save(bert, path)
    assert os.path.isfile(os.path.join(path, "assets", "vocab_uncased.txt"))
    loaded = tf.saved_model.load(path)
    got = loaded.tokenize(tf.constant(MESSY)).to_list()
    assert got == full_ids(full, MESSY)
    assert os.path.isfile(loaded.vocab_file.asset_path.numpy().decode())
    ids = loaded.tokenize(tf.constant(["Hello, world!"]))
    for dtype in (tf.int32, tf.int64):
        assert loaded.detokenize(tf.cast(ids, dtype)).numpy().tolist() == [b"hello , world !"]
        tokens = loaded.ids_to_tokens(tf.cast(ids, dtype)).to_list()
        assert tokens == [[b"hello", b",", b"world", b"!"]]


def test_special_ids_and_out_type(tokenizers):
    _, bert = tokenizers[(UNCASED, True)]
    assert bert.vocab_size == 30522
    assert (bert.pad_id, bert.unk_id, bert.cls_id, bert.sep_id, bert.mask_id) == (
        0, 100, 101, 102, 103)
    assert bert.tokenize(tf.constant(["hi"])).dtype == tf.int32
    wide = text_tokenizer.BertTextTokenizer(CASED, False, out_type=tf.int64)
    ids = wide.tokenize(tf.constant(["The end."]))
    assert ids.dtype == tf.int64
    assert wide.detokenize(ids).numpy().tolist() == [b"The end ."]


def test_batch_tokenize_and_module_function(tokenizers):
    full, bert = tokenizers[(UNCASED, True)]
    texts = MESSY * 3
    expected = full_ids(full, texts)
    assert bert.batch_tokenize(texts, batch_size=16) == expected
    assert text_tokenizer.batch_tokenize(texts, bert) == expected
    assert bert.batch_tokenize([]) == []


def test_ids_to_tokens_and_detokenize(tokenizers):
    full, bert = tokenizers[(UNCASED, True)]
    ids = bert.tokenize(tf.constant(["Unaffable jumping!", ""]))
    tokens = bert.ids_to_tokens(ids).to_list()
    assert [[t.decode() for t in row] for row in tokens] == [
        full.tokenize("Unaffable jumping!"), []]
    text = bert.detokenize(ids).numpy().tolist()
    assert text == [b"unaffable jumping !", b""]


def test_offsets_point_at_source_text(tokenizers):
    full, bert = tokenizers[(UNCASED, True)]
    texts = ["Hello, Wörld! Unaffable", "  Café\u200b au lait ", "ΣΑΣ 中文",
             "x" * 201 + " end", "", "tab\tA\x00B ﬁ"]
    ids, starts, ends = bert.tokenize_with_offsets(tf.constant(texts))
    assert ids.to_list() == graph_ids(bert, texts)
    for text, row_ids, row_s, row_e in zip(texts, ids.to_list(), starts.to_list(),
                                           ends.to_list()):
        data = text.encode()
        for token, s, e in zip(full.convert_ids_to_tokens(row_ids), row_s, row_e):
            # The source span, normalised on its own, is the piece (up to the
            # final-sigma context, which a lone Σ lacks).
            source = ref.lower_and_strip_accents(ref.clean_text(data[s:e].decode()))
            if token != "[UNK]":
                piece = token.removeprefix("##").replace("ς", "σ")
                assert source == piece, (text, token, source)
    assert starts.to_list()[3] == [0, 202] and ends.to_list()[3] == [201, 205]


# --- vocab files ------------------------------------------------------------------------------

def test_shipped_uncased_vocab_is_bert_base():
    vocab = tokenization.load_vocab(UNCASED)
    assert len(vocab) == 30522
    assert [vocab[t] for t in tokenization.RESERVED_TOKENS] == [0, 100, 101, 102, 103]
    assert list(vocab.values()) == list(range(30522))


def write(tmp_path, lines, name="vocab.txt"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_vocab_errors_name_the_file(tmp_path):
    ok = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##b"]
    missing = write(tmp_path, ok[:4] + ok[5:], "missing.txt")
    with pytest.raises(ValueError, match=r"missing\.txt.*\[MASK\]"):
        tokenization.FullTokenizer(missing)
    with pytest.raises(ValueError, match=r"missing\.txt.*\[MASK\]"):
        text_tokenizer.BertTextTokenizer(missing)
    pad_late = write(tmp_path, ok[1:2] + ok[:1] + ok[2:], "pad.txt")
    with pytest.raises(ValueError, match=r"pad\.txt.*\[PAD\].*id 0"):
        tokenization.FullTokenizer(pad_late)
    dup = write(tmp_path, ok + ["a"], "dup.txt")
    with pytest.raises(ValueError, match=r"dup\.txt:8: duplicate token 'a'"):
        tokenization.load_vocab(dup)
    blank = write(tmp_path, ok[:3] + [""] + ok[3:], "blank.txt")
    with pytest.raises(ValueError, match=r"blank\.txt:4: empty"):
        tokenization.load_vocab(blank)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("\n".join(ok).encode() + b"\ncaf\xe9\n")
    with pytest.raises(ValueError, match=r"latin1\.txt:8: not UTF-8 \(byte 0xe9 at column 4\)"):
        tokenization.load_vocab(str(latin1))
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes("\r\n".join(ok).encode() + b"\r\n")
    assert list(tokenization.load_vocab(str(crlf))) == ok


def test_convert_between_tokens_and_ids(tokenizers):
    full, _ = tokenizers[(UNCASED, True)]
    assert full.convert_tokens_to_ids(["hello", "not-a-token"]) == [7592, 100]
    assert full.convert_ids_to_tokens([101, 7592]) == ["[CLS]", "hello"]
    with pytest.raises(KeyError, match="outside the vocab"):
        full.convert_ids_to_tokens([10 ** 6])
    assert full.inv_vocab[102] == "[SEP]"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
