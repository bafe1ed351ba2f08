"""Builds a run's model, optimizer, learning-rate schedule and Masking from its configuration."""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import hydra.utils
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sparselearning import method_table
from sparselearning.conf.schema import AdamConfig, MaskingConfig, RunConfig, SGDConfig, masking_settings
from sparselearning.conf.schema import seed as checked_seed
from sparselearning.core import Masking
from sparselearning.data.registry import DatasetInfo
from sparselearning.errors import SparseLearningError
from sparselearning.funcs.decay import Decay, pruning_steps
from sparselearning.method_table import DENSE, NM, PRUNING, Method
from sparselearning.methods import assemble, build, make_decay
from sparselearning.models import registry as model_registry
from sparselearning.models.arguments import registry_model_arguments
from sparselearning.train.settings import Schedule, check_config

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def build_model(cfg: DictConfig, info: DatasetInfo) -> nn.Module:
    """A model from the registry by `model.name`, or any importable class through `model._target_`.

    A method that narrows the model (Small-Dense) scales the registry models' widths by sqrt(density); a custom
    `_target_` model gets the
    `num_classes` of the dataset only when its config does not set it.
    """
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(spec, dict)
    if "_target_" in spec:
        spec.pop("name", None)
        try:
            target = hydra.utils.get_object(spec["_target_"])
            if "num_classes" in inspect.signature(target).parameters:
                spec.setdefault("num_classes", info.num_classes)
            model = hydra.utils.instantiate(spec)
        except Exception as error:
            reason = " ".join(str(error).split())
            raise SparseLearningError(f"cannot build model._target_={spec['_target_']}: {reason}") from None
        if not isinstance(model, nn.Module):
            raise SparseLearningError(f"model._target_={spec['_target_']} did not return a torch.nn.Module")
        return model
    name, kwargs = registry_model_arguments(cfg, info, width_density(cfg.masking))
    return model_registry[name](**kwargs)


def width_density(masking: DictConfig) -> float:
    """The density that narrows a run's registry model: the run's own for a method whose table entry narrows the
    model (Small-Dense), 1.0 (full width) for every other."""
    narrows = method_table.get(masking.name, "masking").narrows_model
    return float(masking.density) if narrows else 1.0


