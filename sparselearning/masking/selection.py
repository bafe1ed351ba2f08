"""Which parameters of a model `Masking` masks, found by what holds them and by name.

By default: the weight of every `Linear` and `Conv*` layer, the input projections of `nn.MultiheadAttention`
(`in_proj_weight`, or `q_proj_weight`/`k_proj_weight`/`v_proj_weight`; its `out_proj` is a `Linear`), and the
weights of `RNN`/`LSTM`/`GRU` layers (`weight_ih_l*`, `weight_hh_l*` and LSTM's `weight_hr_l*`, both directions).
Anything else with two or more dimensions, such as an embedding table, only when `include` names it. Never a bias,
a normalisation parameter, a one-dimensional parameter or a frozen one.

`include` and `exclude` entries are glob patterns on the fully qualified parameter name (`blocks.*.attn.*`), exact
names or module names (`fc1`), parts of names (the seed's `remove_weight_partial_name`), or module classes; a
class matches the parameters of that module and of everything inside it, so excluding
`nn.TransformerEncoderLayer` keeps all of its weights dense.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from sparselearning.masking.records import Holding

# Attributes masked by default, by the class of the module that holds them.
_ATTENTION_PROJECTIONS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
_RECURRENT_PREFIXES = ("weight_ih_l", "weight_hh_l", "weight_hr_l")

Entry = str | type[nn.Module]

# The layers whose `weight` is masked by default (and which export rebuilds as sparse layers).
MASKABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)


def masked_by_default(module: nn.Module, attribute: str) -> bool:
    """Whether parameter `attribute` of `module` is masked without being asked for."""
    if isinstance(module, MASKABLE_TYPES):
        return attribute == "weight"
    if isinstance(module, nn.MultiheadAttention):
        return attribute in _ATTENTION_PROJECTIONS
    if isinstance(module, nn.RNNBase):
        return attribute.startswith(_RECURRENT_PREFIXES)
    return False


@dataclass
class Candidate:
    """A weight tensor (two or more dimensions) and every place that holds it (several when tied)."""

    parameter: nn.Parameter
    holdings: list[Holding]

    @property
    def name(self) -> str:
        return self.holdings[0].name

    @property
    def names(self) -> list[str]:
        return [holding.name for holding in self.holdings]

    @property
    def masked_by_default(self) -> bool:
        """Whether some place that holds it masks it by default (a tied embedding is, through its Linear head)."""
        return any(masked_by_default(h.module, h.attribute) for h in self.holdings)


def weight_candidates(model: nn.Module) -> list[Candidate]:
    """Every parameter with two or more dimensions, once, with all the places that hold it, in model order."""
    found: dict[int, Candidate] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for attribute, parameter in module.named_parameters(recurse=False, remove_duplicate=False):
            if parameter.dim() < 2:
                continue
            candidate = found.setdefault(id(parameter), Candidate(parameter, []))
            holding = Holding(module_name, module, attribute)
            if all(h.module is not module or h.attribute != attribute for h in candidate.holdings):
                candidate.holdings.append(holding)
    return list(found.values())


def _containers(model: nn.Module, module_name: str) -> list[nn.Module]:
    """The module named `module_name` and every module above it, up to the model itself."""
    parts = module_name.split(".") if module_name else []
    return [model.get_submodule(".".join(parts[:depth])) for depth in range(len(parts), -1, -1)]


def _is_pattern(entry: str) -> bool:
    return any(char in entry for char in "*?[")


def entry_matches(model: nn.Module, entry: Entry, candidate: Candidate) -> bool:
    """Whether an include/exclude entry names this parameter (under any of its names)."""
    if isinstance(entry, type):
        return any(isinstance(m, entry) for h in candidate.holdings for m in _containers(model, h.module_name))
    if _is_pattern(entry):
        return any(fnmatch.fnmatchcase(name, entry) for name in candidate.names)
    return any(name == entry or name.startswith(f"{entry}.") for name in candidate.names)


def chosen_by(model: nn.Module, entry: Entry, candidates: Iterable[Candidate]) -> list[Candidate]:
    """The candidates an entry names: for a plain string, the parameter of that exact name or every parameter
    inside the module of that name, else every name containing it (the seed's partial-name rule); patterns and
    classes as `entry_matches`."""
    candidates = list(candidates)
    chosen = [c for c in candidates if entry_matches(model, entry, c)]
    if chosen or isinstance(entry, type) or _is_pattern(entry):
        return chosen
    return [c for c in candidates if any(entry in name for name in c.names)]


def describe_entry(entry: Entry) -> str:
    return entry.__name__ if isinstance(entry, type) else repr(entry)
