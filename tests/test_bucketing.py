"""Length bucketing (bert_tf/training/bucketing.py): bounded bucket lengths, every example once per epoch,
an order reproducible from the seed and exact on resume, and evaluation identical to the
fixed-length pipeline (classifier, tagger, SQuAD), also under MirroredStrategy with gradient
accumulation and in run_classifier."""
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf import optimization
from bert_tf.training import bucketing, trainer
from bert_tf.tasks.classification import ClassificationTask, predict
from bert_tf.tasks.squad.postprocess import compute_predictions
from bert_tf.tasks.squad.task import SquadTask, predict_logits
from bert_tf.tasks.tagging import TaggingTask
from data_prep.tasks import conll, glue, squad
from data_prep.tasks.classifier_features import parse_classifier_examples
from data_prep.files.tfrecords import serialize_examples, write_tfrecord
from data_prep.tokenizer.tokenization import FullTokenizer
from tests.conftest import REPO_ROOT, TEST_DATA, make_inputs

VOCAB = os.path.join(TEST_DATA, "vocab_uncased.txt")
SST2 = os.path.join(REPO_ROOT, "data", "sst2")
SQUAD = os.path.join(REPO_ROOT, "data", "squad", "dev-v2.0-2articles.json")
CONLL = os.path.join(TEST_DATA, "conll")


def _config(max_position_embeddings=128):
    return bert_tf.BertConfig.from_preset("tiny", vocab_size=30522,
                                          max_position_embeddings=max_position_embeddings)


# --- bucket lengths -------------------------------------------------------------------------

def test_bucket_lengths_are_few_and_end_at_max_seq_length():
    assert bucketing.default_bucket_lengths(128) == (16, 32, 48, 64, 80, 96, 112, 128)
    assert bucketing.default_bucket_lengths(384) == (16, 32, 48, 64, 80, 96, 112, 128, 192,
                                                     256, 320, 384)
    assert bucketing.default_bucket_lengths(40) == (16, 32, 40)
    assert bucketing.default_bucket_lengths(8) == (8,)
    assert len(bucketing.default_bucket_lengths(512)) == 14
    assert bucketing.parse_bucket_lengths("32, 64", 128) == (32, 64, 128)
    assert bucketing.parse_bucket_lengths("", 64) == (16, 32, 48, 64)
    for bad in ("64,32", "0,16", "16,256", "a,b"):
        with pytest.raises(ValueError, match="--bucket_boundaries"):
            bucketing.parse_bucket_lengths(bad, 128)


def test_bucket_length_is_the_smallest_that_fits():
    lengths = (16, 32, 64)
    for longest, expected in ((0, 16), (1, 16), (16, 16), (17, 32), (33, 64), (64, 64)):
        assert int(bucketing.bucket_length(tf.constant([3, longest]), lengths)) == expected


# --- the training stream --------------------------------------------------------------------

N, WIDTH, BATCH, WINDOW = 96, 32, 8, 4  # 96 examples = 3 windows of 4 batches: 12 per epoch


