"""data_prep.beam_pipeline on Beam's DirectRunner: the same shards as the local runner, resume,
the summary, and the command line.

Needs Apache Beam (pip install -e ".[test,beam]"); skipped without it. Run only these:
  python -m pytest -m beam
"""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.beam
pytest.importorskip("apache_beam")

from data_prep import beam_pipeline  # noqa: E402
from data_prep.pretraining import shards as cpd  # noqa: E402
from tests.data_prep.test_create_pretraining_data import (  # noqa: E402
    REPO, VOCAB_FILE, corpus_slice, settings)

DIRECT = ["--runner=DirectRunner"]


@pytest.fixture
def three_inputs(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    return [corpus_slice(inputs, "a.txt", "shakespeare-hamlet", 400),
            corpus_slice(inputs, "b.txt", "blake-poems", 300),
            corpus_slice(inputs, "c.txt", "austen-persuasion", 250)]


def shard_files(directory, num_shards=3, gzip=False):
    return [cpd.shard_file_name(str(directory), k, num_shards, gzip) for k in range(num_shards)]


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_same_shards_as_the_local_runner_and_resume(three_inputs, tmp_path):
    s = settings(random_seed=3)
    local, beam = shard_files(tmp_path / "local"), shard_files(tmp_path / "beam")
    expected = cpd.create_pretraining_data(three_inputs, local, s, num_workers=1,
                                           summary_file=str(tmp_path / "local" / "summary.json"))
    summary_file = str(tmp_path / "beam" / "summary.json")
    summary = beam_pipeline.run_pipeline(three_inputs, beam, s, summary_file, DIRECT)

    # Shards: byte for byte the local runner's; manifests: same fingerprints, seeds and counts.
    for a, b in zip(local, beam):
        assert read_bytes(a) == read_bytes(b)
        ma, mb = read_json(cpd.manifest_path(a)), read_json(cpd.manifest_path(b))
        assert (ma["fingerprint"], ma["seed"], ma["counts"]) == (
            mb["fingerprint"], mb["seed"], mb["counts"])
        assert mb["output_file"] == b
    assert [read_json(cpd.manifest_path(b))["seed"] for b in beam] == [3, 4, 5]

    # Summary: what run_pipeline returns is summary.json, with the local summary's contents.
    assert summary == read_json(summary_file)
    assert summary["counts"] == expected["counts"] and summary["counts"]["instances"] > 300
    assert summary["shards"] == 3 and summary["output_files"] == beam
    assert summary["shards_skipped"] == 0 and summary["runner"] == "DirectRunner"
    for key in ("masked_fraction", "mask_split", "random_next_fraction", "settings",
                "short_target_instance_fraction", "capped_instance_fraction"):
        assert summary[key] == expected[key], key
    assert set(summary) - set(expected) == {"runner"}
    assert set(expected) - set(summary) == {"num_workers"}

    # Rerun: every shard is finished -> skipped, files untouched, same counts.
    mtimes = [os.stat(p).st_mtime_ns for p in beam]
    again = beam_pipeline.run_pipeline(three_inputs, beam, s, summary_file, DIRECT)
    assert again["shards_skipped"] == 3 and again["counts"] == expected["counts"]
    assert [os.stat(p).st_mtime_ns for p in beam] == mtimes

    # A lost shard is rebuilt, identically; the others are skipped.
    os.remove(beam[1])
    again = beam_pipeline.run_pipeline(three_inputs, beam, s, summary_file, DIRECT)
    assert again["shards_skipped"] == 2 and again["counts"] == expected["counts"]
    assert read_bytes(beam[1]) == read_bytes(local[1])
    assert [os.stat(p).st_mtime_ns for p in beam[::2]] == mtimes[::2]

    # The runners resume each other's output: the local runner's shards are all finished.
    mtimes = [os.stat(p).st_mtime_ns for p in local]
    crossed = beam_pipeline.run_pipeline(three_inputs, local, s, summary_file, DIRECT)
    assert crossed["shards_skipped"] == 3 and crossed["counts"] == expected["counts"]
    assert [os.stat(p).st_mtime_ns for p in local] == mtimes

    # Other settings do not match the manifests: everything is rebuilt.
    changed = beam_pipeline.run_pipeline(three_inputs, beam, settings(random_seed=4),
                                         summary_file, DIRECT)
    assert changed["shards_skipped"] == 0
    assert read_bytes(beam[0]) != read_bytes(local[0])


def test_bad_settings_and_options_fail_before_any_work(three_inputs, tmp_path):
    out = shard_files(tmp_path / "out")
    summary_file = str(tmp_path / "out" / "summary.json")
    with pytest.raises(ValueError, match="--dupe_factor must be >= 1"):
        beam_pipeline.run_pipeline(three_inputs, out, settings(dupe_factor=0), summary_file,
                                   DIRECT)
    with pytest.raises(ValueError, match=r"unknown Beam pipeline option\(s\): --direct_num_wor"):
        beam_pipeline.run_pipeline(three_inputs, out, settings(), summary_file,
                                   DIRECT + ["--direct_num_workers=2", "--direct_num_worker=2"])
    with pytest.raises(ValueError, match="lower --num_shards or the --output_file count"):
        beam_pipeline.run_pipeline(three_inputs[:2], out, settings(), summary_file, DIRECT)
    assert not os.path.exists(tmp_path / "out")


def run_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "data_prep.beam_pipeline", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_cli_with_the_tiny_flagfile_and_worker_processes(three_inputs, tmp_path):
    """The command line with the local runner's flagfile, Beam options from both a flag and
    after `--`, two DirectRunner worker processes, --rng=vectorized and --gzip."""
    out = tmp_path / "out"
    result = run_cli("--flagfile=flags/create_pretraining_data_tiny.flags",
                     f"--input_file={tmp_path / 'in' / '*.txt'}", f"--vocab_file={VOCAB_FILE}",
                     f"--output_dir={out}", "--num_shards=2", "--dupe_factor=1",
                     "--rng=vectorized", "--gzip",
                     "--beam_pipeline_options=--runner=DirectRunner --direct_num_workers=2",
                     "--", "--direct_running_mode=multi_processing")
    assert result.returncode == 0, result.stderr[-3000:]
    beam = shard_files(out, 2, gzip=True)
    assert sorted(os.listdir(out)) == sorted(
        [os.path.basename(p) for p in beam] + [os.path.basename(cpd.manifest_path(p))
                                               for p in beam] + ["summary.json"])
    local = shard_files(tmp_path / "local", 2, gzip=True)
    expected = cpd.create_pretraining_data(three_inputs, local,
                                           settings(dupe_factor=1, rng="vectorized", gzip=True))
    for a, b in zip(local, beam):
        assert read_bytes(a) == read_bytes(b)
    summary = read_json(out / "summary.json")
    assert summary["counts"] == expected["counts"] and summary["settings"]["rng"] == "vectorized"
    assert summary["shards"] == 2 and summary["shards_skipped"] == 0

    bad = run_cli(f"--input_file={tmp_path / 'in' / '*.txt'}", f"--vocab_file={VOCAB_FILE}",
                  f"--output_dir={tmp_path / 'bad'}", "--", "--direct_num_worker=2")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.rstrip().endswith("unknown Beam pipeline option(s): --direct_num_worker")
    assert not os.path.exists(tmp_path / "bad")


def test_the_package_never_imports_beam_on_its_own():
    code = ("import sys; import data_prep.create_pretraining_data, data_prep.beam_pipeline; "
            "assert 'apache_beam' not in sys.modules, 'imported apache_beam'")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_sigkill_mid_shard_then_rerun_gives_the_uninterrupted_bytes(tmp_path):
    """A real SIGKILL of the launcher and its DirectRunner worker processes (one process
    group) while a shard is being written: no final name holds a partial shard, and the rerun
    writes exactly the shards of a run that was never killed (the local runner's)."""
    import glob
    from tests.data_prep.test_create_pretraining_data import (
        CORPUS_DIR, sigkill_while_a_shard_is_written)
    from tests.data_prep.test_create_pretraining_data import run_cli as run_local_cli
    args = [f"--input_file={CORPUS_DIR}/*.txt", f"--vocab_file={VOCAB_FILE}",
            "--num_shards=3", "--dupe_factor=4", "--random_seed=5"]
    beam_args = ["--", "--runner=DirectRunner", "--direct_num_workers=2",
                 "--direct_running_mode=multi_processing"]
    whole = run_local_cli(*args, f"--output_dir={tmp_path / 'local'}")
    assert whole.returncode == 0, whole.stderr[-2000:]
    expected = {os.path.basename(p): read_bytes(p) for p in shard_files(tmp_path / "local")}

    out = tmp_path / "killed"
    sigkill_while_a_shard_is_written(
        ["data_prep.beam_pipeline", *args, f"--output_dir={out}", *beam_args], out, 240)
    assert glob.glob(str(out / "*.tfrecord.tmp-*")), "the kill left no temporary to clean"
    for path in glob.glob(str(out / "*.tfrecord")):  # what a final name holds is complete
        assert read_bytes(path) == expected[os.path.basename(path)], path

    rerun = run_cli(*args, f"--output_dir={out}", *beam_args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not glob.glob(str(out / "*.tmp-*")), os.listdir(out)
    assert {os.path.basename(p): read_bytes(p)
            for p in glob.glob(str(out / "*.tfrecord"))} == expected
