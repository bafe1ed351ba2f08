"""The torch floor: pyproject.toml's range and the import-time check agree, and an older torch gets one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from sparselearning import _MINIMUM_TORCH, _check_torch_version
from sparselearning.errors import SparseLearningError

ROOT = Path(__file__).resolve().parents[2]


def test_the_check_uses_the_floor_pyproject_asks_for() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert _MINIMUM_TORCH == (2, 4)
    assert [entry for entry in dependencies if entry.startswith("torch")] == ["torch>=2.4"]


@pytest.mark.parametrize("version", ["2.4.0", "2.4.1+cu121", "2.10.0", "2.13.0+cpu", "3.0.0", "2.5.0a0+git1234"])
def test_supported_versions_pass(version: str) -> None:
    _check_torch_version(version)


@pytest.mark.parametrize("version", ["2.3.1", "2.2.2+cpu", "2.3.0a0+gitabc", "1.13.1", "2.0.0"])
def test_older_versions_are_refused_naming_the_floor_and_the_version(version: str) -> None:
    with pytest.raises(SparseLearningError) as refused:
        _check_torch_version(version)
    message = str(refused.value)
    assert message.startswith("sparselearning needs torch >= 2.4 (torch.amp.GradScaler")
    assert message.endswith(f"this environment has torch {version}: upgrade it")
    assert "\n" not in message


def test_an_unparseable_development_version_is_let_through() -> None:
    _check_torch_version("nightly")


def test_importing_the_package_under_an_old_torch_stops_with_the_message() -> None:
    pretend_old = "import torch; torch.__version__ = '2.3.1'; import sparselearning"
    result = subprocess.run([sys.executable, "-c", pretend_old], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "sparselearning.errors.SparseLearningError: sparselearning needs torch >= 2.4 (torch.amp.GradScaler for "
        "mixed precision, FlopCounterMode's per-module counts for FLOPs); this environment has torch 2.3.1: upgrade it"
    )
