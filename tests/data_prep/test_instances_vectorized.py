"""data_prep.pretraining.instances_vectorized (--rng=vectorized): the original's rules and probabilities,
checked against the original mode and the reference on the same inputs, plus determinism."""
import functools
import glob
import os
import random

import numpy as np
import pytest

from data_prep.pretraining import shards as cpd, instances as inst, instances_vectorized as iv
from data_prep.files import tfrecords
from tests.data_prep import reference_pretraining_data as ref

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB_FILE = os.path.join(REPO, "tests", "data", "vocab_uncased.txt")
CORPUS = sorted(glob.glob(os.path.join(REPO, "data", "corpus_sentences", "*.txt")))
SEQ, PRED = 128, 20


@functools.lru_cache(maxsize=None)
def corpus():
    """The shipped corpus as one pool of id documents, and the vocabulary ids."""
    tokenize = cpd.batch_tokenizer("python", VOCAB_FILE, True)
    return cpd.read_corpus(CORPUS, tokenize).documents(), cpd.load_vocab_ids(VOCAB_FILE)


# The mean instance length varies ~1% from seed to seed at dupe_factor=10 on this corpus (a
# short target on a long document makes dozens of short instances), so the comparison with the
# original mode uses dupe_factor=30 (over 20 seeds at dupe_factor=10 the two means agreed to
# 0.1%: 114.64 vs 114.61).
STATS_DUPE_FACTOR = 30


@functools.lru_cache(maxsize=None)
def vectorized_run(seed=1, dupe_factor=STATS_DUPE_FACTOR, wwm=False):
    docs, vocab = corpus()
    counters = {}
    batch = iv.create_arrays(docs, vocab, inst.InstanceOptions(do_whole_word_mask=wwm),
                             dupe_factor, seed, counters)
    return batch, counters


@functools.lru_cache(maxsize=None)
def original_run(seed=1, dupe_factor=STATS_DUPE_FACTOR):
    """(lengths, is_random_next, target lengths, counters) of --rng=original, same input."""
    docs, vocab = corpus()
    counters = {}
    xs = list(inst.iter_training_instances(docs, vocab, inst.InstanceOptions(), dupe_factor,
                                           random.Random(seed), counters))
    return (np.array([len(x.tokens) for x in xs]), np.array([x.is_random_next for x in xs]),
            np.array([x.target_seq_length for x in xs]), counters)


def unpack(batch):
    """Per-instance views of a batch: lengths, num_a, counts and the unmasked token ids."""
    f = batch.features
    lengths = f["input_mask"].sum(axis=1)
    num_a = lengths - f["segment_ids"].sum(axis=1) - 2
    counts = (f["masked_lm_weights"] > 0).sum(axis=1)
    original = f["input_ids"].copy()
    rows = np.repeat(np.arange(len(lengths)), counts)
    weights = f["masked_lm_weights"] > 0
    original[rows, f["masked_lm_positions"][weights]] = f["masked_lm_ids"][weights]
    return lengths, num_a, counts, original


