"""Exported (CSR) vs dense inference: LeNet-300-100, a 4096-4096-4096-10 MLP and LeNet-5 at 90-99% sparsity.

    .venv/bin/python -m benchmarks.export_speed            # full run, about two minutes on 2 cores
    .venv/bin/python -m benchmarks.export_speed --smoke    # seconds; what the test suite runs

Each row times the masked dense model and its `to_sparse` export side by side (eval, no_grad, alternating,
medians) at batch 1 and 256. Beside the speed-up stands the memory-bound limit `4 / (bytes_per_nonzero *
density)`: how much faster a kernel that only streams the weights could get by reading 4 + index bytes per
active weight instead of 4 bytes per weight. A second table times CSR products with int32 against int64
indices, the measurement behind `index_dtype="auto"` choosing int32; a third times single convolutions dense
and as `SparseConv2d`, the measurement behind `CONV_DENSITY_THRESHOLD`. A fourth times constant fan-in (SRigL)
masks as the masked dense model, all-CSR, all-`CondensedLinear` and what `to_sparse` picks per layer when timing
on the batch (`--condensed-only` runs just that table).

Targets (issue "Make sparsity pay"): for the 4096 MLP at batch 256, at least 2x at 95% sparsity and 5x at
99%; at batch 1, at least half the memory-bound limit. Condensed (issue "Speed without sparse kernels"), one
thread, batch 1, 90% sparsity: at least 2x dense on a 784-2048-2048-10 MLP, at least 1x on LeNet-300-100.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
from torch import nn

from benchmarks.timing import alternating_medians
from sparselearning.export import export_report, to_sparse
from sparselearning.export.convert import replace_module
from sparselearning.export.layers import CondensedLinear, SparseConv2d, SparseLinear
from sparselearning.models import MLP, LeNet5, LeNet300100

BATCHES = (1, 256)
SPARSITIES = (0.9, 0.95, 0.98, 0.99)


def exact_random_masks(model: nn.Module, density: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """Uniform random masks keeping exactly round(density * n) weights of every Linear/Conv2d weight."""
    generator = torch.Generator().manual_seed(seed)
    masks = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            weight = module.weight
            keep = max(1, round(density * weight.numel()))
            mask = torch.zeros(weight.numel(), dtype=torch.bool)
            mask[torch.randperm(weight.numel(), generator=generator)[:keep]] = True
            masks[f"{name}.weight"] = mask.view(weight.shape)
    return masks


def masked_copy(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """The dense contender: the model with its masks multiplied into the weights, in eval mode."""
    dense = copy.deepcopy(model).eval()
    parameters = dict(dense.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            parameters[name].mul_(mask)
    return dense


def _calls_for(function, target_s: float) -> int:
    function()
    start = time.perf_counter()
    function()
    elapsed = time.perf_counter() - start
    return max(1, min(2000, int(target_s / max(elapsed, 1e-7))))


def _index_bytes(model: nn.Module) -> int:
    layers = [m for m in model.modules() if isinstance(m, SparseLinear)]
    return layers[0].col_indices.element_size() if layers else 4


def measure(
    name: str,
    model: nn.Module,
    input_shape: tuple[int, ...],
    sparsity: float,
    batch: int,
    rounds: int,
    index_dtype: str,
) -> dict[str, object]:
    """One row: dense and exported forward times of `model` at `sparsity` and `batch`."""
    density = 1.0 - sparsity
    masks = exact_random_masks(model, density)
    dense = masked_copy(model, masks)
    inputs = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(1))
    sparse = to_sparse(model, masks, example_input=inputs, index_dtype=index_dtype)
    with torch.no_grad():
        difference = float((dense(inputs) - sparse(inputs)).abs().max())
        calls = _calls_for(lambda: dense(inputs), 0.02)
        medians = alternating_medians({"dense": lambda: dense(inputs), "sparse": lambda: sparse(inputs)}, rounds, calls)
    sizes = export_report(dense, sparse)
    bytes_per_nonzero = 4 + _index_bytes(sparse)
    limit = 4 / (bytes_per_nonzero * density)
    speedup = medians["dense"] / medians["sparse"]
    kinds = sorted({type(m).__name__ for m in sparse.modules() if type(m).__name__ in ("SparseLinear", "SparseConv2d")})
    return {
        "model": name,
        "sparsity": sparsity,
        "batch": batch,
        "dense_ms": medians["dense"] * 1e3,
        "sparse_ms": medians["sparse"] * 1e3,
        "speedup": speedup,
        "limit": limit,
        "of_limit": speedup / limit,
        "max_abs_diff": difference,
        "file_ratio": sizes.ratio,
        "sparse_kinds": "+".join(kinds) or "none",
    }


def index_dtype_rows(size: int, sparsities: tuple[float, ...], rounds: int) -> list[dict[str, object]]:
    """CSR products of a size x size weight with int32 vs int64 indices, at batch 1 (`mv`) and 256 (`addmm`)."""
    rows = []
    generator = torch.Generator().manual_seed(0)
    for sparsity in sparsities:
        weight = torch.randn(size, size, generator=generator)
        weight *= torch.rand(size, size, generator=generator) >= sparsity
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            csr = weight.to_sparse_csr()
            matrices = {
                dtype: torch.sparse_csr_tensor(
                    csr.crow_indices().to(dtype), csr.col_indices().to(dtype), csr.values(), csr.shape
                )
                for dtype in (torch.int32, torch.int64)
            }
        bias = torch.randn(size, 1, generator=generator)
        for batch in BATCHES:
            columns = torch.randn(size, batch, generator=generator)
            # The products SparseLinear runs: matrix-vector for one example, addmm for a batch.
            if batch == 1:
                contenders = {
                    name: lambda m=matrices[dtype], v=columns[:, 0]: torch.mv(m, v)
                    for name, dtype in (("int32", torch.int32), ("int64", torch.int64))
                }
            else:
                contenders = {
                    name: lambda m=matrices[dtype], c=columns, b=bias: torch.addmm(b, m, c)
                    for name, dtype in (("int32", torch.int32), ("int64", torch.int64))
                }
            calls = _calls_for(contenders["int64"], 0.02)
            medians = alternating_medians(contenders, rounds, calls)
            rows.append(
                {
                    "size": size,
                    "sparsity": sparsity,
                    "batch": batch,
                    "int32_ms": medians["int32"] * 1e3,
                    "int64_ms": medians["int64"] * 1e3,
                    "int64_over_int32": medians["int64"] / medians["int32"],
                }
            )
    return rows


# (name, in channels, out channels, kernel, padding, image side) of convolutions from LeNet-5 and WRN-22-2.
CONV_LAYERS = (
    ("LeNet-5 conv1", 1, 20, 5, 0, 28),
    ("LeNet-5 conv2", 20, 50, 5, 0, 12),
    ("WRN-22-2 group 1", 32, 32, 3, 1, 32),
    ("WRN-22-2 group 3", 128, 128, 3, 1, 8),
)


def conv_rows(
    layers: tuple, densities: tuple[float, ...], batches: tuple[int, ...], rounds: int
) -> list[dict[str, object]]:
    """Dense Conv2d vs SparseConv2d (unfold + CSR) per layer, density and batch: the data behind
    `CONV_DENSITY_THRESHOLD` and behind measuring each convolution in `to_sparse`."""
    rows = []
    generator = torch.Generator().manual_seed(0)
    for name, channels_in, channels_out, kernel, padding, side in layers:
        for density in densities:
            conv = nn.Conv2d(channels_in, channels_out, kernel, padding=padding).eval()
            with torch.no_grad():
                conv.weight.mul_(torch.rand(conv.weight.shape, generator=generator) < density)
            sparse = SparseConv2d.from_dense(conv)
            for batch in batches:
                inputs = torch.randn(batch, channels_in, side, side, generator=generator)
                with torch.no_grad():
                    contenders = {"dense": lambda c=conv, x=inputs: c(x), "sparse": lambda c=sparse, x=inputs: c(x)}
                    calls = _calls_for(contenders["dense"], 0.02)
                    medians = alternating_medians(contenders, rounds, calls)
                rows.append(
                    {
                        "layer": name,
                        "density": density,
                        "batch": batch,
                        "conv_dense_ms": medians["dense"] * 1e3,
                        "conv_sparse_ms": medians["sparse"] * 1e3,
                        "conv_speedup": medians["dense"] / medians["sparse"],
                    }
                )
    return rows


def constant_fan_in_masks(model: nn.Module, density: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """Masks keeping round(density * inputs) random inputs of every neuron of every Linear (SRigL's layout)."""
    generator = torch.Generator().manual_seed(seed)
    masks = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            keep = max(1, round(density * module.in_features))
            order = torch.rand(module.weight.shape, generator=generator).argsort(dim=1)[:, :keep]
            masks[f"{name}.weight"] = torch.zeros_like(module.weight, dtype=torch.bool).scatter_(1, order, True)
    return masks


def condensed_rows(cases: list, sparsity: float, batches: tuple[int, ...], rounds: int) -> list[dict[str, object]]:
    """Constant fan-in masks: the masked dense model against all-CSR, all-condensed and `to_sparse`'s measured
    per-layer choice (dense, CSR or condensed), side by side."""
    rows = []
    for name, model, shape in cases:
        masks = constant_fan_in_masks(model, 1.0 - sparsity)
        dense = masked_copy(model, masks)
        condensed = copy.deepcopy(dense)
        for path, module in dense.named_modules():
            if isinstance(module, nn.Linear):
                condensed = replace_module(condensed, path, CondensedLinear.from_dense(module))
        csr = to_sparse(dense, masks)
        for batch in batches:
            inputs = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))
            picked = to_sparse(dense, masks, example_input=inputs)
            contenders = {"dense": dense, "csr": csr, "condensed": condensed, "picked": picked}
            with torch.no_grad():
                reference = dense(inputs)
                difference = max(float((m(inputs) - reference).abs().max()) for m in contenders.values())
                calls = _calls_for(lambda d=dense, x=inputs: d(x), 0.02)
                medians = alternating_medians(
                    {key: (lambda m=m, x=inputs: m(x)) for key, m in contenders.items()}, rounds, calls
                )
            kinds = "+".join(
                type(m).__name__.replace("Linear", "") or "Dense"
                for m in picked.modules()
                if isinstance(m, (nn.Linear, SparseLinear, CondensedLinear))
            )
            row: dict[str, object] = {"cf_model": name, "sparsity": sparsity, "batch": batch}
            row.update({f"{key}_ms": medians[key] * 1e3 for key in contenders})
            row.update({f"{key}_speedup": medians["dense"] / medians[key] for key in ("csr", "condensed", "picked")})
            row.update({"max_abs_diff": difference, "picked_layers": kinds})
            rows.append(row)
    return rows


