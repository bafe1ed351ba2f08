"""What a run needs from torch.distributed: rank and world size, DDP wrapping, barriers.

Everything here is a no-op in a single process, so the loop reads the same with or without torchrun.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from sparselearning.core import Masking
from sparselearning.sync import MaskAgreement


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_from_environment(timeout_s: float = 300.0) -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1): gloo on CPU, NCCL on CUDA.

    A collective that waits longer than `timeout_s` (a rank stopped or died) raises instead of blocking for
    PyTorch's default of 30 minutes, so a lost rank ends the job with a message.
    """
    if is_active() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_active()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=float(timeout_s)))
    return True


def all_agree(flag: bool) -> bool:
    """True when `flag` is true on every rank (a single process: `flag` itself). Lets all ranks stop
    together when one refuses its run directory, instead of the others waiting in a collective."""
    if not is_active():
        return flag
    value = torch.tensor([0 if flag else 1], device=device() if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return int(value.item()) == 0


def any_rank(flag: bool) -> bool:
    """True when `flag` is true on at least one rank (a stop signal seen by any process stops them all)."""
    return not all_agree(not flag)


def rank_and_world() -> tuple[int, int]:
    if is_active():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def device() -> torch.device:
    """This process's device under torchrun: its local GPU, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def wrap(model: nn.Module, on: torch.device) -> nn.Module:
    """DistributedDataParallel around `model` when running under torchrun, else the model itself."""
    if not is_active():
        return model
    device_ids = [on.index] if on.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def configure_masking(masking: Masking, verify: bool) -> None:
    """Under DDP, let the masking check after every update that all ranks hold identical masks."""
    if is_active() and verify and not any(isinstance(o, MaskAgreement) for o in masking.observers):
        masking.add_observer(MaskAgreement())


def barrier() -> None:
    if is_active():
        dist.barrier()


def shutdown() -> None:
    if is_active():
        dist.destroy_process_group()
