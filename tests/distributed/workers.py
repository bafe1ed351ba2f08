"""Code that runs inside spawned ranks (module level, so torch.multiprocessing can import it)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from sparselearning import methods
from sparselearning.sync import mask_checksums
from tests.helpers import SmallConvNet, batch


def tensor_checksums(tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(tensors, 1) float64 sums of the bit patterns, viewed as int32, of every tensor: equal on every rank
    when the weights are bit-identical."""
    rows = []
    for name in sorted(tensors):
        bits = tensors[name].detach().float().contiguous().view(torch.int32).to(torch.float64)
        rows.append(bits.sum().view(1))
    return torch.stack(rows).cpu()


def _gather(rows: torch.Tensor) -> list[torch.Tensor]:
    gathered = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, rows)
    return gathered


def train_and_compare(rank: int, world: int, rendezvous: str, method: str, out: str, corrupt: bool = False) -> None:
    """Train with DDP; after every mask update assert masks and weights are identical on all ranks."""
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        torch.manual_seed(1000 + rank)  # every rank's own random state differs
        model = SmallConvNet()
        network = nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        extra = {"interval": 3} if method == "pruning" else {"update_frequency": 3}
        masking = getattr(methods, method)(network, optimizer, density=0.2, total_steps=30, verify_sync=True, **extra)
        updates = 0
        for step in range(18):
            inputs, labels = batch(seed=100 * rank + step)  # each rank its own data
            optimizer.zero_grad()
            nn.functional.cross_entropy(network(inputs), labels).backward()
            updating = masking.is_update_step()
            if corrupt and updating and rank == 1:
                masking.mask_dict["fc.weight"].view(-1)[0] ^= True
            masking.step()
            if updating:
                updates += 1
                for rows in (mask_checksums(masking.mask_dict), tensor_checksums(dict(model.named_parameters()))):
                    gathered = _gather(rows)
                    assert all(torch.equal(gathered[0], other) for other in gathered[1:]), f"step {step}"
        assert updates >= 4
        torch.save({"masks": masking.state_dict()["masks"], "model": model.state_dict()}, Path(out) / f"{rank}.pt")
    finally:
        dist.destroy_process_group()