def check_structure(batch, vocab, options):
    """Invariants of every instance: layout, padding, masked positions and labels."""
    f = batch.features
    seq, pred = options.max_seq_length, options.max_predictions_per_seq
    assert f["input_ids"].shape == (len(batch), seq)
    assert f["masked_lm_positions"].shape == (len(batch), pred)
    lengths, num_a, counts, original = unpack(batch)
    n = len(lengths)
    col = np.arange(seq)[None, :]
    assert (lengths <= seq).all() and (num_a >= 1).all() and (lengths - num_a - 3 >= 1).all()
    np.testing.assert_array_equal(f["input_mask"], col < lengths[:, None])
    np.testing.assert_array_equal(f["segment_ids"], (col >= num_a[:, None] + 2)
                                  & (col < lengths[:, None]))
    assert (f["input_ids"][col >= lengths[:, None]] == 0).all()  # padding zeros
    rows = np.arange(n)
    assert (original[:, 0] == vocab.cls_id).all()
    assert (original[rows, num_a + 1] == vocab.sep_id).all()
    assert (original[rows, lengths - 1] == vocab.sep_id).all()
    weights = f["masked_lm_weights"] > 0
    np.testing.assert_array_equal(weights, np.arange(pred)[None, :] < counts[:, None])
    assert (f["masked_lm_positions"][~weights] == 0).all()
    assert (f["masked_lm_ids"][~weights] == 0).all()
    assert set(np.unique(f["masked_lm_weights"])) <= {0.0, 1.0}
    positions = np.where(weights, f["masked_lm_positions"], seq + np.arange(pred))
    assert (np.diff(positions, axis=1) > 0).all()  # sorted and unique
    limit = np.minimum(pred, np.maximum(1, np.rint(lengths * options.masked_lm_prob)))
    assert (counts >= 1).all() and (counts <= limit).all()
    if not options.do_whole_word_mask:
        np.testing.assert_array_equal(counts, np.minimum(limit, lengths - 3))
    masked = f["masked_lm_positions"][weights]
    rows = np.repeat(np.arange(n), counts)
    assert ((masked >= 1) & (masked < lengths[rows] - 1) & (masked != num_a[rows] + 1)).all()
    labels = f["masked_lm_ids"][weights]
    assert not np.isin(labels, [vocab.cls_id, vocab.sep_id]).any()  # [CLS]/[SEP] never masked
    np.testing.assert_array_equal(f["next_sentence_labels"].shape, (n, 1))
    return lengths, num_a, counts, original


# --- The shipped corpus: the original mode's statistics ----------------------------------------

def test_shipped_corpus_statistics_match_the_original_mode():
    batch, counters = vectorized_run()
    lengths, num_a, counts, _ = check_structure(batch, corpus()[1], inst.InstanceOptions())
    f = batch.features
    weights = f["masked_lm_weights"] > 0
    at = np.take_along_axis(f["input_ids"], f["masked_lm_positions"], axis=1)[weights]
    labels = f["masked_lm_ids"][weights]
    mask_id = corpus()[1].mask_id
    assert abs(counts.sum() / (lengths - 3).sum() - 0.15) < 0.005
    assert abs((at == mask_id).mean() - 0.8) < 0.01
    assert abs(((at == labels) & (at != mask_id)).mean() - 0.1) < 0.01
    assert abs(((at != labels) & (at != mask_id)).mean() - 0.1) < 0.01
    short_rate = counters["short_targets"] / counters["document_passes"]
    assert abs(short_rate - 0.1) < 0.03

    o_lengths, o_random_next, o_targets, o_counters = original_run()
    assert counters["document_passes"] == o_counters["document_passes"]
    assert abs(len(lengths) / len(o_lengths) - 1) < 0.03  # instances
    random_next = f["next_sentence_labels"][:, 0]
    assert abs(random_next.mean() - o_random_next.mean()) < 0.02
    assert abs(lengths.mean() / o_lengths.mean() - 1) < 0.02
    full = batch.target_seq_length == SEQ - 3  # lower variance: the full-target instances
    assert abs(lengths[full].mean() / o_lengths[o_targets == SEQ - 3].mean() - 1) < 0.005
    assert abs((lengths == SEQ).mean() - (o_lengths == SEQ).mean()) < 0.02
    assert abs((~full).mean() - (o_targets < SEQ - 3).mean()) < 0.02
    assert (batch.target_seq_length[~full] < SEQ - 3).all()


