"""Ways to zero the inactive entries of one weight-sized tensor, timed side by side: the per-step primitive that
decides how many bytes per weight masking must keep (issue: masks in 2 bytes per weight).

The float mask costs 4 bytes per weight and is what `Masking` used to keep and multiply by; every other form here
costs less memory. `Masking` now multiplies by its bool masks turned into floats one L2-sized chunk at a time
(`sparselearning.ops.mask_chunks`, "bool mask in float chunks"). One thread, medians of alternating rounds; each
contender zeroes the same tensor in place.

    .venv/bin/python -m benchmarks.mask_multiply             # 2048 x 2048 at density 0.1, about a minute
    .venv/bin/python -m benchmarks.mask_multiply --smoke     # seconds
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from benchmarks.timing import alternating_medians
from sparselearning.ops.mask_chunks import multiply_by_bool_masks


def contenders(weight: torch.Tensor, mask: torch.Tensor) -> dict[str, tuple[float, Callable[[], object]]]:
    """Name -> (bytes per weight it keeps, the in-place zeroing)."""
    as_float, as_uint8, as_bf16, dead = mask.float(), mask.to(torch.uint8), mask.to(torch.bfloat16), ~mask
    active = torch.nonzero(mask.view(-1)).view(-1)
    flat = weight.view(-1)

    def gather_zero_scatter() -> None:
        values = flat.index_select(0, active)
        weight.zero_()
        flat.index_copy_(0, active, values)

    density = mask.float().mean().item()
    return {
        "multiply by float mask": (4.0, lambda: torch._foreach_mul_([weight], [as_float])),
        "bool mask in float chunks": (1.0, lambda: multiply_by_bool_masks([weight], [mask])),
        "multiply by bool mask": (1.0, lambda: weight.mul_(mask)),
        "multiply by uint8 mask": (1.0, lambda: weight.mul_(as_uint8)),
        "multiply by bfloat16 mask": (2.0, lambda: weight.mul_(as_bf16)),
        "masked_fill by inverse mask": (1.0, lambda: weight.masked_fill_(dead, 0.0)),
        "gather, zero, scatter (int64)": (8.0 * density, gather_zero_scatter),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.rounds = 256, 2
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(args.size, args.size, generator=generator)
    mask = torch.rand(args.size, args.size, generator=generator) < args.density
    table = contenders(weight, mask)
    medians = alternating_medians({name: run for name, (_, run) in table.items()}, args.rounds, 5)
    base = medians["multiply by float mask"]
    print(f"{args.size} x {args.size} float32 at density {args.density}, one thread, medians of {args.rounds} rounds")
    print(f"{'contender':<32} {'bytes/weight':>12} {'ms':>8} {'vs float mask':>14}")
    for name, (size, _) in table.items():
        print(f"{name:<32} {size:>12.2f} {medians[name] * 1e3:>8.3f} {medians[name] / base:>14.2f}")
    return {name: medians[name] / base for name in table}


if __name__ == "__main__":
    main()
