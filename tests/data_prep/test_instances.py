"""data_prep.pretraining.instances: draw-for-draw equality with the original algorithm, and statistics."""
import functools
import glob
import os
import random

import pytest

from data_prep.pretraining import instances as inst
from tests.data_prep import reference_pretraining_data as ref

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB_FILE = os.path.join(REPO, "tests", "data", "vocab_uncased.txt")
CORPUS = sorted(glob.glob(os.path.join(REPO, "data", "corpus_sentences", "*.txt")))


@functools.lru_cache(maxsize=None)
def full_tokenizer():
    from data_prep.tokenizer import tokenization
    return tokenization.FullTokenizer(VOCAB_FILE, do_lower_case=True)


@functools.lru_cache(maxsize=None)
def corpus_documents(max_files=None):
    """The shipped corpus as token-string documents, read the original's way."""
    return ref.read_documents(CORPUS[:max_files], full_tokenizer())


def synthetic(seed=0, num_docs=30):
    """A vocabulary with "##" pieces and documents of random words (string tokens)."""
    vocab = {}
    for word in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(150)] \
            + [f"##p{i}" for i in range(60)]:
        vocab[word] = len(vocab)
    words = list(vocab)[5:]
    g = random.Random(seed)
    docs = [[[g.choice(words) for _ in range(g.randint(1, 45))]
             for _ in range(g.randint(1, 25))] for _ in range(num_docs)]
    docs.append([])  # empty documents are dropped, as in the original
    return vocab, docs


def run_both(vocab, docs, seed, dupe_factor=2, **options):
    """(reference instances on strings, our instances mapped back to strings)."""
    o = inst.InstanceOptions(**options)
    words = list(vocab)
    expected = ref.create_training_instances(
        docs, words, o.max_seq_length, dupe_factor, o.short_seq_prob, o.masked_lm_prob,
        o.max_predictions_per_seq, random.Random(seed), o.do_whole_word_mask)
    id_docs = [[[vocab[t] for t in seg] for seg in doc] for doc in docs]
    got = inst.create_training_instances(id_docs, inst.VocabIds.from_vocab(vocab), o,
                                         dupe_factor, random.Random(seed))
    return expected, got


def assert_same(expected, got, vocab):
    words = list(vocab)
    assert len(expected) == len(got)
    for e, g in zip(expected, got):
        assert e.tokens == [words[t] for t in g.tokens]
        assert e.segment_ids == g.segment_ids
        assert e.masked_lm_positions == g.masked_lm_positions
        assert e.masked_lm_labels == [words[t] for t in g.masked_lm_ids]
        assert e.is_random_next == g.is_random_next


@pytest.mark.parametrize("wwm", [False, True])
@pytest.mark.parametrize("max_seq_length,short_seq_prob", [(128, 0.1), (5, 0.1), (24, 0.5)])
def test_matches_reference_synthetic(wwm, max_seq_length, short_seq_prob):
    vocab, docs = synthetic()
    expected, got = run_both(vocab, docs, seed=7, max_seq_length=max_seq_length,
                             short_seq_prob=short_seq_prob, do_whole_word_mask=wwm)
    assert len(got) > 100
    assert_same(expected, got, vocab)


def test_matches_reference_with_special_tokens_in_text_and_one_document():
    vocab, docs = synthetic(seed=3, num_docs=1)
    docs[0][0][:0] = ["[SEP]", "##p1", "[CLS]"]  # text that tokenizes to specials
    for wwm in (False, True):
        expected, got = run_both(vocab, docs, seed=11, max_seq_length=32,
                                 do_whole_word_mask=wwm)
        assert_same(expected, got, vocab)


def test_matches_reference_for_a_random_subclass():
    """A Random subclass may override its draws: we then use its own methods."""
    class Counting(random.Random):
        pass

    vocab, docs = synthetic(seed=5)
    o = inst.InstanceOptions(max_seq_length=64)
    expected = ref.create_training_instances(docs, list(vocab), 64, 1, 0.1, 0.15, 20,
                                             Counting(1), False)
    id_docs = [[[vocab[t] for t in s] for s in d] for d in docs]
    got = inst.create_training_instances(id_docs, inst.VocabIds.from_vocab(vocab), o, 1,
                                         Counting(1))
    assert_same(expected, got, vocab)


@pytest.mark.parametrize("wwm", [False, True])
def test_matches_reference_on_shipped_corpus(wwm):
    tok = full_tokenizer()
    docs = corpus_documents()
    docs = [d for d in docs if d][:25]  # a sample keeps the default run fast
    expected, got = run_both(tok.vocab, docs, seed=12345, dupe_factor=1,
                             do_whole_word_mask=wwm)
    assert_same(expected, got, tok.vocab)


def test_streaming_plus_shuffle_equals_create():
    vocab, docs = synthetic(seed=9)
    ids = [[[vocab[t] for t in s] for s in d] for d in docs]
    v, o = inst.VocabIds.from_vocab(vocab), inst.InstanceOptions(max_seq_length=40)
    whole = inst.create_training_instances(ids, v, o, 3, random.Random(4))
    rng = random.Random(4)
    counters = {}
    streamed = list(inst.iter_training_instances(ids, v, o, 3, rng, counters))
    inst.shuffle_like_original(streamed, rng)
    assert whole == streamed
    assert counters["document_passes"] == 3 * len([d for d in docs if d])


