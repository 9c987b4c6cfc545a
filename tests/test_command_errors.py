"""Every command reports a user error as one line on stderr and exits 1 (data_prep/command.py).

Each case runs the command as a user does (`python -m ...`, a separate process) with one bad
input, and checks: exit status 1, no traceback, no usage text, and a last stderr line
`<command>: error: <message>` naming the file, flag or tensor. `--traceback` brings the
traceback back.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

import pytest

from tests.pretraining_data import write_pretraining_shards

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(REPO, "tests", "data", "vocab_uncased.txt")
SST2 = os.path.join(REPO, "tests", "data", "glue", "SST-2")
SQUAD_MALFORMED = os.path.join(REPO, "tests", "data", "squad", "malformed.json")
# The synthetic shards' geometry (tests/pretraining_data.py).
BAD_CONLL = "John B-PER\nsmith\n"  # line 2 has no tag
SHARD_FLAGS = ("--model=tiny", "--vocab_size=64", "--max_seq_length=32",
               "--max_predictions_per_seq=5", "--train_batch_size=8", "--steps_per_loop=5",
               "--num_train_steps=20")


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def _error_line(done: subprocess.CompletedProcess, command: str) -> str:
    """The one error line, after checking everything around it."""
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "USAGE" not in done.stderr and "flags:" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(f"{command}: error: "), done.stderr[-3000:]
    assert sum(line.startswith(f"{command}: error: ") for line in lines) == 1
    return lines[-1][len(f"{command}: error: "):]


def _truncated_shards(tmp_path) -> str:
    pattern = write_pretraining_shards(str(tmp_path / "data"))
    cut = sorted(glob.glob(pattern))[1]
    with open(cut, "rb") as f:
        data = f.read()
    with open(cut, "wb") as f:
        f.write(data[: len(data) * 3 // 5])  # mid-record (a cut inside a header reads as EOF)
    return cut


def test_run_pretraining_names_the_truncated_shard_and_offset(tmp_path):
    cut = _truncated_shards(tmp_path)
    done = _run("bert_tf.run_pretraining", *SHARD_FLAGS,
                f"--input_file={tmp_path / 'data' / '*'}", f"--output_dir={tmp_path / 'out'}")
    message = _error_line(done, "bert-pretrain")
    assert re.fullmatch(rf"corrupt TFRecord input: {re.escape(cut)}: truncated record at \d+",
                        message), message


def test_run_pretraining_init_checkpoint_of_another_config(tmp_path):
    import tensorflow as tf

    import bert_tf
    config = bert_tf.BertConfig.from_preset("tiny", vocab_size=64)
    encoder = bert_tf.BertEncoder.from_bert_config(config)
    prefix = tf.train.Checkpoint(model=bert_tf.BertPretrainer(encoder)).write(
        str(tmp_path / "tiny" / "model"))
    write_pretraining_shards(str(tmp_path / "data"))
    done = _run("bert_tf.run_pretraining", *SHARD_FLAGS[1:], "--model=mini",
                f"--input_file={tmp_path / 'data' / '*'}", f"--output_dir={tmp_path / 'out'}",
                f"--init_checkpoint={prefix}")
    message = _error_line(done, "bert-pretrain")
    assert message.startswith(f"{prefix}: checkpoint does not match the model's config "
                              "(bert_tf names, 4 layers in the model, 2 in the checkpoint): "
                              "word_embeddings/embeddings: checkpoint [64, 128] vs model "
                              "[64, 256]"), message
    assert "could not be found" not in done.stderr  # no restore warnings before it
    assert not os.path.exists(tmp_path / "out" / "checkpoints")


CASES = {
    "classifier_missing_tsv": lambda tmp: (
        "bert_tf.run_classifier", "bert-classify",
        ["--task_name=rte", f"--data_dir={tmp}", f"--vocab_file={VOCAB}", "--model=tiny",
         f"--output_dir={tmp / 'out'}"], f"rte train file not found: {tmp}/train.tsv"),
    "squad_malformed_json": lambda tmp: (
        "bert_tf.run_squad", "bert-squad",
        [f"--vocab_file={VOCAB}", "--model=tiny", f"--train_file={SQUAD_MALFORMED}",
         f"--output_dir={tmp / 'out'}"], f"{SQUAD_MALFORMED}: line 5 column 42: invalid JSON"),
    "tagger_bad_conll_line": lambda tmp: (
        "bert_tf.run_tagger", "bert-tagger",
        ["--model=tiny", f"--vocab_file={VOCAB}",
         "--train_file=" + _write(tmp / "bad.txt", BAD_CONLL), f"--output_dir={tmp / 'out'}",
         "--do_train", "--nodo_eval"], f"{tmp / 'bad.txt'}:2"),
    "classifier_vocab_not_utf8": lambda tmp: (
        "bert_tf.run_classifier", "bert-classify",
        ["--task_name=sst2", f"--data_dir={SST2}", "--vocab_file=" + _write_bytes(
            tmp / "vocab.txt", b"[PAD]\n[UNK]\ncaf\xe9\n"), "--model=tiny",
         f"--output_dir={tmp / 'out'}"], f"{tmp / 'vocab.txt'}:3: not UTF-8 (byte 0xe9 at column 4)"),
    "classifier_tsv_missing_column": lambda tmp: (
        "bert_tf.run_classifier", "bert-classify",
        ["--task_name=sst2", f"--data_dir={_sst2_with(tmp, 'a fine film')}",
         f"--vocab_file={VOCAB}", "--model=tiny", f"--output_dir={tmp / 'out'}"],
        f"{tmp / 'sst2' / 'train.tsv'}:2: expected at least 2 tab-separated columns"),
    "classifier_tsv_bad_label": lambda tmp: (
        "bert_tf.run_classifier", "bert-classify",
        ["--task_name=sst2", f"--data_dir={_sst2_with(tmp, 'a fine film' + chr(9) + '7')}",
         f"--vocab_file={VOCAB}", "--model=tiny", f"--output_dir={tmp / 'out'}"],
        f"{tmp / 'sst2' / 'train.tsv'}:2: unknown label '7' for sst2"),
    "classifier_seq_longer_than_positions": lambda tmp: (
        "bert_tf.run_classifier", "bert-classify",
        ["--task_name=sst2", f"--data_dir={SST2}", f"--vocab_file={VOCAB}", "--model=tiny",
         "--max_seq_length=1024", f"--output_dir={tmp / 'out'}"],
        "max_seq_length (1024) exceeds the model's max_position_embeddings (512)"),
    "export_missing_model": lambda tmp: (
        "bert_tf.export_savedmodel", "bert-export",
        [f"--keras_model={tmp / 'none.keras'}", f"--vocab_file={VOCAB}",
         f"--export_dir={tmp / 'export'}"],
        str(tmp / "none.keras")),
    "convert_unknown_source": lambda tmp: (
        "bert_tf.convert_checkpoint", "bert-convert",
        [f"--source={tmp}", f"--output={tmp / 'out'}"], "neither a TF1"),
    "prep_missing_vocab": lambda tmp: (
        "data_prep.create_pretraining_data", "bert-prep",
        ["--input_file=" + _write(tmp / "a.txt", "One. Two.\n"), f"--vocab_file={tmp / 'v.txt'}",
         f"--output_dir={tmp / 'out'}"], f"--vocab_file: no such file '{tmp / 'v.txt'}'"),
    "prep_empty_corpus": lambda tmp: (
        "data_prep.create_pretraining_data", "bert-prep",
        ["--input_file=" + _write(tmp / "empty.txt", "\n\n"), f"--vocab_file={VOCAB}",
         f"--output_dir={tmp / 'out'}"], f"no instances: the files of --input_file="),
    "prep_corpus_not_utf8": lambda tmp: (
        "data_prep.create_pretraining_data", "bert-prep",
        ["--input_file=" + _write_bytes(tmp / "bad.txt", b"One line.\nA caf\xe9 line.\n"),
         f"--vocab_file={VOCAB}", f"--output_dir={tmp / 'out'}", "--num_workers=1"],
        f"{tmp / 'bad.txt'}:2: invalid UTF-8 at byte 5 of the line; fix the file, or pass "
        "--invalid_utf8=replace"),
    "vocab_corpus_not_utf8": lambda tmp: (
        "data_prep.build_vocab", "bert-vocab",
        ["--input_file=" + _write_bytes(tmp / "bad.txt", b"fine\nfine\n\xff\n"),
         f"--output_file={tmp / 'vocab.txt'}"], f"{tmp / 'bad.txt'}:3: invalid UTF-8 at byte 0"),
    "prep_unknown_flag_in_flagfile": lambda tmp: (
        "data_prep.create_pretraining_data", "bert-prep",
        ["--flagfile=" + _write(tmp / "x.flags", "--input_file=a.txt\n--masking_prob=0.2\n")],
        "Unknown command line flag 'masking_prob'"),
    "vocab_two_required_flags_missing": lambda tmp: (
        "data_prep.build_vocab", "bert-vocab", [],
        "Flag --input_file must have a value other than None.; flag --output_file=None: Flag "
        "--output_file must have a value other than None. (--helpshort lists the flags)"),
    "vocab_no_input": lambda tmp: (
        "data_prep.build_vocab", "bert-vocab",
        [f"--input_file={tmp / 'none*.txt'}", f"--output_file={tmp / 'vocab.txt'}"],
        f"--input_file={tmp / 'none*.txt'} matches no file"),
    "prepare_corpus_no_input": lambda tmp: (
        "data_prep.prepare_corpus", "prepare_corpus",
        [f"--input_file={tmp / 'none*.txt'}", f"--output_dir={tmp / 'out'}"],
        str(tmp / "none*.txt")),
    "prepare_corpus_not_utf8": lambda tmp: (
        "data_prep.prepare_corpus", "prepare_corpus",
        ["--input_file=" + _write_bytes(tmp / "book.txt", b"CHAPTER I\n\nIt was \xc3."),
         f"--output_dir={tmp / 'out'}"], f"{tmp / 'book.txt'}:3: invalid UTF-8 at byte 7"),
    "demo_without_its_stages": lambda tmp: (
        "bert_tf.main_job", "bert-demo",
        [f"--work_dir={tmp / 'demo'}", "--skip=vocab,pretraining_data,pretrain,finetune,export"],
        str(tmp / "demo" / "export" / "sst2_classifier")),
}


def _write_bytes(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _sst2_with(tmp, row: str) -> str:
    """An SST-2 folder whose train.tsv's second line is `row`."""
    (tmp / "sst2").mkdir(exist_ok=True)
    _write(tmp / "sst2" / "train.tsv", f"sentence\tlabel\n{row}\n")
    _write(tmp / "sst2" / "dev.tsv", "sentence\tlabel\nfine\t1\n")
    return str(tmp / "sst2")


def _write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_error_is_one_line(case, tmp_path):
    module, command, args, expected = CASES[case](tmp_path)
    message = _error_line(_run(module, *args), command)
    assert expected in message, message


@pytest.mark.parametrize("flag", ["--traceback", "--verbosity=1"])
def test_traceback_flag_shows_where(flag, tmp_path):
    module, command, args, expected = CASES["prep_missing_vocab"](tmp_path)
    done = _run(module, *args, flag)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith(f"{command}: error: {expected}")
