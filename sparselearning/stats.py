"""Per-layer counts kept by `Masking` between mask updates (the seed's `LayerStats`), and the nonzero count of
every weight tensor of the model, masked or not."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Fields measured from the weights on demand, not part of the saved state.
_MEASURED = ("model_weight_nonzero", "model_weight_total")


@dataclass
class LayerStats:
    """Counts per masked layer and over the network, refreshed after every mask update.

    `variance_dict` holds each layer's normalised redistribution statistic (the share of regrowth it gets);
    `removed_dict` how many weights the last update pruned from it.

    `total_density` covers the masked weights only and follows the masks. `model_weight_nonzero` and
    `model_weight_total` count the actual nonzero values of ALL the model's weight tensors (every parameter with
    two or more dimensions, dense ones included), measured by `Masking` when its stats are read. Being
    measurements of the weights, not state, they are neither saved by `state_dict()` nor compared by `==`.
    """

    variance_dict: dict[str, float] = field(default_factory=dict)
    zeros_dict: dict[str, int] = field(default_factory=dict)
    nonzeros_dict: dict[str, int] = field(default_factory=dict)
    removed_dict: dict[str, int] = field(default_factory=dict)
    total_variance: float = 0.0
    total_zero: int = 0
    total_nonzero: int = 0
    total_removed: int = 0
    model_weight_nonzero: int = field(default=0, compare=False)
    model_weight_total: int = field(default=0, compare=False)

    @property
    def total_density(self) -> float:
        """Active fraction of all masked weights (0.0 before anything is counted)."""
        size = self.total_zero + self.total_nonzero
        return self.total_nonzero / size if size else 0.0

    @property
    def model_weight_density(self) -> float:
        """Nonzero fraction of all the model's weight tensors, masked and dense (0.0 before it is measured)."""
        return self.model_weight_nonzero / self.model_weight_total if self.model_weight_total else 0.0

    def set_counts(self, nonzeros: dict[str, int], sizes: dict[str, int]) -> None:
        """Replace the per-layer and total active/inactive counts."""
        self.nonzeros_dict = dict(nonzeros)
        self.zeros_dict = {name: sizes[name] - count for name, count in nonzeros.items()}
        self.total_nonzero = sum(self.nonzeros_dict.values())
        self.total_zero = sum(self.zeros_dict.values())

    def set_model_counts(self, nonzero: int, total: int) -> None:
        """Replace the measured nonzero count of all the model's weight tensors and their size."""
        self.model_weight_nonzero = int(nonzero)
        self.model_weight_total = int(total)

    def state_dict(self) -> dict[str, Any]:
        state = asdict(self)
        for measured in _MEASURED:
            state.pop(measured)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if key not in self.__dataclass_fields__:
                raise KeyError(f"unexpected LayerStats field {key!r}")
            setattr(self, key, dict(value) if isinstance(value, dict) else value)


def itop_rate(ever_active_count: int | None, masked_weights: int) -> float | None:
    """The in-time over-parameterisation rate (Liu et al. 2021): the share of the masked weights that have
    been active at some step. None when nothing was recorded (no masks, or `low_memory`, which keeps no record).

    :param ever_active_count: how many masked weights were ever active (`Masking.ever_active_count`)
    :param masked_weights: the number of masked weights (`Masking.total_params`)
    """
    if ever_active_count is None:
        return None
    return ever_active_count / max(1, masked_weights)
