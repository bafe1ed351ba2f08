"""One training run, from a checked configuration to `summary.json`, resumable at every epoch boundary.

Semantics follow the seed project: on a mask-update iteration the update replaces the optimizer step; the
learning-rate schedule steps every iteration; validation every `val_interval` epochs; test at the end. The
data order depends only on (seed, epoch), the masks only on (seed, step, layer), and the global random state
is checkpointed, so a resumed run ends bit-identical to one that was never interrupted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from sparselearning.core import MASKABLE_TYPES, Masking
from sparselearning.counting.inference import count_inference_flops, layer_densities
from sparselearning.counting.training import training_flops_fraction
from sparselearning.data.loader import InMemoryLoader
from sparselearning.data.registry import DatasetInfo, load_dataset
from sparselearning.data.split import resplit
from sparselearning.errors import SparseLearningError
from sparselearning.train import distributed
from sparselearning.train.build import build_masking, build_model, build_optimizer, build_scheduler
from sparselearning.train.checkpoint import load_checkpoint, random_state, restore_random_state, save_checkpoint
from sparselearning.train.evaluate import evaluate
from sparselearning.train.logs import MetricsLog
from sparselearning.train.settings import Schedule, check_config, option, schedule_for

FLOPS_KIND = {
    "Dense": "dense",
    "Small_Dense": "dense",
    "Static": "static",
    "Lottery": "static",
    "SET": "set",
    "SNFS": "snfs",
    "RigL": "rigl",
    "RigL_reinit": "rigl",
    "Pruning": "pruning",
}


@dataclass
class Progress:
    """What the loop carries across epochs and checkpoints."""

    epoch: int = 0
    step: int = 0
    best_val_accuracy: float = -1.0
    wall_time_s: float = 0.0
    val: dict[str, float] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SparseLearningError("device=cuda but no CUDA GPU is available; use device=cpu or device=auto")
    return torch.device(name)


def _dataset_options(cfg: DictConfig) -> dict[str, Any]:
    settings = cfg.dataset
    if settings.name == "Synthetic":
        return {
            "num_classes": int(settings.num_classes),
            "shape": tuple(settings.shape),
            "train": int(settings.train_size),
            "val": int(settings.val_size),
            "test": int(settings.test_size),
            "seed": int(cfg.seed),
        }
    if settings.name in ("CIFAR10", "CIFAR100"):
        return {"download": bool(option(settings, "download", False))}
    return {}


def _loaders(cfg: DictConfig, tensors: dict, info: DatasetInfo, device: torch.device, rank: int, world: int):
    augment = option(cfg.dataset, "augment")
    augment = info.augment if augment is None else bool(augment)
    common = {"mean": info.mean, "std": info.std, "seed": int(cfg.seed), "device": device}
    train = InMemoryLoader(
        tensors["train_images"],
        tensors["train_labels"],
        int(cfg.dataset.batch_size),
        shuffle=True,
        drop_last=True,
        augment=augment,
        rank=rank,
        world_size=world,
        **common,
    )
    evaluation = int(option(cfg.dataset, "test_batch_size", 1000))
    val = InMemoryLoader(tensors["val_images"], tensors["val_labels"], evaluation, shuffle=False, **common)
    test = InMemoryLoader(tensors["test_images"], tensors["test_labels"], evaluation, shuffle=False, **common)
    return train, val, test


def _identity(cfg: DictConfig) -> dict[str, Any]:
    model = OmegaConf.select(cfg, "model._target_") or cfg.model.name
    return {
        "dataset": str(cfg.dataset.name),
        "model": str(model),
        "method": str(cfg.masking.name),
        "density": option(cfg.masking, "density"),
        "seed": int(cfg.seed),
    }


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
        check_config(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.rank, self.world = distributed.rank_and_world()
        self.is_main = self.rank == 0
        self.device = resolve_device(str(cfg.device)) if not distributed.is_active() else distributed.device()
        torch.manual_seed(int(cfg.seed))
        root = option(cfg.dataset, "root")
        self.tensors, self.info = load_dataset(cfg.dataset.name, root=root, **_dataset_options(cfg))
        if option(cfg.dataset, "val_fraction") is not None:
            self.tensors = resplit(self.tensors, cfg.dataset.val_fraction)
        self.train_loader, self.val_loader, self.test_loader = _loaders(
            cfg, self.tensors, self.info, self.device, self.rank, self.world
        )
        self.schedule: Schedule = schedule_for(cfg, len(self.train_loader))
        self.model = build_model(cfg, self.info).to(self.device)
        channels_last = option(cfg, "channels_last", "auto")
        use_cl = (channels_last == "auto" and self.device.type == "cpu" and _uses_conv(self.model)) or (
            channels_last is True
        )
        self.memory_format = torch.channels_last if use_cl else None
        if use_cl:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.network = distributed.wrap(self.model, self.device)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.schedule.total_steps)
        self.masking: Masking = build_masking(cfg, self.model, self.optimizer, self.schedule)
        self.masking.track_flops(self._example_input())
        distributed.configure_masking(self.masking, verify=bool(option(cfg, "verify_sync", False)))
        self.amp_dtype, self.scaler = _mixed_precision(option(cfg, "mixed_precision", False), self.device)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=float(option(cfg.optimizer, "label_smoothing", 0.0)))
        self.progress = Progress()
        self.checkpoint_dir = self.run_dir / "checkpoints"

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint_content(self) -> dict[str, Any]:
        return {
            "identity": _identity(self.cfg),
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
            "config": OmegaConf.to_yaml(self.cfg),
        }

    def try_resume(self) -> bool:
        path = self.checkpoint_dir / "last.pt"
        if not (bool(self.cfg.resume) and path.exists()):
            return False
        state = load_checkpoint(path, _identity(self.cfg))
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            first = str(error).strip().splitlines()[0]
            raise SparseLearningError(f"checkpoint {path} does not fit this model: {first}") from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.masking.load_state_dict(state["masking"])
        restore_random_state(state["rng"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(
            epoch=int(state["epoch"]),
            step=int(state["step"]),
            best_val_accuracy=float(state["best_val_accuracy"]),
            wall_time_s=float(state["wall_time_s"]),
            val=dict(state.get("val", {})),
        )
        return True

    def save(self, best: bool) -> None:
        if not self.is_main:
            return
        content = self._checkpoint_content()
        save_checkpoint(self.checkpoint_dir / "last.pt", content)
        if best:
            save_checkpoint(self.checkpoint_dir / "best.pt", content)

    # ------------------------------------------------------------------ measurement

    def _example_input(self) -> torch.Tensor:
        inputs, _ = next(iter(self.test_loader))
        return inputs[:1]

    def inference_flops(self):
        densities = layer_densities(self.masking.mask_dict)
        return count_inference_flops(self.model, self._example_input(), densities)

    def _full_width_reference(self) -> tuple[float, int]:
        """Dense FLOPs per example and masked-layer weights of the full-width model (Small_Dense compares
        against it; every other method against its own dense model)."""
        if self.cfg.masking.name != "Small_Dense":
            return self.inference_flops().dense, self.masking.total_params
        reference_cfg = OmegaConf.merge(self.cfg, {"masking": {"name": "Dense"}})
        reference = build_model(reference_cfg, self.info).to(self.device)
        weights = sum(m.weight.numel() for m in reference.modules() if isinstance(m, MASKABLE_TYPES))
        return count_inference_flops(reference, self._example_input()).dense, weights

    def train_flops_fraction(self) -> float:
        kind = FLOPS_KIND[self.cfg.masking.name]
        mean_fraction = self.masking.avg_inference_FLOPs / self.masking.dense_FLOPs
        if kind == "pruning":
            decay = self.masking.prune_rate_decay
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

    def _train_epoch(self, epoch: int, log: MetricsLog) -> None:
        self.train_loader.set_epoch(epoch)
        self.network.train()
        interval = int(self.cfg.log_interval)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = batches = 0
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {epoch + 1}/{self.schedule.epochs}",
            disable=not (self.is_main and bool(option(self.cfg, "progress", True))),
            leave=False,
            dynamic_ncols=True,
        )
        for inputs, labels in bar:
            outputs, loss = self.train_step(inputs, labels)
            loss_sum += loss
            correct += (outputs.argmax(1) == labels).sum()
            seen += len(labels)
            batches += 1
            if self.progress.step % interval == 0:
                mean_loss = float(loss_sum) / batches
                if not torch.isfinite(loss_sum):
                    self._stop_on_divergence(mean_loss)
                record = {
                    "split": "train",
                    "step": self.progress.step,
                    "epoch": epoch + 1,
                    "loss": mean_loss,
                    "accuracy": int(correct) / seen,
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
                loss_sum.zero_()
                correct.zero_()
                seen = batches = 0
        if seen and not torch.isfinite(loss_sum):
            self._stop_on_divergence(float(loss_sum))

    def _stop_on_divergence(self, value: float) -> None:
        kept = (
            f"the last good checkpoint is kept in {self.checkpoint_dir}"
            if (self.checkpoint_dir / "last.pt").exists()
            else "no epoch finished, so no checkpoint was written"
        )
        raise SparseLearningError(
            f"training diverged: the loss became {value} near step {self.progress.step}; {kept}; "
            f"lower optimizer.lr (now {self.cfg.optimizer.lr}) and run again"
        )

    def _mask_record(self, epoch: int, previous: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Per-layer densities, the share of active weights that are new since the last epoch, the ITOP rate."""
        masks = self.masking.mask_dict
        active = max(1, self.masking.stats.total_nonzero)
        grown = sum(int((masks[n] & ~previous[n]).sum()) for n in masks if n in previous)
        ever = self.masking.ever_active
        record: dict[str, Any] = {
            "split": "masks",
            "step": self.progress.step,
            "epoch": epoch + 1,
            "density": self.masking.stats.total_density,
            "turnover": grown / active,
            "layer_density": layer_densities(masks),
        }
        if ever:
            record["itop_rate"] = sum(int(m.sum()) for m in ever.values()) / max(1, self.masking.total_params)
        return record

    def _validate(self, epoch: int, log: MetricsLog) -> dict[str, float]:
        metrics = evaluate(self.model, self.val_loader, self.memory_format)
        log.write({"split": "val", "step": self.progress.step, "epoch": epoch + 1, **metrics})
        return metrics

    def execute(self) -> dict[str, Any]:
        resumed = self.try_resume()
        log = MetricsLog(self.run_dir, self.progress.step if resumed else None, enabled=self.is_main)
        try:
            self._write_config()
            val_interval = max(1, int(option(self.cfg, "val_interval", 1)))
            for epoch in range(self.progress.epoch, self.schedule.epochs):
                started = time.perf_counter()
                previous = {name: mask.clone() for name, mask in self.masking.mask_dict.items()}
                self._train_epoch(epoch, log)
                log.write(self._mask_record(epoch, previous))
                last = epoch + 1 == self.schedule.epochs
                best = False
                if (epoch + 1) % val_interval == 0 or last:
                    self.progress.val = self._validate(epoch, log)
                    best = self.progress.val["accuracy"] > self.progress.best_val_accuracy
                    if best:
                        self.progress.best_val_accuracy = self.progress.val["accuracy"]
                self.progress.epoch = epoch + 1
                self.progress.wall_time_s += time.perf_counter() - started
                self.save(best)
                distributed.barrier()
            return self._finish(log)
        finally:
            log.close()

    def _write_config(self) -> None:
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(self.cfg))

    def _finish(self, log: MetricsLog) -> dict[str, Any]:
        test = evaluate(self.model, self.test_loader, self.memory_format)
        if not self.progress.val:
            self.progress.val = evaluate(self.model, self.val_loader, self.memory_format)
        log.write({"split": "test", "step": self.progress.step, "epoch": self.progress.epoch, **test})
        flops = self.inference_flops()
        dense_flops, reference_weights = self._full_width_reference()
        ever = self.masking.ever_active
        itop = sum(int(m.sum()) for m in ever.values()) / max(1, self.masking.total_params) if ever else None
        summary = {
            "method": str(self.cfg.masking.name),
            "dataset": str(self.cfg.dataset.name),
            "model": _identity(self.cfg)["model"],
            "seed": int(self.cfg.seed),
            "epochs": self.schedule.epochs,
            "steps": self.progress.step,
            "target_density": option(self.cfg.masking, "density"),
            "density": self.masking.stats.total_nonzero / reference_weights,
            "active_weights": self.masking.stats.total_nonzero,
            "masked_weights": self.masking.total_params,
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
        }
        if self.is_main:
            # The final masks alone (a few hundred kB): what a lottery-ticket restart needs, kept when
            # checkpoints are not.
            torch.save({"masks": self.masking.state_dict()["masks"]}, self.run_dir / "final_masks.pt")
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            if bool(option(self.cfg, "plots", True)):
                from sparselearning.viz.run_plots import plot_run

                plot_run(self.run_dir, summary)
        return summary


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train (or resume, or only evaluate a finished run) and return the summary."""
    return Run(cfg, run_dir).execute()
