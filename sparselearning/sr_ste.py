"""`NMMasking`: N:M sparse training with SR-STE (Zhou et al., ICLR 2021), as a `Masking` the training loop,
checkpoints and export use like any other.

Where the weights live. SR-STE trains dense weights; everything else (evaluation, FLOPs counting, checkpoints'
`model` entry, export) must see the N:M weights. So the model's parameters hold `W * mask` between steps (every
masked weight exactly zero, as for every other method), and the dense W is kept here, in `dense_weights`, and
saved in the masking's state (`state_dict()["dense_weights"]`), so a resumed run is bit-identical. A `step()`:

1. adds the sparse-refined term `lambda_w * (1 - mask) * W` to the gradient autograd left for the masked weight
   (the straight-through gradient, at every position); `mask_gradients()` does it earlier, for gradient clipping;
2. puts W into the parameters and steps the optimizer on them (its momentum and moments are dense, as in the
   paper);
3. keeps the result as the new W, recomputes the N:M mask from |W| (`sparselearning.funcs.n_m.nm_mask`), and
   leaves `W * mask` in the parameters for the next forward pass.

Masks change at every step, but per-layer counts never do (N of every M), so FLOPs are counted once. The
ever-active record is updated at every step; other observers (FLOPs tracking, the cross-rank check) are told at
restore only: under DDP the masks are a function of weights that every rank holds identically.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from sparselearning.core import Masking
from sparselearning.errors import SparseLearningError
from sparselearning.funcs.n_m import (
    SPARSE_REFINED_DECAY,
    add_sparse_refined_term_,
    check_layer,
    check_n_m,
    nm_density,
    nm_mask,
)
from sparselearning.masking.apply import unscale_once
from sparselearning.masking.observers import MaskObserver
from sparselearning.misuse import warn_user


def check_refined_decay(value: object, name: str = "sparse_refined_decay") -> float:
    """lambda_w: a finite number >= 0 (0 is plain STE)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= float(value) < float("inf"):
        raise SparseLearningError(f"{name} must be a number >= 0 (lambda_w; the paper's is 2e-4), got {value!r}")
    return float(value)


