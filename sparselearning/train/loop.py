"""One training run, from a checked configuration to `summary.json`, resumable at every epoch boundary.

Semantics follow the seed project: on a mask-update iteration the update replaces the optimizer step; the
learning-rate schedule steps every iteration; validation every `val_interval` epochs; test at the end. The
data order depends only on (seed, epoch), the masks only on (seed, step, layer), and the global random state
is checkpointed, so a resumed run ends bit-identical to one that was never interrupted.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from sparselearning.conf.schema import RunConfig, SplitDatasetConfig
from sparselearning.core import Masking
from sparselearning.counting.inference import count_inference_flops, layer_densities
from sparselearning.counting.tracker import track_flops
from sparselearning.counting.training import training_flops_fraction
from sparselearning.data.info import data_record
from sparselearning.data.loader import InMemoryLoader
from sparselearning.data.registry import DatasetInfo, load_dataset
from sparselearning.data.split import resplit
from sparselearning.errors import SparseLearningError, first_line
from sparselearning.funcs.decay import MagnitudePruneDecay
from sparselearning.io import atomic_save
from sparselearning.masking.selection import weight_candidates
from sparselearning.models import registry as model_registry
from sparselearning.models.arguments import registry_model_arguments
from sparselearning.runs import directory, files
from sparselearning.runs.identity import directory_hash, group_hash, run_settings, with_fingerprint
from sparselearning.runs.masks import pack_masks
from sparselearning.runs.naming import plain_config
from sparselearning.stats import itop_rate
from sparselearning.train import distributed
from sparselearning.train.build import build_masking, build_model, build_optimizer, build_scheduler
from sparselearning.train.checkpoint import (
    load_checkpoint,
    nonfinite_tensor,
    random_state,
    restore_random_state,
    save_checkpoint,
)
from sparselearning.train.evaluate import evaluate
from sparselearning.train.logs import MetricsLog
from sparselearning.train.settings import Schedule, check_config, schedule_for
from sparselearning.train.stopping import SignalCatcher, StopRequested


@dataclass
class Progress:
    """What the loop carries across epochs and checkpoints (`batch`: batches done of the current epoch,
    non-zero only in a checkpoint saved mid-epoch when the run was stopped by a signal)."""

    epoch: int = 0
    step: int = 0
    batch: int = 0
    best_val_accuracy: float = -1.0
    wall_time_s: float = 0.0
    val: dict[str, float] = field(default_factory=dict)


@dataclass
class EpochState:
    """The running sums of the epoch in progress and its starting masks: saved with a mid-epoch checkpoint,
    so a resumed epoch logs exactly what an uninterrupted one would have."""

    start_masks: dict[str, torch.Tensor]
    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "start_masks": self.start_masks,
            "loss_sum": self.loss_sum,
            "correct": self.correct,
            "seen": self.seen,
            "batches": self.batches,
        }


def _json_safe(value: Any) -> Any:
    """Non-finite floats become None so that `summary.json` stays valid JSON (no bare NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SparseLearningError("device=cuda but no CUDA GPU is available; use device=cpu or device=auto")
    return torch.device(name)


def _loaders(config: RunConfig, tensors: dict, info: DatasetInfo, device: torch.device, rank: int, world: int):
    dataset = config.dataset
    augment = info.augment if dataset.augment is None else dataset.augment
    common: dict[str, Any] = {"mean": info.mean, "std": info.std, "seed": config.seed, "device": device}
    train = InMemoryLoader(
        tensors["train_images"],
        tensors["train_labels"],
        dataset.batch_size,
        shuffle=True,
        drop_last=True,
        augment=augment,
        rank=rank,
        world_size=world,
        **common,
    )
    evaluation = dataset.test_batch_size
    val = InMemoryLoader(tensors["val_images"], tensors["val_labels"], evaluation, shuffle=False, **common)
    test = InMemoryLoader(tensors["test_images"], tensors["test_labels"], evaluation, shuffle=False, **common)
    return train, val, test


def _model_name(cfg: DictConfig) -> str:
    return str(OmegaConf.select(cfg, "model._target_") or cfg.model.name)


def _mixed_precision(setting: object, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """Autocast dtype and loss scaler: bfloat16 on CPU (no scaler); float16 with a GradScaler on CUDA, or
    bfloat16 there when asked for with `mixed_precision=bf16`."""
    if setting in (False, None, "false", "off"):
        return None, None
    choice = str(setting).lower()
    if choice not in ("true", "bf16", "fp16"):
        raise SparseLearningError(f"mixed_precision must be false, true, bf16 or fp16, got {setting!r}")
    if device.type != "cuda":
        if choice == "fp16":
            raise SparseLearningError("mixed_precision=fp16 needs a CUDA GPU; on CPU use true or bf16 (bfloat16)")
        return torch.bfloat16, None
    if choice == "bf16":
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def _uses_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


class Run:
    """The objects of one run and the operations on them; `execute()` trains, evaluates and summarises."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        self.config: RunConfig = check_config(cfg)  # the typed settings the run reads
        self.cfg = cfg  # as composed: the run's identity and config.yaml are computed from it
        self.run_dir = Path(run_dir)
        self.rank, self.world = distributed.rank_and_world()
        self.is_main = self.rank == 0
        self.settings = run_settings(plain_config(cfg), self.world)
        config = self.config
        self.device = resolve_device(config.device) if not distributed.is_active() else distributed.device()
        torch.manual_seed(config.seed)
        dataset = config.dataset
        options = dataset.loader_options(config.seed)
        self.tensors, self.info = load_dataset(dataset.name, root=dataset.root, **options)
        # A user's own data is identified by what it holds: a run directory made with other data is refused.
        self.settings = with_fingerprint(self.settings, self.info.fingerprint)
        if isinstance(dataset, SplitDatasetConfig) and dataset.val_fraction is not None:
            self.tensors = resplit(self.tensors, dataset.val_fraction)
        self.train_loader, self.val_loader, self.test_loader = _loaders(
            config, self.tensors, self.info, self.device, self.rank, self.world
        )
        if len(self.train_loader) == 0:
            examples = len(self.tensors["train_labels"])
            raise SparseLearningError(
                f"dataset.batch_size={dataset.batch_size} is larger than the training set ({examples} examples"
                f"{f' shared by {self.world} processes' if self.world > 1 else ''}); lower dataset.batch_size"
            )
        self.schedule: Schedule = schedule_for(config, len(self.train_loader))
        self.model = build_model(cfg, self.info).to(self.device)
        channels_last = config.channels_last
        use_cl = (channels_last == "auto" and self.device.type == "cpu" and _uses_conv(self.model)) or (
            channels_last is True
        )
        self.memory_format = torch.channels_last if use_cl else None
        if use_cl:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.network = distributed.wrap(self.model, self.device)
        self.optimizer = build_optimizer(config, self.model)
        self.scheduler = build_scheduler(config, self.optimizer, self.schedule.total_steps)
        self.masking: Masking = build_masking(config, self.model, self.optimizer, self.schedule)
        track_flops(self.masking, self._example_input())
        distributed.configure_masking(self.masking, verify=self.config.verify_sync)
        self.amp_dtype, self.scaler = _mixed_precision(config.mixed_precision, self.device)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.optimizer.label_smoothing)
        self.progress = Progress()
        self.epoch_state: EpochState | None = None
        self.checkpoint_dir = self.run_dir / directory.CHECKPOINTS
        # Last: a mistake in the settings themselves is the first thing to name; nothing is written before.
        self._claim_check()

    # ------------------------------------------------------------------ the run directory

    def _claim_check(self) -> None:
        """Refuse, before any work, a run directory that is someone else's or holds a run of other settings
        (every rank stops together when the main one refuses)."""
        refusal: SparseLearningError | None = None
        if self.is_main:
            try:
                self._check_directory()
            except SparseLearningError as error:
                refusal = error
        if not distributed.all_agree(refusal is None):
            raise refusal or SparseLearningError(f"process 0 refused the run directory {self.run_dir}")

    def _check_directory(self) -> None:
        directory.check_usable(self.run_dir)
        directory.check_identity(self.run_dir, self.settings)
        checkpoints = self.run_dir / directory.CHECKPOINTS
        if checkpoints.is_symlink() or (checkpoints.exists() and not checkpoints.is_dir()):
            raise SparseLearningError(
                f"{checkpoints} must be a folder this run writes its checkpoints to, but it is "
                f"{'a symbolic link' if checkpoints.is_symlink() else 'a file'}; move it aside"
            )

    @property
    def identity(self) -> dict[str, Any]:
        """The identity record stored in `identity.json`, every checkpoint and `summary.json`."""
        return directory.identity_record(self.settings, group_hash(self.settings), directory_hash(self.settings))

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint_content(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "masking": self.masking.state_dict(),
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            "best_val_accuracy": self.progress.best_val_accuracy,
            "wall_time_s": self.progress.wall_time_s,
            "val": dict(self.progress.val),
            "rng": random_state(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "config": OmegaConf.to_yaml(self.cfg, resolve=True),
            "data": data_record(self.info),  # what export needs of the data: shape, classes, normalisation
        }

    def try_resume(self) -> bool:
        path = self.checkpoint_dir / "last.pt"
        if not (self.config.resume and path.exists()):
            return False
        state = load_checkpoint(path, self.settings, self.schedule.epochs, self.schedule.steps_per_epoch)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise SparseLearningError(
                f"checkpoint {path} does not fit this model: {first_line(error, limit=None)}"
            ) from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.masking.load_state_dict(state["masking"])
        restore_random_state(state["rng"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(
            epoch=int(state["epoch"]),
            step=int(state["step"]),
            batch=int(state.get("batch", 0)),
            best_val_accuracy=float(state["best_val_accuracy"]),
            wall_time_s=float(state["wall_time_s"]),
            val=dict(state.get("val", {})),
        )
        if self.progress.batch:
            self.epoch_state = self._saved_epoch_state(state.get("epoch_state"), path)
        return True

    def _saved_epoch_state(self, saved: Any, path: Path) -> EpochState:
        """The running sums of a checkpoint saved mid-epoch, checked against this run's masks."""
        masks = self.masking.mask_dict
        try:
            start = saved["start_masks"]
            fits = set(start) == set(masks) and all(
                start[n].dtype == torch.bool and start[n].shape == masks[n].shape for n in masks
            )
            loss_sum, correct = saved["loss_sum"], saved["correct"]
            if not (fits and isinstance(loss_sum, torch.Tensor) and isinstance(correct, torch.Tensor)):
                raise TypeError
            return EpochState(
                {n: m.to(self.device) for n, m in start.items()},
                loss_sum.to(self.device),
                correct.to(self.device),
                int(saved["seen"]),
                int(saved["batches"]),
            )
        except (TypeError, KeyError, AttributeError):
            raise SparseLearningError(
                f"checkpoint {path}: field 'epoch_state' does not fit a run stopped mid-epoch"
            ) from None

    def save(self, best: bool, mid_epoch: EpochState | None = None) -> None:
        """Write `last.pt` (and `best.pt`); weights that are no longer finite are never saved."""
        if not self.is_main:
            return
        bad = nonfinite_tensor(self.model.state_dict())
        if bad is not None:
            self._stop_on_divergence(f"NaN or infinity in {bad}")
        content = self._checkpoint_content()
        if mid_epoch is not None:
            content.update(batch=self.progress.batch, epoch_state=mid_epoch.as_dict())
        save_checkpoint(self.checkpoint_dir / "last.pt", content, self.run_dir)
        if best:
            save_checkpoint(self.checkpoint_dir / "best.pt", content, self.run_dir)

    # ------------------------------------------------------------------ measurement

    def _example_input(self) -> torch.Tensor:
        inputs, _ = next(iter(self.test_loader))
        return inputs[:1]

    def inference_flops(self):
        densities = layer_densities(self.masking.mask_dict)
        return count_inference_flops(self.model, self._example_input(), densities)

    def _full_width_reference(self) -> tuple[float, int]:
        """Dense FLOPs per example and maskable weights of the full-width model: a method that narrows its model
        (Small-Dense) is compared against it, every other method against its own dense model."""
        if not self.config.masking.method.narrows_model or "_target_" in self.cfg.model:
            return self.inference_flops().dense, self.masking.total_params
        name, kwargs = registry_model_arguments(self.cfg, self.info)  # full width
        reference = model_registry[name](**kwargs).to(self.device)
        weights = sum(
            candidate.parameter.numel() for candidate in weight_candidates(reference) if candidate.masked_by_default
        )
        return count_inference_flops(reference, self._example_input()).dense, weights

    def train_flops_fraction(self) -> float:
        kind = self.config.masking.method.flops_kind  # how the method table counts its FLOPs
        mean_fraction = self.masking.avg_inference_FLOPs / self.masking.dense_FLOPs
        if kind == "pruning":
            decay = self.masking.prune_rate_decay
            assert isinstance(decay, MagnitudePruneDecay)
            schedule = [decay.cumulative_sparsity(t) for t in range(self.schedule.total_steps)]
            return training_flops_fraction(kind, mean_fraction, sparsity_schedule=schedule)
        return training_flops_fraction(kind, mean_fraction, update_interval=self.schedule.update_frequency)

    # ------------------------------------------------------------------ the loop

    def train_step(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One training iteration on one batch (an optimizer step, or a mask update on an update iteration).

        :return: the batch's outputs and loss, detached
        """
        if self.memory_format is not None:
            inputs = inputs.contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            outputs = self.network(inputs)
            loss = self.criterion(outputs, labels)
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        self.masking.step(scaler=self.scaler)
        self.scheduler.step()
        self.progress.step += 1
        return outputs.detach(), loss.detach()

    def _train_epoch(self, epoch: int, log: MetricsLog, state: EpochState, stop: SignalCatcher) -> None:
        """Train one epoch from `self.progress.batch` on; a stop signal saves mid-epoch and raises."""
        self.train_loader.set_epoch(epoch)
        self.network.train()
        interval = self.config.log_interval
        first = self.progress.batch
        bar = tqdm(
            self.train_loader.batches(first),
            total=len(self.train_loader) - first,
            desc=f"epoch {epoch + 1}/{self.schedule.epochs}",
            disable=not (self.is_main and self.config.progress),
            leave=False,
            dynamic_ncols=True,
        )
        for inputs, labels in bar:
            outputs, loss = self.train_step(inputs, labels)
            self.progress.batch += 1
            state.loss_sum += loss
            state.correct += (outputs.argmax(1) == labels).sum()
            state.seen += len(labels)
            state.batches += 1
            logged = self.progress.step % interval == 0
            if logged:
                mean_loss = float(state.loss_sum) / state.batches
                if not torch.isfinite(state.loss_sum):
                    self._stop_on_divergence(f"the loss became {mean_loss}")
                record = {
                    "split": "train",
                    "step": self.progress.step,
                    "epoch": epoch + 1,
                    "loss": mean_loss,
                    "accuracy": int(state.correct) / state.seen,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "density": self.masking.stats.total_density,
                    "prune_rate": self.masking.prune_rate,
                }
                log.write(record)
                bar.set_postfix(
                    loss=f"{mean_loss:.4f}",
                    acc=f"{record['accuracy']:.3f}",
                    density=f"{record['density']:.4f}",
                    lr=f"{record['lr']:.2e}",
                )
                state.loss_sum.zero_()
                state.correct.zero_()
                state.seen = state.batches = 0
            if self.progress.batch < len(self.train_loader) and self._stop_now(stop, logged):
                self.save(best=False, mid_epoch=state)
                raise StopRequested(int(stop.signum or 15), self.progress.step, self._kept_message())
        if state.seen and not torch.isfinite(state.loss_sum):
            self._stop_on_divergence(f"the loss became {float(state.loss_sum)}")

    def _stop_now(self, stop: SignalCatcher, logged: bool) -> bool:
        """Whether to stop after this step: at once in one process; under DDP every rank must stop at the
        same step, so they agree at the steps where the loss is read anyway (every `log_interval`)."""
        if not distributed.is_active():
            return stop.signum is not None
        if not logged:
            return False
        stopping = distributed.any_rank(stop.signum is not None)
        if stopping and stop.signum is None:
            stop.signum = 15  # another rank was signalled
        return stopping

    def _kept_message(self) -> str:
        return f"its checkpoint is in {self.checkpoint_dir}"

    def _stop_on_divergence(self, what: str) -> None:
        kept = (
            f"the last good checkpoint is kept in {self.checkpoint_dir}"
            if (self.checkpoint_dir / "last.pt").exists()
            else "no epoch finished, so no checkpoint was written"
        )
        raise SparseLearningError(
            f"training diverged: {what} near step {self.progress.step}; {kept}; "
            f"lower optimizer.lr (now {self.cfg.optimizer.lr}) and run again"
        )

    def _mask_record(self, epoch: int, previous: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Per-layer densities, the share of active weights that are new since the last epoch, the ITOP rate."""
        masks = self.masking.mask_dict
        active = max(1, self.masking.stats.total_nonzero)
        grown = sum(int((masks[n] & ~previous[n]).sum()) for n in masks if n in previous)
        record: dict[str, Any] = {
            "split": "masks",
            "step": self.progress.step,
            "epoch": epoch + 1,
            "density": self.masking.stats.total_density,
            "turnover": grown / active,
            "layer_density": layer_densities(masks),
        }
        itop = itop_rate(self.masking.ever_active_count, self.masking.total_params)
        if itop is not None:
            record["itop_rate"] = itop
        return record

    def _validate(self, epoch: int, log: MetricsLog) -> dict[str, float]:
        metrics = evaluate(self.model, self.val_loader, self.memory_format)
        log.write({"split": "val", "step": self.progress.step, "epoch": epoch + 1, **metrics})
        return metrics

    def execute(self) -> dict[str, Any]:
        lock = directory.RunLock(self.run_dir) if self.is_main else None
        with SignalCatcher() as stop:
            try:
                if lock is not None:
                    lock.acquire()
                    self._check_directory()  # again, now that no other process can change it
                return self._execute(stop)
            finally:
                if lock is not None:
                    lock.release()

    def _execute(self, stop: SignalCatcher) -> dict[str, Any]:
        resumed = self.try_resume()
        log = MetricsLog(self.run_dir, self.progress.step if resumed else None, enabled=self.is_main)
        try:
            self._write_config()
            val_interval = self.config.val_interval
            for epoch in range(self.progress.epoch, self.schedule.epochs):
                started = time.perf_counter()
                state = self.epoch_state or EpochState(
                    {name: mask.clone() for name, mask in self.masking.mask_dict.items()},
                    torch.zeros((), device=self.device),
                    torch.zeros((), device=self.device, dtype=torch.long),
                )
                self.epoch_state = None
                try:
                    self._train_epoch(epoch, log, state, stop)
                finally:
                    self.progress.wall_time_s += time.perf_counter() - started
                started = time.perf_counter()
                log.write(self._mask_record(epoch, state.start_masks))
                last = epoch + 1 == self.schedule.epochs
                best = False
                if (epoch + 1) % val_interval == 0 or last:
                    self.progress.val = self._validate(epoch, log)
                    best = self.progress.val["accuracy"] > self.progress.best_val_accuracy
                    if best:
                        self.progress.best_val_accuracy = self.progress.val["accuracy"]
                self.progress.epoch = epoch + 1
                self.progress.batch = 0
                self.progress.wall_time_s += time.perf_counter() - started
                self.save(best)
                distributed.barrier()
                if not last and self._stop_now(stop, logged=True):
                    raise StopRequested(int(stop.signum or 15), self.progress.step, self._kept_message())
            return self._finish(log)
        finally:
            log.close()

    def _write_config(self) -> None:
        if self.is_main:
            files.write_text(self.run_dir / directory.CONFIG, OmegaConf.to_yaml(self.cfg, resolve=True), self.run_dir)
            files.write_text(
                self.run_dir / directory.IDENTITY, json.dumps(self.identity, indent=2) + "\n", self.run_dir
            )

    def _finish(self, log: MetricsLog) -> dict[str, Any]:
        test = evaluate(self.model, self.test_loader, self.memory_format)
        if not self.progress.val:
            self.progress.val = evaluate(self.model, self.val_loader, self.memory_format)
        log.write({"split": "test", "step": self.progress.step, "epoch": self.progress.epoch, **test})
        flops = self.inference_flops()
        dense_flops, reference_weights = self._full_width_reference()
        itop = itop_rate(self.masking.ever_active_count, self.masking.total_params)
        summary = {
            "method": self.config.masking.name,
            "dataset": self.config.dataset.name,
            "model": _model_name(self.cfg),
            "seed": self.config.seed,
            "epochs": self.schedule.epochs,
            "steps": self.progress.step,
            "target_density": self.cfg.masking.get("density"),  # as given: 1 stays 1 in summary.json
            "density": self.masking.stats.total_nonzero / reference_weights,
            "active_weights": self.masking.stats.total_nonzero,
            "masked_weights": self.masking.total_params,
            "weight_density": self.masking.stats.model_weight_density,
            "weight_nonzero": self.masking.stats.model_weight_nonzero,
            "weight_total": self.masking.stats.model_weight_total,
            "test_accuracy": test["accuracy"],
            "test_top5": test["top5"],
            "test_loss": test["loss"],
            "val_accuracy": self.progress.val.get("accuracy"),
            "best_val_accuracy": self.progress.best_val_accuracy,
            "inference_flops": flops.sparse / dense_flops,
            "inference_flops_per_example": flops.sparse,
            "dense_inference_flops_per_example": dense_flops,
            "train_flops": self.train_flops_fraction() * (flops.dense / dense_flops),
            "itop_rate": itop,
            "wall_time_s": self.progress.wall_time_s,
            "layer_density": layer_densities(self.masking.mask_dict),
            **self.identity,
        }
        summary = _json_safe(summary)
        if self.is_main:
            # The final masks alone, one bit per weight: what a lottery-ticket restart needs, kept when
            # checkpoints are not.
            masks = pack_masks(self.masking.state_dict()["masks"])
            atomic_save(masks, self.run_dir / directory.FINAL_MASKS, self.run_dir)
            text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
            files.write_text(self.run_dir / directory.SUMMARY, text, self.run_dir)
            if self.config.plots:
                from sparselearning.viz.run_plots import plot_run  # here: matplotlib loads only when plotting

                plot_run(self.run_dir, summary)
        return summary


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train (or resume, or only evaluate a finished run) and return the summary."""
    return Run(cfg, run_dir).execute()