def test_shipped_corpus_labels_are_the_text():
    """masked_lm_ids are the original tokens: the unmasked A and B are runs of the corpus."""
    batch, _ = vectorized_run()
    docs, _ = corpus()
    text = np.fromiter((t for d in docs for s in d for t in s), np.int32).tobytes()
    lengths, num_a, _, original = unpack(batch)
    for i in np.random.default_rng(0).choice(len(lengths), 300, replace=False):
        for start, stop in ((1, num_a[i] + 1), (num_a[i] + 2, lengths[i] - 1)):
            run = original[i, start:stop].astype(np.int32).tobytes()
            at = text.find(run)
            while at % 4:  # a match must be token aligned
                at = text.find(run, at + 1)
            assert at >= 0, f"instance {i}: a segment that is not in the corpus"


def test_shipped_corpus_whole_word_masking():
    batch, _ = vectorized_run(seed=2, dupe_factor=2, wwm=True)
    vocab = corpus()[1]
    options = inst.InstanceOptions(do_whole_word_mask=True)
    lengths, num_a, counts, original = check_structure(batch, vocab, options)
    assert abs(counts.sum() / (lengths - 3).sum() - 0.15) < 0.01
    check_whole_words(batch, vocab, original, lengths, num_a)


def check_whole_words(batch, vocab, original, lengths, num_a, per_word=False):
    """Chosen positions are unions of whole words (a "##" piece joins the previous candidate,
    across [SEP] too); per_word: all pieces of a word share one outcome."""
    f = batch.features
    is_subword = np.asarray(vocab.is_subword)
    outcomes = []
    for i in range(len(lengths)):
        specials = {0, num_a[i] + 1, lengths[i] - 1}
        words = []
        for p in range(lengths[i]):
            if p in specials or original[i, p] in (vocab.cls_id, vocab.sep_id):
                continue
            if words and is_subword[original[i, p]]:
                words[-1].append(p)
            else:
                words.append([p])
        chosen = set(f["masked_lm_positions"][i, :int(f["masked_lm_weights"][i].sum())])
        for word in words:
            inside = [p in chosen for p in word]
            assert all(inside) or not any(inside), (i, word, sorted(chosen))
            if per_word and all(inside):
                got = f["input_ids"][i, word]
                if (got == vocab.mask_id).all():
                    outcomes.append("mask")
                elif (got == original[i, word]).all():
                    outcomes.append("keep")
                else:
                    assert not (got == vocab.mask_id).any()
                    outcomes.append("random")
    return outcomes


# --- Synthetic corpora where every token id is its position in the corpus ----------------------

def unique_id_corpus(seed, num_docs=40, max_segments=30, max_segment_length=40):
    """Documents whose token ids count up through the corpus (so a run of text is a run of
    ids); ids with i % 3 == 1 are "##" pieces."""
    g = random.Random(seed)
    docs, next_id = [], 5
    for _ in range(num_docs):
        doc = []
        for _ in range(g.randint(1, max_segments)):
            n = g.randint(1, max_segment_length)
            doc.append(list(range(next_id, next_id + n)))
            next_id += n
        docs.append(doc)
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
    for i in range(5, next_id):
        vocab[("##" if i % 3 == 1 else "") + f"t{i}"] = i
    doc_of_id = np.zeros(next_id, np.int64)
    for d, doc in enumerate(docs):
        doc_of_id[doc[0][0]:doc[-1][-1] + 1] = d
    return docs, inst.VocabIds.from_vocab(vocab), doc_of_id


@pytest.mark.parametrize("wwm,decision,seq", [(False, "per_piece", 64), (True, "per_piece", 64),
                                              (True, "per_word", 32), (False, "per_piece", 5)])