class NMMasking(Masking):
    """Masks every group of `m` consecutive inputs of every masked weight to its `n` largest |w|, recomputed at
    every `step()` from the dense weights, which train by SR-STE (see the module docstring).

    :param optimizer: the optimizer stepping the model's parameters
    :param n: weights kept per group
    :param m: group size; every masked layer's fan-in must be a multiple of it
    :param sparse_refined_decay: lambda_w of the sparse-refined term (0: plain straight-through estimator)
    :param density: None, or exactly n / m (the density of an N:M method is fixed)
    :param seed: kept for `Masking`'s random streams (N:M masks use none)
    :param total_steps: the run's planned number of `step()` calls, if known: stepping past it warns once
    :param low_memory: keep no ever-active (ITOP) record
    :param observers: as for `Masking`
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        n: int = 2,
        m: int = 4,
        sparse_refined_decay: float = SPARSE_REFINED_DECAY,
        *,
        density: float | None = None,
        seed: int = 0,
        total_steps: int | None = None,
        low_memory: bool = False,
        observers: Iterable[MaskObserver] = (),
    ) -> None:
        self.n, self.m = check_n_m(n, m)
        self.sparse_refined_decay = check_refined_decay(sparse_refined_decay)
        # The base init scheme only places a placeholder mask at density n/m; `init` replaces it by the N:M one.
        super().__init__(
            optimizer,
            None,
            density=nm_density(self.n, self.m, density),
            sparse_init="random",
            dense_gradients=True,  # momentum stays dense: SR-STE's optimizer steps the dense weights
            prune_mode="magnitude",
            growth_mode="none",
            redistribution_mode="none",
            seed=seed,
            total_steps=total_steps,
            low_memory=low_memory,
            observers=observers,
        )
        self.dense_weights: dict[str, torch.Tensor] = {}
        self._refined_at: int | None = None  # the step whose gradients hold the sparse-refined term
        self._warned_past_end = False

    # ------------------------------------------------------------------ set-up

    @torch.no_grad()
    def init(self, lottery_mask_path: Any = None) -> None:
        """N:M masks from the magnitudes of the initial weights, the dense weights kept aside."""
        if lottery_mask_path is not None:
            raise SparseLearningError("N:M masks come from the weights' magnitudes; a saved mask cannot be used")
        for name, record in self.records.items():
            check_layer(name, record.parameter, self.m)
        dense = {name: record.parameter.detach().clone() for name, record in self.records.items()}
        super().init()
        self.dense_weights = dense
        self._renew_masks()
        if self._ever_active is not None:
            self._ever_active.reset(self.mask_dict)

    @torch.no_grad()
    def _renew_masks(self) -> None:
        """Masks from |W|, and `W * mask` into the parameters."""
        for name, record in self.records.items():
            dense = self.dense_weights[name]
            record.mask = nm_mask(dense, self.n, self.m)
            torch.mul(dense, record.mask, out=record.parameter)

    # ------------------------------------------------------------------ the step

    @torch.no_grad()
    def mask_gradients(self) -> None:
        """Add the sparse-refined term `lambda_w * (1 - mask) * W` to the straight-through gradients (done by
        `step()`; call it yourself before gradient clipping). Masked positions keep their gradient: SR-STE
        trains every dense weight. Runs once per step however often it is called."""
        if self._refined_at == self.mask_step:
            return
        self._refined_at = self.mask_step
        for name, record in self.records.items():
            grad = record.parameter.grad
            if grad is None or grad.is_sparse:
                continue
            # `W - W * mask` in a transient tensor: nothing weight-sized is held between steps for it.
            add_sparse_refined_term_(
                grad, self.dense_weights[name], record.parameter.detach(), self.sparse_refined_decay
            )

    def step(self, scaler: torch.amp.GradScaler | None = None) -> None:
        """Use in place of `optimizer.step()`: the SR-STE update of the dense weights, then new N:M masks.

        :param scaler: the GradScaler of float16 training, or None (a step whose gradients are not finite leaves
            weights and masks as they were)
        """
        if self.total_steps is not None and self.mask_step >= self.total_steps and not self._warned_past_end:
            self._warned_past_end = True
            warn_user(
                f"masking.step() called for step {self.mask_step + 1} of a run planned for total_steps="
                f"{self.total_steps}; pass the true total_steps"
            )
        if scaler is not None:
            unscale_once(scaler, self.optimizer)
        self.mask_gradients()
        records = list(self.records.items())
        with torch.no_grad():
            for name, record in records:
                record.parameter.copy_(self.dense_weights[name])
        try:
            if scaler is None:
                self.optimizer.step()
            else:
                scaler.step(self.optimizer)
        except BaseException:
            self._renew_masks()  # the dense weights are unchanged: the parameters go back to W * mask
            raise
        with torch.no_grad():
            for name, record in records:
                self.dense_weights[name].copy_(record.parameter)
            self._renew_masks()
            if self._ever_active is not None:
                for name, mask in self.mask_dict.items():
                    self._ever_active.include(name, mask)
        if scaler is not None:
            scaler.update()
        self.mask_step += 1

    def update_connections(self) -> Any:
        """N:M masks change at every `step()`; there is no separate update."""
        raise SparseLearningError("N:M masks are recomputed by every masking.step(); do not call update_connections()")

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """`Masking.state_dict()` plus the dense weights and the N:M settings (weights_only-safe)."""
        state = super().state_dict()
        state["dense_weights"] = {name: weight.detach().cpu().clone() for name, weight in self.dense_weights.items()}
        state["n_m"] = {"n": self.n, "m": self.m, "sparse_refined_decay": self.sparse_refined_decay}
        return state

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` saved: masks, counters and the dense weights (the masks are then recomputed
        from them, which gives the saved ones: the rule is deterministic)."""
        saved = state.get("n_m") if isinstance(state, dict) else None
        if not isinstance(saved, dict) or (saved.get("n"), saved.get("m")) != (self.n, self.m):
            found = "no N:M state" if not isinstance(saved, dict) else f"{saved.get('n')}:{saved.get('m')}"
            raise SparseLearningError(f"checkpoint holds {found}, this run trains {self.n}:{self.m} sparsity")
        dense = state.get("dense_weights")
        if not isinstance(dense, dict) or set(dense) != set(self.records):
            raise SparseLearningError(
                f"checkpoint's dense_weights do not name this model's layers {list(self.records)}"
            )
        for name, weight in dense.items():
            expected = self.records[name].parameter
            if not isinstance(weight, torch.Tensor) or weight.shape != expected.shape or not weight.is_floating_point():
                raise SparseLearningError(
                    f"checkpoint's dense weight {name!r} does not fit a {tuple(expected.shape)} layer"
                )
        super().load_state_dict(state)
        self.dense_weights = {
            name: weight.to(device=self.records[name].parameter.device, dtype=self.records[name].parameter.dtype)
            .clone()
            .contiguous(memory_format=_memory_format(self.records[name].parameter))
            for name, weight in dense.items()
        }
        self._renew_masks()
        self._refined_at = None


def _memory_format(tensor: torch.Tensor) -> torch.memory_format:
    """channels_last for a 4-d tensor stored so, else contiguous (the dense copy mirrors its parameter)."""
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
