"""Sparse training as a Hugging Face `Trainer` callback: `Trainer(..., callbacks=[SparseTrainingCallback("RigL",
density=0.1)])`. Needs the `hf` extra (`pip install sparselearning[hf]`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("sparselearning.integrations.hf needs transformers: pip install 'sparselearning[hf]'") from error

from sparselearning.core import Masking
from sparselearning.errors import SparseLearningError
from sparselearning.integrations.session import SparseSession, first_tensor
from sparselearning.io import atomic_save, safe_load
from sparselearning.misuse import warn_user

MASKING_FILE = "sparselearning_masking.pt"


def checkpoint_folder(args: TrainingArguments, state: TrainerState) -> Path:
    """The folder the Trainer writes its checkpoint of the current step to (and a resume at that step reads)."""
    return Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"


class SparseTrainingCallback(TrainerCallback):
    """Train a `Trainer`'s model sparse with a method of the method table.

    When training begins it builds the method's `Masking` from the Trainer's model and optimizer, exposed as
    `.masking`; every optimizer step the Trainer takes then runs `masking.step()` (after gradient clipping, once
    per `gradient_accumulation_steps` micro-batches). `total_steps` defaults to the Trainer's `max_steps`.

    Checkpoints: at every save the masking state is written beside the Trainer's files, as `MASKING_FILE` in
    `checkpoint-<step>/`. A resumed `train(resume_from_checkpoint=...)` reads it from
    `<output_dir>/checkpoint-<step>/` (the Trainer does not tell callbacks which folder it resumed from: pass
    `resume_from=` when it is elsewhere); the masks are refused if they were saved beside other weights.

    Logging: density, ITOP rate and inference FLOPs (counted on one example of the first training batch, or on
    `example_input`) are added under `sparsity/` to every log entry of `trainer.state.log_history`, and to the
    `logs` that callbacks after this one receive. Reporting integrations (`report_to`) run before user callbacks
    in the Trainer, so they do not see these values.

    :param method: a name of `sparselearning.method_table` (`"RigL"`, `"SET"`, `"SNFS"`, `"Static"`, ...)
    :param density: the active fraction of the masked weights (None for Dense)
    :param example_input: input ids (or another tensor) the model accepts positionally, for FLOPs
    :param resume_from: the checkpoint folder a resumed run restarts from, when it is not under `output_dir`
    :param options: the method's options (`update_frequency`, `sparse_init`, `exclude`, ...)
    """

    def __init__(
        self,
        method: str,
        density: float | None = None,
        *,
        example_input: torch.Tensor | None = None,
        resume_from: str | Path | None = None,
        **options: Any,
    ) -> None:
        self.session = SparseSession(method, density, **options)
        self.example_input = example_input
        self.resume_from = None if resume_from is None else Path(resume_from)
        self._captured: torch.Tensor | None = None
        self._capture_hook: torch.utils.hooks.RemovableHandle | None = None

    @property
    def masking(self) -> Masking:
        """The masking, once training has begun."""
        return self.session.started()

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: nn.Module | None = None,
        optimizer: Any = None,
        **kwargs: Any,
    ) -> None:
        if model is None or optimizer is None:
            raise SparseLearningError("SparseTrainingCallback needs the Trainer's model and optimizer")
        inner = getattr(optimizer, "optimizer", optimizer)  # Accelerate wraps the torch optimizer
        saved = self._saved_state(args, state) if state.global_step > 0 else None
        self.session.start(model, inner, state.max_steps, saved=saved)
        if self.example_input is None:
            self._capture_hook = model.register_forward_pre_hook(self._capture, with_kwargs=True)

    def _saved_state(self, args: TrainingArguments, state: TrainerState) -> dict[str, Any]:
        path = (self.resume_from or checkpoint_folder(args, state)) / MASKING_FILE
        if not path.is_file():
            raise SparseLearningError(
                f"resuming at step {state.global_step} but {path} does not exist: pass "
                "SparseTrainingCallback(resume_from=<the checkpoint folder>) with the folder you resume from"
            )
        return safe_load(path, "sparse-training state")

    def _capture(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Keep one example of the first training batch, for counting FLOPs."""
        found = kwargs.get("input_ids")
        if not isinstance(found, torch.Tensor):
            found = first_tensor(list(args) or kwargs)
        self._captured = None if found is None else found[:1].detach()
        if self._capture_hook is not None:
            self._capture_hook.remove()
            self._capture_hook = None

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.session.routing is not None:
            self.session.routing.ensure()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.session.flops is None and (self.example_input is not None or self._captured is not None):
            example = self.example_input if self.example_input is not None else self._captured
            self.example_input = self._captured = None  # one attempt
            self.session.try_tracking_flops(example)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.session.masking is None:
            return
        metrics = self.session.metrics()
        if logs is not None:
            logs.update(metrics)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(metrics)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.session.masking is None or not state.is_world_process_zero:
            return
        folder = checkpoint_folder(args, state)
        if not folder.is_dir():
            warn_user(f"SparseTrainingCallback: no checkpoint folder {folder} to save the masks beside")
            return
        atomic_save(self.session.state_dict(), folder / MASKING_FILE)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._capture_hook is not None:
            self._capture_hook.remove()
            self._capture_hook = None
        self.session.stop()
