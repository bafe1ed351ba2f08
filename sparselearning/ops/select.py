"""Exact, deterministic selection of the k best entries of a score vector, without a full sort.

A mask update must pick exactly k positions (per-layer counts are exact) and must pick the same ones on
every process and device (ties go to the lower index). Sorting a layer of millions of entries makes one update
cost as much as many training steps, so large vectors are first cut down by a threshold estimated from a
strided sample, and only the few candidates above it are ranked exactly. The scores themselves need not exist
all at once: `topk_of_scores` asks for them a chunk at a time, so a layer's growth scores never take a
weight-sized buffer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from sparselearning.ops import mask_chunks

# Scores at some positions of a flat vector, given as a slice (possibly strided) or as an int64 index tensor.
ScoresAt = Callable[[slice | torch.Tensor], torch.Tensor]

# Below this many entries a stable sort is cheap enough and simplest.
_SORT_LIMIT = 1 << 11
# Vectors up to this size are ranked exactly without sampling first.
_DIRECT_LIMIT = 1 << 15
# How many sample entries estimate the threshold on large vectors.
_SAMPLE_SIZE = 1 << 14


def _rank_exactly(values: torch.Tensor, k: int) -> torch.Tensor:
    """Positions (ascending) of the k largest `values`; ties broken by lower position."""
    order = torch.sort(values, descending=True, stable=True).indices[:k]
    return torch.sort(order).values


def _select_among_candidates(values: torch.Tensor, k: int) -> torch.Tensor:
    """Exact top-k of a candidate vector via its k-th largest value; ties by lower position."""
    count = values.numel()
    if count <= _SORT_LIMIT:
        return _rank_exactly(values, k)
    kth = torch.kthvalue(values, count - k + 1).values
    above = values > kth
    needed = k - int(torch.count_nonzero(above))
    ties = torch.nonzero(values == kth).view(-1)[:needed]
    above[ties] = True
    return torch.nonzero(above).view(-1)


def topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices (ascending, int64) of the `k` largest entries of `scores`.

    Exact for any input without NaN: the same k entries `torch.topk` would return up to ties, and ties are
    resolved towards the lower index, so the answer never depends on the device or thread count.
    """
    flat = scores.reshape(-1)
    return topk_of_scores(lambda where: flat[where] if isinstance(where, slice) else flat.take(where), flat, k)


