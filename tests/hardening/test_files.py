"""What is unpickled, and what a config can make run.

A scan of the package's source (its syntax tree, so comments and docstrings do not count) pins every way a file
becomes Python objects: `torch.load(..., weights_only=True)` only, and exactly two restricted unpicklers, for
the MNIST and CIFAR archives. Hostile files are then refused at the two places that read user-named files.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import torch

import sparselearning
from tests.hardening.conftest import EarlierRuns, assert_nothing_lost, run_cli, snapshot, train_command

PACKAGE = Path(sparselearning.__file__).resolve().parent
ROOT = PACKAGE.parent
RESTRICTED_UNPICKLERS = {
    ("sparselearning/data/mnist.py", "_NumpyOnlyUnpickler"),
    ("sparselearning/data/cifar.py", "_CifarUnpickler"),
}
PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
HYDRA_INSTANTIATION = {"instantiate", "call", "get_object", "get_class", "get_method", "_locate"}


def _sources() -> dict[str, ast.Module]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20, "the scan found (almost) no source file"
    return {path.relative_to(ROOT).as_posix(): ast.parse(path.read_text(), str(path)) for path in files}


def _dotted(node: ast.AST) -> str:
    """`torch.serialization.load` for the expression `torch.serialization.load`; '' for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _where(name: str, node: ast.AST) -> str:
    return f"{name}:{getattr(node, 'lineno', '?')}"


def torch_loads(sources: dict[str, ast.Module]) -> tuple[list[str], list[str]]:
    """(every torch.load call, those without a literal `weights_only=True`), as `file:line`."""
    calls, offenders = [], []
    for name, tree in sources.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization"):
                offenders += [_where(name, node) for alias in node.names if alias.name == "load"]
            if not isinstance(node, ast.Call) or _dotted(node.func) not in ("torch.load", "torch.serialization.load"):
                continue
            calls.append(_where(name, node))
            flags = [k.value for k in node.keywords if k.arg == "weights_only"]
            if not (len(flags) == 1 and isinstance(flags[0], ast.Constant) and flags[0].value is True):
                offenders.append(_where(name, node))
    return calls, offenders


def unpickling(sources: dict[str, ast.Module]) -> tuple[list[str], set[tuple[str, str]], set[str]]:
    """(plain unpickling calls and imports, Unpickler subclasses that override find_class, files importing a
    pickle-like module)."""
    offenders, unpicklers, importers = [], set(), set()
    for name, tree in sources.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                importers.update(name for alias in node.names if alias.name.split(".")[0] in PICKLE_MODULES)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
                offenders.append(_where(name, node))  # `from pickle import load` would hide the calls below
            elif isinstance(node, ast.Call):
                called = _dotted(node.func)
                if called.split(".")[0] in PICKLE_MODULES and called.split(".")[-1] in ("load", "loads", "Unpickler"):
                    offenders.append(_where(name, node))
                if called in ("numpy.load", "np.load") and any(
                    k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                    for k in node.keywords
                ):  # numpy's default, allow_pickle=False, may be spelt out (data/arrays.py does)
                    offenders.append(_where(name, node))
            elif isinstance(node, ast.ClassDef) and any(_dotted(b) == "pickle.Unpickler" for b in node.bases):
                methods = {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
                if "find_class" in methods:
                    unpicklers.add((name, node.name))
                else:
                    offenders.append(_where(name, node))
    return offenders, unpicklers, importers


def test_every_torch_load_is_weights_only() -> None:
    calls, offenders = torch_loads(_sources())
    assert calls, "no torch.load call found at all: is the scan still looking at the right tree?"
    assert offenders == []


def test_only_the_two_restricted_unpicklers_exist() -> None:
    offenders, unpicklers, importers = unpickling(_sources())
    assert offenders == []
    assert unpicklers == RESTRICTED_UNPICKLERS
    assert importers == {name for name, _ in RESTRICTED_UNPICKLERS}


@pytest.mark.parametrize(
    "source",
    [
        "torch.load(path)",
        "torch.load(path, weights_only=False)",
        "torch.load(path, weights_only=flag)",
        "torch.serialization.load(path)",
        "from torch import load",
        "pickle.load(stream)",
        "pickle.loads(blob)",
        "pickle.Unpickler(stream).load()",
        "from pickle import loads",
        "np.load(path, allow_pickle=True)",
        "class Open(pickle.Unpickler):\n    pass",
    ],
)
def test_the_scans_catch_what_they_forbid(source: str) -> None:
    sources = {"sparselearning/example.py": ast.parse(source)}
    assert torch_loads(sources)[1] or unpickling(sources)[0]


def test_hydra_instantiates_only_the_model() -> None:
    """`model._target_` (sparselearning/train/build.py) and a Custom dataset's `dataset.train/val/test._target_`
    (sparselearning/data/custom.py) are the config keys the package turns into a call."""
    found = set()
    for name, tree in _sources().items():
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Call):
                    called = _dotted(node.func)
                    if called.split(".")[-1] in HYDRA_INSTANTIATION and called.startswith("hydra"):
                        found.add((name, function.name, called))
                    if called in ("eval", "exec", "compile", "__import__"):
                        found.add((name, function.name, called))
    assert found == {
        ("sparselearning/train/build.py", "build_model", "hydra.utils.get_object"),
        ("sparselearning/train/build.py", "build_model", "hydra.utils.instantiate"),
        ("sparselearning/data/custom.py", "_dataset", "hydra.utils.instantiate"),
    }


