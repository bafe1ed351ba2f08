"""On a CUDA GPU: WRN-22-2 on synthetic 32x32 data with RigL under AMP (float16 + GradScaler), a few hundred
steps, and the masked-step / dense-step time ratio measured side by side (CUDA events, medians).

    python -m benchmarks.gpu_amp_step [--steps 300] [--density 0.2]     (from the repository root)

Exits with a message on machines without CUDA. It also checks that counts stay exact and masked weights zero.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys

import torch
from torch import nn

from sparselearning import methods
from sparselearning.models import WideResNet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--density", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_amp_step: no CUDA GPU here; run it on a machine with one")
        return 0
    device = torch.device("cuda")
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    base = WideResNet(depth=22, widen_factor=2, num_classes=10).to(device).to(memory_format=torch.channels_last)
    dense_model, sparse_model = copy.deepcopy(base), copy.deepcopy(base)
    dense_opt = torch.optim.SGD(dense_model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sparse_opt = torch.optim.SGD(sparse_model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    masking = methods.rigl(
        sparse_model,
        sparse_opt,
        density=args.density,
        total_steps=args.steps,
        sparse_init="erdos-renyi-kernel",
        update_frequency=100,
    )
    counts = {n: int(m.sum()) for n, m in masking.mask_dict.items()}
    scalers = {"dense": torch.amp.GradScaler("cuda"), "masked": torch.amp.GradScaler("cuda")}
    generator = torch.Generator(device=device).manual_seed(0)
    inputs = torch.randn(8, args.batch_size, 3, 32, 32, device=device, generator=generator)
    inputs = inputs.contiguous(memory_format=torch.channels_last) if inputs.dim() == 4 else inputs
    labels = torch.randint(0, 10, (8, args.batch_size), device=device, generator=generator)

    def step(kind: str, index: int) -> None:
        model, optimizer = (dense_model, dense_opt) if kind == "dense" else (sparse_model, sparse_opt)
        scaler = scalers[kind]
        batch = inputs[index % 8].contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = nn.functional.cross_entropy(model(batch), labels[index % 8])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if kind == "dense":
            scaler.step(optimizer)
            scaler.update()
        else:
            masking.step(scaler=scaler)

    times: dict[str, list[float]] = {"dense": [], "masked": []}
    for index in range(args.steps):
        for kind in ("dense", "masked") if index % 2 == 0 else ("masked", "dense"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(kind, index)
            end.record()
            torch.cuda.synchronize()
            if index >= 20 and not (kind == "masked" and masking.mask_step % 100 == 1):
                times[kind].append(start.elapsed_time(end))
    dense, masked = statistics.median(times["dense"]), statistics.median(times["masked"])
    exact = {n: int(m.sum()) for n, m in masking.mask_dict.items()} == counts
    zeros = all(bool((masking.params[n].detach()[~m] == 0).all()) for n, m in masking.mask_dict.items())
    print(
        f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, WRN-22-2 batch {args.batch_size}, "
        f"density {args.density} (ERK), float16 autocast + GradScaler, {args.steps} steps each"
    )
    print(
        f"dense step {dense:.2f} ms, masked step {masked:.2f} ms (medians, update steps excluded): "
        f"ratio {masked / dense:.3f}"
    )
    print(f"mask updates: {masking.mask_step // 100}, per-layer counts exact: {exact}, masked weights zero: {zeros}")
    return 0 if exact and zeros else 1


if __name__ == "__main__":
    sys.exit(main())
