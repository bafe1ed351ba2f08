"""Sparse training as a PyTorch Lightning callback: `Trainer(callbacks=[SparseTraining("RigL", density=0.1)])`.

Lightning's own `ModelPruning` prunes once per epoch through `torch.nn.utils.prune`; this callback runs any
method of the method table, dynamic ones included, on the optimizer steps Lightning takes. Needs the `lightning`
extra (`pip install sparselearning[lightning]`).
"""

from __future__ import annotations

from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "sparselearning.integrations.lightning needs PyTorch Lightning: pip install 'sparselearning[lightning]'"
    ) from error

from sparselearning.core import Masking
from sparselearning.errors import SparseLearningError
from sparselearning.integrations.session import SparseSession, first_tensor


class SparseTraining(pl.Callback):
    """Train a LightningModule sparse with a method of the method table.

    At the start of fitting it builds the method's `Masking` from the LightningModule and its (single) optimizer,
    exposed as `.masking`. From then on every optimizer step Lightning takes runs `masking.step()`: after the
    closure's backward pass, AMP unscaling and gradient clipping, so growth ranks the real dense gradient, and once
    per optimizer step whatever `accumulate_grad_batches` is. The masking state travels in Lightning's
    checkpoints (`ckpt_path=` resumes it, ending with the masks of an uninterrupted fit). Density, ITOP rate and
    inference FLOPs (counted on the first example of the first batch, or on `example_input`) are logged under
    `sparsity/` once per optimizer step.

    :param method: a name of `sparselearning.method_table` (`"RigL"`, `"SET"`, `"SNFS"`, `"Static"`, ...)
    :param density: the active fraction of the masked weights (None for Dense)
    :param example_input: a batch the LightningModule's `forward` accepts, for FLOPs; None: the first batch's
        first tensor
    :param options: the method's options (`update_frequency`, `sparse_init`, `exclude`, ...); `total_steps`
        defaults to Lightning's `estimated_stepping_batches`
    """

    def __init__(
        self,
        method: str,
        density: float | None = None,
        *,
        example_input: torch.Tensor | None = None,
        **options: Any,
    ) -> None:
        self.session = SparseSession(method, density, **options)
        self.example_input = example_input
        self._flops_tried = False
        self._saved: dict[str, Any] | None = None

    @property
    def masking(self) -> Masking:
        """The masking, once fitting has started."""
        return self.session.started()

    @property
    def state_key(self) -> str:
        return f"SparseTraining[{self.session.method}]"

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise SparseLearningError(
                f"SparseTraining needs exactly one optimizer, configure_optimizers gave {len(optimizers)}"
            )
        total_steps = trainer.estimated_stepping_batches
        total = int(total_steps) if total_steps != float("inf") else None
        self.session.start(pl_module, optimizers[0], total, saved=self._saved)
        self._saved = None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self._flops_tried:
            self._flops_tried = True
            example = self.example_input if self.example_input is not None else first_tensor(batch)
            self.session.try_tracking_flops(None if example is None else example.to(pl_module.device))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.session.new_step():
            pl_module.log_dict(self.session.metrics(), on_step=True, on_epoch=False)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.session.stop()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.session.stop()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.session.masking is None else self.session.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._saved = dict(state_dict) if state_dict else None
