"""bert_tf.training.dynamic_masking: the static path's statistics, whole words, determinism and resume,
static records re-masked, record checks, and a tiny run_pretraining --dynamic_masking --nsp=false."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf.training import dynamic_masking as dm
from bert_tf import optimization
from bert_tf.training import trainer
from bert_tf.tasks.pretraining import PretrainingTask
from data_prep.pretraining import shards as cpd, instances as inst
from data_prep.files import tfrecords
from tests.conftest import REPO_ROOT, TEST_DATA

VOCAB = os.path.join(TEST_DATA, "vocab_uncased.txt")
CORPUS = os.path.join(REPO_ROOT, "data", "corpus_sentences")
BOOKS = [os.path.join(CORPUS, b + ".txt") for b in ("blake-poems", "shakespeare-hamlet")]
CLS, SEP, PAD, MASK = 101, 102, 0, 103


def _write(directory, name, seq=128, **kwargs):
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in inst.InstanceOptions.__annotations__}
    kwargs.setdefault("dupe_factor", 2)
    out = os.path.join(directory, name + ".tfrecord")
    cpd.create_pretraining_data(BOOKS, [out], cpd.Settings(
        VOCAB, options=inst.InstanceOptions(max_seq_length=seq, **options), **kwargs))
    return out


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """The same NSP instances with static masks (plain and whole-word) and without masks."""
    d = str(tmp_path_factory.mktemp("records"))
    return {"static": _write(d, "static"), "none": _write(d, "none", masking="none"),
            "static_wwm": _write(d, "static_wwm", do_whole_word_mask=True),
            "packed": _write(d, "packed", seq=32, masking="none", task="none", dupe_factor=1),
            "packed_static": _write(d, "packed_static", seq=32, task="none", dupe_factor=1,
                                    max_predictions_per_seq=5)}


def _options(**kwargs):
    return dm.MaskingOptions.from_vocab_file(VOCAB, **kwargs)


def _eval_batches(path, options, seq=128, batch=512, seed=1, next_sentence=True):
    ds = dm.dynamic_pretraining_dataset(path, batch, seq, options, is_training=False,
                                        next_sentence=next_sentence, seed=seed)
    batches = [{k: v.numpy() for k, v in b.items()} for b in ds]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def _static(path, seq=128):
    parsed = tfrecords.parse_pretraining_example(tf.constant(tfrecords.read_tfrecord(path)),
                                                 seq, 20)
    return {k: v.numpy() for k, v in parsed.items()}


def _static_packed(path):
    spec = {k: v for k, v in tfrecords.feature_spec(32, 5).items()
            if k != "next_sentence_labels"}
    parsed = tf.io.parse_example(tf.constant(tfrecords.read_tfrecord(path)), spec)
    return {k: v.numpy() for k, v in parsed.items()}


def _split(batch):
    w = batch["masked_lm_weights"] > 0
    at = np.take_along_axis(batch["input_ids"], batch["masked_lm_positions"], axis=1)
    as_mask = (at == MASK) & w
    kept = (at == batch["masked_lm_ids"]) & w & ~as_mask
    return w, as_mask.sum() / w.sum(), kept.sum() / w.sum()


def test_same_statistics_as_the_static_path(records):
    """Per sequence the same number of masked tokens as the static records of the same
    instances (the original's rule); 80/10/10; never [CLS]/[SEP]/[PAD]; labels are the
    original ids; nothing changed outside the masked positions."""
    plain = _eval_batches(records["none"], _options())
    static = _static(records["static"])
    w, mask_fraction, keep_fraction = _split(plain)
    w_static, static_mask, static_keep = _split(static)
    np.testing.assert_array_equal(w.sum(axis=1), w_static.sum(axis=1))
    assert w.sum() > 15000
    assert abs(mask_fraction - 0.8) < 0.015 and abs(static_mask - 0.8) < 0.015
    assert abs(keep_fraction - 0.1) < 0.01 and abs(static_keep - 0.1) < 0.01
    ids = static["input_ids"].copy()  # the original ids: the static masks undone
    ids[np.nonzero(w_static)[0], static["masked_lm_positions"][w_static]] = (
        static["masked_lm_ids"][w_static])
    assert not np.isin(plain["masked_lm_ids"][w], [CLS, SEP, PAD]).any()
    np.testing.assert_array_equal(
        np.take_along_axis(ids, plain["masked_lm_positions"], 1)[w], plain["masked_lm_ids"][w])
    chosen = np.zeros(ids.shape, bool)
    chosen[np.nonzero(w)[0], plain["masked_lm_positions"][w]] = True
    assert not ((plain["input_ids"] != ids) & ~chosen).any()
    positions = np.where(w, plain["masked_lm_positions"], 10**6)
    assert (np.diff(positions, axis=1)[w[:, 1:]] > 0).all()  # sorted, no repeats
    for name in ("input_mask", "segment_ids", "next_sentence_labels"):
        np.testing.assert_array_equal(plain[name], static[name])


def test_whole_words_are_kept_together(records):
    options = _options(whole_word_masking=True)
    plain = _eval_batches(records["none"], options)
    static = _static(records["static_wwm"])
    w, mask_fraction, _ = _split(plain)
    w_static, _, _ = _split(static)
    assert abs(w.sum() / w_static.sum() - 1) < 0.02  # same masked fraction in expectation
    assert abs(mask_fraction - 0.8) < 0.015
    original = _eval_batches(records["none"], options, seed=2)  # any masks: restore below
    ids = original["input_ids"].copy()
    ow = original["masked_lm_weights"] > 0
    ids[np.nonzero(ow)[0], original["masked_lm_positions"][ow]] = original["masked_lm_ids"][ow]
    chosen = np.zeros(ids.shape, bool)
    chosen[np.nonzero(w)[0], plain["masked_lm_positions"][w]] = True
    subword = np.asarray(options.is_subword)[ids] & (plain["input_mask"] > 0)
    candidate = (plain["input_mask"] > 0) & ~np.isin(ids, [CLS, SEP, PAD])
    joins = subword[:, 1:] & candidate[:, :-1] & candidate[:, 1:]  # piece i+1 joins word of i
    assert joins.sum() > 1000
    np.testing.assert_array_equal(chosen[:, 1:][joins], chosen[:, :-1][joins])
    assert (chosen[:, 1:][joins]).sum() > 100


def test_static_records_are_restored_and_masked_anew(records):
    """Stored masks are undone from masked_lm_positions/ids: static records give exactly the
    batches of the unmasked records of the same instances."""
    a = _eval_batches(records["static"], _options(), batch=64)
    b = _eval_batches(records["none"], _options(), batch=64)
    for name in b:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _train_batches(path, skip, count, seed=12345, seq=32):
    ds = dm.dynamic_pretraining_dataset(path, 8, seq, _options(max_predictions_per_seq=5),
                                        is_training=True, next_sentence=False,
                                        skip_batches=skip, seed=seed)
    return [{k: v.numpy() for k, v in b.items()} for b in ds.take(count)]


def test_seeded_and_resumable(records):
    full = _train_batches(records["packed"], 0, 6)
    resumed = _train_batches(records["packed"], 3, 3)
    for a, b in zip(full[3:], resumed):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    again = _train_batches(records["packed"], 0, 6)
    assert all((a[k] == b[k]).all() for a, b in zip(full, again) for k in a)
    other = _train_batches(records["packed"], 0, 6, seed=7)
    assert any((a["masked_lm_positions"] != b["masked_lm_positions"]).any()
               for a, b in zip(full, other))
    # The masks follow the batch index, not the text: two epochs of one record differ.
    keys = [dm.batch_seed(1, 0, i).numpy().tolist() for i in range(3)]
    assert len({tuple(k) for k in keys}) == 3


def test_records_without_what_the_run_needs_are_named(records):
    config = bert_tf.BertConfig.from_preset("tiny", vocab_size=30522)
    with pytest.raises(ValueError, match=r"--input_file: .*none\.tfrecord has no masked-LM "
                                         r"features .*pass --dynamic_masking"):
        PretrainingTask(config, records["none"], 8)
    with pytest.raises(ValueError, match=r"--eval_input_file: .*packed\.tfrecord has no "
                                         r"next_sentence_labels .*pass --nsp=false"):
        PretrainingTask(config, records["none"], 8, eval_input_file=records["packed"],
                        masking=_options())
    PretrainingTask(config, records["packed"], 8, masking=_options(), nsp=False)
    # Stored masks without next-sentence labels: the static path reads them with --nsp=false.
    task = PretrainingTask(config, records["packed_static"], 8, 32, 5,
                           eval_input_file=records["packed_static"], nsp=False)
    stored = _static_packed(records["packed_static"])
    for ds in (task.train_dataset(tf.distribute.InputContext(), 0),
               task.eval_dataset(tf.distribute.InputContext())):
        batch = next(iter(ds))
        assert "next_sentence_labels" not in batch and batch["input_ids"].shape == (8, 32)
        row = np.flatnonzero((stored["input_ids"] == batch["input_ids"][0].numpy()).all(1))
        assert len(row) == 1  # a stored row, masks as written
        np.testing.assert_array_equal(stored["masked_lm_ids"][row[0]],
                                      batch["masked_lm_ids"][0].numpy())
    with pytest.raises(ValueError, match="--masked_lm_prob must be in"):
        _options(masked_lm_prob=0.0)


def test_nsp_false_trains_and_resumes_bit_identically(records, tmp_path):
    """MLM only: no next-sentence metric, the NSP head and pooler frozen; a run stopped at
    step 4 and resumed ends with the weights of an uninterrupted 8-step run (the masks of
    the resumed batches are those the uninterrupted run drew)."""
    config = bert_tf.BertConfig.from_preset("tiny", vocab_size=30522,
                                            max_position_embeddings=64)

    def run(out, steps):
        keras.utils.set_random_seed(0)
        task = PretrainingTask(config, records["packed"], 8, 32, 5,
                               eval_input_file=records["packed"], eval_batch_size=16,
                               masking=_options(max_predictions_per_seq=5), nsp=False)
        args = trainer.TrainingArgs(output_dir=str(out), train_batch_size=8,
                                     num_train_steps=steps, steps_per_loop=2,
                                     save_checkpoints_steps=4, max_eval_steps=2)
        results = trainer.run(task, args,
                               lambda: optimization.create_optimizer(1e-3, 8, 2))
        return results

    straight = run(tmp_path / "straight", 8)
    run(tmp_path / "stopped", 4)
    resumed = run(tmp_path / "stopped", 8)
    assert set(straight) == {"train_loss", "train_masked_lm_loss", "masked_lm_accuracy",
                             "masked_lm_loss", "global_step"}
    assert straight["global_step"] == resumed["global_step"] == 8
    reader_a = tf.train.load_checkpoint(str(tmp_path / "straight" / "checkpoints"))
    reader_b = tf.train.load_checkpoint(str(tmp_path / "stopped" / "checkpoints"))
    names = [n for n in reader_a.get_variable_to_shape_map() if n.startswith("model/")]
    assert names
    for name in names:
        np.testing.assert_array_equal(reader_a.get_tensor(name), reader_b.get_tensor(name),
                                      err_msg=name)
    assert straight["masked_lm_loss"] == resumed["masked_lm_loss"]


def _cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO_ROOT}
    return subprocess.run([sys.executable, "-m", "bert_tf.run_pretraining", *args],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_tiny_dynamic_flagfile_runs(tmp_path):
    """flags/pretrain_tiny_dynamic.flags on --masking=none --task=none records, a few steps."""
    data = tmp_path / "data"
    summary = cpd.create_pretraining_data(
        BOOKS, [str(data / "train.tfrecord"), str(data / "eval.tfrecord")],
        cpd.Settings(VOCAB, dupe_factor=1, masking="none", task="none"))
    assert summary["counts"]["instances"] > 100
    out = tmp_path / "run"
    done = _cli("--flagfile=flags/pretrain_tiny_dynamic.flags", f"--vocab_file={VOCAB}",
                f"--input_file={data / 'train.tfrecord'}",
                f"--eval_input_file={data / 'eval.tfrecord'}", f"--output_dir={out}",
                "--num_train_steps=6", "--num_warmup_steps=2", "--steps_per_loop=3",
                "--save_checkpoints_steps=3", "--train_batch_size=8", "--max_eval_steps=2",
                "--jit_compile=false", "--whole_word_masking")
    assert done.returncode == 0, done.stderr[-3000:]
    results = dict(line.split(" = ") for line in
                   (out / "eval_results.txt").read_text().splitlines())
    assert set(results) == {"global_step", "masked_lm_accuracy", "masked_lm_loss"}
    assert results["global_step"] == "6" and np.isfinite(float(results["masked_lm_loss"]))

    no_vocab = _cli("--model=tiny", "--vocab_size=30522", f"--input_file={data / 'train.tfrecord'}",
                    f"--output_dir={tmp_path / 'x'}", "--dynamic_masking")
    assert no_vocab.returncode == 1
    assert no_vocab.stderr.strip().splitlines()[-1].endswith(
        "--dynamic_masking needs --vocab_file (the special and '##' token ids).")
