"""`sparselearning export RUN_DIR_OR_CHECKPOINT --out FILE`: a training checkpoint to a sparse model file.

A run directory means its `checkpoints/last.pt`. The checkpoint carries the run's configuration (its
"config" entry; the run directory's `config.yaml` otherwise), from which the model is rebuilt, loaded with
the trained weights and exported with the checkpoint's masks. The written file is then read back, and the
reloaded model's outputs are compared with the masked model's on a random batch.

Prints one line: dense and sparse sizes, their ratio and the largest output difference. Bad input (missing
or damaged files, an unwritable --out) prints one `error: ...` line on stderr and returns 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from sparselearning.errors import SparseLearningError
from sparselearning.export.convert import to_sparse_with_report
from sparselearning.export.loader import load_sparse
from sparselearning.export.serialize import build_model as build_from_spec
from sparselearning.export.serialize import export_report, save_sparse
from sparselearning.io import blocking_ancestor, safe_load

# The shape and class count of each dataset, without loading it (Synthetic reads its own config).
_DATASETS = {
    "MNIST": (10, (1, 28, 28)),
    "FashionMNIST": (10, (1, 28, 28)),
    "CIFAR10": (10, (3, 32, 32)),
    "CIFAR100": (100, (3, 32, 32)),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one SparseLearningError instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise SparseLearningError(f"export: {message} (usage: sparselearning export RUN_OR_CHECKPOINT --out FILE)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sparselearning export", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a run directory (uses checkpoints/last.pt) or a checkpoint file")
    parser.add_argument("--out", required=True, help="the sparse model file to write")
    parser.add_argument("--batch-size", type=int, default=16, help="random batch for timing and the output check")
    parser.add_argument("--index-dtype", choices=("auto", "int32", "int64"), default="auto")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random batch")
    return parser


def resolve_checkpoint(source: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """The checkpoint file and the run directory (None for a bare file) of a command-line source."""
    path = Path(source)
    if path.is_dir():
        checkpoint = path / "checkpoints" / "last.pt"
        if not checkpoint.is_file():
            raise SparseLearningError(f"{path} is a directory without checkpoints/last.pt; is it a training run?")
        return checkpoint, path
    if not path.exists():
        raise SparseLearningError(f"no run directory or checkpoint at {path}")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    return path, run_dir


def _config(state: dict[str, Any], run_dir: Path | None, checkpoint: Path):
    from omegaconf import OmegaConf

    text = state.get("config")
    if not isinstance(text, str) and run_dir is not None and (run_dir / "config.yaml").is_file():
        text = (run_dir / "config.yaml").read_text()
    if not isinstance(text, str):
        raise SparseLearningError(f"{checkpoint} has no run configuration and no config.yaml sits beside its run")
    try:
        cfg = OmegaConf.create(text)
        for key in ("model.name", "dataset.name", "masking.name"):
            if OmegaConf.select(cfg, key) is None and not (key == "model.name" and "_target_" in cfg.model):
                raise SparseLearningError(f"the run configuration of {checkpoint} has no {key}")
    except SparseLearningError:
        raise
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SparseLearningError(f"cannot read the run configuration of {checkpoint}: {reason}") from None
    return cfg


def dataset_info(cfg: Any):
    """The `DatasetInfo` a model needs (classes, input shape) from a run configuration, loading no data."""
    from sparselearning.data.registry import DatasetInfo

    name = str(cfg.dataset.name)
    if name == "Synthetic":
        num_classes, shape = int(cfg.dataset.num_classes), tuple(int(v) for v in cfg.dataset.shape)
    elif name in _DATASETS:
        num_classes, shape = _DATASETS[name]
    else:
        raise SparseLearningError(f"unknown dataset {name!r} in the run configuration")
    channels = shape[0]
    return DatasetInfo(name, num_classes, shape, (0.0,) * channels, (1.0,) * channels, augment=False)


def model_spec(cfg: Any, info: Any) -> dict[str, Any] | None:
    """The registry name and keyword arguments that rebuild the run's model (what `build_model` passes)."""
    from omegaconf import OmegaConf

    from sparselearning.train.build import registry_model_arguments

    if OmegaConf.select(cfg, "model._target_") is not None:
        return None
    name, kwargs = registry_model_arguments(cfg, info)
    return {"name": name, "kwargs": kwargs}