@pytest.fixture(scope="module")
def id_records(tmp_path_factory):
    """N classifier records of lengths 1..WIDTH; label_ids = the example's number."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, WIDTH + 1, size=N)
    mask = (np.arange(WIDTH)[None, :] < lengths[:, None]).astype(np.int64)
    features = {"input_ids": (rng.integers(5, 100, size=(N, WIDTH)) * mask),
                "input_mask": mask, "segment_ids": np.zeros((N, WIDTH), np.int64),
                "label_ids": np.arange(N, dtype=np.int64),
                "is_real_example": np.ones(N, np.int64)}
    path = str(tmp_path_factory.mktemp("records") / "ids.tfrecord")
    write_tfrecord(path, serialize_examples(features))
    return path, lengths


def _stream(path, is_training=True, seed=7, skip=0, lengths=(8, 16, 24, 32), batch=BATCH,
            max_batches=None):
    return bucketing.bucketed_record_dataset(
        [path], batch, is_training, lambda s: parse_classifier_examples(s, WIDTH, False),
        WIDTH, lengths, skip_batches=skip, seed=seed, window_batches=WINDOW,
        max_batches=max_batches)


def _take(ds, count):
    return [{k: v.numpy() for k, v in b.items()} for b in ds.take(count)]


def test_training_batches_are_bucketed_and_every_example_comes_once_per_epoch(id_records):
    path, lengths = id_records
    batches = _take(_stream(path), 36)  # three epochs
    for b in batches:
        width = b["input_ids"].shape[1]
        longest = int(lengths[b["label_ids"]].max())
        assert b["input_ids"].shape[0] == BATCH and width in (8, 16, 24, 32)
        assert longest <= width < longest + 8  # the smallest bucket that holds the batch
        np.testing.assert_array_equal(b["input_mask"].sum(1), lengths[b["label_ids"]])
    epochs = [np.concatenate([b["label_ids"] for b in batches[i:i + 12]]) for i in (0, 12, 24)]
    for ids in epochs:
        assert sorted(ids) == list(range(N))
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled every epoch
    # Grouped by length: far less padding than at the full width (0.52 real tokens here;
    # a shuffled batch of 8 almost always needs the top bucket).
    real = sum(b["input_mask"].sum() for b in batches) / sum(b["input_mask"].size for b in batches)
    assert real > lengths.mean() / WIDTH + 0.15


def test_training_order_comes_from_the_seed_and_resume_is_exact(id_records):
    path, _ = id_records
    first = _take(_stream(path, seed=7), 30)
    again = _take(_stream(path, seed=7), 30)
    other = _take(_stream(path, seed=8), 30)
    ids = lambda batches: [b["label_ids"].tolist() for b in batches]  # noqa: E731
    assert ids(first) == ids(again) and ids(first) != ids(other)
    for skip in (1, 5, 12, 17):  # mid-window, a window edge, an epoch edge, the next epoch
        resumed = _take(_stream(path, seed=7, skip=skip), 30 - skip)
        assert ids(resumed) == ids(first[skip:])
        for a, b in zip(resumed, first[skip:]):
            np.testing.assert_array_equal(a["input_ids"], b["input_ids"])


def test_eval_batches_cover_the_file_once_with_its_order(id_records):
    path, lengths = id_records
    batches = _take(_stream(path, is_training=False, batch=7), 100)
    assert sum(len(b["label_ids"]) for b in batches) == N
    order = np.concatenate([b[bucketing.EXAMPLE_INDEX] for b in batches])
    labels = np.concatenate([b["label_ids"] for b in batches])
    np.testing.assert_array_equal(order, labels)  # example_index = the record's position
    assert sorted(order) == list(range(N))
    full = {k: v.numpy() for k, v in parse_classifier_examples(
        tf.data.TFRecordDataset(path).batch(N).get_single_element(), WIDTH, False).items()}
    for b in batches:
        width = b["input_ids"].shape[1]
        assert width in (8, 16, 24, 32) and width >= lengths[b["label_ids"]].max()
        np.testing.assert_array_equal(b["input_ids"], full["input_ids"][b["label_ids"], :width])
    restored = bucketing.restore_order({bucketing.EXAMPLE_INDEX: order, "label_ids": labels,
                                        "loss": 1.5})
    assert restored["label_ids"].tolist() == list(range(N)) and restored["loss"] == 1.5


def test_a_capped_eval_holds_the_files_first_examples(id_records):
    # max_batches=k: the first k x batch records in file order, as a capped unbucketed eval,
    # not the k batches that bucketing happens to put first.
    path, _ = id_records
    batches = _take(_stream(path, is_training=False, batch=7, max_batches=3), 100)
    assert len(batches) == 3
    order = np.concatenate([b[bucketing.EXAMPLE_INDEX] for b in batches])
    assert sorted(order) == list(range(21))


def test_records_padded_elsewhere_than_at_the_end_are_refused(tmp_path):
    mask = np.zeros((4, WIDTH), np.int64)
    mask[:, -5:] = 1  # left padding: slicing to sum(mask) would drop every token
    features = {"input_ids": mask * 7, "input_mask": mask, "segment_ids": 0 * mask,
                "label_ids": np.arange(4), "is_real_example": np.ones(4, np.int64)}
    path = str(tmp_path / "left.tfrecord")
    write_tfrecord(path, serialize_examples(features))
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{path}: input_mask has tokens"):
        _take(_stream(path, is_training=False), 1)


# --- models take any length -----------------------------------------------------------------

def test_models_take_any_length_up_to_max_position_embeddings(tiny_config):
    encoder = bert_tf.BertEncoder.from_bert_config(tiny_config)  # 64 positions
    full = make_inputs(batch=3, seq_len=64, lengths=[5, 13, 1])
    expected = encoder(full)["sequence_output"].numpy()
    compiled = tf.function(lambda x: encoder(x)["sequence_output"], jit_compile=True,
                           reduce_retracing=True)
    for length in (13, 16, 37, 64):
        part = {k: v[:, :length] for k, v in full.items()}
        for out in (encoder(part)["sequence_output"].numpy(), compiled(part).numpy()):
            assert out.shape == (3, length, tiny_config.hidden_size)
            for row, real in enumerate((5, 13, 1)):
                np.testing.assert_allclose(out[row, :real], expected[row, :real], atol=1e-5)
    with pytest.raises(ValueError, match="65 exceeds max_position_embeddings"):
        encoder(make_inputs(batch=1, seq_len=65))


# --- evaluation: bucketed == fixed length ---------------------------------------------------

# The equivalence tests evaluate a seeded random initialisation (no checkpoint in output_dir):
# the same weights for both pipelines, without the cost of tracing a training step.
SEED = 3


def _eval_only(task, output_dir, max_eval_steps=None):
    keras.utils.set_random_seed(SEED)
    args = trainer.TrainingArgs(output_dir=output_dir, train_batch_size=8, num_train_steps=1,
                                 do_train=False, max_eval_steps=max_eval_steps)
    return trainer.run(task, args, lambda: optimization.create_optimizer(1e-3, 1, 0))


def _model(task):
    keras.utils.set_random_seed(SEED)
    return task.build_model("float32")


def _restored(task, output_dir):
    model = task.build_model("float32")
    tf.train.Checkpoint(model=model).read(
        tf.train.latest_checkpoint(os.path.join(output_dir, "checkpoints"))).expect_partial()
    return model


def _sst2_dev(tmp_path, count):
    """A data_dir with the first `count` sentences of the shipped SST-2 dev split."""
    folder = tmp_path / "sst2"
    folder.mkdir()
    with open(os.path.join(SST2, "dev.tsv"), encoding="utf-8") as f:
        (folder / "dev.tsv").write_text("".join(f.readlines()[:count + 1]), encoding="utf-8")
    return str(folder)


def test_classifier_eval_and_predictions_are_those_of_fixed_length(tmp_path):
    task = glue.get_task("sst2")
    dev = glue.cached_features(task, "dev", _sst2_dev(tmp_path, 300), str(tmp_path / "f"),
                               VOCAB, True, 128, 8)
    buckets = bucketing.default_bucket_lengths(128)
    make = lambda lengths: ClassificationTask(  # noqa: E731
        _config(), 2, 128, 8, 8, train_file=dev.path, eval_file=dev.path, seed=3,
        bucket_lengths=lengths)
    run = str(tmp_path / "run")
    fixed, bucketed = _eval_only(make(None), run), _eval_only(make(buckets), run)
    assert fixed["eval_num_examples"] == bucketed["eval_num_examples"] == 300
    assert fixed["eval_accuracy"] == bucketed["eval_accuracy"]
    assert fixed["eval_loss"] == pytest.approx(bucketed["eval_loss"], rel=1e-6)
    # --max_eval_steps: the same first 5 x 8 examples either way.
    fixed, bucketed = (_eval_only(make(lengths), run, max_eval_steps=5)
                       for lengths in (None, buckets))
    assert fixed["eval_num_examples"] == bucketed["eval_num_examples"] == 40
    assert fixed["eval_accuracy"] == bucketed["eval_accuracy"]
    assert fixed["eval_loss"] == pytest.approx(bucketed["eval_loss"], rel=1e-6)

    model = _model(make(None))
    a = predict(model, make(None).dataset(dev.path, 8, False))
    b = predict(model, make(buckets).dataset(dev.path, 8, False))
    assert set(b) == {"logits", "label_ids", "is_real_example"}
    np.testing.assert_array_equal(a["label_ids"], b["label_ids"])  # file order restored
    np.testing.assert_array_equal(a["is_real_example"], b["is_real_example"])
    # Real examples only: an all-padding row (length 0) attends uniformly to however many
    # padding positions its batch has; those rows count nowhere.
    real = a["is_real_example"].astype(bool)
    assert (~real).sum() == 4
    np.testing.assert_array_equal(a["logits"][real].argmax(-1), b["logits"][real].argmax(-1))
    np.testing.assert_allclose(a["logits"][real], b["logits"][real], atol=1e-5)


def test_tagger_eval_and_predictions_are_those_of_fixed_length(tmp_path):
    tokenizer = FullTokenizer(VOCAB, True)
    train_sentences = conll.read_conll(os.path.join(CONLL, "train.txt"))
    labels = conll.label_list(train_sentences)
    dev = str(tmp_path / "dev.tfrecord")
    conll.write_tagging_features(dev, conll.read_conll(os.path.join(CONLL, "dev.txt")),
                                 tokenizer, labels, 48, "dev.txt")
    make = lambda lengths: TaggingTask(  # noqa: E731
        _config(), labels, 48, 8, 8, eval_file=dev, seed=3, bucket_lengths=lengths)
    buckets = (16, 32, 48)
    run = str(tmp_path / "run")
    fixed, bucketed = _eval_only(make(None), run), _eval_only(make(buckets), run)
    assert fixed == bucketed

    model = _model(make(None))
    a = make(None).predict(model, make(None).dataset(dev, 8, False))
    b = make(buckets).predict(model, make(buckets).dataset(dev, 8, False))
    for key in ("predictions", "label_ids", "label_weights"):
        assert b[key].shape[1] == 48
        np.testing.assert_array_equal(a[key] * (a["label_weights"] > 0),
                                      b[key] * (b["label_weights"] > 0))


def test_squad_predictions_and_metrics_are_those_of_fixed_length(tmp_path):
    options = dict(max_seq_length=128, doc_stride=64, max_query_length=32,
                   version_2_with_negative=True)
    dev = squad.squad_data(SQUAD, str(tmp_path / "f"), VOCAB, False, pad_to_multiple=8,
                           **options)
    outputs = {}

    def evaluate_as(name):
        def evaluate(unique_ids, start_logits, end_logits):
            result = compute_predictions(dev.examples, dev.features, unique_ids, start_logits,
                                         end_logits, version_2_with_negative=True)
            outputs[name] = (unique_ids, start_logits, result)
            return {"answers": float(sum(bool(t) for t in result.predictions.values()))}
        return evaluate

    make = lambda name, lengths: SquadTask(  # noqa: E731
        _config(), 128, 8, 8, eval_file=dev.path, evaluate_fn=evaluate_as(name), seed=3,
        bucket_lengths=lengths)
    buckets = bucketing.default_bucket_lengths(128)
    run = str(tmp_path / "run")
    fixed, bucketed = _eval_only(make("fixed", None), run), _eval_only(make("bucketed", buckets), run)
    assert fixed == bucketed
    (ids_a, start_a, a), (ids_b, start_b, b) = outputs["fixed"], outputs["bucketed"]
    np.testing.assert_array_equal(ids_a, ids_b)  # file order restored
    np.testing.assert_allclose(start_a, start_b, atol=1e-5)
    assert a.predictions == b.predictions and a.predictions
    assert [[e["text"] for e in v] for v in a.nbest.values()] == \
        [[e["text"] for e in v] for v in b.nbest.values()]
    assert np.allclose(list(a.null_odds.values()), list(b.null_odds.values()), atol=1e-4)
    # Bucketed batches were shorter than 128, and predict_logits agrees with the loop.
    widths = {int(x["input_ids"].shape[1]) for x in make("x", buckets).dataset(dev.path, 8, False)}
    assert len(widths) > 1 and max(widths) <= 128
    direct = predict_logits(_model(make("x", None)),
                            make("x", buckets).dataset(dev.path, 8, False), 128)
    np.testing.assert_allclose(direct["start_logits"], start_a, atol=1e-5)


@pytest.mark.slow  # ~50 s: three short training runs (the stream-level resume test is fast)
def test_resumed_bucketed_training_ends_with_the_same_weights(tmp_path, id_records):
    config = bert_tf.BertConfig.from_preset("tiny", vocab_size=128, max_position_embeddings=32,
                                            num_hidden_layers=1)
    make = lambda: ClassificationTask(  # noqa: E731
        config, N, WIDTH, 8, 8, train_file=id_records[0], seed=5,
        bucket_lengths=(8, 16, 24, 32))

    def train(output_dir, steps):
        keras.utils.set_random_seed(5)
        args = trainer.TrainingArgs(output_dir=output_dir, train_batch_size=8,
                                     num_train_steps=steps, steps_per_loop=2,
                                     save_checkpoints_steps=2, do_eval=False)
        trainer.run(make(), args, lambda: optimization.create_optimizer(1e-3, 6, 0))

    train(str(tmp_path / "straight"), 6)
    train(str(tmp_path / "resumed"), 4)
    train(str(tmp_path / "resumed"), 6)
    weights = [_restored(make(), str(tmp_path / name)).get_weights()
               for name in ("straight", "resumed")]
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


MIRRORED = textwrap.dedent("""
    import json, os, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from bert_tf import optimization
    from bert_tf.training import trainer
    from bert_tf.tasks.classification import ClassificationTask
    import bert_tf
    path, out = sys.argv[1], sys.argv[2]
    config = bert_tf.BertConfig.from_preset("tiny", vocab_size=30522, max_position_embeddings=64)
    def task(lengths):
        return ClassificationTask(config, 2, 64, 8, 8, train_file=path, eval_file=path,
                                  bucket_lengths=lengths)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    opt = lambda: optimization.create_optimizer(1e-3, 4, 0)
    args = trainer.TrainingArgs(output_dir=out, train_batch_size=8, num_train_steps=4,
                                 steps_per_loop=2, num_accumulation_steps=2)
    mirrored = trainer.run(task((16, 32, 48, 64)), args, opt, strategy=strategy)
    fixed = trainer.run(task(None), args, opt)  # one device, same checkpoint, fixed length
    print(json.dumps({"mirrored": mirrored, "fixed": fixed}))
