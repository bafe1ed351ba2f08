"""One rank of a two-process FSDP2 run (started by torchrun from test_fsdp2.py): a model sharded with
`fully_shard` trains with a sparse method beside an unsharded copy trained on the same global batches in this
process, and the rank writes whether masks, weights and momentum agree."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard

from sparselearning import methods

STEPS = 12
BATCH = 8  # per rank


def make_model() -> nn.Module:
    torch.manual_seed(0)
    # 33 rows: shards of 17 and 16 rows, so uneven torch.chunk pieces are covered.
    return nn.Sequential(nn.Linear(20, 33), nn.ReLU(), nn.Linear(33, 16), nn.ReLU(), nn.Linear(16, 5)).double()


def global_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    world = dist.get_world_size()
    inputs = torch.randn(world * BATCH, 20, generator=generator, dtype=torch.float64)
    return inputs, torch.randint(0, 5, (world * BATCH,), generator=generator)


def train(method: str) -> dict[str, object]:
    rank = dist.get_rank()
    reference = make_model()
    sharded = copy.deepcopy(reference)
    for layer in sharded:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(sharded)
    options = {"density": 0.3, "total_steps": STEPS, "update_frequency": 3}
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (sharded, reference)]
    maskings = [getattr(methods, method)(m, o, **options) for m, o in zip((sharded, reference), optimizers)]
    mine = slice(rank * BATCH, (rank + 1) * BATCH)
    updates = 0
    for step in range(STEPS):
        inputs, labels = global_batch(step)
        updates += maskings[0].is_update_step()
        for model, optimizer, masking, part in zip((sharded, reference), optimizers, maskings, (mine, slice(None))):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs[part]), labels[part]).backward()
            masking.step()
    mask_equal = all(torch.equal(maskings[0].mask_dict[n], m) for n, m in maskings[1].mask_dict.items())
    whole = {name: p.full_tensor() for name, p in sharded.named_parameters()}
    weight_gap = max(float((whole[n] - p).abs().max()) for n, p in reference.named_parameters())
    momentum_gap = max(
        float(
            (optimizers[0].state[ps]["momentum_buffer"].full_tensor() - optimizers[1].state[pr]["momentum_buffer"])
            .abs()
            .max()
        )
        for ps, pr in zip(sharded.parameters(), reference.parameters())
    )
    zero_outside = all(int(whole[name][~mask].count_nonzero()) == 0 for name, mask in maskings[0].mask_dict.items())
    saved = maskings[0].state_dict()
    maskings[0].load_state_dict(saved)  # the restore path: masks re-applied to whole weights, written back
    restore_equal = maskings[0].mask_step == STEPS and all(
        torch.equal(maskings[0].mask_dict[n], m) for n, m in maskings[1].mask_dict.items()
    )
    restored_gap = max(float((p.full_tensor() - whole[n]).abs().max()) for n, p in sharded.named_parameters())
    changed = sum(int((m != maskings[1].mask_dict[n]).sum()) for n, m in methods_initial(method, options).items())
    return {
        "masks_equal": mask_equal,
        "weight_gap": weight_gap,
        "momentum_gap": momentum_gap,
        "zero_outside": zero_outside,
        "updates": updates,
        "changed": changed,
        "density": maskings[0].stats.total_density,
        "restore_equal": restore_equal,
        "restored_gap": restored_gap,
    }


def methods_initial(method: str, options: dict) -> dict[str, torch.Tensor]:
    model = make_model()
    return dict(
        getattr(methods, method)(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), **options).mask_dict
    )


def replicated_refusal() -> str:
    """What Masking says of a parameter replicated instead of sharded the FSDP2 way."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, distribute_tensor

    model = make_model()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    model[0].weight = nn.Parameter(distribute_tensor(model[0].weight.detach(), mesh, [Replicate()]))
    try:
        methods.static(model, torch.optim.SGD(model.parameters(), lr=0.1), density=0.5)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "accepted"


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    try:
        results: dict[str, object] = {method: train(method) for method in ("rigl", "snfs", "set_")}
        results["replicated"] = replicated_refusal()
        (out / f"rank{dist.get_rank()}.json").write_text(json.dumps(results))
        dist.barrier()  # neither rank tears its connections down while the other still uses them
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
