"""SRigL's mask rules: RigL under a constant fan-in constraint, with neuron ablation.

Lasby et al., "Dynamic Sparse Training with Structured Sparsity" (ICLR 2024). A neuron is one output of a layer:
a row of a Linear weight, an output channel (all its input channels and kernel positions) of a convolution. Every
neuron that is not ablated holds the same number k of active inputs, so a layer is a dense (neurons, k) weight
plus an index table. An update of a layer with L active weights and drop fraction f:

1. saliency: RigL's own criteria name the *salient* weights: the `L - ceil(f * L)` active weights of largest |w|
   (those RigL would keep) and the `ceil(f * L)` other positions of largest |gradient| (those RigL would
   regrow); each neuron's salient count is how many of them it holds;
2. ablation: a neuron with fewer than `gamma_sal * k0` salient weights is ablated (all its weights inactive),
   where `k0 = L // neurons` is the layer's fan-in with no neuron ablated (the reference code's
   `use_sparse_const_fan_in_for_ablation`); the other neurons share the layer's L weights, `k = L / alive`.
   The output layer (the last masked weight) is never ablated. Ablation is decided afresh at every update, so
   an ablated neuron whose gradients become salient comes back;
3. drop: RigL's magnitude drop over the layer, then every surviving neuron trimmed to its k largest |w|;
4. grow: every surviving neuron regrows, at its largest |gradient| among its inactive positions, exactly what
   brings it back to k (grown weights start at zero, as in RigL).

Exact counts. The library keeps every layer's active count: growth puts back exactly what the drop removed. So
that L weights are shared equally, the number of surviving neurons must divide L: the rule keeps the smallest
such count that is at least the neurons above the saliency threshold (ablating fewer than the threshold names
when no count in between divides L), and never fewer than `ceil(L / fan_in)` (k stays within the dense fan-in).
This is the one departure from the paper, whose layers lose the remainder `L mod alive` when neurons are
ablated; here the layer's, hence the network's, active count never changes.

Ties go to the lower index everywhere (magnitudes, gradients, saliency), so updates are deterministic.
The prune rule hands the growth rule its decision (which neurons survive, and k) for the same update; the growth
rule refuses a mask that its prune rule did not leave, so `prune_mode` and `growth_mode` are both `srigl`.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from sparselearning.errors import SparseLearningError
from sparselearning.funcs._layers import active_indices, gradient_of
from sparselearning.ops.select import topk_indices

if TYPE_CHECKING:
    from sparselearning.masking.view import MaskingView as Masking

GAMMA_SAL = 0.3  # the paper's default minimum share of salient weights per neuron


@dataclass(frozen=True)
class FanInPlan:
    """What the prune rule decided for one layer at one update, for the growth rule that follows it.

    :param after_drop: the mask the prune rule returned
    :param alive: one bool per neuron: not ablated
    :param fan_in: the constant fan-in k every alive neuron is grown back to
    """

    after_drop: torch.Tensor
    alive: torch.Tensor
    fan_in: int


# masking -> layer -> the plan of the update in progress (weak: a finished Masking takes its plans with it)
_PLANS: weakref.WeakKeyDictionary[object, dict[str, FanInPlan]] = weakref.WeakKeyDictionary()


def neuron_rows(tensor: torch.Tensor) -> torch.Tensor:
    """A weight (or mask) as one row per neuron: (outputs, inputs * kernel elements)."""
    if tensor.dim() < 2:
        raise SparseLearningError(f"constant fan-in needs a weight of 2 or more dims, got {tuple(tensor.shape)}")
    return tensor.reshape(tensor.shape[0], -1)


def fan_ins(mask: torch.Tensor) -> torch.Tensor:
    """Active inputs of every neuron of a mask (int64, one per output)."""
    return neuron_rows(mask).sum(dim=1)


def constant_fan_in(mask: torch.Tensor) -> int | None:
    """The fan-in k shared by every neuron with an active weight (ablated neurons hold none), or None when
    neurons differ (0 for an empty mask)."""
    counts = fan_ins(mask)
    alive = counts[counts > 0]
    if alive.numel() == 0:
        return 0
    k = int(alive[0])
    return k if bool((alive == k).all()) else None


def alive_count(total: int, neurons: int, wanted: int, fan_in: int) -> int | None:
    """How many neurons share `total` weights equally: the smallest divisor of `total` that is at least
    `wanted` and at least `ceil(total / fan_in)` (no neuron above its dense fan-in), at most `neurons`; when
    none is at least `wanted`, the largest below it. None when no count of neurons can share `total` equally.

    :param total: the layer's active weights
    :param neurons: its outputs
    :param wanted: how many neurons the saliency threshold keeps
    :param fan_in: its dense fan-in
    """
    if total == 0:
        return 0
    lowest = max(1, math.ceil(total / fan_in))
    divisors = [count for count in range(lowest, neurons + 1) if total % count == 0]
    if not divisors:
        return None
    above = [count for count in divisors if count >= wanted]
    return above[0] if above else divisors[-1]


def _rank_in_rows(scores: torch.Tensor) -> torch.Tensor:
    """Each entry's rank within its row, largest score first, ties to the lower index (0 = best)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    return ranks.scatter_(1, order, positions)