class _Hostile:
    """Pickles as a call to `open(path, "w")`: unpickling it creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_hostile_checkpoint_is_refused_without_running_it(capsys, earlier_runs: EarlierRuns, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(earlier_runs.rigl, run)
    marker = tmp_path / "ran"
    checkpoint = run / "checkpoints" / "last.pt"
    state = torch.load(checkpoint, weights_only=True)
    torch.save({**state, "payload": _Hostile(marker)}, checkpoint)
    before = snapshot(run)
    assert run_cli(train_command(run)) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot read checkpoint {checkpoint}: Weights only load failed") and (
        error.count("\n") == 1
    )
    assert not marker.exists()
    assert_nothing_lost(before, snapshot(run))


def test_hostile_lottery_mask_file_is_refused_without_running_it(capsys, tmp_path) -> None:
    marker = tmp_path / "ran"
    masks = tmp_path / "masks.pt"
    torch.save({"masks": {"layers.0.weight": _Hostile(marker)}}, masks)
    assert run_cli(train_command(tmp_path / "run", "masking=Lottery", f"masking.lottery_mask_path={masks}")) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot read lottery mask file {masks}: Weights only load failed")
    assert error.count("\n") == 1 and not marker.exists()


@pytest.mark.parametrize("group", ["dataset", "optimizer", "masking", ""])
def test_target_keys_outside_the_model_are_refused_and_never_run(capsys, tmp_path, group: str) -> None:
    """`_target_` under dataset, optimizer, masking or at the top is not a setting: the command refuses it in one
    line before composing (it used to be ignored as plain data), the run directory stays empty and nothing runs."""
    marker = tmp_path / "ran"
    prefix = f"{group}." if group else ""
    overrides = [f"+{prefix}_target_=tests.hardening.models.Probe", f"+{prefix}path={marker}"]
    assert run_cli(train_command(tmp_path / "run", *overrides)) == 2
    error = capsys.readouterr().err
    refusal = f"error: {prefix}_target_ is refused: the only keys that may name code are model._target_, dataset."
    assert error.startswith(refusal) and error.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "run" / "summary.json").exists()


def test_model_target_is_code_but_hydra_blocks_the_obvious(capsys, tmp_path) -> None:
    """`model._target_` calls what it names (NaNAfter and NoWeights come this way); Hydra 1.3.8's target policy
    refuses execution primitives such as os.system before calling them."""
    marker = tmp_path / "ran"
    code = run_cli(train_command(tmp_path / "run", "+model._target_=os.system", f"+model.command=touch {marker}"))
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("error: cannot build model._target_=os.system: Target 'os.system' is")
    assert "Traceback" not in error and not marker.exists()


@pytest.mark.filterwarnings("ignore:Callback Probe:UserWarning")
def test_hydra_callbacks_cannot_run_code(capsys, tmp_path) -> None:
    marker = tmp_path / "ran"
    callback = ["+hydra.callbacks.probe._target_=tests.hardening.models.Probe", f"+hydra.callbacks.probe.path={marker}"]
    code = run_cli(train_command(tmp_path / "run", *callback, "masking.density=0"))
    capsys.readouterr()
    assert code == 2
    assert not marker.exists()