def check_writable(out: str | os.PathLike[str]) -> Path:
    """Fail before any work when `out` cannot be written: a directory, or under a file or a read-only folder."""
    target = Path(out)
    if target.is_dir():
        raise SparseLearningError(f"cannot write {target}: it is a directory")
    blocker = blocking_ancestor(target.parent)
    if blocker is not None:
        raise SparseLearningError(f"cannot write {target}: {blocker} is not a writable directory")
    return target


def _same_architecture(first: nn.Module, second: nn.Module) -> bool:
    shapes = [{key: tuple(value.shape) for key, value in m.state_dict().items()} for m in (first, second)]
    return shapes[0] == shapes[1]


def export_checkpoint(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    batch_size: int = 16,
    index_dtype: str = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """Export a training checkpoint (or run directory) to `out`; returns sizes, ratio and output difference."""
    from sparselearning.train.build import build_model

    if batch_size < 1:
        raise SparseLearningError(f"--batch-size must be at least 1, got {batch_size}")
    out = check_writable(out)
    checkpoint, run_dir = resolve_checkpoint(source)
    state = safe_load(checkpoint, "checkpoint")
    masking_state = state.get("masking") if isinstance(state, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) or not isinstance(masking_state, dict):
        raise SparseLearningError(f"{checkpoint} is not a sparselearning training checkpoint (no model or masking)")
    masks = masking_state.get("masks")
    if not isinstance(masks, dict):
        raise SparseLearningError(f"{checkpoint} holds no masks")
    cfg = _config(state, run_dir, checkpoint)
    try:
        info = dataset_info(cfg)
        dense = build_model(cfg, info)
    except SparseLearningError:
        raise
    except Exception as error:  # a config that loads but does not describe a buildable model
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SparseLearningError(f"cannot rebuild the model of {checkpoint} from its config: {reason}") from None
    try:
        dense.load_state_dict(state["model"])
    except (RuntimeError, KeyError, ValueError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SparseLearningError(f"the weights in {checkpoint} do not fit its configured model: {first}") from None
    dense.eval()
    spec = model_spec(cfg, info)
    if spec is not None and not _same_architecture(dense, build_from_spec(spec)):
        spec = None
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch_size, *info.input_shape, generator=generator)
    sparse, decisions = to_sparse_with_report(dense, masks, example_input=inputs, index_dtype=index_dtype)
    save_sparse(sparse, out, spec=spec)
    reloaded = load_sparse(out, None if spec is not None else dense)
    report = export_report(dense, reloaded, inputs=inputs, sparse_path=out)
    kinds = [decision.kind for decision in decisions]
    return {
        "checkpoint": str(checkpoint),
        "out": str(out),
        "dense_bytes": report.dense_bytes,
        "sparse_bytes": report.sparse_bytes,
        "ratio": report.ratio,
        "max_abs_diff": report.max_abs_diff,
        "batch_size": batch_size,
        "sparse_layers": sum(kind in ("csr_linear", "csr_conv", "bias_only") for kind in kinds),
        "dense_layers": sum(kind == "dense" for kind in kinds),
        "has_spec": spec is not None,
    }


def main(argv: list[str]) -> int:
    """Entry point of `sparselearning export`; returns the exit status (0, or 2 on bad input)."""
    try:
        args = _parser().parse_args(argv)
        result = export_checkpoint(
            args.source, args.out, batch_size=args.batch_size, index_dtype=args.index_dtype, seed=args.seed
        )
    except SparseLearningError as error:
        if os.environ.get("SPARSELEARNING_TRACEBACK"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help
        return int(done.code or 0)
    note = "" if result["has_spec"] else "; no model spec: load_sparse(path, model) needs a freshly built model"
    print(
        f"exported {result['checkpoint']} -> {result['out']}: dense {result['dense_bytes']} bytes, "
        f"sparse {result['sparse_bytes']} bytes, ratio {result['ratio']:.3f} "
        f"({result['sparse_layers']} sparse / {result['dense_layers']} dense masked layers), "
        f"max abs output difference {result['max_abs_diff']:.2e} on a random batch of {result['batch_size']}{note}"
    )
    return 0
