"""data_prep.create_pretraining_data: equality with the original script, sharding, workers,
resume, bad input, and the command line."""
import glob
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_prep import create_pretraining_data
from data_prep.pretraining import shards as cpd, instances as inst, sentences
from data_prep.files import text_files, tfrecords
from tests.data_prep import reference_pretraining_data as ref

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB_FILE = os.path.join(REPO, "tests", "data", "vocab_uncased.txt")
CORPUS_DIR = os.path.join(REPO, "data", "corpus_sentences")


def corpus_slice(tmp_path, name, book, num_lines):
    """The first num_lines lines of a shipped book, as a small input file."""
    with open(os.path.join(CORPUS_DIR, book + ".txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")[:num_lines]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def three_inputs(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    return [corpus_slice(inputs, "a.txt", "shakespeare-hamlet", 500),
            corpus_slice(inputs, "b.txt", "blake-poems", 400),
            corpus_slice(inputs, "c.txt", "austen-persuasion", 300)]


def settings(**kwargs):
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in inst.InstanceOptions.__annotations__}
    kwargs.setdefault("dupe_factor", 2)
    return cpd.Settings(VOCAB_FILE, options=inst.InstanceOptions(**options), **kwargs)


def parse_file(path, max_seq_length=128, max_predictions_per_seq=20):
    records = tfrecords.read_tfrecord(path)
    parsed = tfrecords.parse_pretraining_example(tf.constant(records), max_seq_length,
                                                 max_predictions_per_seq)
    return {k: v.numpy() for k, v in parsed.items()}


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def test_one_shard_equals_the_original_script(tmp_path):
    """A one-shard run of one file is the original script's run, feature for feature."""
    from data_prep.tokenizer import tokenization
    source = corpus_slice(tmp_path, "in.txt", "chesterton-brown", 700)
    ours = str(tmp_path / "ours.tfrecord")
    summary = cpd.create_pretraining_data([source], [ours], settings(random_seed=7))
    theirs = str(tmp_path / "theirs.tfrecord")
    count = ref.run([source], tokenization.FullTokenizer(VOCAB_FILE, True), [theirs],
                    random_seed=7, dupe_factor=2)
    assert summary["counts"]["instances"] == count > 400
    a, b = parse_file(ours), parse_file(theirs)
    for name in tfrecords.PRETRAINING_FEATURES:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_workers_give_identical_bytes_and_resume_skips(three_inputs, tmp_path):
    s = settings(random_seed=3)
    one = [str(tmp_path / "w1" / f"s{k}.tfrecord") for k in range(3)]
    two = [str(tmp_path / "w2" / f"s{k}.tfrecord") for k in range(3)]
    first = cpd.create_pretraining_data(three_inputs, one, s, num_workers=1,
                                        summary_file=str(tmp_path / "w1" / "summary.json"))
    second = cpd.create_pretraining_data(three_inputs, two, s, num_workers=2)
    assert second["num_workers"] == 2
    for a, b in zip(one, two):
        assert read_bytes(a) == read_bytes(b)
    assert first["counts"] == second["counts"]
    with open(tmp_path / "w1" / "summary.json") as f:
        assert json.load(f)["counts"]["instances"] == first["counts"]["instances"] > 500

    # Rerun: every shard is finished -> skipped, files untouched.
    mtimes = [os.stat(p).st_mtime_ns for p in two]
    again = cpd.create_pretraining_data(three_inputs, two, s, num_workers=2)
    assert again["shards_skipped"] == 3 and again["counts"] == first["counts"]
    assert [os.stat(p).st_mtime_ns for p in two] == mtimes

    # A lost shard is rebuilt, identically; the others are skipped.
    os.remove(two[1])
    again = cpd.create_pretraining_data(three_inputs, two, s, num_workers=1)
    assert again["shards_skipped"] == 2
    assert read_bytes(two[1]) == read_bytes(one[1])

    # Other settings do not match the manifests: everything is rebuilt.
    changed = cpd.create_pretraining_data(three_inputs, two, settings(random_seed=4))
    assert changed["shards_skipped"] == 0
    assert read_bytes(two[0]) != read_bytes(one[0])


def test_sharding_groups_inputs_and_gzip(three_inputs, tmp_path):
    plain = [str(tmp_path / "p0.tfrecord"), str(tmp_path / "p1.tfrecord")]
    zipped = [p + ".gz" for p in plain]
    a = cpd.create_pretraining_data(three_inputs, plain, settings())
    b = cpd.create_pretraining_data(three_inputs, zipped, settings(gzip=True))
    assert a["counts"] == b["counts"] and a["counts"]["files"] == 3
    for p, z in zip(plain, zipped):
        assert tfrecords.read_tfrecord(p) == tfrecords.read_tfrecord(z, gzip=True)
    with open(plain[1] + ".manifest.json") as f:
        manifest = json.load(f)
    assert [os.path.basename(p) for p in manifest["input_files"]] == ["b.txt", "c.txt"]
    assert manifest["seed"] == 12345 + 1
    assert cpd.group_inputs(["a", "b", "c", "d", "e"], 2) == [("a", "b"), ("c", "d", "e")]
    with pytest.raises(ValueError, match=r"2 output shard.s. need as many pieces of input, .* only 1"):
        cpd.group_inputs(["a"], 2)


def test_tf_text_tokenizer_gives_the_same_bytes(tmp_path):
    source = corpus_slice(tmp_path, "in.txt", "austen-persuasion", 120)
    python, tf_text = str(tmp_path / "py.tfrecord"), str(tmp_path / "tf.tfrecord")
    cpd.create_pretraining_data([source], [python], settings(tokenizer="python"))
    cpd.create_pretraining_data([source], [tf_text], settings(tokenizer="tf_text"))
    assert read_bytes(python) == read_bytes(tf_text)
    with pytest.raises(ValueError, match="--tokenizer must be one of"):
        cpd.create_pretraining_data([source], [python], settings(tokenizer="spacy"))


def test_summary_statistics(tmp_path):
    s = settings(dupe_factor=3)
    summary = cpd.create_pretraining_data(
        [os.path.join(CORPUS_DIR, "chesterton-thursday.txt")], [str(tmp_path / "x.tfrecord")], s)
    assert abs(summary["masked_fraction"] - 0.15) < 0.01
    assert abs(summary["mask_split"]["mask"] - 0.8) < 0.02
    assert abs(summary["mask_split"]["keep"] - 0.1) < 0.02
    assert 0.48 < summary["random_next_fraction"] < 0.6
    assert summary["capped_instance_fraction"] == 0.0
    parsed = parse_file(str(tmp_path / "x.tfrecord"))
    lengths = parsed["input_mask"].sum(axis=1)
    assert lengths.max() <= 128 and summary["counts"]["tokens"] == lengths.sum()
    assert (np.diff(parsed["masked_lm_positions"], axis=1)[parsed["masked_lm_weights"][:, 1:] > 0]
            > 0).all()


# --- Bad input --------------------------------------------------------------------------------

def test_no_input_matched_names_the_flag(tmp_path):
    with pytest.raises(ValueError, match=r"--input_file: no file matches .*nothing"):
        text_files.expand_input_patterns(str(tmp_path / "nothing*.txt"))
    with pytest.raises(ValueError, match="--input_file is empty"):
        text_files.expand_input_patterns(" , ")


def test_empty_and_unbroken_files_warn_and_still_work(tmp_path, caplog):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n  \n")
    unbroken = tmp_path / "unbroken.txt"
    unbroken.write_text("\n".join(f"Sentence number {i} is here." for i in range(60)) + "\n")
    outputs = [str(tmp_path / f"o{k}.tfrecord") for k in range(3)]
    with caplog.at_level(logging.WARNING):
        summary = cpd.create_pretraining_data([str(empty), str(blank), str(unbroken)], outputs,
                                              settings())
    text = caplog.text
    assert f"{empty}: no text" in text and f"{blank}: no text" in text
    assert f"{unbroken}: no blank line between documents" in text
    assert "only one document" in text and "no documents; writing an empty shard" in text
    assert summary["counts"]["documents"] == 1 and summary["counts"]["instances"] > 5
    assert tfrecords.read_tfrecord(outputs[0]) == []


def test_invalid_utf8_stops_by_default_or_is_replaced_with_a_warning(tmp_path, caplog):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"A fine first line.\nA bad \xff\xfe line here.\n\nAnother document.\n"
                    b"And more \xc3 text.\n")
    out = tmp_path / "o.tfrecord"
    with pytest.raises(ValueError, match=rf"{bad}:2: invalid UTF-8 at byte 6 of the line "
                                         r"\(2 such lines in the file\); .*--invalid_utf8=replace"):
        cpd.create_pretraining_data([str(bad)], [str(out)], settings())
    assert not out.exists()
    with caplog.at_level(logging.WARNING):
        summary = cpd.create_pretraining_data([str(bad)], [str(out)],
                                              settings(invalid_utf8="replace"))
    assert f"{bad}: invalid UTF-8 on 2 line(s), first at line 2" in caplog.text
    assert summary["counts"]["documents"] == 2 and summary["counts"]["instances"] > 0