""")


@pytest.mark.slow  # ~50 s: a subprocess that trains twice
def test_mirrored_strategy_with_accumulation(tmp_path):
    task = glue.get_task("sst2")
    dev = glue.cached_features(task, "dev", SST2, str(tmp_path / "f"), VOCAB, True, 64, 8)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
    done = subprocess.run([sys.executable, "-c", MIRRORED, dev.path, str(tmp_path / "run")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    mirrored, fixed = result["mirrored"], result["fixed"]
    assert mirrored["global_step"] == fixed["global_step"] == 4
    assert mirrored["eval_num_examples"] == 872
    assert mirrored["eval_accuracy"] == fixed["eval_accuracy"]
    assert mirrored["eval_loss"] == pytest.approx(fixed["eval_loss"], rel=1e-6)


# --- the script -----------------------------------------------------------------------------

def _classifier(*flags):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
    return subprocess.run([sys.executable, "-m", "bert_tf.run_classifier", *flags],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def _results(path):
    return {k: float(v) for k, v in (line.split(" = ") for line in
                                     path.read_text().splitlines())}


@pytest.mark.slow  # ~40 s: two script runs (test_run_classifier's end-to-end run buckets too)
def test_run_classifier_with_bucketing_evaluates_as_fixed_length(tmp_path):
    out = tmp_path / "sst2"
    common = ["--task_name=sst2", f"--data_dir={os.path.join(TEST_DATA, 'glue', 'SST-2')}",
              f"--vocab_file={VOCAB}", "--model=tiny", f"--output_dir={out}",
              "--max_seq_length=64"]
    done = _classifier(*common, "--train_batch_size=8", "--num_train_steps=6",
                       "--steps_per_loop=3", "--bucket_boundaries=16,32")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Length bucketing: (16, 32, 64)" in done.stderr
    bucketed = _results(out / "eval_results.txt")
    again = _classifier(*common, "--do_train=false", "--length_bucketing=false")
    assert again.returncode == 0, again.stderr[-4000:]
    fixed = _results(out / "eval_results.txt")
    assert fixed.pop("eval_loss") == pytest.approx(bucketed.pop("eval_loss"), rel=1e-6)
    assert fixed == bucketed


def test_bucketing_flags():
    from absl import app, flags
    from bert_tf import script_flags
    values = flags.FlagValues()
    script_flags.define_bucketing_flags(values)
    flags.DEFINE_string("distribution_strategy", "one_device", "", flag_values=values)
    values(["prog"])
    assert script_flags.bucket_lengths_from_flags(values, 64) == (16, 32, 48, 64)
    values(["prog", "--bucket_boundaries=32"])
    assert script_flags.bucket_lengths_from_flags(values, 64) == (32, 64)
    values(["prog", "--bucket_boundaries=64,32"])
    with pytest.raises(app.UsageError, match="--bucket_boundaries='64,32'"):
        script_flags.bucket_lengths_from_flags(values, 64)
    values(["prog", "--nolength_bucketing"])
    assert script_flags.bucket_lengths_from_flags(values, 64) is None
    values(["prog", "--length_bucketing", "--distribution_strategy=tpu"])
    with pytest.raises(app.UsageError, match="tpu"):
        script_flags.bucket_lengths_from_flags(values, 64)


def test_one_pass_turns_tf_data_autotuning_off_and_keeps_the_elements():
    from bert_tf.training import inputs

    ds = tf.data.Dataset.range(10).map(lambda x: x * 2, num_parallel_calls=tf.data.AUTOTUNE)
    assert ds.options().autotune.enabled is not False
    once = inputs.one_pass(ds)
    assert once.options().autotune.enabled is False
    assert list(once.as_numpy_iterator()) == list(ds.as_numpy_iterator())


def test_evaluate_on_one_device_iterates_a_dataset_with_autotuning_off(tmp_path, monkeypatch):
    from bert_tf.training import inputs

    seen = []
    real_one_pass = inputs.one_pass

    def recording(ds):
        out = real_one_pass(ds)
        seen.append(out.options().autotune.enabled)
        return out

    monkeypatch.setattr(inputs, "one_pass", recording)
    task = glue.get_task("sst2")
    dev = glue.cached_features(task, "dev", _sst2_dev(tmp_path, 16), str(tmp_path / "f"),
                               VOCAB, True, 128, 8)
    metrics = _eval_only(ClassificationTask(_config(), 2, 128, 8, 8, train_file=dev.path,
                                            eval_file=dev.path, seed=3), str(tmp_path / "run"))
    assert metrics["eval_num_examples"] == 16
    assert seen == [False]
