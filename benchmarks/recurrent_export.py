"""Would a sparse recurrent layer pay at export? An LSTM's per-step work is the recurrent product `h @ W_hh^T`
(the input products of all steps are one big product, computed once): this times PyTorch's fused dense LSTM
against the same recurrence written step by step with the recurrent product as a CSR sparse-dense product (the
input products as one CSR product), side by side, one thread, medians of alternating rounds.

    .venv/bin/python -m benchmarks.recurrent_export            # a few minutes
    .venv/bin/python -m benchmarks.recurrent_export --smoke    # seconds

`sparselearning.export` times the same two on a layer's real input and keeps the faster (`SparseRecurrent`).
"""

from __future__ import annotations

import argparse
import warnings

import torch
from torch import nn

from benchmarks.timing import alternating_medians


def _masked(weight: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    keep = torch.rand(weight.shape, generator=generator) < density
    return weight * keep


def sparse_lstm(inputs: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """One LSTM layer (batch first) with CSR weights: the input products at once, the recurrence step by step."""
    batch, steps, _ = inputs.shape
    hidden = w_hh.shape[1]
    gates_in = torch.sparse.mm(w_ih, inputs.reshape(-1, inputs.shape[-1]).t()).t().reshape(batch, steps, -1) + bias
    h = inputs.new_zeros(batch, hidden)
    c = inputs.new_zeros(batch, hidden)
    outputs = []
    for step in range(steps):
        gates = gates_in[:, step] + torch.sparse.mm(w_hh, h.t()).t()
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, dim=1)


def measure(width: int, density: float, batch: int, steps: int, rounds: int) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    lstm = nn.LSTM(width, width, batch_first=True).eval()
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0"):
            getattr(lstm, name).copy_(_masked(getattr(lstm, name), density, generator))
    inputs = torch.randn(batch, steps, width, generator=generator)
    w_ih, w_hh = lstm.weight_ih_l0.detach().to_sparse_csr(), lstm.weight_hh_l0.detach().to_sparse_csr()
    bias = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach()
    with torch.no_grad():
        expected = lstm(inputs)[0]
        difference = float((sparse_lstm(inputs, w_ih, w_hh, bias) - expected).abs().max())
        medians = alternating_medians(
            {"dense": lambda: lstm(inputs), "sparse": lambda: sparse_lstm(inputs, w_ih, w_hh, bias)}, rounds, 3
        )
    return {"width": width, "density": density, "batch": batch, "dense_ms": medians["dense"] * 1e3,
            "sparse_ms": medians["sparse"] * 1e3, "max_difference": difference}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--smoke", action="store_true", help="one small case, for the test suite")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
    cases = [(64, 0.1, 1)] if args.smoke else [
        (width, density, batch) for width in (64, 256, 1024) for density in (0.1, 0.02) for batch in (1, 16)
    ]  # fmt: skip
    rounds = 2 if args.smoke else args.rounds
    rows = [measure(width, density, batch, args.steps, rounds) for width, density, batch in cases]
    print(f"LSTM layer, {args.steps} steps, one thread; medians of {rounds} alternating rounds")
    header = ("width", 6), ("density", 8), ("batch", 6), ("dense ms", 9), ("sparse ms", 10), ("sparse/dense", 13)
    print(" ".join(f"{name:>{width}}" for name, width in header) + f" {'max diff':>9}")
    for row in rows:
        print(
            f"{row['width']:>6} {row['density']:>8} {row['batch']:>6} {row['dense_ms']:>9.3f} "
            f"{row['sparse_ms']:>10.3f} {row['sparse_ms'] / row['dense_ms']:>13.2f} {row['max_difference']:>9.1e}"
        )
    return rows


if __name__ == "__main__":
    main()