def test_bad_vocab_and_settings_raise_one_line_errors(tmp_path):
    source = corpus_slice(tmp_path, "in.txt", "blake-poems", 50)
    out = [str(tmp_path / "o.tfrecord")]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    with pytest.raises(ValueError, match=r"--vocab_file: .*vocab.txt: vocab lacks .*\[MASK\]"):
        cpd.create_pretraining_data([source], out, cpd.Settings(str(vocab)))
    with pytest.raises(ValueError, match="--vocab_file: no such file"):
        cpd.create_pretraining_data([source], out, cpd.Settings(str(tmp_path / "none.txt")))
    with pytest.raises(ValueError, match="max_seq_length must be >= 5"):
        settings(max_seq_length=4)
    with pytest.raises(ValueError, match="--dupe_factor"):
        cpd.create_pretraining_data([source], out, settings(dupe_factor=0))
    one_document = tmp_path / "one_document.txt"
    one_document.write_text("a line\nand another, with no blank line between\n")
    with pytest.raises(ValueError, match="lower --num_shards or the --output_file count"):
        cpd.create_pretraining_data([str(one_document)], out * 2, settings())
    assert not os.path.exists(out[0])


def test_too_few_predictions_warns(tmp_path, caplog):
    source = corpus_slice(tmp_path, "in.txt", "blake-poems", 80)
    with caplog.at_level(logging.WARNING):
        summary = cpd.create_pretraining_data(
            [source], [str(tmp_path / "o.tfrecord")],
            settings(max_seq_length=128, max_predictions_per_seq=5))
    assert "--max_predictions_per_seq=5 is too small for --masked_lm_prob=0.15" in caplog.text
    assert "sequences of 37+ tokens get only 5 masked tokens" in caplog.text
    assert summary["capped_instance_fraction"] > 0.5


