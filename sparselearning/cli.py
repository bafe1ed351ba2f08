"""The `sparselearning` command: `train` (Hydra overrides), and the tools around a run.

Bad input ends with one line on stderr and exit status 2; `SPARSELEARNING_TRACEBACK=1` shows the traceback.
"""

from __future__ import annotations

import importlib
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from sparselearning import method_table
from sparselearning.errors import SparseLearningError, print_failure
from sparselearning.io import blocking_ancestor

# Each command other than `train` is a module with `main(argv: list[str]) -> int` (its exit status).
COMMANDS = {
    "train": "sparselearning.train.app",
    "report": "sparselearning.report.command",
    "export": "sparselearning.export.command",
}
GROUPS = ("masking", "dataset", "model", "optimizer", "specific")
_GROUP_OVERRIDE = re.compile(r"^(?:\+{1,2})?(" + "|".join(GROUPS) + r")=(.*)$")


def group_options(group: str) -> list[str]:
    """The option names of a config group: the YAML files shipped in `sparselearning/conf/<group>/`, and for
    `masking` every method of the method table (a registered method without a YAML file included)."""
    folder = resources.files("sparselearning") / "conf" / group
    files = folder.iterdir() if folder.is_dir() else []
    names = {entry.name[: -len(".yaml")] for entry in files if entry.name.endswith(".yaml")}
    if group == "masking":
        names.update(method_table.table)
    return sorted(names)


def check_group_overrides(arguments: list[str]) -> None:
    """Refuse `masking=Bogus` (and the like, sweeps included) before Hydra starts, listing the valid options."""
    for argument in arguments:
        match = _GROUP_OVERRIDE.match(argument)
        if not match:
            continue
        group, value = match.groups()
        if group == "model" and value.startswith("{"):
            continue
        allowed = group_options(group)
        for item in value.split(","):
            item = item.strip()
            if item and item not in allowed:
                raise SparseLearningError(f"unknown {group} {item!r}; allowed: {', '.join(allowed)}")


def check_composes(arguments: list[str]) -> None:
    """Compose the configuration once before Hydra runs, so a misspelt key or bad value is one clear line.

    Skipped for sweeps and Hydra's own flags (`-m`, `--cfg`, `--help`, ...), which Hydra handles itself.
    """
    if any(argument.startswith("-") for argument in arguments):
        return
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_module("sparselearning.conf", version_base=None):
            try:
                compose("config", overrides=arguments, return_hydra_config=True)
            except (HydraException, OmegaConfBaseException, ValueError) as error:
                lines = [line.strip() for line in str(error).splitlines() if line.strip()]
                unknown = _unknown_key(error, arguments, compose)
                raise SparseLearningError(unknown or " ".join(lines[:2]) or type(error).__name__) from None
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise SparseLearningError(" ".join(lines[:2]) or type(error).__name__) from None


def _unknown_key(error: BaseException, arguments: list[str], compose: Any) -> str | None:
    """For `masking.densty=0.1`: Hydra's first sentence, then which group has no such key, the value given and
    the keys it does have (found by composing the same groups without that override)."""
    from omegaconf import OmegaConf

    cause = error.__cause__
    key = getattr(cause, "full_key", None)
    text = str(error)
    if not key or not text.startswith(f"Could not override '{key}'."):
        return None
    parent, _, name = str(key).rpartition(".")
    from sparselearning.conf.schema import OPTIONAL_KEYS

    if key in OPTIONAL_KEYS:
        return f"Could not override '{key}': it is optional and set with a leading +, as +{key}=..."
    rest = [argument for argument in arguments if argument.partition("=")[0].lstrip("+~") != key]
    given = next((argument.partition("=")[2] for argument in arguments if argument.partition("=")[0] == key), "")
    try:
        node = compose("config", overrides=rest)
        container = OmegaConf.select(node, parent) if parent else node
    except Exception:  # the other overrides have their own mistake: Hydra's words alone
        return None
    if not OmegaConf.is_dict(container):
        return None
    where = (
        f"{parent}={container.get('name')}"
        if parent in GROUPS and "name" in container
        else parent or "the configuration"
    )
    allowed = ", ".join(sorted(str(k) for k in container if k != "hydra"))
    return f"Could not override '{key}'. {where} has no key '{name}' (given {given}); allowed: {allowed}"


#: The keys of a command line that may name code to call: a custom model, and a Custom dataset's three parts.
CODE_KEYS = ("model._target_", "dataset.train._target_", "dataset.val._target_", "dataset.test._target_")


def check_no_callbacks(arguments: list[str]) -> None:
    """Refuse Hydra callbacks and every `_target_` but `CODE_KEYS` (and the model's own node) on the command line.

    The only code a run may call is the one its command line names: `model._target_` (a custom model) and, for
    `dataset=Custom`, `dataset.train/val/test._target_`. A configuration read back from a file never names code.
    """
    allowed = ", ".join(CODE_KEYS)
    for argument in arguments:
        key = argument.partition("=")[0].lstrip("+~")
        if key == "hydra/callbacks" or key == "hydra.callbacks" or key.startswith("hydra.callbacks."):
            raise SparseLearningError(f"{key} is refused: a configuration may run code only through {allowed}")
        if "_target_" in key.split(".") and key not in CODE_KEYS and not key.startswith("model."):
            raise SparseLearningError(f"{key} is refused: the only keys that may name code are {allowed}")


def check_output_directories(arguments: list[str]) -> None:
    """Refuse a run or sweep directory that cannot be created before Hydra tries to (it would crash)."""
    for argument in arguments:
        key, _, value = argument.partition("=")
        if key.lstrip("+") not in ("hydra.run.dir", "hydra.sweep.dir") or not value or "${" in value:
            continue
        blocker = blocking_ancestor(Path(value))
        if blocker is not None:
            raise SparseLearningError(f"cannot create {key}={value}: {blocker} is not a writable directory")


def _usage() -> str:
    return (
        "usage: sparselearning train [hydra overrides...]   (e.g. masking=SET masking.density=0.1)\n"
        "       sparselearning train --help                 (every option)\n"
        "       sparselearning report PATH...               (tables and plots of runs or sweeps)\n"
        "       sparselearning export RUN_OR_CHECKPOINT --out FILE   (a truly sparse model for inference)\n"
        "       sparselearning --version                    (the installed version)"
    )


def main(argv: list[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in ("-h", "--help"):
        print(_usage())
        sys.exit(0 if arguments else 2)
    if arguments[0] in ("-V", "--version"):
        from sparselearning._version import __version__

        print(f"sparselearning {__version__}")
        sys.exit(0)
    command, rest = arguments[0], arguments[1:]
    try:
        if command not in COMMANDS:
            raise SparseLearningError(f"unknown command {command!r}; allowed: {', '.join(COMMANDS)}")
        if command != "train":
            sys.exit(importlib.import_module(COMMANDS[command]).main(rest))
        check_group_overrides(rest)
        check_no_callbacks(rest)
        check_output_directories(rest)
        check_composes(rest)
    except SparseLearningError as error:
        sys.exit(print_failure(error))
    from sparselearning.train.app import hydra_main  # here, so `report` and `export` never load Hydra

    sys.argv = [f"sparselearning {command}", *rest]
    hydra_main()


if __name__ == "__main__":
    main()
