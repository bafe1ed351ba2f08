"""What the rule functions of `sparselearning.funcs` may read and change on a `Masking`.

`sparselearning.core.Masking` satisfies this protocol; the functions are typed against it instead of the class,
so the rules depend on a dozen documented members, not on the controller that calls them. A rule function
changes masks only by assigning `masking.mask_dict[name] = new_mask` (or returning the new mask), and stops
masking a layer only through `remove_weight`.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Protocol

import torch
from torch import nn

from sparselearning.masking.schedule import DropSchedule
from sparselearning.stats import LayerStats


class MaskingView(Protocol):
    """The members of `Masking` that rule functions use.

    - `mask_dict`: bool mask per masked parameter name; `params`: the parameters themselves
    - `density`: the target fraction of active masked weights; `density_overrides`: per-tensor densities by name;
      `total_params`: how many weights are masked
    - `sparse_init`: the initial-mask scheme's name; `stats`: counts per layer after the last update
    - `prune_rate`: the drop fraction now; `prune_rate_decay`: its schedule; `name2prune_rate`: per layer
    - `generator(name, purpose)`: the random stream for a decision on a layer at this step
    - `scratch(numel, dtype, device)`: a reusable flat buffer; `float_mask(name)`: a mask as 0.0/1.0 (a fresh
      weight-sized tensor: `sparselearning.ops.mask_chunks.float_chunks` does the same arithmetic a chunk at a time)
    - `layer_module(name)` / `is_conv(name)`: the module owning a parameter, and whether it is a convolution
    - `prunable_names()`: layers an update may change; `get_momentum_for_weight(weight)`: optimizer momentum
    - `remove_weight(name)`: stop masking a layer (channel-wise inits keep Linear layers dense this way)
    - `record_growth(name, positions)`: a growth rule may report the flat positions it activated (all inactive
      before), which spares the controller a search of the layer for them
    """

    @property
    def mask_dict(self) -> MutableMapping[str, torch.Tensor]: ...

    @property
    def params(self) -> Mapping[str, nn.Parameter]: ...

    density: float
    density_overrides: dict[str, float]
    total_params: int
    sparse_init: str
    name2prune_rate: dict[str, float]

    @property
    def stats(self) -> LayerStats: ...

    @property
    def prune_rate(self) -> float: ...

    @property
    def prune_rate_decay(self) -> DropSchedule | None: ...

    def generator(self, name: str, purpose: int = 0) -> torch.Generator: ...

    def scratch(self, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor: ...

    def float_mask(self, name: str) -> torch.Tensor: ...

    def layer_module(self, name: str) -> nn.Module: ...

    def is_conv(self, name: str) -> bool: ...

    def prunable_names(self) -> list[str]: ...

    def get_momentum_for_weight(self, weight: torch.Tensor) -> torch.Tensor: ...

    def remove_weight(self, name: str) -> None: ...

    def record_growth(self, name: str, positions: torch.Tensor) -> None: ...