def test_synthetic_pairs_follow_the_rules(wwm, decision, seq):
    docs, vocab, doc_of_id = unique_id_corpus(seed=seq)
    options = inst.InstanceOptions(max_seq_length=seq, do_whole_word_mask=wwm,
                                   wwm_mask_decision=decision, short_seq_prob=0.3)
    batch = iv.create_arrays(docs, vocab, options, dupe_factor=3, seed=5)
    assert len(batch) > 500
    lengths, num_a, _, original = check_structure(batch, vocab, options)
    random_next = batch.features["next_sentence_labels"][:, 0] == 1
    for i in range(len(lengths)):
        a = original[i, 1:num_a[i] + 1]
        b = original[i, num_a[i] + 2:lengths[i] - 1]
        assert (np.diff(a) == 1).all() and (np.diff(b) == 1).all()  # runs of text
        assert doc_of_id[a[0]] == doc_of_id[a[-1]] and doc_of_id[b[0]] == doc_of_id[b[-1]]
        if random_next[i]:
            assert doc_of_id[b[0]] != doc_of_id[a[0]]
        else:  # the actual continuation (truncation may cut between them)
            assert doc_of_id[b[0]] == doc_of_id[a[0]] and b[0] > a[-1]
    if wwm:
        outcomes = check_whole_words(batch, vocab, original, lengths, num_a,
                                     per_word=decision == "per_word")
        if decision == "per_word":
            assert abs(outcomes.count("mask") / len(outcomes) - 0.8) < 0.03
            assert abs(outcomes.count("keep") / len(outcomes) - 0.1) < 0.03


def test_pairing_distribution_matches_the_original():
    """Many passes over a small pool: instances per pass, split point, random-next rate,
    lengths and truncation against --rng=original on the same documents."""
    docs, vocab, _ = unique_id_corpus(seed=1, num_docs=6, max_segments=12,
                                      max_segment_length=20)
    options = inst.InstanceOptions(max_seq_length=48, short_seq_prob=0.25)
    passes = 400
    xs = inst.create_training_instances(docs, vocab, options, passes, random.Random(0))
    o_len = np.array([len(x.tokens) for x in xs])
    o_a = np.array([x.num_a for x in xs])
    o_rn = np.array([x.is_random_next for x in xs])
    batch = iv.create_arrays(docs, vocab, options, passes, seed=0)
    lengths, num_a, _, _ = unpack(batch)
    rn = batch.features["next_sentence_labels"][:, 0] == 1
    # Tolerances: ~3 standard deviations of the difference of two runs (seed-to-seed spread).
    assert abs(len(lengths) / len(o_len) - 1) < 0.04
    assert abs(rn.mean() - o_rn.mean()) < 0.03
    assert abs(lengths.mean() / o_len.mean() - 1) < 0.02
    assert abs(num_a.mean() / o_a.mean() - 1) < 0.03
    assert abs(num_a[rn].mean() / o_a[o_rn].mean() - 1) < 0.04
    # The whole length distribution: total variation distance between coarse histograms
    # (two original-mode runs differ by ~0.02).
    bins = [0, 10, 20, 30, 40, 45, 47, 48, 49]
    tv = 0.5 * np.abs(np.histogram(lengths, bins)[0] / len(lengths)
                      - np.histogram(o_len, bins)[0] / len(o_len)).sum()
    assert tv < 0.05


def exact_pass_expectations(lengths, target):
    """(instances, random-next instances) expected from one pass over a document with these
    segment lengths and this target, by the original loop's rules (exact recursion)."""
    @functools.lru_cache(maxsize=None)
    def from_segment(i):
        if i >= len(lengths):
            return 0.0, 0.0
        j, total = i, lengths[i]
        while j < len(lengths) - 1 and total < target:
            j += 1
            total += lengths[j]
        if j == i:  # a one-segment chunk: always a random next, nothing given back
            n, r = from_segment(i + 1)
            return 1 + n, 1 + r
        n = r = 0.0
        for a_end in range(1, j - i + 1):  # uniform split point
            rn_n, rn_r = from_segment(i + a_end)  # random next: the rest is given back
            next_n, next_r = from_segment(j + 1)
            n += (0.5 * (1 + rn_n) + 0.5 * (1 + next_n)) / (j - i)
            r += (0.5 * (1 + rn_r) + 0.5 * next_r) / (j - i)
        return n, r
    return from_segment(0)