def test_failure_mid_shard_leaves_no_shard(tmp_path, monkeypatch):
    source = corpus_slice(tmp_path, "in.txt", "blake-poems", 80)
    out = str(tmp_path / "o.tfrecord")

    def broken(path, obj):
        raise OSError("disk full")

    monkeypatch.setattr(cpd, "_write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        cpd.create_pretraining_data([source], [out], settings())
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


# --- Command line -----------------------------------------------------------------------------

def sigkill_while_a_shard_is_written(command: list, out, timeout_s: float) -> subprocess.Popen:
    """Starts `python -m <command>` in its own process group and SIGKILLs the whole group as
    soon as a shard temporary appears under `out`; returns the reaped process."""
    import signal
    import time
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    job = subprocess.Popen([sys.executable, "-m", *command], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline and job.poll() is None:
            if os.path.isdir(out) and any(".tfrecord.tmp-" in n for n in os.listdir(out)):
                break
            time.sleep(0.001)
        assert job.poll() is None, "the run ended before a shard was being written"
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    return job


def run_cli(*args, env=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-m", "data_prep.create_pretraining_data", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_cli_with_the_tiny_flagfile(tmp_path):
    source = corpus_slice(tmp_path, "in.txt", "blake-poems", 200)
    out = tmp_path / "out"
    result = run_cli("--flagfile=flags/create_pretraining_data_tiny.flags",
                     f"--input_file={source}", f"--vocab_file={VOCAB_FILE}",
                     f"--output_dir={out}", "--num_shards=0", "--dupe_factor=1",
                     "--num_workers=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(out)) == [
        "pretraining_data-00000-of-00001.tfrecord",
        "pretraining_data-00000-of-00001.tfrecord.manifest.json", "summary.json"]
    with open(out / "summary.json") as f:
        assert json.load(f)["counts"]["instances"] > 0

    bad = run_cli(f"--input_file={tmp_path}/missing*.txt", f"--vocab_file={VOCAB_FILE}",
                  f"--output_dir={out}")
    assert bad.returncode != 0
    assert "--input_file: no file matches" in bad.stderr
    assert "Traceback" not in bad.stderr
    short = run_cli(f"--input_file={source}", f"--vocab_file={VOCAB_FILE}",
                    f"--output_dir={out}", "--max_seq_length=4")
    assert short.returncode != 0
    assert short.stderr.rstrip().endswith("max_seq_length must be >= 5, got 4")


def test_cli_workers_are_forked_with_the_kernels_loaded_and_give_the_same_bytes(
        three_inputs, tmp_path):
    """The command line (no TensorFlow imported) forks its workers from itself after loading
    the kernels once; the shards are those of an in-process one-worker run."""
    s = settings(random_seed=3)
    one = [str(tmp_path / "w1" / f"s{k}.tfrecord") for k in range(3)]
    cpd.create_pretraining_data(three_inputs, one, s, num_workers=1)
    out = tmp_path / "cli"
    result = run_cli(f"--input_file={','.join(three_inputs)}", f"--vocab_file={VOCAB_FILE}",
                     f"--output_dir={out}", "--dupe_factor=2", "--random_seed=3",
                     "--num_workers=2", env={"NUMBA_DEBUG_CACHE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    for k, a in enumerate(one):
        assert read_bytes(a) == read_bytes(out / f"pretraining_data-0000{k}-of-00003.tfrecord")
    log = (result.stdout + result.stderr).splitlines()
    loads = [line for line in log if "instances_compiled._pass" in line
             and ("data loaded" in line or "data saved" in line)]
    assert len(loads) == 1, loads  # in the parent, before forking
    # (a fork server would have loaded record_kernels too: worker_preload warms them up)
    assert not [line for line in log if "record_kernels.put_varints" in line]


def test_resolve_outputs():
    files, summary = create_pretraining_data.resolve_outputs(None, "out", 0, 3, gzip=True)
    assert files == [f"out/pretraining_data-0000{k}-of-00003.tfrecord.gz" for k in range(3)]
    assert summary == "out/summary.json"
    files, summary = create_pretraining_data.resolve_outputs("a.tfrecord,b.tfrecord", None, 0, 5, gzip=False)
    assert files == ["a.tfrecord", "b.tfrecord"] and summary == "a.tfrecord.summary.json"
    with pytest.raises(ValueError, match="give exactly one of --output_file and --output_dir"):
        create_pretraining_data.resolve_outputs("a.tfrecord", "out", 0, 1, False)
    with pytest.raises(ValueError, match="--num_shards=3 disagrees"):
        create_pretraining_data.resolve_outputs("a.tfrecord", None, 3, 5, False)


def test_flagfile_names_the_shipped_corpus():
    with open(os.path.join(REPO, "flags", "create_pretraining_data_tiny.flags")) as f:
        lines = [line.strip() for line in f if line.startswith("--")]
    assert "--input_file=data/corpus_sentences/*.txt" in lines
    assert len(glob.glob(os.path.join(REPO, "data", "corpus_sentences", "*.txt"))) == 5


# --- Raw text -> input format (sentences.py, prepare_corpus.py) -------------------------------

def test_split_sentences_rules():
    split = sentences.split_sentences
    assert split("Mr. Smith met Dr. Watson at St. Paul's. They left.") == [
        "Mr. Smith met Dr. Watson at St. Paul's.", "They left."]
    assert split('"Oh!" said he. "Really?" She nodded... Then G. K. Chesterton left! Why?!') == [
        '"Oh!" said he.', '"Really?"', "She nodded...", "Then G. K. Chesterton left!", "Why?!"]
    assert split("wrapped\n  over   lines. Next one") == ["wrapped over lines.", "Next one"]
    assert split("Ham. To be, or not to be. That is the Question") == [
        "Ham. To be, or not to be.", "That is the Question"]  # speaker labels join
    assert split('He said "Go." Then he went.') == ['He said "Go."', "Then he went."]


def test_headings_start_documents():
    text = ("[A Book by Someone 1900]\n\nChapter 1\n\nFirst para. Two sentences.\n\n"
            "Wrapped para\nover two lines.\n\nCHAPTER II\n\nTHE SECOND TITLE\n\n"
            "Second chapter text.\n\nIV. The Head of Caesar\n\nThird.\n")
    assert sentences.text_to_documents(text) == [
        ["First para.", "Two sentences.", "Wrapped para over two lines."],
        ["Second chapter text."], ["Third."]]
    assert sentences.is_heading(["Scena Secunda."]) and sentences.is_heading(["THE SICK ROSE"])
    assert not sentences.is_heading(['"ELLIOT OF KELLYNCH HALL.'])
    assert not sentences.is_heading(["I know not."])
    long_doc = "\n\n".join(f"Sentence {i}." for i in range(7))
    assert [len(d) for d in sentences.text_to_documents(long_doc, 3)] == [3, 3, 1]
    assert sentences.format_documents([["a.", "b."], ["c."]]) == "a.\nb.\n\nc.\n"


def test_prepare_corpus_reproduces_the_committed_files(tmp_path):
    from data_prep import prepare_corpus
    totals = prepare_corpus.prepare_corpus(os.path.join(REPO, "data", "corpus", "*.txt"),
                                           str(tmp_path))
    assert totals["files"] == 5 and totals["documents"] > 100
    for name in os.listdir(tmp_path):
        assert read_bytes(tmp_path / name) == read_bytes(os.path.join(CORPUS_DIR, name)), name
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]
    with pytest.raises(ValueError, match="--output_dir would overwrite the input"):
        prepare_corpus.prepare_corpus(str(tmp_path / "*.txt"), str(tmp_path))


@pytest.mark.parametrize("tokenizer", cpd.TOKENIZERS)
def test_read_corpus_groups_lines_like_the_input_format(tmp_path, tokenizer):
    """Documents = runs of non-blank lines (a new file starts one); lines that tokenize to
    nothing and documents left empty are dropped; whitespace-only lines are blank."""
    from data_prep.tokenizer import tokenization
    full = tokenization.FullTokenizer(VOCAB_FILE, True)
    first = ("\n\n  \nThe first line.\nSecond, line!\n\x01\x02\n\n\t \n\x03\n\n"
             "Third doc \u2028 here.\r\nCafé\u00a0ß\n  \n\n")
    second = "No newline at the end\nlast"
    paths = [tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "empty.txt"]
    paths[0].write_text(first, encoding="utf-8")
    paths[1].write_text(second, encoding="utf-8")
    paths[2].write_text("", encoding="utf-8")
    stats = {}
    corpus = cpd.read_corpus([str(p) for p in paths],
                             cpd.batch_tokenizer(tokenizer, VOCAB_FILE, True), stats)
    expected = []
    for text in (first, second):
        document = []
        for line in text.split("\n") + [""]:
            if line.strip():
                ids = full.convert_tokens_to_ids(full.tokenize(line.strip()))
                if ids:
                    document.append(ids)
            elif document:
                expected.append(document)
                document = []
    assert corpus.documents() == expected
    assert len(expected) == 3
    assert corpus.tokens.dtype == np.int32
    assert stats == {"files": 3, "input_bytes": sum(len(p.read_bytes()) for p in paths),
                     "lines": 8}
    empty = cpd.read_corpus([str(paths[2])], cpd.batch_tokenizer(tokenizer, VOCAB_FILE, True))
    assert empty.documents() == [] and empty.tokens.size == 0


@pytest.mark.parametrize("block_bytes", [1, 5, 17, 64])
def test_reading_in_blocks_gives_the_whole_file_reading(tmp_path, monkeypatch, caplog,
                                                        block_bytes):
    """read_text_blocks' pieces join to the decoded file, and read_corpus gives the same
    corpus, statistics and invalid-UTF-8 messages (file line numbers) with any block size:
    documents and lines run on across blocks."""
    import functools
    text = ("\n\nFirst doc, line one.\nLine two is longer than a block.\n\nSecond \xff doc."
            "\r\nIts second line\n\n\n  \nThird\nand \xc3 last").encode("latin-1")
    text = text.replace(b"\xc3", b"\xc3\xa9").replace(b"\xff", b"\xff\xfe")  # é, bad
    path = tmp_path / "a.txt"
    path.write_bytes(text)
    whole = text_files.decode_text(text, str(path), "replace")
    with caplog.at_level(logging.WARNING):
        pieces = list(text_files.read_text_blocks(str(path), "replace", block_bytes))
    assert "\n".join(pieces) == whole
    assert f"{path}: invalid UTF-8 on 1 line(s), first at line 6" in caplog.text
    with pytest.raises(ValueError, match=rf"{path}:6: invalid UTF-8 at byte 7 of the line"):
        list(text_files.read_text_blocks(str(path), "error", block_bytes))
    tokenizer = cpd.batch_tokenizer("python", VOCAB_FILE, True)
    expected_stats = {}
    expected = cpd.read_corpus([str(path)], tokenizer, expected_stats, "replace")
    monkeypatch.setattr(text_files, "read_text_blocks", functools.partial(
        text_files.read_text_blocks, block_bytes=block_bytes))
    stats = {}
    corpus = cpd.read_corpus([str(path), str(path)], tokenizer, stats, "replace")
    assert corpus.documents() == expected.documents() * 2
    assert len(expected.documents()) == 3
    assert stats == {key: 2 * value for key, value in expected_stats.items()}
    (tmp_path / "empty.txt").write_bytes(b"")
    assert list(text_files.read_text_blocks(str(tmp_path / "empty.txt"))) == [""]


def test_records_are_written_while_the_shard_is_encoded(tmp_path, monkeypatch):
    """A shard's records go to its temporary file chunk by chunk, not held until the end."""
    from data_prep.pretraining import records
    source = corpus_slice(tmp_path, "in.txt", "blake-poems", 300)
    out = tmp_path / "o.tfrecord"
    seen = []
    encode = records.encode

    def spying_encode(*args, **kwargs):
        seen.append(sum(os.path.getsize(p) for p in glob.glob(f"{out}.tmp-*")))
        return encode(*args, **kwargs)

    monkeypatch.setattr(records, "encode", spying_encode)
    monkeypatch.setattr(cpd, "_ENCODE_BATCH", 16)
    summary = cpd.create_pretraining_data([source], [str(out)], settings())
    assert len(seen) == -(-summary["counts"]["instances"] // 16) > 10
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] > 0.8 * out.stat().st_size
    assert not glob.glob(f"{out}.tmp-*")


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_zombie_writer_counts_as_dead(tmp_path):
    # A SIGKILLed worker whose parent died too lingers as a zombie where PID 1 does not reap
    # (a container's init): its temporary is still litter.
    import socket
    import time
    from data_prep.files import atomic_io
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(500):  # exited but not waited for: a zombie
            with open(f"/proc/{child.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        target = str(tmp_path / "s.tfrecord")
        stale = f"{target}.tmp-{socket.gethostname()}-{child.pid}-0123abcd"
        with open(stale, "wb") as f:
            f.write(b"partial")
        assert atomic_io.remove_stale_temporaries(target) == [stale]
    finally:
        child.wait()


def test_rerun_removes_temporaries_of_killed_writers(three_inputs, tmp_path):
    import socket
    s = settings(random_seed=3)
    outs = [str(tmp_path / "out" / f"s{k}.tfrecord") for k in range(3)]
    os.makedirs(tmp_path / "out")
    host = socket.gethostname()
    dead = f"{outs[1]}.tmp-{host}-{_dead_pid()}-0123abcd"  # what a SIGKILLed writer leaves
    live = f"{outs[1]}.tmp-{host}-{os.getpid()}-4567cdef"  # a writer still running
    remote = f"{outs[1]}.tmp-elsewhere-{_dead_pid()}-89abcdef"  # another host's: unknowable
    for path in (dead, live, remote):
        with open(path, "wb") as f:
            f.write(b"partial")
    cpd.create_pretraining_data(three_inputs, outs, s)
    assert not os.path.exists(dead)
    assert os.path.exists(live) and os.path.exists(remote)
    assert all(os.path.getsize(p) > 0 for p in outs)


def test_sigkill_mid_shard_then_rerun_gives_the_uninterrupted_bytes(tmp_path):
    """A real SIGKILL of the whole process group (main and workers) while a shard is being
    written: no final name holds a partial shard, and the rerun leaves no temporary and
    writes exactly the bytes of a run that was never killed."""
    import signal
    args = [f"--input_file={CORPUS_DIR}/*.txt", f"--vocab_file={VOCAB_FILE}",
            "--num_shards=3", "--num_workers=2", "--dupe_factor=4", "--random_seed=5"]
    whole = run_cli(*args, f"--output_dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-2000:]
    expected = {os.path.basename(p): read_bytes(p)
                for p in glob.glob(str(tmp_path / "whole" / "*.tfrecord"))}
    assert len(expected) == 3

    out = tmp_path / "killed"
    job = sigkill_while_a_shard_is_written(
        ["data_prep.create_pretraining_data", *args, f"--output_dir={out}"], out, 120)
    assert job.returncode == -signal.SIGKILL
    assert glob.glob(str(out / "*.tfrecord.tmp-*")), "the kill left no temporary to clean"
    for path in glob.glob(str(out / "*.tfrecord")):  # what a final name holds is complete
        assert read_bytes(path) == expected[os.path.basename(path)], path

    rerun = run_cli(*args, f"--output_dir={out}")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert not glob.glob(str(out / "*.tmp-*")), os.listdir(out)
    assert {os.path.basename(p): read_bytes(p)
            for p in glob.glob(str(out / "*.tfrecord"))} == expected