def _condensed_targets(rows: list[dict[str, object]]) -> list[str]:
    lines = []
    for model, goal in (("MLP 784-2048-2048-10", 2.0), ("LeNet-300-100", 1.0)):
        for row in rows:
            if row["cf_model"] == model and row["batch"] == 1 and row["sparsity"] == 0.9:
                for key in ("condensed", "picked"):
                    speedup = float(row[f"{key}_speedup"])  # type: ignore[arg-type]
                    met = "met" if speedup >= goal else "NOT met"
                    lines.append(f"{model}, batch 1, 90%, {key}: {speedup:.2f}x dense (target >= {goal:.0f}x): {met}")
    return lines


def _print_condensed(rows: list[dict[str, object]], threads: int, rounds: int) -> None:
    print(
        f"\nconstant fan-in masks, threads {threads}, medians of {rounds} alternating rounds; speed-up over the "
        "masked dense model; picked = to_sparse(example_input=batch) per layer"
    )
    print(
        f"{'model':<22} {'sparsity':>8} {'batch':>5} {'dense ms':>9} {'csr':>7} {'condensed':>9} {'picked':>7} "
        f"{'max diff':>9}  picked layers"
    )
    for row in rows:
        print(
            f"{row['cf_model']:<22} {row['sparsity']:>8.0%} {row['batch']:>5} {row['dense_ms']:>9.3f} "
            f"{row['csr_speedup']:>6.2f}x {row['condensed_speedup']:>8.2f}x {row['picked_speedup']:>6.2f}x "
            f"{row['max_abs_diff']:>9.1e}  {row['picked_layers']}"
        )
    for line in _condensed_targets(rows):
        print(line)