@pytest.mark.parametrize("short_seq_prob", [0.0, 0.5])
def test_pairing_matches_the_exact_expectations(short_seq_prob):
    """Instances and random-next instances per document pass, against the exact expectation
    of the original's chunk / split / random-next / give-back rules (50000 passes)."""
    docs, vocab, doc_of_id = unique_id_corpus(seed=1, num_docs=6, max_segments=12,
                                              max_segment_length=20)
    options = inst.InstanceOptions(max_seq_length=48, short_seq_prob=short_seq_prob)
    max_num_tokens, passes = options.max_seq_length - 3, 50000
    corpus_ = inst.Corpus.from_documents(docs)
    counters = {}
    table = iv.pair_documents(corpus_, options, passes, iv.make_generator(0), counters)
    assert abs(counters["short_targets"] / counters["document_passes"] - short_seq_prob) < 0.01
    doc = doc_of_id[corpus_.tokens[table["a_start"]]]
    for d, document in enumerate(docs):
        lengths = tuple(len(s) for s in document)
        full = np.array(exact_pass_expectations(lengths, max_num_tokens))
        short = np.mean([exact_pass_expectations(lengths, t)
                         for t in range(2, max_num_tokens + 1)], axis=0)
        expected = (1 - short_seq_prob) * full + short_seq_prob * short
        mine = doc == d
        got = mine.sum() / passes, table["random_next"][mine].sum() / passes
        np.testing.assert_allclose(got, expected, atol=0.02, err_msg=f"document {d}")


def test_final_lengths_equal_the_truncation_loop():
    for max_num_tokens in (2, 3, 6, 7, 20, 21):
        len_a, len_b = np.meshgrid(np.arange(1, 40), np.arange(1, 40))
        len_a, len_b = len_a.ravel(), len_b.ravel()
        got_a, got_b = iv.final_lengths(len_a, len_b, max_num_tokens)
        for la, lb, ga, gb in zip(len_a, len_b, got_a, got_b):
            a, b = list(range(la)), list(range(lb))
            ref.truncate_seq_pair(a, b, max_num_tokens, random.Random(0))
            assert (len(a), len(b)) == (ga, gb), (la, lb, max_num_tokens)


def test_truncation_trims_front_and_back_like_the_reference():
    """Two one-segment documents (always random next, A = 50 and B = 30 tokens): how many
    tokens each side loses from its front has the reference loop's distribution."""
    docs = [[list(range(5, 55))], [list(range(55, 85))]]
    options = inst.InstanceOptions(max_seq_length=27, short_seq_prob=0.0)  # 24 tokens left
    table = iv.pair_documents(inst.Corpus.from_documents(docs), options, 20000,
                              iv.make_generator(0))
    first_doc = table["a_start"] < 50
    got = {"a": table["a_start"][first_doc], "b": table["b_start"][first_doc] - 50}
    assert (table["a_len"][first_doc] == 12).all() and (table["b_len"][first_doc] == 12).all()
    rng = random.Random(0)
    expected = {"a": [], "b": []}
    for _ in range(20000):
        a, b = list(range(50)), list(range(30))
        ref.truncate_seq_pair(a, b, 24, rng)
        expected["a"].append(a[0])
        expected["b"].append(b[0])
    for side in ("a", "b"):  # Binomial(38, 0.5) and Binomial(18, 0.5)
        e, g = np.array(expected[side]), got[side]
        assert abs(g.mean() - e.mean()) < 0.1 and abs(g.var() / e.var() - 1) < 0.1, side


