"""data_prep.pretraining.input_spans and --max_shard_mb: large files cut at document breaks,
read back as exactly the file's documents, with bounded shards."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_prep.files import text_files
from data_prep.pretraining import input_spans, instances as inst, shards as cpd
from data_prep.pretraining.input_spans import InputSpan

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB_FILE = os.path.join(REPO, "tests", "data", "vocab_uncased.txt")
BOOK = os.path.join(REPO, "data", "corpus_sentences", "shakespeare-hamlet.txt")


def book_bytes(num_lines=1500):
    with open(BOOK, "rb") as f:
        return b"\n".join(f.read().split(b"\n")[:num_lines]) + b"\n"


def write(tmp_path, name, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def span_bytes(span: InputSpan) -> bytes:
    with open(span.path, "rb") as f:
        data = f.read()
    return data[span.start:span.end]


@pytest.mark.parametrize("pieces", [2, 3, 7, 40])
def test_split_file_cuts_after_blank_lines_and_covers_the_file(tmp_path, pieces):
    # Blank lines of all kinds the reader treats as blank: empty, spaces, "\r", U+3000.
    data = book_bytes().replace(b"\n\n", b"\n \r\n", 3).replace(b"\n\n", "\n\u3000\n".encode(), 2)
    path = write(tmp_path, "book.txt", data)
    spans = input_spans.split_file(path, pieces)
    assert 1 < len(spans) <= pieces
    assert b"".join(span_bytes(s) for s in spans) == data
    assert spans[0].start == 0 and spans[-1].end == len(data)
    for before, span in zip(spans, spans[1:]):
        assert before.end == span.start
        assert data[span.start - 1:span.start] == b"\n"
        previous_line = data[:span.start - 1].rsplit(b"\n", 1)[-1]
        assert not previous_line.decode().strip(), (span, previous_line)
    sizes = [s.size() for s in spans]
    assert max(sizes) < 2.5 * len(data) / len(spans)  # near-equal, to a document


def test_a_file_without_document_breaks_stays_whole(tmp_path):
    path = write(tmp_path, "one_doc.txt", b"".join(b"line %d\n" % k for k in range(500)))
    assert input_spans.split_file(path, 4) == [InputSpan(path)]
    assert input_spans.plan_spans([path], 100) == [InputSpan(path)]


def test_plan_spans_bounds_the_pieces_and_makes_enough_for_the_shards(tmp_path):
    big = write(tmp_path, "big.txt", book_bytes())
    small = write(tmp_path, "small.txt", book_bytes(200))
    size = os.path.getsize(big)
    spans = input_spans.plan_spans([big, small], size // 4)
    assert [s.path for s in spans] == [big] * 4 + [small]
    assert spans[-1] == InputSpan(small)  # under the limit: whole
    assert input_spans.plan_spans([big, small], 0) == [InputSpan(big), InputSpan(small)]
    # More shards than files: cut, near-equal in bytes, even with no size limit.
    spans = input_spans.plan_spans([big], 0, num_shards=3)
    assert len(spans) == 3 and all(s.size() < size / 2 for s in spans)
    # The command counts the spans of the default plan to name the shards; planning again
    # with that shard count must make the same spans.
    for limit in (size // 3, size // 4 + 1, size // 7, os.path.getsize(small) // 2):
        default = input_spans.plan_spans([big, small], limit)
        assert input_spans.plan_spans([big, small], limit, len(default)) == default, limit


def test_read_corpus_of_the_spans_is_that_of_the_file(tmp_path):
    path = write(tmp_path, "book.txt", book_bytes())
    tokenizer = cpd.batch_tokenizer("python", VOCAB_FILE, True)
    stats_whole, stats_spans = {}, {}
    whole = cpd.read_corpus([path], tokenizer, stats_whole)
    spans = input_spans.split_file(path, 5)
    assert len(spans) == 5
    pieces = cpd.read_corpus(spans, tokenizer, stats_spans)
    for name in ("tokens", "seg_cum", "doc_start", "doc_end"):
        np.testing.assert_array_equal(getattr(pieces, name), getattr(whole, name))
    assert stats_spans == stats_whole  # one file, its bytes and lines, counted once


def test_invalid_utf8_in_a_span_names_the_files_line(tmp_path, caplog):
    lines = book_bytes(400).split(b"\n")
    lines[300] = b"bad \xff byte"
    path = write(tmp_path, "bad.txt", b"\n".join(lines))
    span = [s for s in input_spans.split_file(path, 3) if s.start > 0][-1]
    with open(path, "rb") as f:
        first_line = f.read()[:span.start].count(b"\n") + 1
    assert first_line <= 301
    with pytest.raises(ValueError, match=r"bad\.txt:301: invalid UTF-8 at byte 4"):
        list(text_files.read_text_blocks(path, "error", 64, span.start, span.end))
    text = "\n".join(text_files.read_text_blocks(path, "replace", 64, span.start, span.end))
    assert text == span_bytes(span).decode("utf-8", errors="replace")
    assert "invalid UTF-8 on 1 line(s), first at line 301" in caplog.text


def settings(**kwargs):
    return cpd.Settings(VOCAB_FILE, options=inst.InstanceOptions(), dupe_factor=2, **kwargs)


def test_max_shard_mb_cuts_a_large_file_into_bounded_shards(tmp_path):
    path = write(tmp_path, "book.txt", book_bytes())
    limit_mb = os.path.getsize(path) / 2.9 / 1e6
    spans = cpd.plan_inputs([path], settings(max_shard_mb=limit_mb))
    assert len(spans) == 3
    outputs = [str(tmp_path / f"out-{k}.tfrecord") for k in range(3)]
    summary = cpd.create_pretraining_data([path], outputs, settings(max_shard_mb=limit_mb))
    whole = cpd.create_pretraining_data([path], [str(tmp_path / "whole.tfrecord")],
                                        settings(max_shard_mb=0))
    for key in ("files", "input_bytes", "lines", "documents", "input_tokens"):
        assert summary["counts"][key] == whole["counts"][key], key
    assert summary["shards"] == 3 and summary["counts"]["files"] == 1
    for k, span in enumerate(spans):
        with open(outputs[k] + ".manifest.json", encoding="utf-8") as f:
            manifest = json.load(f)
        assert manifest["input_files"] == [span.describe()]
        assert "(bytes " in span.describe()
        assert manifest["counts"]["input_bytes"] <= limit_mb * 1e6 * 1.5
    again = cpd.create_pretraining_data([path], outputs, settings(max_shard_mb=limit_mb))
    assert again["shards_skipped"] == 3
    # The whole file as one shard is a shard above the limit: an error naming the flags.
    with pytest.raises(ValueError, match=r"shard 0 would read .* MB .*--max_shard_mb=.*"
                                         r"--num_shards=3 or more"):
        cpd.create_pretraining_data([path], [str(tmp_path / "one.tfrecord")],
                                    settings(max_shard_mb=limit_mb))


def test_more_shards_than_files_cut_the_files(tmp_path):
    path = write(tmp_path, "book.txt", book_bytes())
    outputs = [str(tmp_path / f"out-{k}.tfrecord") for k in range(4)]
    summary = cpd.create_pretraining_data([path], outputs, settings(), num_workers=2)
    assert summary["shards"] == 4 and all(
        os.path.getsize(p) > 0 for p in summary["output_files"])


def run_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "data_prep.create_pretraining_data", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_the_command_writes_one_shard_per_piece(tmp_path):
    path = write(tmp_path, "book.txt", book_bytes(600))
    out = tmp_path / "out"
    limit = f"--max_shard_mb={os.path.getsize(path) / 2.5 / 1e6}"
    result = run_cli(f"--input_file={path}", f"--vocab_file={VOCAB_FILE}", f"--output_dir={out}",
                     "--dupe_factor=1", "--num_workers=1", limit)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p for p in os.listdir(out) if p.endswith(".tfrecord")) == [
        f"pretraining_data-0000{k}-of-00003.tfrecord" for k in range(3)]
    with open(out / "summary.json") as f:
        assert json.load(f)["counts"]["files"] == 1
    one = run_cli(f"--input_file={path}", f"--vocab_file={VOCAB_FILE}",
                  f"--output_file={tmp_path / 'one.tfrecord'}", limit)
    assert one.returncode != 0 and "Traceback" not in one.stderr
    assert "raise --max_shard_mb (0: no limit)" in one.stderr
    bad = run_cli(f"--input_file={path}", f"--vocab_file={VOCAB_FILE}", f"--output_dir={out}",
                  "--max_shard_mb=-1")
    assert bad.returncode != 0
    assert bad.stderr.rstrip().endswith("--max_shard_mb must be >= 0, got -1.0")
