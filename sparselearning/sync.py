"""What ranks must agree on under DDP, and a cheap proof that they do.

Masks agree by construction: every random draw comes from a generator keyed by (seed, step, layer), growth
reads the all-reduced gradient that DDP leaves in `.grad`, and ties are broken by index. `verify_masks` makes
it checkable: each rank all-gathers two int64 numbers per layer (active count and the sum of active flat
indices), 16 bytes per layer per rank per update, and any difference raises naming the first layer.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist

from sparselearning.errors import SparseLearningError
from sparselearning.masking.observers import MaskObserver
from sparselearning.masking.topology import TopologyChange


def mask_checksums(masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(layers, 2) int64: the active count and the sum of active flat indices of every mask, in name order."""
    rows = []
    for name in sorted(masks):
        flat = masks[name].reshape(-1)
        active = torch.nonzero(flat).view(-1)
        rows.append(torch.stack([active.numel() * torch.ones((), dtype=torch.long), active.sum()]))
    return torch.stack(rows).cpu() if rows else torch.zeros(0, 2, dtype=torch.long)


def first_disagreement(gathered: list[torch.Tensor], names: list[str]) -> str | None:
    """The first name whose row differs between ranks, or None."""
    reference = gathered[0]
    for rank_rows in gathered[1:]:
        for index, name in enumerate(names):
            if not torch.equal(rank_rows[index], reference[index]):
                return name
    return None


def verify_masks(masks: Mapping[str, torch.Tensor], step: int) -> None:
    """All-gather mask checksums; raise naming the first layer whose mask differs between ranks."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    local = mask_checksums(masks)
    backend_device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    if backend_device is not None:
        local = local.to(backend_device)
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    name = first_disagreement([g.cpu() for g in gathered], sorted(masks))
    if name is not None:
        raise SparseLearningError(f"masks differ between ranks after the update at step {step}: first layer {name!r}")


class MaskAgreement(MaskObserver):
    """A `Masking` observer that runs `verify_masks` after every mask update (`verify_sync=True`): under DDP a
    rank whose masks differ from the others' stops the run, naming the first layer that differs."""

    def after_update(self, change: TopologyChange) -> None:
        verify_masks(change.masks, change.step)
