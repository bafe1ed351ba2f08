"""The console command with Hydra's own flags: --cfg job, --help and -m sweeps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.train.conftest import SMALL


def _run(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sparselearning", *arguments], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_cfg_job_prints_the_composed_config(tmp_path: Path) -> None:
    result = _run(["train", "masking=SET", "masking.density=0.1", "--cfg", "job"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "name: SET" in result.stdout and "density: 0.1" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_sweep_over_densities_writes_one_run_each(tmp_path: Path) -> None:
    result = _run(
        ["train", "-m", *SMALL, "masking.density=0.05,0.1", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    summaries = sorted((tmp_path / "sweep").glob("**/summary.json"))
    assert len(summaries) == 2
    densities = sorted(json.loads(path.read_text())["density"] for path in summaries)
    assert [round(d, 3) for d in densities] == [0.05, 0.1]


def test_default_run_directory_and_results_table(tmp_path: Path) -> None:
    result = _run(["train", *SMALL], tmp_path)
    assert result.returncode == 0, result.stderr
    density_dir = tmp_path / "runs" / "Synthetic" / "lenet300-100" / "RigL" / "density_0.05"
    (run_dir,) = density_dir.iterdir()  # seed_0-<hash of the other identity settings>
    assert run_dir.name.startswith("seed_0-") and len(run_dir.name) == len("seed_0-") + 8
    assert (run_dir / "summary.json").exists()
    assert "test accuracy" in result.stdout and str(run_dir) in result.stdout
