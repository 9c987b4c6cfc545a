"""main_job --work_dir: every stage reads and writes under it, not under runs/demo."""
import os

from bert_tf import main_job
from tests.conftest import REPO_ROOT


def test_stage_flagfiles_move_every_runs_demo_path(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    work = str(tmp_path / "work")
    for _, _, flagfile in main_job.STAGES:
        assert main_job.stage_flagfile(flagfile, "runs/demo") == flagfile
        moved = main_job.stage_flagfile(flagfile, work)
        assert moved == os.path.join(work, "flags", os.path.basename(flagfile))
        flag_lines = [line for line in open(moved) if line.startswith("--")]
        original = [line for line in open(flagfile) if line.startswith("--")]
        assert len(flag_lines) == len(original)
        assert not any("runs/demo" in line for line in flag_lines), flagfile
        assert [line.replace(work, "runs/demo") for line in flag_lines] == original
