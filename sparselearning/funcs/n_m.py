"""N:M fine-grained structured sparsity and SR-STE's rules (Zhou et al., "Learning N:M Fine-grained Structured
Sparse Neural Networks From Scratch", ICLR 2021).

A weight is seen as one row per output (a Linear's `(out, in)`, a convolution's `(out, in * kh * kw)` in memory
order, which is the column order of the matmul an unfolded convolution computes); every row is cut into groups of
`m` consecutive inputs, and a mask keeps the `n` entries of largest |w| in every group (ties: the earlier position).
The fan-in must be a multiple of `m`: a layer with a shorter last group is refused, not padded.

SR-STE trains the dense weights W: the forward pass uses `W * mask(W)`, the mask recomputed from |W| at every
step; the gradient reaches W straight through the mask (the gradient of the masked weight, at every position),
plus the sparse-refined term `lambda_w * (1 - mask) * W`, a decay on the weights the mask currently removes only,
so that they settle below the kept ones instead of flipping back and forth (the paper's Eq. 5; `lambda_w` = 2e-4
in its experiments).
"""

from __future__ import annotations

import itertools

import torch

from sparselearning.errors import SparseLearningError

SPARSE_REFINED_DECAY = 2e-4  # lambda_w of the paper's experiments


def check_n_m(n: object, m: object, prefix: str = "") -> tuple[int, int]:
    """`(n, m)` if they are whole numbers with `1 <= n <= m`, else one line saying what is allowed.

    :param n: weights kept per group
    :param m: group size
    :param prefix: how the settings are named in messages (`masking.` on the command line)
    """
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (n, m))
    if not whole or not 1 <= n <= m:  # type: ignore[operator]
        raise SparseLearningError(
            f"{prefix}n={n!r}, {prefix}m={m!r} is not an N:M pattern; allowed: whole numbers with 1 <= n <= m "
            "(2:4 for sparse tensor cores)"
        )
    return int(n), int(m)  # type: ignore[call-overload]


def nm_density(n: int, m: int, density: float | None = None, prefix: str = "") -> float:
    """The density of an N:M method, `n / m`; an explicit `density` must equal it.

    :param n: weights kept per group
    :param m: group size
    :param density: what the caller gave, or None
    :param prefix: how settings are named in messages
    """
    fixed = n / m
    if density is not None and (isinstance(density, bool) or not isinstance(density, (int, float)) or density != fixed):
        raise SparseLearningError(
            f"{prefix}density={density!r} conflicts with {n}:{m} sparsity, whose density is {n}/{m} = {fixed:g}; "
            f"leave density out (null) or give {fixed:g}"
        )
    return fixed


def fan_in_of(weight: torch.Tensor) -> int:
    """The inputs of one output of a weight (all dims but the first)."""
    return weight[0].numel() if weight.dim() >= 2 and weight.shape[0] else 0


def check_layer(name: str, weight: torch.Tensor, m: int) -> None:
    """Refuse, in one line, a weight whose rows cannot be cut into groups of `m` inputs.

    :param name: the weight's name
    :param weight: the weight
    :param m: group size
    """
    if weight.dim() < 2:
        raise SparseLearningError(f"N:M sparsity needs a weight of 2 or more dims; {name!r} has {tuple(weight.shape)}")
    fan_in = fan_in_of(weight)
    if fan_in % m:
        raise SparseLearningError(
            f"layer {name!r} has fan-in {fan_in}, not a multiple of m={m}, so its inputs do not split into groups "
            f"of {m}; keep it dense (exclude=[{name!r}]) or choose an m dividing {fan_in}"
        )


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Bool mask keeping the `n` largest |w| of every `m` consecutive inputs of every row (ties: earlier kept).

    Computed by ranking within groups, with no sort: each entry's rank is the number of entries of its group that
    beat it (are larger, or equal and earlier), counted by comparing the `m * (m - 1) / 2` pairs of positions
    column against column; rank < n is kept. About twice as fast as a stable sort of every group on one CPU
    thread (`benchmarks/nm_step.py`).

    :param weight: a weight of 2 or more dims whose fan-in is a multiple of `m`
    :param n: weights kept per group
    :param m: group size
    :return: bool mask shaped like the weight, exactly `n` True in every group
    """
    n, m = check_n_m(n, m)
    check_layer("weight", weight, m)
    groups = weight.detach().abs().reshape(-1, m)
    rank = torch.zeros(groups.shape, dtype=torch.uint8 if m <= 255 else torch.int32, device=weight.device)
    for first, second in itertools.combinations(range(m), 2):
        second_wins = torch.gt(groups[:, second], groups[:, first])  # a tie goes to the earlier position
        rank[:, first] += second_wins
        rank[:, second] += ~second_wins
    return (rank < n).reshape(weight.shape)


def group_counts(tensor: torch.Tensor, m: int) -> torch.Tensor:
    """Nonzeros in every group of `m` consecutive inputs, shaped `(outputs, fan_in // m)`."""
    check_layer("tensor", tensor, m)
    return (tensor.detach() != 0).reshape(tensor.shape[0], -1, m).sum(dim=-1)


def is_exactly_n_m(tensor: torch.Tensor, n: int, m: int) -> bool:
    """Whether every group of `m` consecutive inputs of every row holds exactly `n` nonzeros."""
    return bool((group_counts(tensor, m) == n).all())


@torch.no_grad()
def add_sparse_refined_term_(
    grad: torch.Tensor, dense: torch.Tensor, masked: torch.Tensor, decay: float, scratch: torch.Tensor | None = None
) -> torch.Tensor:
    """`grad += decay * (1 - mask) * dense` in place, with `(1 - mask) * dense` taken as `dense - masked`
    (exactly `dense` where masked out and exactly 0 where kept, so kept positions' gradients are untouched).

    :param grad: the straight-through gradient (of the masked weight), updated in place
    :param dense: the dense weight W
    :param masked: `W * mask`, the weight the forward pass used
    :param decay: lambda_w
    :param scratch: optional buffer of the weight's numel for `dense - masked`
    :return: `grad`
    """
    if decay == 0:
        return grad
    pruned = torch.sub(dense, masked, out=scratch.view(dense.shape)) if scratch is not None else dense - masked
    return grad.add_(pruned, alpha=decay)
