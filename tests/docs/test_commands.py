"""Every `sparselearning ...` command line in the docs (```bash blocks) is one the command accepts.

`train` commands are composed with Hydra exactly as the command would (sweeps expanded value by value) and
checked with the run's own validation, without training; `report` and `export` command lines are parsed.
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser

from tests.docs.blocks import shell_commands

COMMANDS = shell_commands()
# Training examples per epoch of the real datasets (after the validation split), for the step counts.
TRAIN_SIZES = {"MNIST": 50_000, "FashionMNIST": 54_000, "CIFAR10": 45_000, "CIFAR100": 45_000}
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-dir", "-cd"}


def _train_overrides(arguments: list[str]) -> list[list[str]]:
    """The override lists a `train` command line runs: one per value of each sweep (others at their first)."""
    overrides, skip = [], False
    for word in arguments:
        if skip:
            skip = False
        elif word in FLAGS_WITH_VALUE:
            skip = True
        elif not word.startswith("-"):
            overrides.append(word)
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for text, override in zip(overrides, parsed):
        if override.is_sweep_override():
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([text])
    runs = [[options[0] for options in choices]]
    for index, options in enumerate(choices):
        for option in options[1:]:
            runs.append([*runs[0][:index], option, *runs[0][index + 1 :]])
    return runs


def test_the_docs_show_commands() -> None:
    assert sum(command[1:2] == ["train"] for _, command in COMMANDS) >= 10


@pytest.mark.parametrize(
    ("block", "command"), COMMANDS, ids=[f"{block.id}:{' '.join(command[1:3])}" for block, command in COMMANDS]
)
def test_command_line_is_accepted(block, command: list[str]) -> None:
    from sparselearning.cli import COMMANDS as SUBCOMMANDS
    from sparselearning.cli import check_group_overrides

    subcommand, arguments = command[1], command[2:]
    assert subcommand in SUBCOMMANDS, f"{block.id}: unknown subcommand {subcommand!r}"
    if subcommand == "report":
        from sparselearning.report.command import build_parser

        build_parser().parse_args(arguments)
    elif subcommand == "export":
        from sparselearning.export.command import _parser

        _parser().parse_args(arguments)
    else:
        from sparselearning.train.settings import check_config, schedule_for

        with initialize_config_module("sparselearning.conf", version_base=None):
            for overrides in _train_overrides(arguments):
                check_group_overrides(overrides)
                cfg = compose("config", overrides=overrides)
                check_config(cfg)
                size = TRAIN_SIZES.get(cfg.dataset.name) or int(cfg.dataset.get("train_size", 1000))  # own data
                schedule_for(cfg, size // int(cfg.dataset.batch_size))  # end_when, start_when fit the run


def test_sweeps_are_expanded() -> None:
    runs = _train_overrides(["-m", "masking=RigL,SET", "seed=0,1", "--cfg", "job"])
    assert runs == [["masking=RigL", "seed=0"], ["masking=SET", "seed=0"], ["masking=RigL", "seed=1"]]
