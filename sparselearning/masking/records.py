"""One record per masked parameter, and the name-keyed dict views the seed API exposes over them.

A record holds everything `Masking` knows about one masked tensor, so a new kind of parameter (an attention
projection, a recurrent weight, an embedding) needs only a record, not an entry in half a dozen parallel dicts.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field

import torch
from torch import nn

from sparselearning.masking.sharding import ShardRows, local


@dataclass(frozen=True)
class Holding:
    """One place where the model holds a parameter: the module's name, the module, the attribute."""

    module_name: str
    module: nn.Module
    attribute: str

    @property
    def name(self) -> str:
        """The parameter's fully qualified name here."""
        return f"{self.module_name}.{self.attribute}" if self.module_name else self.attribute


@dataclass(eq=False)
class MaskedParameter:
    """A masked parameter and its mask.

    :param name: its key in `Masking.mask_dict` (the first fully qualified name under which the model holds it)
    :param parameter: the parameter itself
    :param owners: every place holding it as a direct attribute; more than one when it is tied
    :param index: its registration order, which keys its random streams (stable across runs and ranks)
    :param mask: bool, shaped like the parameter; True where the weight is active
    :param active: the number of active positions at the last count
    :param shard: for a parameter sharded by FSDP2, the rows of the whole mask this rank's shard holds (the mask
        stays whole; the per-step work covers the shard only)
    """

    name: str
    parameter: nn.Parameter
    owners: tuple[Holding, ...]
    index: int
    mask: torch.Tensor
    active: int = field(default=0)
    shard: ShardRows | None = None

    @property
    def owner(self) -> nn.Module:
        """The first module that holds the parameter."""
        return self.owners[0].module

    @property
    def aliases(self) -> tuple[str, ...]:
        """Every fully qualified name under which the model holds the parameter (tied parameters have several)."""
        return tuple(holding.name for holding in self.owners)

    @property
    def numel(self) -> int:
        return self.parameter.numel()

    @property
    def inactive(self) -> int:
        """Masked-out positions at the last count."""
        return self.numel - self.active

    def count(self) -> int:
        """Recount the active positions (one host sync)."""
        self.active = int(torch.count_nonzero(self.mask))
        return self.active

    def local_mask(self) -> torch.Tensor:
        """The part of the mask matching the parameter's local tensor (all of it unless sharded)."""
        return self.mask if self.shard is None else self.shard.of(self.mask)

    def as_float(self) -> torch.Tensor:
        """The mask as 0.0/1.0 in the parameter's dtype, freshly allocated (4 bytes per weight on float32: the
        per-step work never needs it, see `sparselearning.ops.mask_chunks`)."""
        return torch.empty_like(local(self.parameter.detach())).copy_(self.local_mask().view(torch.uint8))


class MaskDict(MutableMapping[str, torch.Tensor]):
    """`name -> mask` over the records: what the seed API calls `mask_dict` (and `masks`).

    Assigning `mask_dict[name] = new_mask` replaces that record's mask (rule functions do this); deleting an entry
    stops masking the parameter. New names cannot be added: a parameter becomes masked through `add_module`.
    """

    def __init__(self, records: dict[str, MaskedParameter]) -> None:
        self._records = records

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._records[name].mask

    def __setitem__(self, name: str, mask: torch.Tensor) -> None:
        record = self._records.get(name)
        if record is None:
            raise KeyError(f"{name!r} is not a masked parameter; masked: {', '.join(self._records)}")
        record.mask = mask

    def __delitem__(self, name: str) -> None:
        del self._records[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"MaskDict({list(self._records)})"


class ParameterDict(MutableMapping[str, nn.Parameter]):
    """`name -> parameter` over the records: what the seed API calls `params` (read-only in practice)."""

    def __init__(self, records: dict[str, MaskedParameter]) -> None:
        self._records = records

    def __getitem__(self, name: str) -> nn.Parameter:
        return self._records[name].parameter

    def __setitem__(self, name: str, parameter: nn.Parameter) -> None:
        raise TypeError("masked parameters are registered by Masking.add_module, not by assigning to params")

    def __delitem__(self, name: str) -> None:
        raise TypeError("stop masking a parameter with Masking.remove_weight, not by deleting it from params")

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"ParameterDict({list(self._records)})"
