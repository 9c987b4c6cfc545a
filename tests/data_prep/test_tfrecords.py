"""data_prep.tfrecords: byte-exact fast serialization, parsing, gzip, atomic writes."""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from data_prep import instances as inst
from data_prep import tfrecords

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_instances(n_docs=20, max_seq_length=32, seed=0):
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                                        + [f"w{i}" for i in range(30000)])}
    g = random.Random(seed)
    docs = [[[g.randrange(5, 30005) for _ in range(g.randint(1, 20))]
             for _ in range(g.randint(1, 10))] for _ in range(n_docs)]
    o = inst.InstanceOptions(max_seq_length=max_seq_length, max_predictions_per_seq=6)
    return inst.create_training_instances(docs, inst.VocabIds.from_vocab(vocab), o, 1,
                                          random.Random(seed)), o


def test_fast_records_equal_deterministic_proto_bytes():
    instances, o = make_instances()
    records = tfrecords.instances_to_records(instances, o.max_seq_length,
                                             o.max_predictions_per_seq)
    assert len(records) == len(instances) > 50
    for record, x in zip(records, instances):
        proto = tfrecords.instance_to_example(x, o.max_seq_length, o.max_predictions_per_seq)
        assert record == proto.SerializeToString(deterministic=True)


def test_serialize_examples_generic_values():
    features = {
        "big": np.array([[-1, 2**40, 0, 127, 128, 2**63 - 1]] * 3, np.int64),
        "empty": np.zeros((3, 0), np.int64),
        "label": np.array([0, 1, 300]),
        "score": np.array([[1.5, -2.0], [0.0, 3.25], [1e-8, 7.0]], np.float32),
    }
    records = tfrecords.serialize_examples(features)
    for i, record in enumerate(records):
        proto = tf.train.Example(features=tf.train.Features(feature={
            "big": tfrecords.int64_feature(features["big"][i].tolist()),
            "empty": tfrecords.int64_feature([]),
            "label": tfrecords.int64_feature([int(features["label"][i])]),
            "score": tfrecords.float_feature(features["score"][i].tolist()),
        }))
        assert record == proto.SerializeToString(deterministic=True)
    assert tfrecords.serialize_examples({"a": np.zeros((0, 3), np.int64)}) == []
    with pytest.raises(ValueError, match="rows"):
        tfrecords.serialize_examples({"a": np.zeros((2, 1)), "b": np.zeros((3, 1))})


def test_parse_round_trip_scalar_and_batch():
    instances, o = make_instances(seed=1)
    records = tfrecords.instances_to_records(instances, o.max_seq_length,
                                             o.max_predictions_per_seq)
    batch = tfrecords.parse_pretraining_example(tf.constant(records), o.max_seq_length,
                                                o.max_predictions_per_seq)
    assert set(batch) == set(tfrecords.PRETRAINING_FEATURES)
    assert batch["input_ids"].dtype == tf.int32 and batch["masked_lm_weights"].dtype == tf.float32
    assert batch["input_ids"].shape == (len(records), o.max_seq_length)
    assert batch["next_sentence_labels"].shape == (len(records), 1)
    for row, x in enumerate(instances):
        n, m = len(x.tokens), len(x.masked_lm_positions)
        ids = batch["input_ids"][row].numpy()
        assert ids[:n].tolist() == x.tokens and not ids[n:].any()  # zero padding
        assert batch["input_mask"][row].numpy().tolist() == [1] * n + [0] * (o.max_seq_length - n)
        assert batch["segment_ids"][row].numpy()[:n].tolist() == x.segment_ids
        assert not batch["segment_ids"][row].numpy()[n:].any()
        assert batch["masked_lm_positions"][row].numpy()[:m].tolist() == x.masked_lm_positions
        assert batch["masked_lm_ids"][row].numpy()[:m].tolist() == x.masked_lm_ids
        assert not batch["masked_lm_positions"][row].numpy()[m:].any()
        assert batch["masked_lm_weights"][row].numpy().tolist() == [1.0] * m + [0.0] * (6 - m)
        assert batch["next_sentence_labels"][row, 0] == int(x.is_random_next)
    single = tfrecords.parse_pretraining_example(records[0], o.max_seq_length,
                                                 o.max_predictions_per_seq, tf.int64)
    assert single["input_ids"].shape == (o.max_seq_length,)
    assert single["input_ids"].dtype == tf.int64


@pytest.mark.parametrize("gzip", [False, True])
def test_write_read_and_tf_data_pipeline(tmp_path, gzip):
    instances, o = make_instances(seed=2)
    records = tfrecords.instances_to_records(instances, o.max_seq_length,
                                             o.max_predictions_per_seq)
    path = str(tmp_path / ("x.tfrecord.gz" if gzip else "x.tfrecord"))
    assert tfrecords.write_tfrecord(path, records, gzip=gzip) == len(records)
    assert os.listdir(tmp_path) == [os.path.basename(path)]  # no temporary left
    assert tfrecords.read_tfrecord(path) == records
    with open(path, "rb") as f:
        assert (f.read(2) == b"\x1f\x8b") == gzip  # the gzip magic number
    dataset = tf.data.TFRecordDataset(path, compression_type="GZIP" if gzip else "")
    dataset = dataset.batch(8).map(lambda s: tfrecords.parse_pretraining_example(
        s, o.max_seq_length, o.max_predictions_per_seq))
    first = next(iter(dataset))
    assert first["input_ids"].shape == (8, o.max_seq_length)


def test_exception_mid_write_leaves_nothing(tmp_path):
    path = str(tmp_path / "shard.tfrecord")

    def records():
        yield b"one"
        yield b"two"
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        tfrecords.write_tfrecord(path, records())
    assert os.listdir(tmp_path) == []

    with pytest.raises(RuntimeError, match="manifest failed"):
        tfrecords.write_tfrecord(path, [b"a"], before_commit=lambda: (_ for _ in ()).throw(
            RuntimeError("manifest failed")))
    assert os.listdir(tmp_path) == []


def test_killed_writer_leaves_no_final_file(tmp_path):
    path = str(tmp_path / "shard.tfrecord")
    script = textwrap.dedent(f"""
        import time
        from data_prep import tfrecords
        def records():
            for i in range(100):
                yield b"x" * 1000
            time.sleep(600)
        tfrecords.write_tfrecord({path!r}, records())
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env)
    try:
        deadline = time.time() + 120
        while not any(".tmp-" in name for name in os.listdir(tmp_path)):
            assert proc.poll() is None, "writer exited early"
            assert time.time() < deadline, "writer never started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not os.path.exists(path)
    assert all(".tmp-" in name for name in os.listdir(tmp_path))
