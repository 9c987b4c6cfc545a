"""The benchmark scripts run and print their columns (smoke tests: no timing is asserted)."""
import pytest

from benchmarks import bench_finetune, bench_gemm, bench_pretraining, bench_serving


def _table_rows(text: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in text.splitlines() if line.startswith(f"| {first_cell}")]


def test_pretraining_prints_model_tflops_and_mfu_for_one_dtype(capsys):
    assert bench_pretraining.main(["--configs=tiny", "--dtype=float32", "--xla=off",
                                   "--peers=", "--batch=2", "--steps_per_loop=1",
                                   "--repetitions=1", "--peak_tflops=1"]) == 0
    out = capsys.readouterr().out
    header, = _table_rows(out, "config")
    assert header[-2:] == ["model TFLOP/s", "MFU"]
    row, = [r for r in _table_rows(out, "tiny") if r[2] == "ours"]
    tflops, mfu = float(row[-2]), float(row[-1].rstrip("%"))
    # MFU is printed to 0.1 percentage point, model TFLOP/s to 4 significant digits.
    assert tflops > 0 and mfu == pytest.approx(100 * tflops, abs=0.051)


def test_pretraining_refuses_one_peak_for_two_dtypes():
    with pytest.raises(SystemExit):
        # The rest keeps the run short should the check ever be missing.
        bench_pretraining.main(["--dtype=float32,mixed_bfloat16", "--peak_tflops=1",
                                "--configs=tiny", "--xla=off", "--peers=", "--batch=2",
                                "--steps_per_loop=1", "--repetitions=1"])


def test_gemm_prints_a_rate_per_shape_and_library(capsys):
    assert bench_gemm.main(["--repetitions=1"]) == 0
    rows = [r for r in _table_rows(capsys.readouterr().out, "")
            if "x" in r[0] and r[0][0].isdigit()]
    assert [r[0] for r in rows] == [f"{m}x{k}x{n}" for m, k, n in bench_gemm.SHAPES]
    assert all(float(cell) > 0 for r in rows for cell in r[1:]) and all(len(r) == 4 for r in rows)


def test_create_pretraining_data_whole_process_mode_runs_the_original_and_ours():
    # The real original (bert-tensorflow, the bench extra, installed with --no-deps) and ours
    # as separate processes on a 20 KB input; the script itself checks that both wrote the
    # same Examples and that 1 and 2 workers wrote the same records.
    import os
    import subprocess
    import sys
    from importlib import metadata

    try:
        metadata.version("bert-tensorflow")
    except metadata.PackageNotFoundError:
        pytest.skip("bert-tensorflow (bench extra: pip install --no-deps "
                    "bert-tensorflow==1.0.4) is not installed")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, os.path.join(repo, "benchmarks", "bench_create_pretraining_data.py"),
         "--sizes_mb=0.02", "--trials=1", "--startup_kb=0", "--two_workers=on"],
        capture_output=True, text=True, timeout=300, cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "0.02 MB:" in out and "equal as Examples" in out
    assert "1 and 2 workers wrote byte-identical shards" in out
    row, = [r for r in _table_rows(out, "0.02 MB (") if len(r) == 10]
    original = float(row[2])
    assert int(row[1]) > 0 and original > 0 and float(row[5]) > 0 and float(row[8]) > 0


def test_finetune_prints_speed_real_tokens_and_accuracy_per_contender(capsys):
    # Two bert_tf contenders, each in its own process, a few steps of a tiny model on the
    # shipped SST-2 sentences: the table has their rows, and bucketing feeds fewer pads.
    assert bench_finetune.main(["--config=tiny", "--seq=64", "--batch=8", "--train_steps=4",
                                "--warmup_steps=2", "--steps_per_loop=2", "--repetitions=1",
                                "--contenders=ours_bucketed,ours_fixed"]) == 0
    out = capsys.readouterr().out
    rows = {r[0]: r for r in _table_rows(out, "ours_")}
    assert set(rows) == {"ours_bucketed", "ours_fixed"}, out
    for row in rows.values():
        assert float(row[1]) > 0 and float(row[3]) > 0 and 0 <= float(row[-1]) <= 1
    assert float(rows["ours_fixed"][5]) < float(rows["ours_bucketed"][5]) <= 1


def test_serving_keeps_only_short_sentences_when_asked():
    import tensorflow as tf

    from bert_tf.export.savedmodel import PreprocessingModule

    short = bench_serving.load_sentences("sst2", 30, max_wordpieces=12)
    pre = PreprocessingModule(bench_serving.VOCAB_FILE, do_lower_case=True, seq_length=128)
    lengths = pre.tokenize(tf.constant(short)).row_lengths().numpy() + 2
    assert len(set(short)) == 30 and lengths.max() <= 12
    # Without the limit the same draw holds longer sentences, so the filter did something.
    mixed = bench_serving.load_sentences("sst2", 30)
    assert (pre.tokenize(tf.constant(mixed)).row_lengths().numpy() + 2).max() > 12
    with pytest.raises(ValueError, match="sentences, sst2 has [0-9]+ of at most 12 WordPieces"):
        bench_serving.load_sentences("sst2", 10**6, max_wordpieces=12)


def test_serving_times_both_exports_with_the_threads_asked_for():
    # Its own process: thread counts can only be set before TensorFlow runs an op.
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_serving", "--configs=tiny", "--dtype=float32",
         "--text=sst2", "--batch=1", "--calls=2", "--repetitions=1", "--peers=",
         "--contenders=ours/savedmodel,ours/savedmodel-fixed", "--intra_op_threads=1",
         "--inter_op_threads=1", "--max_wordpieces=16"],
        capture_output=True, text=True, timeout=300, cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "threads: intra-op 1, inter-op 1" in out
    rows = {r[3]: r for r in _table_rows(out, "tiny") if len(r) == 9}
    assert set(rows) == {"savedmodel", "savedmodel-fixed"}, out
    assert all(float(r[4]) > 0 for r in rows.values())
