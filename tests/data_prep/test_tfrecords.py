"""data_prep.files.tfrecords: byte-exact fast serialization, parsing, gzip, atomic writes."""
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

from data_prep.pretraining import instances as inst
from data_prep.files import tfrecords

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
        from data_prep.files import tfrecords
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


# --- The vectorized encoder against protobuf, on every varint width and layout ------------------

def proto_bytes(features, row):
    """Row `row` of feature arrays as protobuf's deterministic serialization."""
    feature = {}
    for name, array in features.items():
        values = np.asarray(array)[row]
        values = values.reshape(-1) if values.ndim else values[None]
        if values.dtype.kind == "f":
            feature[name] = tfrecords.float_feature(values.astype(np.float32).tolist())
        else:
            feature[name] = tfrecords.int64_feature(values.astype(np.int64).tolist())
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def assert_encodes_like_protobuf(features):
    records = tfrecords.serialize_examples(features)
    buffer, ends = tfrecords.encode_examples(features)
    assert buffer.tobytes() == b"".join(records)
    assert ends.tolist() == np.cumsum([len(r) for r in records]).tolist()
    for row, record in enumerate(records):
        assert record == proto_bytes(features, row), f"row {row}"


def random_pretraining_arrays(rng, n, seq, pred, vocab_size):
    """Padded pretraining features with random lengths, ids up to vocab_size - 1."""
    lengths = rng.integers(5, seq + 1, n)
    num_a = rng.integers(1, lengths - 3)
    col = np.arange(seq)[None, :]
    mask = col < lengths[:, None]
    ids = np.where(mask, rng.integers(0, vocab_size, (n, seq)), 0)
    num_pred = np.minimum(rng.integers(1, pred + 1, n), lengths - 3)
    weights = np.arange(pred)[None, :] < num_pred[:, None]
    positions = np.where(weights, np.sort(rng.integers(1, seq, (n, pred)), axis=1), 0)
    return {
        "input_ids": ids,
        "input_mask": mask.astype(np.int64),
        "segment_ids": (mask & (col >= (num_a + 2)[:, None])).astype(np.int64),
        "masked_lm_positions": positions,
        "masked_lm_ids": np.where(weights, rng.integers(0, vocab_size, (n, pred)), 0),
        "masked_lm_weights": weights.astype(np.float32),
        "next_sentence_labels": rng.integers(0, 2, (n, 1)),
    }


@pytest.mark.parametrize("seq,pred,vocab_size", [
    (128, 20, 30522),      # BERT's: 1-3 byte ids, 1-byte positions
    (32, 5, 100),          # ids < 128 only: every part one byte per value
    (200, 30, 119547),     # multilingual vocab (> 2**16: the arithmetic route), 2-byte positions
    (512, 80, 2**31),      # 1-5 byte ids, record sizes >= 2**14 (3-byte lengths)
    (64, 10, 300),         # list sizes around 128: lengths of 1 or 2 bytes in one batch
])
def test_pretraining_arrays_encode_like_protobuf(seq, pred, vocab_size):
    rng = np.random.default_rng(seq + pred)
    features = random_pretraining_arrays(rng, 300, seq, pred, vocab_size)
    assert_encodes_like_protobuf(features)
    # The int32 arrays of --rng=vectorized give the same bytes.
    narrow = {k: v.astype(np.int32) if v.dtype == np.int64 else v for k, v in features.items()}
    assert tfrecords.serialize_examples(narrow) == tfrecords.serialize_examples(features)


def test_edge_values_of_every_varint_width():
    edges = [0, 1, 127, 128, 2**14 - 1, 2**14, 2**16 - 1, 2**16, 2**21 - 1, 2**21, 2**28,
             2**31 - 1, 2**32, 2**35, 2**42, 2**49, 2**56, 2**63 - 1, -1, -2**63, -128, -2**31]
    rng = np.random.default_rng(0)
    values = np.array(edges, np.int64)
    features = {
        "a_edges": np.tile(values, (4, 1)),
        "b_shuffled": np.stack([rng.permutation(values) for _ in range(4)]),
        "c_uint64": np.array([[2**64 - 1, 2**63, 5]] * 4, np.uint64),
        "c2_uint64_small": np.array([[5, 300], [200, 1], [0, 70000], [128, 127]], np.uint64),
        "d_bool": np.array([[True, False]] * 4),
        "e_small_types": np.array([[-3, 100], [7, -128], [0, 0], [1, 2]], np.int8),
        "f_uint16": np.array([[65535, 128], [0, 1], [300, 16384], [2, 3]], np.uint16),
        "g_float64": np.array([[3e38, -0.0], [np.inf, np.nan], [1.5, 2], [3, 4]]),
        "h_one_d": np.array([1, 2**40, -5, 0]),
        "i_empty": np.zeros((4, 0), np.int64),
        "z_last_varies": np.array([[1], [2**40], [-1], [300]]),  # a varint part ends the record
    }
    assert_encodes_like_protobuf(features)


