"""Training FLOPs of each method as a fraction of dense training.

Per example, a dense step costs 3 f_D (forward, and a backward of twice the forward). With f_S the sparse
forward: static and SET `3 f_S`; SNFS `2 f_S + f_D` (dense gradients); RigL
`(3 f_S dT + 2 f_S + f_D) / (dT + 1)` (a dense gradient every dT steps); gradual pruning the mean over steps
of `3 f_D (1 - s_t)`. Methods whose layer densities move (redistribution) pass the mean measured f_S.
"""

from __future__ import annotations

from collections.abc import Sequence

from sparselearning.errors import check_choice

METHOD_KINDS = ("dense", "static", "set", "snfs", "rigl", "pruning")


def training_flops_fraction(
    kind: str,
    sparse_fraction: float,
    *,
    update_interval: int | None = None,
    sparsity_schedule: Sequence[float] | None = None,
) -> float:
    """Training FLOPs over dense training FLOPs.

    :param kind: one of dense, static, set, snfs, rigl, pruning
    :param sparse_fraction: f_S / f_D, the (mean) inference FLOPs fraction of the sparse model
    :param update_interval: RigL's dT
    :param sparsity_schedule: pruning: the sparsity s_t at every training step
    """
    check_choice("FLOPs method kind", kind, METHOD_KINDS)
    f = float(sparse_fraction)
    if kind == "dense":
        return 1.0
    if kind in ("static", "set"):
        return f
    if kind == "snfs":
        return (2 * f + 1) / 3
    if kind == "rigl":
        if not update_interval:
            return f
        dt = float(update_interval)
        return (3 * f * dt + 2 * f + 1) / (dt + 1) / 3
    schedule = list(sparsity_schedule or [])
    if not schedule:
        return 1.0
    return sum(1.0 - s for s in schedule) / len(schedule)
