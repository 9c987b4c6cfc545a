"""data_prep.pretraining.instances_compiled: the same instances, draws and generator state as instances.py."""
import random

import numpy as np
import pytest

from data_prep.pretraining import instances as inst, instances_compiled as compiled
from data_prep.files import tfrecords
from tests.data_prep.test_instances import corpus_documents, full_tokenizer, synthetic


def id_documents(vocab, docs):
    return [[[vocab[t] for t in seg] for seg in doc] for doc in docs]


def assert_same_as_python(id_docs, vocab_ids, seed=3, dupe_factor=2, batch_size=64, **options):
    """Compiled batches == instances.create_training_instances, padded; and the generators end
    in the same state."""
    o = inst.InstanceOptions(**options)
    python_rng, compiled_rng = random.Random(seed), random.Random(seed)
    python_counters, compiled_counters = {}, {}
    expected = list(inst.iter_training_instances(id_docs, vocab_ids, o, dupe_factor,
                                                 python_rng, python_counters))
    inst.shuffle_like_original(expected, python_rng)
    batches = list(compiled.iter_instance_batches(id_docs, vocab_ids, o, dupe_factor,
                                                  compiled_rng, compiled_counters, batch_size))
    assert compiled_rng.getstate() == python_rng.getstate()
    assert compiled_counters == python_counters
    assert sum(len(b) for b in batches) == len(expected)
    assert all(len(b) <= batch_size for b in batches)
    if not expected:
        return
    arrays = tfrecords.padded_pretraining_arrays(expected, o.max_seq_length,
                                                 o.max_predictions_per_seq)
    for name, want in arrays.items():
        got = np.concatenate([b.features[name] for b in batches])
        np.testing.assert_array_equal(got, want, err_msg=name)
    np.testing.assert_array_equal(np.concatenate([b.target_seq_length for b in batches]),
                                  [x.target_seq_length for x in expected])
    return len(expected)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("options", [
    {},
    {"do_whole_word_mask": True},
    {"do_whole_word_mask": True, "wwm_mask_decision": "per_word"},
    {"max_seq_length": 5, "max_predictions_per_seq": 1},         # the smallest pairs
    {"max_seq_length": 40, "short_seq_prob": 1.0, "masked_lm_prob": 1.0,
     "max_predictions_per_seq": 40},                              # more to mask than candidates
    {"max_seq_length": 300, "max_predictions_per_seq": 45, "short_seq_prob": 0.0},
])
def test_same_as_python_on_synthetic_pools(seed, options):
    vocab, docs = synthetic(seed)
    assert assert_same_as_python(id_documents(vocab, docs), inst.VocabIds.from_vocab(vocab),
                                 seed=seed, **options)


def test_same_as_python_with_special_tokens_in_text_one_segment_and_one_document():
    vocab, docs = synthetic(5)
    docs[0][0] = ["[CLS]"] + docs[0][0] + ["[SEP]", "[MASK]"]  # text that tokenizes to them
    docs.append([["w3", "w4"]])  # a one-segment document: its B is always random
    vocab_ids = inst.VocabIds.from_vocab(vocab)
    assert assert_same_as_python(id_documents(vocab, docs), vocab_ids)
    assert assert_same_as_python(id_documents(vocab, docs[:1]), vocab_ids, dupe_factor=3)
    assert assert_same_as_python(id_documents(vocab, [[], docs[0]]), vocab_ids,
                                 do_whole_word_mask=True)


def test_empty_pool_draws_nothing():
    vocab, _ = synthetic(0)
    rng = random.Random(1)
    before = rng.getstate()
    assert list(compiled.iter_instance_batches([[], []], inst.VocabIds.from_vocab(vocab),
                                               inst.InstanceOptions(), 2, rng)) == []
    assert rng.getstate() == before


@pytest.mark.parametrize("wwm", [False, True])
def test_same_as_python_on_shipped_corpus(wwm):
    tokenizer = full_tokenizer()
    docs = [[tokenizer.convert_tokens_to_ids(seg) for seg in doc]
            for doc in corpus_documents(2)]
    vocab_ids = inst.VocabIds.from_vocab(tokenizer.vocab)
    assert assert_same_as_python(docs, vocab_ids, seed=12345, dupe_factor=1,
                                 batch_size=2048, do_whole_word_mask=wwm) > 1000


def test_generator_continues_where_python_would():
    """A generator mid-block (not just seeded) and the draws after: identical."""
    vocab, docs = synthetic(2)
    a, b = random.Random(9), random.Random(9)
    for rng in (a, b):
        rng.random()
        rng.getrandbits(17)
    id_docs, vocab_ids = id_documents(vocab, docs), inst.VocabIds.from_vocab(vocab)
    inst.create_training_instances(id_docs, vocab_ids, inst.InstanceOptions(), 1, a)
    list(compiled.iter_instance_batches(id_docs, vocab_ids, inst.InstanceOptions(), 1, b))
    assert [a.random() for _ in range(5)] == [b.random() for _ in range(5)]


def test_a_subclass_of_random_is_refused():
    class Other(random.Random):
        pass
    vocab, docs = synthetic(0)
    with pytest.raises(TypeError, match="plain random.Random"):
        list(compiled.iter_instance_batches(id_documents(vocab, docs),
                                            inst.VocabIds.from_vocab(vocab),
                                            inst.InstanceOptions(), 1, Other(0)))


@pytest.mark.parametrize("options", [
    {},
    {"do_whole_word_mask": True, "max_seq_length": 64, "max_predictions_per_seq": 10},
    {"max_seq_length": 300, "max_predictions_per_seq": 45},       # 2-byte positions
    {"max_seq_length": 5, "max_predictions_per_seq": 1},
])
def test_records_from_the_table_equal_the_generic_encoder(options):
    """records.encode == tfrecords.encode_tfrecords of the padded batch, and its
    table_stats == create_pretraining_data's statistics of the padded arrays."""
    from data_prep.pretraining import shards as cpd, records
    tokenizer = full_tokenizer()
    docs = [[tokenizer.convert_tokens_to_ids(seg) for seg in doc]
            for doc in corpus_documents(1)]
    vocab_ids = inst.VocabIds.from_vocab(tokenizer.vocab)
    o = inst.InstanceOptions(**options)
    table = compiled.create_table(docs, vocab_ids, o, 1, random.Random(4))
    n = len(table)
    for start, stop in [(0, n), (5, 77), (n - 1, n), (3, 3)]:
        batch = compiled.padded_batch(table, start, stop, vocab_ids, o)
        assert (records.encode(table, start, stop, vocab_ids, o).tobytes()
                == tfrecords.encode_tfrecords(batch.features).tobytes())
    batch = compiled.padded_batch(table, 0, n, vocab_ids, o)
    expected = {}
    cpd._batch_stats(batch.features, batch.target_seq_length, vocab_ids, o, expected)
    assert records.table_stats(table, vocab_ids, o) == expected
    # What the table holds an instance: 7 int32, a byte per position up to 256 tokens, two
    # per new id for a vocabulary below 65536 ids.
    assert table.rows.dtype == np.int32
    assert table.positions.dtype == (np.uint8 if o.max_seq_length <= 256 else np.uint16)
    assert table.new_ids.dtype == np.uint16