def test_per_word_decision_masks_whole_words_as_units():
    vocab, docs = synthetic(seed=2)
    ids = [[[vocab[t] for t in s] for s in d] for d in docs]
    v = inst.VocabIds.from_vocab(vocab)
    o = inst.InstanceOptions(max_seq_length=64, do_whole_word_mask=True,
                             wwm_mask_decision="per_word")
    outcomes = {"mask": 0, "keep": 0, "random": 0}
    for x in inst.create_training_instances(ids, v, o, 2, random.Random(0)):
        label = dict(zip(x.masked_lm_positions, x.masked_lm_ids))
        positions = set(label)
        for p in positions:  # whole words: a masked word's pieces are all masked
            if v.is_subword[label[p]] and p - 1 > 0 and x.tokens[p - 1] != v.sep_id:
                assert p - 1 in positions
        words, current = [], []
        for p in sorted(positions):  # group into words; each word has one outcome
            if current and v.is_subword[label[p]] and p == current[-1] + 1:
                current.append(p)
            else:
                current and words.append(current)
                current = [p]
        current and words.append(current)
        for word in words:
            if all(x.tokens[p] == v.mask_id for p in word):
                outcomes["mask"] += 1
            elif all(x.tokens[p] == label[p] for p in word):
                outcomes["keep"] += 1
            else:
                outcomes["random"] += 1
                assert all(x.tokens[p] != v.mask_id for p in word)
    total = sum(outcomes.values())
    assert abs(outcomes["mask"] / total - 0.8) < 0.03


def test_validation_errors():
    with pytest.raises(ValueError, match="max_seq_length must be >= 5"):
        inst.InstanceOptions(max_seq_length=4)
    with pytest.raises(ValueError, match="max_predictions_per_seq"):
        inst.InstanceOptions(max_predictions_per_seq=0)
    with pytest.raises(ValueError, match="masked_lm_prob"):
        inst.InstanceOptions(masked_lm_prob=0.0)
    with pytest.raises(ValueError, match="wwm_mask_decision"):
        inst.InstanceOptions(wwm_mask_decision="per_sentence")
    with pytest.raises(ValueError, match=r"lacks required token\(s\) \[MASK\]"):
        inst.VocabIds.from_vocab({"[CLS]": 0, "[SEP]": 1, "a": 2})
    with pytest.raises(ValueError, match="dupe_factor"):
        inst.create_training_instances([[[1]]], inst.VocabIds.from_vocab(
            {"[CLS]": 0, "[SEP]": 1, "[MASK]": 2}), inst.InstanceOptions(), 0, random.Random())


def test_mask_cap_length():
    assert inst.mask_cap_length(inst.InstanceOptions()) is None  # 128 * 0.15 -> 19 <= 20
    capped = inst.InstanceOptions(max_seq_length=512, max_predictions_per_seq=20)
    assert inst.mask_cap_length(capped) == 137  # round(137 * 0.15) = 21
    assert inst.num_to_predict(512, capped) == 20


# --- Statistics on the shipped corpus ---------------------------------------------------------

def corpus_statistics(dupe_factor, seed=12345, **options):
    tok = full_tokenizer()
    docs = [[tok.convert_tokens_to_ids(s) for s in d] for d in corpus_documents()]
    v = inst.VocabIds.from_vocab(tok.vocab)
    o = inst.InstanceOptions(**options)
    counters = {}
    rng = random.Random(seed)
    instances = list(inst.iter_training_instances(docs, v, o, dupe_factor, rng, counters))
    stats = dict(instances=len(instances), maskable=0, masked=0, mask=0, keep=0, random=0,
                 random_next=0)
    for x in instances:
        n = len(x.tokens)
        assert n <= o.max_seq_length
        assert x.tokens[0] == v.cls_id and x.tokens[x.num_a + 1] == v.sep_id
        assert x.tokens[-1] == v.sep_id
        assert x.masked_lm_positions == sorted(set(x.masked_lm_positions))
        assert 0 < len(x.masked_lm_positions) <= o.max_predictions_per_seq
        specials = {0, x.num_a + 1, n - 1}
        assert not specials & set(x.masked_lm_positions), "[CLS]/[SEP] masked"
        stats["maskable"] += n - 3
        stats["masked"] += len(x.masked_lm_positions)
        for p, label in zip(x.masked_lm_positions, x.masked_lm_ids):
            assert label not in (v.cls_id, v.sep_id)
            if x.tokens[p] == v.mask_id:
                stats["mask"] += 1
            elif x.tokens[p] == label:
                stats["keep"] += 1
            else:
                stats["random"] += 1
        stats["random_next"] += x.is_random_next
    stats["short_target_rate"] = counters["short_targets"] / counters["document_passes"]
    stats["document_passes"] = counters["document_passes"]
    return stats


def check_statistics(s, tolerance):
    assert abs(s["masked"] / s["maskable"] - 0.15) < tolerance["masked"]
    assert abs(s["mask"] / s["masked"] - 0.8) < tolerance["split"]
    assert abs(s["keep"] / s["masked"] - 0.1) < tolerance["split"]
    assert abs(s["random"] / s["masked"] - 0.1) < tolerance["split"]
    # One-segment chunks always take a random next (as in the original), so a bit over 50%.
    assert 0.48 < s["random_next"] / s["instances"] < 0.60
    assert abs(s["short_target_rate"] - 0.1) < tolerance["short"]


def test_statistics_on_corpus_sample():
    stats = corpus_statistics(dupe_factor=3)
    assert stats["instances"] > 9000
    check_statistics(stats, {"masked": 0.01, "split": 0.015, "short": 0.06})


@pytest.mark.slow
def test_statistics_on_full_corpus():
    stats = corpus_statistics(dupe_factor=10, seed=1)
    check_statistics(stats, {"masked": 0.006, "split": 0.006, "short": 0.03})
    wwm = corpus_statistics(dupe_factor=3, seed=2, do_whole_word_mask=True)
    check_statistics(wwm, {"masked": 0.01, "split": 0.015, "short": 0.06})