@pytest.mark.parametrize("wwm", [False, True])
def test_masking_probabilities_match_the_reference(wwm):
    """One fixed sequence masked many times: how often each position is chosen, and the
    80/10/10 outcome, equal the reference loop's (greedy whole-word fill included)."""
    pieces = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    words = [["w0"], ["w1", "##a"], ["w2"], ["w3", "##b", "##c"], ["w4"], ["w5", "##d"],
             ["w6"], ["w7", "##e", "##f", "##g"], ["w8"], ["w9"]]
    for word in words:
        for piece in word:
            pieces[piece] = len(pieces)
    a = [p for w in words[:6] for p in w] + ["##h"]
    b = ["##i"] + [p for w in words for p in w]  # "##i" joins A's last word across [SEP]
    tokens = ["[CLS]", *a, "[SEP]", *b, "[SEP]"]
    options = inst.InstanceOptions(max_seq_length=64, masked_lm_prob=0.2,
                                   max_predictions_per_seq=7, do_whole_word_mask=wwm)
    for extra in ("##h", "##i"):
        pieces[extra] = len(pieces)
    reps = 10000
    rng = random.Random(0)
    expected = np.zeros(len(tokens))
    for _ in range(reps):
        _, positions, _ = ref.create_masked_lm_predictions(tokens, 0.2, 7, list(pieces), rng,
                                                           wwm)
        expected[positions] += 1
    vocab = inst.VocabIds.from_vocab(pieces)
    ids_a, ids_b = [pieces[t] for t in a], [pieces[t] for t in b]
    masker = iv._Masker(inst.Corpus.from_documents([[ids_a, ids_b]]), vocab, options)
    rows = {"a_start": np.zeros(reps, np.int64), "a_len": np.full(reps, len(a)),
            "b_start": np.full(reps, len(a)), "b_len": np.full(reps, len(b)),
            "random_next": np.zeros(reps, bool), "target": np.full(reps, 61)}
    f = masker(rows, iv.make_generator(3))
    weights = f["masked_lm_weights"] > 0
    got = np.bincount(f["masked_lm_positions"][weights], minlength=len(tokens))
    np.testing.assert_allclose(got / reps, expected / reps, atol=0.025)
    assert got[0] == got[len(a) + 1] == got[-1] == 0
    at = np.take_along_axis(f["input_ids"], f["masked_lm_positions"], axis=1)[weights]
    assert abs((at == vocab.mask_id).mean() - 0.8) < 0.02


def test_small_and_extreme_settings():
    docs, vocab, _ = unique_id_corpus(seed=2, num_docs=5)
    for options in (inst.InstanceOptions(max_seq_length=5),
                    inst.InstanceOptions(max_seq_length=16, masked_lm_prob=1.0),
                    inst.InstanceOptions(max_seq_length=12, max_predictions_per_seq=30,
                                         do_whole_word_mask=True),
                    inst.InstanceOptions(max_seq_length=40, max_predictions_per_seq=2),
                    inst.InstanceOptions(max_seq_length=300, max_predictions_per_seq=45,
                                         do_whole_word_mask=True)):  # 64-bit keys
        batch = iv.create_arrays(docs, vocab, options, dupe_factor=2, seed=1)
        assert len(batch) > 10
        check_structure(batch, vocab, options)
    one = iv.create_arrays(docs[:1], vocab, inst.InstanceOptions(), 2, 1)  # B from itself
    assert len(one) > 0 and one.features["next_sentence_labels"].any()
    empty = iv.create_arrays([[], []], vocab, inst.InstanceOptions(), 2, 1)
    assert len(empty) == 0 and empty.features["input_ids"].shape == (0, SEQ)
    with pytest.raises(ValueError, match="dupe_factor"):
        iv.create_arrays(docs, vocab, inst.InstanceOptions(), 0, 1)


def test_text_with_special_tokens_is_never_masked():
    docs, vocab, _ = unique_id_corpus(seed=4, num_docs=8)
    docs[0][0][:3] = [vocab.sep_id, vocab.cls_id, vocab.sep_id]
    options = inst.InstanceOptions(max_seq_length=24, masked_lm_prob=0.5,
                                   do_whole_word_mask=True)
    batch = iv.create_arrays(docs, vocab, options, 20, 1)
    check_structure(batch, vocab, options)  # includes: no [CLS]/[SEP] label


