"""Inference FLOPs from one real forward pass, each weight tensor's products scaled by the density of its mask.

Every matmul and convolution of the pass is counted (PyTorch's own FLOP formulas) and attributed to the weight
tensor among its operands, found by storage, so a weight is credited wherever it is used: inside a Linear or a
convolution, as an attention projection that `nn.MultiheadAttention` multiplies itself, as a recurrent matrix an
LSTM applies at every step, or as an embedding table tied to an output layer. A masked weight's products scale
with the fraction of it that is active (a sparse kernel skips the rest); everything else (attention scores,
products with no weight) counts as dense. Nothing assumes an input shape and no hook outlives the count.

The pass runs with the reference kernels, whose products the counter sees one by one: PyTorch's fused fast
paths (the Transformer and attention fast path, oneDNN's fused RNN, fused attention kernels) would each hide a
whole layer inside one uncounted call. The count is of the same arithmetic, not of a different model.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


@dataclass(frozen=True)
class InferenceFlops:
    """FLOPs of one forward pass (multiply and add counted separately), per example."""

    sparse: float
    dense: float
    per_layer: dict[str, float]

    @property
    def fraction(self) -> float:
        """Sparse over dense: the number reports put beside accuracy."""
        return self.sparse / self.dense if self.dense else 1.0


class _WeightFlops(TorchDispatchMode):
    """Counts the FLOPs of every op PyTorch has a formula for, and credits each to the weight among its operands."""

    def __init__(self, weights: Mapping[int, str]) -> None:
        super().__init__()
        self.weights = weights  # storage address -> weight name
        self.total = 0.0
        self.per_weight: dict[str, float] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            flops = float(formula(*args, **kwargs, out_val=out))
            self.total += flops
            for name in {self.weights.get(_storage(arg)) for arg in args if isinstance(arg, torch.Tensor)} - {None}:
                assert name is not None
                self.per_weight[name] = self.per_weight.get(name, 0.0) + flops
        return out


def _storage(tensor: torch.Tensor) -> int:
    return int(tensor.untyped_storage().data_ptr())


@contextlib.contextmanager
def _reference_kernels() -> Iterator[None]:
    """No fused fast paths for the length of a count (see the module's docstring); restored afterwards."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # oneDNN's flags() warns about TF32 on Intel GPUs
            with torch.backends.mkldnn.flags(enabled=False), sdpa_kernel(SDPBackend.MATH):
                yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def weight_flops(model: nn.Module, inputs: torch.Tensor, names: list[str]) -> tuple[float, dict[str, float]]:
    """FLOPs of one forward pass of `model` on `inputs` (the whole batch): the total, and the part that
    multiplies each weight tensor in `names` (parameter names of the model; a tied weight under any of its names).
    Runs in eval mode without gradients, so it changes no state (no BatchNorm statistics, no dropout draws)."""
    parameters = dict(model.named_parameters(remove_duplicate=False))
    storages = {_storage(parameters[name]): name for name in names if name in parameters}
    counter = _WeightFlops(storages)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _reference_kernels(), counter:
            model(inputs)
    finally:
        model.train(was_training)
    return counter.total, counter.per_weight


def count_inference_flops(
    model: nn.Module,
    inputs: torch.Tensor,
    densities: Mapping[str, float] | None = None,
) -> InferenceFlops:
    """FLOPs per example of `model` on the batch `inputs`, with weight `name` at `densities[name]`.

    `densities` maps weight names (`conv1.weight`, `attn.in_proj_weight`) to the active fraction; absent weights
    count as dense.
    """
    batch = inputs.shape[0] if inputs.dim() > 0 else 1
    densities = dict(densities or {})
    total, per_weight = weight_flops(model, inputs, list(densities))
    saved = 0.0
    per_layer = {}
    for weight_name, density in densities.items():
        layer_flops = per_weight.get(weight_name, 0.0)
        per_layer[weight_name] = layer_flops * density / batch
        saved += layer_flops * (1.0 - density)
    return InferenceFlops(sparse=(total - saved) / batch, dense=total / batch, per_layer=per_layer)


def layer_densities(mask_dict: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The active fraction of every mask."""
    return {name: float(mask.float().mean()) for name, mask in mask_dict.items()}
