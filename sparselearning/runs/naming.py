"""The `${sl_run_hash:}` interpolation of the default run and sweep directories.

Registered by the `train` command before Hydra composes its configuration, so the directory it creates for
a run carries the short hash of every identity setting the readable part of its name leaves out: a sweep
over any key (the learning rate, the number of epochs, a lottery shuffle) gives every job its own folder.
Stored configurations are never read through OmegaConf, so this resolver runs only on the user's command.
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sparselearning.runs.identity import directory_hash, run_settings

RESOLVER = "sl_run_hash"


def plain_config(config: DictConfig) -> dict[str, Any]:
    """A composed configuration as resolved plain data, without Hydra's own node."""
    plain: dict[str, Any] = {}
    for key in config:
        if key == "hydra":
            continue
        value = config[key]
        plain[str(key)] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return plain


def world_size() -> int:
    """The number of processes torchrun starts for this job (1 without torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _run_hash(*, _root_: DictConfig) -> str:
    return directory_hash(run_settings(plain_config(_root_), world_size()))


def register() -> None:
    """Make `${sl_run_hash:}` available to the configurations composed in this process."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _run_hash)
