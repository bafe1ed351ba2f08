"""2:4 semi-structured sparsity vs dense on a CUDA GPU: the 4096-4096-4096-10 MLP at batch 256 in fp16.

    .venv/bin/python -m benchmarks.semi_structured_gpu             # about a minute on an H100
    .venv/bin/python benchmarks/semi_structured_gpu.py --smoke      # a few seconds

Needs an NVIDIA GPU with compute capability 8.0 or newer (Ampere, Hopper); elsewhere it prints why and exits
with status 1. The two 4096x4096 layers are pruned to 2:4 with `nm_mask` and converted by
`to_sparse(..., semi_structured=True)`; the 4096x10 classifier stays dense (too narrow for the kernels).
Dense and 2:4 contenders are timed side by side, alternating, each sample being `--inner` forwards followed
by one synchronisation; the table prints medians and dense time / 2:4 time. Both the whole MLP and one
4096x4096 layer alone are measured.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch import nn

if __package__ in (None, ""):  # run as a file: make `benchmarks` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import alternating_medians
from sparselearning.export import nm_mask, to_sparse_with_report
from sparselearning.export.semi_structured import semi_structured_unavailable
from sparselearning.models import MLP

WIDTHS = [4096, 4096, 4096, 10]


def _synchronised(function, inner: int):
    def run() -> None:
        for _ in range(inner):
            function()
        torch.cuda.synchronize()

    return run


def measure(batch: int, rounds: int, inner: int) -> list[dict[str, object]]:
    """Dense vs 2:4 for the MLP and for its first layer alone, at `batch`, fp16."""
    torch.manual_seed(0)
    model = MLP(WIDTHS).cuda().half().eval()
    masks = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features % 64 == 0:
            masks[f"{name}.weight"] = nm_mask(module.weight)
    dense = copy.deepcopy(model)
    with torch.no_grad():
        for name, parameter in dense.named_parameters():
            if name in masks:
                parameter.mul_(masks[name])
    sparse, decisions = to_sparse_with_report(model, masks, semi_structured=True)
    converted = sum(decision.kind == "semi_structured" for decision in decisions)
    inputs = torch.randn(batch, WIDTHS[0], device="cuda", dtype=torch.float16)
    dense_layer, sparse_layer = dense.layers[0], sparse.layers[0]
    rows = []
    with torch.no_grad():
        difference = float((dense(inputs).float() - sparse(inputs).float()).abs().max())
        cases = {
            "MLP 4096-4096-4096-10": (lambda: dense(inputs), lambda: sparse(inputs)),
            "one 4096x4096 Linear": (lambda: dense_layer(inputs), lambda: sparse_layer(inputs)),
        }
        for case, (dense_fn, sparse_fn) in cases.items():
            contenders = {"dense": _synchronised(dense_fn, inner), "2:4": _synchronised(sparse_fn, inner)}
            for function in contenders.values():
                function()  # warm-up: kernel selection, cuSPARSELt plans
            medians = alternating_medians(contenders, rounds, 1)
            rows.append(
                {
                    "case": case,
                    "batch": batch,
                    "dense_ms": medians["dense"] / inner * 1e3,
                    "sparse_ms": medians["2:4"] / inner * 1e3,
                    "speedup": medians["dense"] / medians["2:4"],
                    "converted_layers": converted,
                    "max_abs_diff": difference,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[256])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--inner", type=int, default=50, help="forwards per timed sample")
    parser.add_argument("--smoke", action="store_true", help="a few rounds only")
    parser.add_argument(
        "--backend",
        choices=["default", "cutlass", "cusparselt"],
        default="default",
        help="which 2:4 kernel library torch uses (cusparselt is the faster one where torch was built with it)",
    )
    args = parser.parse_args(argv)
    if args.backend != "default":
        torch.sparse.SparseSemiStructuredTensor._FORCE_CUTLASS = args.backend == "cutlass"
    reason = semi_structured_unavailable()
    if reason is not None:
        print(f"semi_structured_gpu: cannot run here: {reason}. Run it on an Ampere or newer NVIDIA GPU.")
        raise SystemExit(1)
    if args.smoke:
        args.rounds, args.inner = 3, 5
    rows = [row for batch in args.batches for row in measure(batch, args.rounds, args.inner)]
    print(
        f"{torch.cuda.get_device_name()} (capability {'.'.join(map(str, torch.cuda.get_device_capability()))}), "
        f"torch {torch.__version__}, fp16, eval + no_grad; medians of {args.rounds} alternating rounds of "
        f"{args.inner} forwards; 2:4 layers converted: {rows[0]['converted_layers']}; backend {args.backend}"
    )
    print(f"{'case':<24} {'batch':>6} {'dense ms':>9} {'2:4 ms':>8} {'dense/2:4':>10} {'max diff':>9}")
    for row in rows:
        print(
            f"{row['case']:<24} {row['batch']:>6} {row['dense_ms']:>9.4f} {row['sparse_ms']:>8.4f} "
            f"{row['speedup']:>9.2f}x {row['max_abs_diff']:>9.1e}"
        )
    return rows


if __name__ == "__main__":
    main()