def _targets(rows: list[dict[str, object]]) -> list[str]:
    lines = []
    big = {(r["sparsity"], r["batch"]): r for r in rows if str(r["model"]).startswith("MLP 4096")}
    for sparsity, goal in ((0.95, 2.0), (0.99, 5.0)):
        row = big.get((sparsity, 256))
        if row is not None:
            met = "met" if row["speedup"] >= goal else "NOT met"
            lines.append(f"4096 MLP, batch 256, {sparsity:.0%}: {row['speedup']:.2f}x (target >= {goal:.0f}x): {met}")
    for (sparsity, batch), row in sorted(big.items()):
        if batch == 1:
            met = "met" if row["of_limit"] >= 0.5 else "NOT met"
            lines.append(
                f"4096 MLP, batch 1, {sparsity:.0%}: {row['speedup']:.2f}x = {row['of_limit']:.2f} of the "
                f"memory-bound limit {row['limit']:.1f}x (target >= 0.5): {met}"
            )
    return lines


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--models", nargs="+", help="only these models (names as printed, eg 'LeNet-5')")
    parser.add_argument("--no-extras", action="store_true", help="skip the index-dtype and convolution tables")
    parser.add_argument("--index-dtype", choices=("auto", "int32", "int64"), default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default; --smoke: 1)")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument("--condensed-only", action="store_true", help="only the constant fan-in (condensed) table")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    cases: list[tuple[str, nn.Module, tuple[int, ...]]] = [
        ("LeNet-300-100", LeNet300100(), (1, 28, 28)),
        ("MLP 4096-4096-4096-10", MLP([4096, 4096, 4096, 10]), (4096,)),
        ("LeNet-5", LeNet5(), (1, 28, 28)),
    ]
    plan = [(case, sparsity, batch) for case in cases for sparsity in SPARSITIES for batch in BATCHES]
    index_size = 4096
    conv_plan: tuple = (CONV_LAYERS, (0.1, 0.05, 0.01), (1, 64))
    condensed_cases = [cases[0], ("MLP 784-2048-2048-10", MLP([784, 2048, 2048, 10]), (784,))]
    condensed_batches: tuple[int, ...] = (1, 64)
    if args.smoke:
        args.rounds, args.threads, index_size = 2, args.threads or 1, 256
        plan = [(cases[0], 0.9, 1), (cases[0], 0.99, 32), (cases[2], 0.99, 1), (cases[2], 0.9, 32)]
        conv_plan = (CONV_LAYERS[1:2], (0.05,), (1, 4))
        condensed_cases, condensed_batches = [cases[0]], (1, 8)
    if args.models:
        plan = [item for item in plan if item[0][0] in args.models]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or previous_threads)
    if args.condensed_only:
        try:
            fan_in_rows = condensed_rows(condensed_cases, 0.9, condensed_batches, args.rounds)
            threads = torch.get_num_threads()
        finally:
            torch.set_num_threads(previous_threads)
        _print_condensed(fan_in_rows, threads, args.rounds)
        return fan_in_rows
    try:
        fan_in_rows = [] if args.no_extras else condensed_rows(condensed_cases, 0.9, condensed_batches, args.rounds)
        rows = [
            measure(name, model, shape, sparsity, batch, args.rounds, args.index_dtype)
            for (name, model, shape), sparsity, batch in plan
        ]
        index_rows = [] if args.no_extras else index_dtype_rows(index_size, (0.95, 0.99), args.rounds)
        convolutions = [] if args.no_extras else conv_rows(*conv_plan, args.rounds)
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    print(
        f"exported (to_sparse) vs masked dense inference, eval + no_grad, threads {threads}, "
        f"index_dtype={args.index_dtype}; medians of {args.rounds} alternating rounds"
    )
    print("limit = memory-bound speed-up 4 / (bytes per nonzero * density); 'of limit' = speed-up / limit")
    print("file = save_sparse file size / dense state_dict file size")
    print(
        f"{'model':<22} {'sparsity':>8} {'batch':>5} {'dense ms':>9} {'sparse ms':>10} {'speed-up':>9} "
        f"{'limit':>6} {'of limit':>9} {'max diff':>9} {'file':>6}  sparse layers"
    )
    for row in rows:
        print(
            f"{row['model']:<22} {row['sparsity']:>8.0%} {row['batch']:>5} {row['dense_ms']:>9.3f} "
            f"{row['sparse_ms']:>10.3f} {row['speedup']:>8.2f}x {row['limit']:>6.1f} {row['of_limit']:>9.2f} "
            f"{row['max_abs_diff']:>9.1e} {row['file_ratio']:>6.3f}  {row['sparse_kinds']}"
        )
    for line in _targets(rows):
        print(line)
    if args.no_extras:
        return rows
    print(
        f"\nCSR mv (batch 1) / addmm (batch 256), {index_size}x{index_size} weight: int32 vs int64 indices "
        "(ratio > 1: int32 faster)"
    )
    print(f"{'sparsity':>8} {'batch':>5} {'int32 ms':>9} {'int64 ms':>9} {'int64/int32':>12}")
    for row in index_rows:
        print(
            f"{row['sparsity']:>8.0%} {row['batch']:>5} {row['int32_ms']:>9.3f} {row['int64_ms']:>9.3f} "
            f"{row['int64_over_int32']:>12.2f}"
        )
    print("\nConv2d: dense vs SparseConv2d (unfold + CSR per example); speed-up > 1: sparse faster")
    print(f"{'layer':<18} {'density':>7} {'batch':>5} {'dense ms':>9} {'sparse ms':>10} {'speed-up':>9}")
    for row in convolutions:
        print(
            f"{row['layer']:<18} {row['density']:>7.0%} {row['batch']:>5} {row['conv_dense_ms']:>9.3f} "
            f"{row['conv_sparse_ms']:>10.3f} {row['conv_speedup']:>8.2f}x"
        )
    _print_condensed(fan_in_rows, threads, args.rounds)
    return rows + index_rows + convolutions + fan_in_rows


if __name__ == "__main__":
    main()
