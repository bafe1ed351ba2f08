"""Inference FLOPs from one real forward pass, each weight layer scaled by the density of its mask.

`torch.utils.flop_counter.FlopCounterMode` attributes every matmul and convolution to the module that ran it,
so nothing assumes an input shape and no hook outlives the count. A masked layer's FLOPs scale with the
fraction of its weights that are active (a sparse kernel skips the rest); everything else counts as dense.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


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


def _module_flops(model: nn.Module, inputs: torch.Tensor) -> tuple[float, dict[str, float]]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(inputs)
    finally:
        model.train(was_training)
    root = type(model).__name__
    per_module = {}
    for key, counts in counter.get_flop_counts().items():
        if key.startswith(root + "."):
            per_module[key[len(root) + 1 :]] = float(sum(counts.values()))
    return float(counter.get_total_flops()), per_module


def count_inference_flops(
    model: nn.Module,
    inputs: torch.Tensor,
    densities: Mapping[str, float] | None = None,
) -> InferenceFlops:
    """FLOPs per example of `model` on the batch `inputs`, with weight `name` at `densities[name]`.

    `densities` maps weight names (`conv1.weight`) to the active fraction; absent weights count as dense.
    """
    batch = inputs.shape[0] if inputs.dim() > 0 else 1
    total, per_module = _module_flops(model, inputs)
    densities = dict(densities or {})
    saved = 0.0
    per_layer = {}
    for weight_name, density in densities.items():
        module_name = weight_name.rsplit(".", 1)[0] if "." in weight_name else ""
        layer_flops = per_module.get(module_name, 0.0)
        per_layer[weight_name] = layer_flops * density / batch
        saved += layer_flops * (1.0 - density)
    return InferenceFlops(sparse=(total - saved) / batch, dense=total / batch, per_layer=per_layer)


def layer_densities(mask_dict: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The active fraction of every mask."""
    return {name: float(mask.float().mean()) for name, mask in mask_dict.items()}