def topk_of_scores(scores_at: ScoresAt, like: torch.Tensor, k: int) -> torch.Tensor:
    """`topk_indices` of a score vector that is computed on demand instead of held: `scores_at(where)` returns
    the scores at a slice or at int64 positions of a flat vector of `like.numel()` entries, always the same
    value for the same position (an elementwise function of tensors the caller holds), in a tensor that may be
    reused by its next call. The answer is exactly `topk_indices(all_scores, k)`; at most a chunk of scores, a
    sample and the candidates exist at once.

    :param scores_at: scores at positions `where` (a slice, possibly strided, or an int64 index tensor)
    :param like: a tensor with as many entries as the score vector, on its device (only its size is read)
    :param k: how many positions to pick
    """
    total = like.numel()
    device = like.device
    k = max(0, min(int(k), total))
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    if k == total:
        return torch.arange(total, device=device)
    if total <= _DIRECT_LIMIT:
        return _select_among_candidates(scores_at(slice(0, total)), k)

    stride = max(1, total // _SAMPLE_SIZE)
    sample = scores_at(slice(0, total, stride)).clone(memory_format=torch.contiguous_format)
    sample_size = sample.numel()
    fraction = k / total
    # Aim the threshold a few standard deviations below the expected k-th value so that one pass suffices.
    margin = 4.0 * math.sqrt(fraction * (1.0 - fraction) * sample_size) + 16.0
    keep = math.ceil(fraction * sample_size + margin)
    while True:
        if keep >= sample_size:
            candidates = torch.arange(total, device=device)
            break
        threshold = torch.kthvalue(sample, sample_size - keep).values
        candidates = _positions_at_least(scores_at, total, threshold)
        if candidates.numel() >= k:
            break
        keep *= 4
    chosen = _select_among_candidates(scores_at(candidates), k)
    return candidates.take(chosen)


def _positions_at_least(scores_at: ScoresAt, total: int, threshold: torch.Tensor) -> torch.Tensor:
    """Ascending positions whose score is >= `threshold`, gathered a chunk of scores at a time."""
    chunk = mask_chunks.CHUNK
    found = [
        torch.nonzero(scores_at(slice(start, min(start + chunk, total))) >= threshold).view(-1).add_(start)
        for start in range(0, total, chunk)
    ]
    return found[0] if len(found) == 1 else torch.cat(found)


def bottomk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices (ascending) of the `k` smallest entries; ties towards the lower index."""
    return topk_indices(scores.reshape(-1).neg(), k)


def sample_indices(eligible: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Exactly `k` distinct flat indices drawn uniformly from the True entries of the bool tensor `eligible`.

    Random draws come from `generator` (a CPU generator), so the result is identical on every device.
    Dense candidate sets use rejection sampling (no list of all eligible positions is built); when most
    eligible positions are wanted, the complement is sampled instead.
    """
    flat = eligible.reshape(-1)
    total = flat.numel()
    available = int(torch.count_nonzero(flat))
    k = max(0, min(int(k), available))
    device = flat.device
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    if k == available:
        return torch.nonzero(flat).view(-1)
    if 2 * k > available:
        excluded = sample_indices(eligible, available - k, generator)
        keep = flat.clone()
        keep[excluded] = False
        return torch.nonzero(keep).view(-1)
    if available * 8 < total:
        # Sparse eligibility: index the eligible positions directly.
        positions = torch.nonzero(flat).view(-1)
        picks = torch.randperm(available, generator=generator)[:k].to(device)
        return torch.sort(positions.take(picks)).values

    flat_cpu = flat.cpu()
    found = torch.empty(0, dtype=torch.long)
    while found.numel() < k:
        draws = int((k - found.numel()) * total / available * 1.25) + 64
        proposal = torch.randint(0, total, (draws,), generator=generator)
        proposal = proposal[flat_cpu.take(proposal)]
        found = torch.unique(torch.cat([found, proposal]))
    if found.numel() > k:
        # Every subset of the distinct draws is equally likely, so a random k-subset of them is uniform.
        found = found[torch.randperm(found.numel(), generator=generator)[:k]]
    return torch.sort(found).values.to(device)


def apportion(total: int, weights: list[float], capacities: list[int]) -> list[int]:
    """Split the integer `total` in proportion to `weights`, never above `capacities`, summing exactly.

    Largest-remainder rounding; whatever a capped entry cannot take is shared again among the others. The
    sum is `min(total, sum(capacities))`. Zero or negative weights get nothing unless nothing else can take it.
    """
    count = len(weights)
    result = [0] * count
    remaining = min(int(total), sum(int(c) for c in capacities))
    open_entries = [i for i in range(count) if capacities[i] > 0]
    while remaining > 0 and open_entries:
        positive = [i for i in open_entries if weights[i] > 0 and math.isfinite(weights[i])]
        pool = positive or open_entries
        mass = sum(weights[i] for i in pool) if positive else float(len(pool))
        shares = {i: remaining * ((weights[i] if positive else 1.0) / mass) for i in pool}
        granted = {i: min(math.floor(shares[i]), capacities[i] - result[i]) for i in pool}
        leftover = remaining - sum(granted.values())
        by_remainder = sorted(pool, key=lambda i: (-(shares[i] - math.floor(shares[i])), i))
        for i in by_remainder:
            if leftover == 0:
                break
            if granted[i] < capacities[i] - result[i]:
                granted[i] += 1
                leftover -= 1
        for i, amount in granted.items():
            result[i] += amount
        remaining = leftover
        open_entries = [i for i in open_entries if result[i] < capacities[i]]
    return result