def test_deterministic_in_the_seed():
    docs, vocab, _ = unique_id_corpus(seed=3)
    options = inst.InstanceOptions(max_seq_length=64)
    first = iv.create_arrays(docs, vocab, options, 2, seed=9)
    again = iv.create_arrays(docs, vocab, options, 2, seed=9)
    other = iv.create_arrays(docs, vocab, options, 2, seed=10)
    for name in first.features:
        np.testing.assert_array_equal(first.features[name], again.features[name])
    assert not np.array_equal(first.features["input_ids"][:50], other.features["input_ids"][:50])
    batches = list(iv.iter_instance_batches(docs, vocab, options, 2, 9, batch_size=100))
    assert [len(b) for b in batches[:-1]] == [100] * (len(batches) - 1)


# --- create_pretraining_data --rng=vectorized ------------------------------------------------

def corpus_slice(directory, name, book, num_lines):
    with open(os.path.join(REPO, "data", "corpus_sentences", book + ".txt"),
              encoding="utf-8") as f:
        lines = f.read().split("\n")[:num_lines]
    path = directory / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def test_shards_are_identical_for_any_num_workers_and_modes_never_mix(tmp_path):
    inputs = [corpus_slice(tmp_path, "a.txt", "shakespeare-hamlet", 500),
              corpus_slice(tmp_path, "b.txt", "blake-poems", 400),
              corpus_slice(tmp_path, "c.txt", "austen-persuasion", 300)]
    vectorized = cpd.Settings(VOCAB_FILE, dupe_factor=2, random_seed=3, rng="vectorized")
    original = cpd.Settings(VOCAB_FILE, dupe_factor=2, random_seed=3)
    one = [str(tmp_path / "w1" / f"s{k}.tfrecord") for k in range(3)]
    two = [str(tmp_path / "w2" / f"s{k}.tfrecord") for k in range(3)]
    base = cpd.create_pretraining_data(inputs, one, original, num_workers=1)
    first = cpd.create_pretraining_data(inputs, one, vectorized, num_workers=1)
    assert first["shards_skipped"] == 0  # the original mode's shards are not reused
    assert first["settings"]["rng"] == "vectorized"
    second = cpd.create_pretraining_data(inputs, two, vectorized, num_workers=2)
    assert second["num_workers"] == 2
    for a, b in zip(one, two):
        assert read_bytes(a) == read_bytes(b)
    assert first["counts"] == second["counts"]
    assert abs(first["counts"]["instances"] / base["counts"]["instances"] - 1) < 0.1
    assert abs(first["masked_fraction"] - 0.15) < 0.01
    again = cpd.create_pretraining_data(inputs, two, vectorized, num_workers=1)
    assert again["shards_skipped"] == 3
    back = cpd.create_pretraining_data(inputs, two, original, num_workers=1)
    assert back["shards_skipped"] == 0 and back["counts"] == base["counts"]

    parsed = tfrecords.parse_pretraining_example(tfrecords.read_tfrecord(one[0]), SEQ, PRED)
    assert parsed["input_ids"].shape[0] == first["counts"]["instances"] - sum(
        len(tfrecords.read_tfrecord(p)) for p in one[1:])
    with pytest.raises(ValueError, match="--rng must be one of"):
        cpd.create_pretraining_data(inputs, one, cpd.Settings(VOCAB_FILE, rng="fast"))


def test_cli_rng_flag(tmp_path):
    import subprocess
    import sys
    source = corpus_slice(tmp_path, "in.txt", "blake-poems", 200)
    out = tmp_path / "out"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.create_pretraining_data", f"--input_file={source}",
         f"--vocab_file={VOCAB_FILE}", f"--output_dir={out}", "--dupe_factor=2",
         "--num_workers=1", "--rng=vectorized"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    import json
    with open(out / "summary.json") as f:
        summary = json.load(f)
    assert summary["settings"]["rng"] == "vectorized" and summary["counts"]["instances"] > 0
