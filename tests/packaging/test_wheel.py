"""The wheel and sdist hold what a user needs, and the wheel installs beside a torch the user already has.

Builds both with `python -m build --no-isolation` (no network: setuptools comes from .venv), then makes a fresh
virtual environment that holds only torch, installs the wheel into it and checks that torch was left alone, that
the `sparselearning` command and `import sparselearning` work from a folder outside the repository, and that a
short training run there writes its summary. Installing the wheel's other dependencies (Hydra, numpy,
matplotlib, TensorBoard) needs the package index, or pip's cache of it. Every install passes
`-c constraints.txt`, so pip can never fetch a different torch (an unpinned one is a multi-GB CUDA build).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sparselearning._version import __version__
from tests.train.conftest import SMALL

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"
CONFIGS = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "sparselearning" / "conf").rglob("*.yaml"))
PINNED_TORCH = "torch==2.13.0"


def run(command: list[str | Path], cwd: Path | None = None) -> str:
    """Run a command outside the repository's Python setup; return its output, or fail showing it."""
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=environment, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The sdist, and the wheel built from it, as `python -m build` makes them."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT])
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(path.name for path in out.iterdir())
    return Built(wheel=wheels[0], sdist=sdists[0])


def wheel_file(built: Built, name: str) -> str:
    """A file of the wheel's .dist-info folder, as text."""
    with zipfile.ZipFile(built.wheel) as wheel:
        return wheel.read(f"sparselearning-{__version__}.dist-info/{name}").decode()


def runtime_requirements(built: Built) -> list[Requirement]:
    """The wheel's Requires-Dist entries that every install gets (not those of the dev extra)."""
    headers = wheel_file(built, "METADATA").split("\n\n")[0].splitlines()
    found = [Requirement(line.removeprefix("Requires-Dist: ")) for line in headers if line.startswith("Requires-Dist:")]
    return [requirement for requirement in found if requirement.marker is None]


def test_wheel_holds_configs_typing_marker_command_and_version(built: Built) -> None:
    assert built.wheel.name == f"sparselearning-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
    assert CONFIGS and set(CONFIGS) <= names
    assert "sparselearning/py.typed" in names
    assert not any(name.startswith("tests/") for name in names)
    assert "sparselearning = sparselearning.cli:main" in wheel_file(built, "entry_points.txt").splitlines()
    assert f"Version: {__version__}" in wheel_file(built, "METADATA").splitlines()


def test_wheel_asks_for_ranges_and_constraints_pin_each_one(built: Built) -> None:
    runtime = {requirement.name: requirement for requirement in runtime_requirements(built)}
    assert str(runtime["torch"].specifier) == ">=2.4"
    assert all(spec.operator not in ("==", "===") for requirement in runtime.values() for spec in requirement.specifier)
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pinned = Requirement(line)
            pins[canonicalize_name(pinned.name)] = pinned
    assert str(pins["torch"]) == PINNED_TORCH
    for name, requirement in runtime.items():
        (pin,) = pins[canonicalize_name(name)].specifier
        assert pin.operator == "==" and requirement.specifier.contains(pin.version), (name, pin)


def test_sdist_holds_configs_and_typing_marker(built: Built) -> None:
    top = f"sparselearning-{__version__}"
    with tarfile.open(built.sdist) as sdist:
        names = set(sdist.getnames())
    assert {f"{top}/{name}" for name in CONFIGS} <= names
    assert {f"{top}/sparselearning/py.typed", f"{top}/pyproject.toml"} <= names


@dataclass(frozen=True)
class Environment:
    python: Path
    command: Path
    site_packages: Path
    torch_before: tuple[str, Path, int, int, int]
    install_log: str


def torch_fingerprint(site_packages: Path) -> tuple[str, Path, int, int, int]:
    """torch's version, and the path, inode and times of its __init__.py: a reinstall changes at least one."""
    (distribution,) = [found for found in metadata.distributions(path=[str(site_packages)]) if found.name == "torch"]
    init = site_packages / "torch" / "__init__.py"
    status = init.stat()
    return distribution.version, init, status.st_ino, status.st_mtime_ns, status.st_ctime_ns


@pytest.fixture(scope="module")
def environment(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Environment:
    """A fresh virtual environment that held torch (only) before the wheel was installed into it."""
    folder = tmp_path_factory.mktemp("user-env")
    run([sys.executable, "-m", "venv", "--without-pip", folder])
    python = folder / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--no-compile", "-c", CONSTRAINTS]
    run([*pip, PINNED_TORCH])
    (site_packages,) = folder.glob("lib/python3*/site-packages")
    before = torch_fingerprint(site_packages)
    log = run([*pip, built.wheel])
    return Environment(python, folder / "bin" / "sparselearning", site_packages, before, log)


@pytest.mark.slow
def test_installing_the_wheel_keeps_the_torch_already_there(environment: Environment) -> None:
    installed = [line for line in environment.install_log.splitlines() if line.startswith("Successfully installed")]
    assert installed and f"sparselearning-{__version__}" in installed[0]
    assert "torch-" not in installed[0]
    assert torch_fingerprint(environment.site_packages) == environment.torch_before


@pytest.mark.slow
def test_command_and_import_work_from_outside_the_repository(environment: Environment, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run([environment.command, "--version"], cwd=elsewhere).strip() == f"sparselearning {__version__}"
    where = run([environment.python, "-c", "import sparselearning; print(sparselearning.__file__)"], cwd=elsewhere)
    assert Path(where.strip()).is_relative_to(environment.site_packages)

    run_dir = tmp_path / "run"
    run([environment.command, "train", *SMALL, f"hydra.run.dir={run_dir}"], cwd=elsewhere)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["dataset"], summary["epochs"], summary["density"]) == ("Synthetic", 1, 0.05)
    assert not (elsewhere / "outputs").exists()
