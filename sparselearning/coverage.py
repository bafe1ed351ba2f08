"""Which weight tensors of a model `Masking` masks, which it leaves dense, and why.

A density is only meaningful next to what it covers: a Transformer whose attention projections, embeddings and
recurrent weights stay dense can report "density 0.1" while most of its weights are dense. Every parameter with
two or more dimensions counts as a weight tensor here; biases and normalisation scales do not.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

# Why a weight tensor is left dense.
EXCLUDED = "excluded"  # the user asked for it (exclude=[...], remove_weight, remove_weight_partial_name, remove_type)
FROZEN = "frozen"  # requires_grad=False: never masked, its values never change
UNSUPPORTED = "unsupported"  # not masked by default (an Embedding, a custom module's matrix) and not included
SPARSE_INIT = "sparse_init"  # the initial-mask scheme keeps it dense (channel-wise inits keep Linear layers dense)

# Reasons that do not come from a choice the user made: weights left dense by them are worth a warning.
UNINTENDED = frozenset({FROZEN, UNSUPPORTED})

# Dense weights outside the user's choice holding this share of the model's weights or more trigger a warning.
WARN_SHARE = 0.01


@dataclass(frozen=True)
class WeightCoverage:
    """One weight tensor of the model: its fully qualified name and size, and whether it is masked.

    :param name: the parameter's name in the model (for a masked tensor, its key in `Masking.mask_dict`)
    :param shape: the tensor's shape
    :param numel: its number of weights
    :param module_type: the class name of the module that holds it
    :param masked: whether Masking masks it
    :param reason: why it is dense (`EXCLUDED`, `FROZEN`, `UNSUPPORTED`, `SPARSE_INIT`); empty when masked
    """

    name: str
    shape: tuple[int, ...]
    numel: int
    module_type: str
    masked: bool
    reason: str = ""

    @property
    def why(self) -> str:
        """Why the tensor is dense, in a few words (empty when masked)."""
        return {
            EXCLUDED: "excluded",
            FROZEN: "frozen, requires_grad=False",
            UNSUPPORTED: f"{self.module_type} weights are masked only when included",
            SPARSE_INIT: "kept dense by sparse_init",
        }.get(self.reason, self.reason)

    @property
    def status(self) -> str:
        """A few words for the table: `masked`, or `dense: <why>`."""
        return "masked" if self.masked else f"dense: {self.why}"


def weight_aliases(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Every (name, parameter) with two or more dimensions, a shared parameter once under each of its names."""
    return [(name, p) for name, p in model.named_parameters(remove_duplicate=False) if p.dim() >= 2]


def weight_tensors(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every parameter with two or more dimensions, by fully qualified name, a shared one under its first name."""
    return {name: p for name, p in model.named_parameters() if p.dim() >= 2}


def owner_type(model: nn.Module, name: str) -> type[nn.Module]:
    """The class of the module that holds parameter `name`."""
    return type(model.get_submodule(name.rpartition(".")[0]))


def coverage_records(
    model: nn.Module, masked: dict[str, nn.Parameter], dense_reasons: dict[int, str]
) -> list[WeightCoverage]:
    """One record per weight tensor of `model`, in the model's order.

    :param model: the (unwrapped) model
    :param masked: Masking's name -> parameter of every masked weight
    :param dense_reasons: `id(parameter)` -> why it is dense, for tensors Masking could mask but does not
    :return: the records; a tensor masked under another name (shared weights) carries Masking's name
    """
    masked_names = {id(p): name for name, p in masked.items()}
    records = []
    for name, weight in weight_tensors(model).items():
        is_masked = id(weight) in masked_names
        if is_masked:
            reason = ""
        elif id(weight) in dense_reasons:
            reason = dense_reasons[id(weight)]
        else:
            reason = FROZEN if not weight.requires_grad else UNSUPPORTED
        records.append(
            WeightCoverage(
                name=masked_names.get(id(weight), name),
                shape=tuple(weight.shape),
                numel=weight.numel(),
                module_type=owner_type(model, name).__name__,
                masked=is_masked,
                reason=reason,
            )
        )
    return records


def format_coverage(records: Iterable[WeightCoverage]) -> str:
    """A short text table: a summary line, then one line per weight tensor with its size and status."""
    rows = list(records)
    total = sum(r.numel for r in rows) or 1
    masked = [r for r in rows if r.masked]
    masked_weights = sum(r.numel for r in masked)
    lines = [
        f"weight coverage: {len(masked)} of {len(rows)} weight tensors masked, holding {masked_weights:,} of "
        f"{total:,} weights ({masked_weights / total:.1%})"
    ]
    width = max([len("tensor")] + [len(r.name) for r in rows])
    shapes = ["x".join(str(size) for size in r.shape) for r in rows]
    shape_width = max([len("shape")] + [len(shape) for shape in shapes])
    lines.append(f"  {'tensor':<{width}}  {'shape':<{shape_width}}  {'weights':>12}  {'share':>6}  status")
    for r, shape in zip(rows, shapes, strict=True):
        lines.append(
            f"  {r.name:<{width}}  {shape:<{shape_width}}  {r.numel:>12,}  {r.numel / total:>6.1%}  {r.status}"
        )
    return "\n".join(lines)


def unintended_dense(records: Iterable[WeightCoverage]) -> list[WeightCoverage]:
    """Dense weight tensors the user did not choose to keep dense (frozen ones, unsupported module types)."""
    return [r for r in records if not r.masked and r.reason in UNINTENDED]


def dense_share_warning(records: Iterable[WeightCoverage]) -> str | None:
    """The warning text when unintended dense tensors hold `WARN_SHARE` of the model's weights or more, else None."""
    rows = list(records)
    total = sum(r.numel for r in rows)
    dense = unintended_dense(rows)
    held = sum(r.numel for r in dense)
    if not total or held / total < WARN_SHARE:
        return None
    named = ", ".join(f"{r.name} ({r.why})" for r in dense[:3])
    more = f" and {len(dense) - 3} more" if len(dense) > 3 else ""
    return (
        f"{held / total:.1%} of the model's weights ({held:,} of {total:,}) stay dense and outside the density: "
        f"{named}{more}; pass include=[...] to mask them or exclude=[...] to keep them dense on purpose, see "
        "masking.coverage"
    )


def closest_names(entry: str, names: Iterable[str], count: int = 3) -> list[str]:
    """The weight or module names nearest to a misspelt `entry` (module names are what users usually type)."""
    candidates: dict[str, None] = {}
    for name in names:
        candidates[name] = None
        candidates[name.rpartition(".")[0] or name] = None
    return difflib.get_close_matches(entry, list(candidates), n=count, cutoff=0.5)
