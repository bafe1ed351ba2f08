"""`sparselearning export RUN_DIR_OR_CHECKPOINT --out FILE`: a training checkpoint to a sparse model file.

A run directory means its `checkpoints/last.pt`. The model is rebuilt from the model registry, by the name
and arguments in the run's configuration (read as plain data: `run_config`), or is the model a Python
caller passes to `export_checkpoint(..., model=...)`; a configuration that names code (`model._target_`)
is refused, with how to export it from Python. The trained weights are loaded (a checkpoint with any
non-finite weight is refused), and the model is exported with the checkpoint's masks.

The file records the input preprocessing the model expects (what its run normalised inputs with: the
checkpoint's "data" record, or the published values of a dataset this project ships; see `preprocessing`).
The file is written under a temporary name beside `--out`, read back with `load_sparse`, and the reloaded
model's outputs are compared with the masked model's on a random batch (`--seed`). Only when the largest
absolute difference is finite and at most `TOLERANCE * max(1, largest |output| of the masked model)` is the
file renamed to `--out`; otherwise nothing is replaced and the command fails. Float32 CSR products differ
from dense ones by summation order only, about 1e-6 relative, so 1e-4 leaves a wide margin while any real
error (a wrong weight or bias, a missing layer) is far above it. `--out` may not be the checkpoint, an
existing file of its run, or a symbolic link (see `output`).

Prints one line: dense and sparse sizes, their ratio and the largest output difference. Bad input (missing
or damaged files, an unwritable or forbidden --out, a failed self-check) prints one `error: ...` line on
stderr and returns 2.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from sparselearning.core import unwrap_model
from sparselearning.errors import SparseLearningError, first_line, print_failure
from sparselearning.export.convert import to_sparse_with_report
from sparselearning.export.loader import load_sparse, stored_size
from sparselearning.export.output import check_output, staged_file
from sparselearning.export.preprocessing import Preprocessing
from sparselearning.export.run_config import data_description, model_spec, read_run_config
from sparselearning.export.serialize import build_model, export_report, save_sparse
from sparselearning.io import safe_load

#: The self-check's allowed output difference, relative to the largest output magnitude (at least 1).
TOLERANCE = 1e-4
#: Values in the random batch (--batch-size x one example) at most.
MAX_BATCH_VALUES = 1 << 28


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


def _checked_checkpoint(checkpoint: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[Any, Any]]:
    """The checkpoint, its model weights (all finite tensors) and its masks, or one error naming the field."""
    state = safe_load(checkpoint, "checkpoint")
    masking_state = state.get("masking") if isinstance(state, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) or not isinstance(masking_state, dict):
        raise SparseLearningError(f"{checkpoint} is not a sparselearning training checkpoint (no model or masking)")
    masks = masking_state.get("masks")
    if not isinstance(masks, dict):
        raise SparseLearningError(f"{checkpoint} holds no masks")
    weights = state["model"]
    for key, value in weights.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor) or value.layout != torch.strided:
            found = f"a {value.layout} tensor" if isinstance(value, torch.Tensor) else type(value).__name__
            raise SparseLearningError(f"model entry {key!r} of {checkpoint} is {found}, not a dense tensor")
        if (value.is_floating_point() or value.is_complex()) and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise SparseLearningError(
                f"weight {key!r} of {checkpoint} is not finite ({bad} NaN or infinite values); export refuses a "
                "diverged model"
            )
    return state, weights, masks


def _check_fit(model: nn.Module, weights: dict[str, torch.Tensor], checkpoint: Path) -> None:
    """Refuse weights that do not fit `model` (which may live on the meta device): names, shapes, and
    floating point where the model has floating point."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(
        key
        for key in set(expected) & set(weights)
        if weights[key].shape != expected[key].shape
        or weights[key].is_floating_point() != expected[key].is_floating_point()
    )
    if missing or unexpected or wrong:
        details = [f"{label} {keys[:5]}" for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        details += [
            f"{key!r} is {weights[key].dtype} {list(weights[key].shape)}, the model's is "
            f"{expected[key].dtype} {list(expected[key].shape)}"
            for key in wrong[:3]
        ]
        raise SparseLearningError(f"the weights in {checkpoint} do not fit the model: {'; '.join(details)}")


def _loaded_model(
    spec: dict[str, Any] | None, model: nn.Module | None, weights: dict[str, torch.Tensor], checkpoint: Path
) -> nn.Module:
    """The dense model with the checkpoint's weights: a copy of `model`, or the registry model of `spec`,
    checked on the meta device first so a configuration cannot make export allocate more than the file holds."""
    if model is not None:
        dense = copy.deepcopy(unwrap_model(model)).cpu()
    else:
        assert spec is not None
        storages, _ = stored_size(weights.values())
        _check_fit(build_model(spec, device="meta", max_modules=4 * storages + 64), weights, checkpoint)
        dense = build_model(spec)
    _check_fit(dense, weights, checkpoint)
    try:
        dense.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        raise SparseLearningError(f"the weights in {checkpoint} do not fit the model: {first_line(error)}") from None
    return dense.eval()


def _dense_outputs(model: nn.Module, inputs: torch.Tensor, checkpoint: Path) -> torch.Tensor:
    """The masked model's outputs on the check batch, which must exist and be finite."""
    try:
        with torch.no_grad():
            outputs = model(inputs).float()
    except Exception as error:  # a model passed in that does not take the configured input shape
        raise SparseLearningError(
            f"the model of {checkpoint} cannot run on a batch of shape {list(inputs.shape)}: {first_line(error)}"
        ) from None
    if not bool(torch.isfinite(outputs).all()):
        raise SparseLearningError(f"the model of {checkpoint} gives non-finite outputs on a random batch")
    return outputs


def _self_check(difference: float | None, scale: float, out: Path) -> None:
    """Fail unless the reloaded file computes what the masked model does (see the module docstring)."""
    allowed = TOLERANCE * max(1.0, scale)
    if difference is None or not math.isfinite(difference) or difference > allowed:
        shown = "nan" if difference is None or math.isnan(difference) else f"{difference:.2e}"
        raise SparseLearningError(
            f"self-check failed: the reloaded sparse model's outputs differ from the masked model's by {shown} "
            f"(allowed {allowed:.2e}); {out} was not written"
        )


def export_checkpoint(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    batch_size: int = 16,
    index_dtype: str = "auto",
    seed: int = 0,
    model: nn.Module | None = None,
    example_input: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Export a training checkpoint (or run directory) to `out`; returns sizes, ratio, output difference and
    `layers`: per masked layer (or tied weight) its name, kind (`csr_linear`, `csr_conv`, `csr_attention`,
    `csr_recurrent`, `bias_only` or `dense`), density, the reason, and the dense and sparse times where they were
    measured.

    :param model: a freshly built model of the run's architecture (it is copied, not modified); needed for
        runs whose model came from `model._target_`. Without it the model is rebuilt from the registry. Its
        file then has no spec, so `load_sparse(out, model)` needs such a model too
    :param example_input: the batch to time layers on and check outputs with, for a model that does not take
        random inputs of the dataset's shape (token ids, say); by default a random batch (`batch_size`, `seed`)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SparseLearningError(f"--batch-size must be a whole number >= 1, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**64:
        raise SparseLearningError(f"--seed must be a whole number in [-2**63, 2**64), got {seed!r}")
    checkpoint, run_dir = resolve_checkpoint(source)
    out = check_output(out, checkpoint, run_dir)
    state, weights, masks = _checked_checkpoint(checkpoint)
    config = read_run_config(state, run_dir, checkpoint)
    info, preprocessing = data_description(state.get("data"), config, checkpoint)
    if batch_size * math.prod(info.input_shape) > MAX_BATCH_VALUES:
        raise SparseLearningError(
            f"--batch-size {batch_size} of {list(info.input_shape)} inputs is over {MAX_BATCH_VALUES} values; "
            "use a smaller one"
        )
    spec = None if model is not None else model_spec(config, info)
    dense = _loaded_model(spec, model, weights, checkpoint)
    if example_input is None:
        inputs = torch.randn(batch_size, *info.input_shape, generator=torch.Generator().manual_seed(seed))
    else:
        inputs = example_input
    scale = float(_dense_outputs(dense, inputs, checkpoint).abs().max())
    sparse, decisions = to_sparse_with_report(dense, masks, example_input=inputs, index_dtype=index_dtype)
    with staged_file(out) as staged:
        save_sparse(sparse, staged, spec=spec, preprocessing=preprocessing)
        reloaded = load_sparse(staged, None if spec is not None else dense)
        try:
            report = export_report(dense, reloaded, inputs=inputs, sparse_path=staged)
        except Exception as error:  # a layer the reloaded model cannot compute with
            sparse_layers = [d.name for d in decisions if d.sparse]
            raise SparseLearningError(
                f"cannot export {checkpoint}: the exported model fails on the check batch ({first_line(error)}); "
                f"sparse layers {sparse_layers[:5]}; {out} was not written"
            ) from None
        _self_check(report.max_abs_diff, scale, out)
    return {
        "checkpoint": str(checkpoint),
        "out": str(out),
        "dense_bytes": report.dense_bytes,
        "sparse_bytes": report.sparse_bytes,
        "ratio": report.ratio,
        "max_abs_diff": report.max_abs_diff,
        "tolerance": TOLERANCE * max(1.0, scale),
        "batch_size": batch_size,
        "sparse_layers": sum(decision.sparse for decision in decisions),
        "dense_layers": sum(not decision.sparse for decision in decisions),
        "layers": [asdict(decision) for decision in decisions],
        "has_spec": spec is not None,
        "preprocessing": None if preprocessing is None else preprocessing.record(),
    }


def layer_line(layer: dict[str, Any]) -> str:
    """One line of the per-layer report: what a masked layer became, its density, why, and the timings."""
    timing = ""
    if layer["dense_ms"] is not None and layer["sparse_ms"] is not None:
        timing = f", dense {layer['dense_ms']:.3f} ms vs sparse {layer['sparse_ms']:.3f} ms"
    return (
        f"  {layer['name'] or '(model)'}: {layer['kind']} at density {layer['density']:.3f} ({layer['reason']}{timing})"
    )


def main(argv: list[str]) -> int:
    """Entry point of `sparselearning export`; returns the exit status (0, or 2 on bad input)."""
    try:
        args = _parser().parse_args(argv)
        result = export_checkpoint(
            args.source, args.out, batch_size=args.batch_size, index_dtype=args.index_dtype, seed=args.seed
        )
    except SparseLearningError as error:
        return print_failure(error)
    except SystemExit as done:  # --help
        return int(done.code or 0)
    note = "" if result["has_spec"] else "; no model spec: load_sparse(path, model) needs a freshly built model"
    if result["preprocessing"] is None:
        note += "; no input preprocessing recorded (model.preprocessing is None)"
    else:
        recorded = Preprocessing.from_record(result["preprocessing"], "export")
        note += f"; input preprocessing recorded: {recorded.describe()}"
    print(
        f"exported {result['checkpoint']} -> {result['out']}: dense {result['dense_bytes']} bytes, "
        f"sparse {result['sparse_bytes']} bytes, ratio {result['ratio']:.3f} "
        f"({result['sparse_layers']} sparse / {result['dense_layers']} dense masked layers), "
        f"max abs output difference {result['max_abs_diff']:.2e} on a random batch of {result['batch_size']}{note}"
    )
    for layer in result["layers"]:
        print(layer_line(layer))
    return 0