def _rigl_keeps(mask: torch.Tensor, weight: torch.Tensor, drop: int) -> torch.Tensor:
    """Flat bool: the active weights RigL keeps, all but the `drop` of smallest |w| (ties: lower index kept)."""
    active = active_indices(mask)
    magnitudes = weight.detach().reshape(-1).take(active).abs().float()
    kept = torch.zeros(mask.numel(), dtype=torch.bool, device=mask.device)
    kept[active.take(topk_indices(magnitudes, active.numel() - drop))] = True
    return kept


def _salient_counts(kept: torch.Tensor, gradient: torch.Tensor, drop: int, neurons: int) -> torch.Tensor:
    """Per neuron, how many of RigL's kept weights and RigL's `drop` regrowth positions (largest |gradient|
    among the positions it does not keep) it holds."""
    salient = kept.clone()
    if drop > 0:
        scores = gradient.detach().reshape(-1).abs().float()
        scores = scores.masked_fill(kept, -1.0)
        salient[topk_indices(scores, drop)] = True
    return salient.view(neurons, -1).sum(dim=1)


def srigl_prune(
    masking: Masking, mask: torch.Tensor, weight: torch.Tensor, name: str, gamma_sal: float = GAMMA_SAL
) -> torch.Tensor:
    """SRigL's drop: saliency, neuron ablation, RigL's magnitude drop, then every alive neuron trimmed to the new
    constant fan-in k (see the module docstring). Only deactivates; records the plan for `srigl_growth`.

    :param masking: Masking instance
    :param mask: layer mask
    :param weight: layer weight
    :param name: layer name
    :param gamma_sal: a neuron with fewer than `gamma_sal * k0` salient weights is ablated (0: never)
    :return: pruned mask
    """
    rows = neuron_rows(mask)
    neurons, dense_fan_in = rows.shape
    total = int(rows.sum())
    drop = min(total, math.ceil(masking.name2prune_rate.get(name, 0.0) * total))
    kept = _rigl_keeps(mask, weight, drop)
    ablates = gamma_sal > 0 and name != list(masking.mask_dict)[-1]  # never the output layer
    if ablates:
        counts = _salient_counts(kept, gradient_of(weight, name), drop, neurons)
        wanted = neurons - int((counts.double() < gamma_sal * (total // neurons)).sum())
    else:
        counts = torch.zeros(neurons, dtype=torch.long, device=mask.device)
        wanted = neurons
    alive_neurons = alive_count(total, neurons, wanted, dense_fan_in)
    if alive_neurons is None or (not ablates and alive_neurons != neurons):
        raise SparseLearningError(
            f"layer {name!r} holds {total:,} active weights, which its {neurons:,} neurons cannot share equally "
            f"(constant fan-in); start SRigL from a constant fan-in init (sparse_init fan-in-erdos-renyi-kernel or "
            f"fan-in-random)"
        )
    alive = torch.zeros(neurons, dtype=torch.bool, device=mask.device)
    by_saliency = torch.sort(counts, descending=True, stable=True).indices  # ties: the lower neuron index
    alive[by_saliency[:alive_neurons]] = True
    fan_in = total // alive_neurons if alive_neurons else 0

    kept_rows = kept.view(neurons, dense_fan_in) & alive.view(-1, 1)
    scores = neuron_rows(weight.detach()).abs().float().masked_fill(~kept_rows, -1.0)
    after_drop = (kept_rows & (_rank_in_rows(scores) < fan_in)).view(mask.shape)
    _PLANS.setdefault(masking, {})[name] = FanInPlan(after_drop.clone(), alive, fan_in)
    return after_drop


def srigl_prune_no_ablation(masking: Masking, mask: torch.Tensor, weight: torch.Tensor, name: str) -> torch.Tensor:
    """Constant fan-in RigL without neuron ablation (`gamma_sal = 0`, the paper's ablation baseline)."""
    return srigl_prune(masking, mask, weight, name, gamma_sal=0.0)


def srigl_growth(masking: Masking, name: str, total_regrowth: int, weight: torch.Tensor) -> torch.Tensor:
    """SRigL's growth: every alive neuron regrows, at its largest |gradient| among its inactive positions, what
    brings it back to the constant fan-in k its prune rule chose (ties to the lower index).

    :param masking: Masking instance
    :param name: layer name
    :param total_regrowth: amount to re-grow; must be what the prune rule's plan needs
    :param weight: layer weight
    :return: new boolean mask
    """
    mask = masking.mask_dict[name]
    plan = _PLANS.get(masking, {}).pop(name, None)
    if plan is None or plan.after_drop.shape != mask.shape or not torch.equal(plan.after_drop, mask):
        raise SparseLearningError(
            f"growth_mode 'srigl' on layer {name!r} grows what its prune rule dropped at this update; use it with "
            "prune_mode srigl or srigl-no-ablation"
        )
    rows = neuron_rows(mask)
    needed = (plan.fan_in - rows.sum(dim=1)) * plan.alive
    if int(needed.sum()) != int(total_regrowth):
        raise SparseLearningError(
            f"growth_mode 'srigl' on layer {name!r} must grow {int(needed.sum()):,} weights to keep every neuron at "
            f"fan-in {plan.fan_in}, but was asked for {int(total_regrowth):,}; use redistribution_mode none"
        )
    scores = neuron_rows(gradient_of(weight, name).detach()).abs().float().masked_fill(rows, -1.0)
    grown = rows | (_rank_in_rows(scores) < needed.view(-1, 1))
    return grown.view(mask.shape)