def test_random_layouts_encode_like_protobuf():
    """Random schemas: widths that vary or not per batch, varint parts next to each other
    (a payload followed by a varying length) and at the end of the record."""
    rng = np.random.default_rng(1)
    for trial in range(40):
        n = int(rng.integers(1, 40))
        features = {}
        for k in range(int(rng.integers(1, 6))):
            d = int(rng.integers(0, 12))
            kind = rng.integers(0, 5)
            if kind == 0:
                array = rng.normal(size=(n, d)).astype(np.float32)
            elif kind == 1:  # one width throughout
                array = rng.integers(128, 16384, (n, d))
            else:  # widths from 1 byte up to 2**bits
                bits = int(rng.choice([7, 8, 14, 15, 20, 40, 63]))
                array = rng.integers(0, 2**bits, (n, d), dtype=np.int64)
                if kind == 3:
                    array = np.where(rng.random((n, d)) < 0.3, -array, array)
            features[f"f{k}_{trial}"] = array
        assert_encodes_like_protobuf(features)


@pytest.mark.parametrize("gzip", [False, True])
def test_encoded_shards_read_back_with_tf_data(tmp_path, gzip):
    """Records with 2-byte positions (max_seq_length 256), written plain and gzipped, read
    back by tf.data and parsed to the very arrays they were made from."""
    seq, pred = 256, 40
    features = random_pretraining_arrays(np.random.default_rng(2), 500, seq, pred, 30522)
    path = str(tmp_path / ("x.tfrecord.gz" if gzip else "x.tfrecord"))
    tfrecords.write_tfrecord(path, tfrecords.serialize_examples(features), gzip=gzip)
    dataset = tf.data.TFRecordDataset(path, compression_type="GZIP" if gzip else "")
    parsed = next(iter(dataset.batch(1000).map(
        lambda s: tfrecords.parse_pretraining_example(s, seq, pred, tf.int64))))
    for name, array in features.items():
        np.testing.assert_array_equal(parsed[name].numpy(), array, err_msg=name)


# --- TFRecord framing (our own writer) against tf.io.TFRecordWriter ----------------------------

def tf_writer_bytes(tmp_path, records):
    path = str(tmp_path / "tf_writer.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("kind", ["table", "sse42"])
def test_crc32c_check_value_and_routes_agree(kind):
    from data_prep.pretraining import record_kernels
    if kind == "sse42" and not record_kernels._has_sse42():
        pytest.skip("no SSE4.2 on this CPU")
    crc32c = getattr(record_kernels, f"_crc32c_{kind}")
    data = np.frombuffer(b"xx123456789", np.uint8)  # the standard check input, at an offset
    assert crc32c(data, 2, 11) == 0xE3069283
    assert crc32c(data, 2, 2) == 0
    noise = np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)
    for start, stop in [(0, 300), (3, 250), (1, 8), (5, 6), (7, 23)]:
        assert crc32c(noise, start, stop) == record_kernels._crc32c_table(noise, start, stop)


def test_framing_equals_tf_record_writer(tmp_path):
    """Every length from 0 to 40 bytes (all alignments of the 8-byte CRC loop), and large."""
    rng = np.random.default_rng(5)
    records = [rng.integers(0, 256, n, dtype=np.uint8).tobytes()
               for n in list(range(41)) + [1000, 70000]]
    expected = tf_writer_bytes(tmp_path, records)
    assert tfrecords.frame_tfrecords(records).tobytes() == expected
    assert tfrecords.frame_tfrecords([]).tobytes() == b""
    path = str(tmp_path / "ours.tfrecord")
    assert tfrecords.write_tfrecord(path, iter(records)) == len(records)
    with open(path, "rb") as f:
        assert f.read() == expected


def test_encode_tfrecords_equals_writer_of_serialized_examples(tmp_path):
    features = random_pretraining_arrays(np.random.default_rng(3), 200, 128, 20, 30522)
    framed = tfrecords.encode_tfrecords(features)
    assert framed.tobytes() == tf_writer_bytes(tmp_path, tfrecords.serialize_examples(features))
    assert tfrecords.encode_tfrecords({"a": np.zeros((0, 3), np.int64)}).size == 0


@pytest.mark.parametrize("gzip", [False, True])
def test_chunks_write_one_stream_that_tf_data_reads(tmp_path, gzip):
    rng = np.random.default_rng(4)
    batches = [random_pretraining_arrays(rng, n, 64, 10, 30522) for n in (7, 1, 30)]
    path = str(tmp_path / ("x.tfrecord.gz" if gzip else "x.tfrecord"))
    tfrecords.write_tfrecord_chunks(path, (tfrecords.encode_tfrecords(b) for b in batches),
                                    gzip=gzip)
    expected = [r for b in batches for r in tfrecords.serialize_examples(b)]
    assert tfrecords.read_tfrecord(path) == expected
    again = str(tmp_path / ("y.tfrecord.gz" if gzip else "y.tfrecord"))
    tfrecords.write_tfrecord_chunks(again, (tfrecords.encode_tfrecords(b) for b in batches),
                                    gzip=gzip)
    with open(path, "rb") as f, open(again, "rb") as g:
        assert f.read() == g.read()  # no time stamp in the gzip header