def _parameter_groups(model: nn.Module, weight_decay: float, decay_bias_and_norm: bool) -> list[dict]:
    if decay_bias_and_norm or weight_decay == 0:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    no_decay_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, NORM_TYPES):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    for name, parameter in model.named_parameters():
        if name.endswith("bias"):
            no_decay_ids.add(id(parameter))
    decay = [p for p in model.parameters() if p.requires_grad and id(p) not in no_decay_ids]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) in no_decay_ids]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def build_optimizer(cfg: DictConfig | RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or Adam; no weight decay on biases and norms unless asked for."""
    settings = check_config(cfg).optimizer
    groups = _parameter_groups(model, settings.weight_decay, settings.decay_bias_and_norm)
    if isinstance(settings, SGDConfig):
        return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, nesterov=settings.nesterov)
    assert isinstance(settings, AdamConfig)
    beta1, beta2 = settings.betas
    return torch.optim.Adam(groups, lr=settings.lr, betas=(beta1, beta2), eps=settings.eps)


def build_scheduler(
    cfg: DictConfig | RunConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step learning-rate factor after a linear warm-up: `step` decays by `decay_factor` every
    `decay_frequency` steps (the seed project's schedule); `cosine` anneals to 0 over the run.

    Warm-up and decay intervals are stretched by `training_multiplier`, like the epochs.
    """
    settings = check_config(cfg).optimizer
    kind = settings.schedule
    multiplier = settings.training_multiplier
    warmup = settings.warmup_steps * multiplier
    frequency = None if settings.decay_frequency is None else settings.decay_frequency * multiplier
    factor = settings.decay_factor

    def lr_factor(step: int) -> float:
        if kind == "cosine":
            progress = min(1.0, max(0, step - warmup) / max(1, total_steps - warmup))
            value = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            value = factor ** (step // frequency) if frequency else 1.0
        if warmup and step < warmup:
            value *= (step + 1) / warmup
        return value

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def resolve_mask_path(path: str | Path) -> Path:
    """A run directory means its `checkpoints/last.pt`, or its `final_masks.pt` when checkpoints are gone."""
    candidate = Path(str(path))
    if candidate.is_dir():
        checkpoint = candidate / "checkpoints" / "last.pt"
        candidate = checkpoint if checkpoint.exists() else candidate / "final_masks.pt"
    return candidate


def pruning_end(schedule: Schedule) -> int:
    """The last step at which gradual pruning may prune: `end_when`, or the run's last step when `end_when`
    is the step count itself (steps are numbered from 0, so that step never comes).

    Refuses, in one line, a window in which no update step falls, so a run never silently stays dense.
    """
    assert schedule.update_frequency is not None and schedule.end_when is not None
    last = min(schedule.end_when, schedule.total_steps - 1)
    steps = pruning_steps(schedule.start_when, last, schedule.update_frequency)
    if not steps:
        raise SparseLearningError(
            f"masking=Pruning would never prune: no multiple of the update interval ({schedule.update_frequency} "
            f"steps) lies between masking.start_when={schedule.start_when} and step {last} (masking.end_when or "
            "the run's last step); lower masking.interval or widen start_when..end_when"
        )
    return last


def _pruning_density(settings: MaskingConfig) -> float:
    assert settings.density is not None  # checked: Pruning's final density is a setting
    return settings.density


def _decay(method: Method, settings: MaskingConfig, schedule: Schedule) -> Decay | None:
    """The run's drop-fraction or sparsity schedule: `masking.decay_schedule` from the decay registry."""
    if not method.masks_change:
        return None
    assert schedule.update_frequency is not None and schedule.end_when is not None  # set whenever masks change
    pruning = method.kind == PRUNING
    drop_fraction = None if pruning else _given(settings.prune_rate, method.drop_fraction)
    return make_decay(
        method,
        _given(settings.decay_schedule, method.decay_schedule),
        drop_fraction=drop_fraction,
        density=_pruning_density(settings) if pruning else 1.0,
        start_when=schedule.start_when,
        last_step=pruning_end(schedule) if pruning else schedule.end_when,
        interval=schedule.update_frequency,
        key="masking.decay_schedule",
    )


def _given(value: Any, fallback: Any) -> Any:
    """A setting the option leaves out (or sets to null) is the method table's: `fallback`."""
    return fallback if value is None else value


def build_masking(
    cfg: DictConfig | RunConfig, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule
) -> Masking:
    """The Masking of `masking.name`: its entry in the method table, with the run's settings and schedule
    (`methods.build` makes the same from Python arguments). `cfg` may be a whole run's configuration or only
    `seed` and a `masking` node, whose absent keys then take the method table's defaults."""
    if isinstance(cfg, RunConfig):
        settings, seed = cfg.masking, cfg.seed
    else:
        settings, seed = masking_settings(cfg.masking), checked_seed(cfg.get("seed", 0), "seed")
    method = settings.method
    common: dict[str, Any] = {
        "seed": seed,
        "include": list(settings.include or ()),
        "exclude": list(settings.exclude or ()),
        "low_memory": bool(settings.low_memory),
        "sparse_compute": False if settings.sparse_compute is None else settings.sparse_compute,
        "total_steps": schedule.total_steps,
    }
    if method.kind == DENSE:  # Small_Dense's narrowing is the model's (build_model)
        return assemble(method, model, optimizer, None, density=1.0, **common)
    if method.kind == NM:
        assert method.n_m is not None  # checked by Method
        return build(
            method.name,
            model,
            optimizer,
            n=_given(settings.n, method.n_m[0]),
            m=_given(settings.m, method.n_m[1]),
            sparse_refined_decay=_given(settings.sparse_refined_decay, method.sparse_refined_decay),
            **common,
        )
    lottery_path = None
    sparse_init = _given(settings.sparse_init, method.cli_defaults.sparse_init)
    if method.from_saved_masks:
        assert settings.lottery_mask_path is not None  # checked: a saved-masks method needs it
        lottery_path = resolve_mask_path(settings.lottery_mask_path)
        sparse_init = method_table.saved_masks_init(bool(settings.shuffle))
    # Pruning starts dense; saved masks set the density themselves.
    density = 1.0 if lottery_path is not None or method.kind == PRUNING else settings.density
    assert density is not None  # checked: every method that uses a density has one
    # Pruning's end is inclusive (its last pruning step); Masking's `end_when` is the first step without updates.
    end_when = pruning_end(schedule) + 1 if method.kind == PRUNING else schedule.end_when
    return assemble(
        method,
        model,
        optimizer,
        _decay(method, settings, schedule),
        lottery_path,
        density=density,
        density_overrides=dict(settings.density_overrides or {}),
        sparse_init=sparse_init,
        prune_mode=_given(settings.prune_mode, method.prune_mode),
        growth_mode=_given(settings.growth_mode, method.growth_mode),
        redistribution_mode=_given(settings.redistribution_mode, method.redistribution_mode),
        dense_gradients=bool(_given(settings.dense_gradients, method.dense_gradients)),
        keep_grown_momentum=bool(settings.keep_grown_momentum),
        update_frequency=schedule.update_frequency,
        start_when=schedule.start_when,
        end_when=end_when,
        **common,
    )
