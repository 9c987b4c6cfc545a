"""The benchmark scripts run and print their columns (smoke tests: no timing is asserted)."""
import pytest

from benchmarks import bench_gemm, bench_pretraining


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
