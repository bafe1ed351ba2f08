"""Per-layer counts kept by `Masking` between mask updates (the seed's `LayerStats`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LayerStats:
    """Counts per masked layer and over the network, refreshed after every mask update.

    `variance_dict` holds each layer's normalised redistribution statistic (the share of regrowth it gets);
    `removed_dict` how many weights the last update pruned from it.
    """

    variance_dict: dict[str, float] = field(default_factory=dict)
    zeros_dict: dict[str, int] = field(default_factory=dict)
    nonzeros_dict: dict[str, int] = field(default_factory=dict)
    removed_dict: dict[str, int] = field(default_factory=dict)
    total_variance: float = 0.0
    total_zero: int = 0
    total_nonzero: int = 0
    total_removed: int = 0

    @property
    def total_density(self) -> float:
        """Active fraction of all masked weights (0.0 before anything is counted)."""
        size = self.total_zero + self.total_nonzero
        return self.total_nonzero / size if size else 0.0

    def set_counts(self, nonzeros: dict[str, int], sizes: dict[str, int]) -> None:
        """Replace the per-layer and total active/inactive counts."""
        self.nonzeros_dict = dict(nonzeros)
        self.zeros_dict = {name: sizes[name] - count for name, count in nonzeros.items()}
        self.total_nonzero = sum(self.nonzeros_dict.values())
        self.total_zero = sum(self.zeros_dict.values())

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if key not in self.__dataclass_fields__:
                raise KeyError(f"unexpected LayerStats field {key!r}")
            setattr(self, key, dict(value) if isinstance(value, dict) else value)
