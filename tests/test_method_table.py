"""The method table: one entry per method, read by `sparselearning.methods` and by `sparselearning train`.

Its YAML files cannot drift from it, the Python and command-line defaults differ only where an entry says why,
every entry trains from both with the same settings, a new method is one entry, and a decay schedule that does
not fit a method is refused instead of replaced.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from hydra.errors import HydraException
from omegaconf import OmegaConf
from torch import nn

from sparselearning import method_table, methods
from sparselearning.core import Masking
from sparselearning.data.registry import DatasetInfo
from sparselearning.errors import SparseLearningError
from sparselearning.funcs import decay
from sparselearning.funcs.decay import CosineDecay, Decay, LinearDecay, MagnitudePruneDecay
from sparselearning.method_table import DYNAMIC, NM, PRUNING, Defaults, Method
from sparselearning.train.build import build_masking, build_model, build_optimizer
from sparselearning.train.loop import train
from sparselearning.train.settings import check_config, schedule_for
from tests.helpers import inactive_values_are_zero
from tests.helpers import train as train_steps
from tests.train.conftest import SMALL, compose_config

MASKING_DIR = Path(__file__).resolve().parents[1] / "sparselearning" / "conf" / "masking"
METHODS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "methods" / "index.md"

# A new method is one entry: SET whose drop fraction decays linearly from 0.4.
LINEAR_SET = Method(
    "Linear_SET",
    "SET with a linearly decaying drop fraction.",
    DYNAMIC,
    "set",
    growth_mode="random",
    drop_fraction=0.4,
    decay_schedule="linear",
)
ALL_NAMES = [*method_table.BUILT_IN, LINEAR_SET.name]

# 64 Synthetic 12x12 images in batches of 16: 4 steps; masks change every step where a method changes them.
STEPS = 4
RUN = [*SMALL, "dataset.shape=[1,12,12]", f"+model._target_={__name__}.ConvNet"]
INFO = DatasetInfo("Synthetic", 10, (1, 12, 12), (0.0,), (1.0,), False)


class ConvNet(nn.Module):
    """Convolutions hold 94% of the weights, so channel-wise Struct_RigL fits at its default density too."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3)
        self.conv2 = nn.Conv2d(16, 32, 3)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.conv2(torch.relu(self.conv1(inputs))))
        return self.fc(hidden.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def registered() -> Iterator[Method]:
    """LINEAR_SET in the table for this module's tests, gone afterwards."""
    method_table.register(LINEAR_SET)
    yield LINEAR_SET
    method_table.unregister(LINEAR_SET.name)


@pytest.fixture(scope="module")
def mask_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved Masking state of ConvNet at density 0.2, for the methods that start from saved masks."""
    torch.manual_seed(0)
    model = ConvNet()
    masking = methods.static(model, torch.optim.SGD(model.parameters(), lr=0.1), density=0.2)
    path = tmp_path_factory.mktemp("saved") / "masks.pt"
    torch.save(masking.state_dict(), path)
    return path


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


# ------------------------------------------------------------------ the table and its YAML files


def test_every_yaml_file_is_its_entry_s_command_line_form() -> None:
    files = {path.stem: yaml.safe_load(path.read_text(encoding="utf-8")) for path in MASKING_DIR.glob("*.yaml")}
    assert sorted(files) == sorted(method_table.BUILT_IN)
    for name, content in files.items():
        assert content == method_table.cli_config(method_table.get(name)), name


def test_the_table_lists_every_method_once() -> None:
    assert list(method_table.BUILT_IN) == [
        "Dense",
        "Small_Dense",
        "Static",
        "SET",
        "SNFS",
        "RigL",
        "SRigL",
        "Struct_RigL",
        "RigL_reinit",
        "Pruning",
        "Lottery",
        "NM",
    ]
    kinds = {name: (m.kind, m.flops_kind, m.from_saved_masks) for name, m in method_table.table.items()}
    assert kinds == {
        "Dense": ("dense", "dense", False),
        "Small_Dense": ("dense", "dense", False),
        "Static": ("static", "static", False),
        "SET": ("dynamic", "set", False),
        "SNFS": ("dynamic", "snfs", False),
        "RigL": ("dynamic", "rigl", False),
        "SRigL": ("dynamic", "rigl", False),
        "Struct_RigL": ("dynamic", "rigl", False),
        "RigL_reinit": ("dynamic", "rigl", True),
        "Pruning": ("pruning", "pruning", False),
        "Lottery": ("static", "static", True),
        "NM": ("n:m", "snfs", False),
    }


def test_python_and_command_line_defaults_differ_only_where_the_entry_says_why() -> None:
    differences = {}
    for name, method in method_table.table.items():
        python, cli = vars(method.python), vars(method.cli_defaults)
        changed = {key: (python[key], cli[key]) for key in python if python[key] != cli[key]}
        assert bool(changed) == bool(method.cli_reason), name
        if changed:
            differences[name] = changed
    assert differences == {
        "Small_Dense": {"density": (None, 0.2)},
        "Static": {"density": (0.1, 0.05)},
        "SET": {"density": (0.1, 0.05)},
        "SNFS": {"density": (0.1, 0.05), "interval": (100, 1), "per_epoch": (False, True)},
        "RigL": {"density": (0.1, 0.05), "sparse_init": ("random", "erdos-renyi-kernel")},
        "SRigL": {"density": (0.1, 0.05)},
        "Pruning": {"density": (0.1, 0.05), "start_fraction": (0.0, 0.1)},
    }


SIGNATURES = {
    "dense": "(model, optimizer, **masking_options)",
    "small_dense": "(model, optimizer, **masking_options)",
    "static": "(model, optimizer, density=0.1, sparse_init='random', **masking_options)",
    "set_": "(model, optimizer, density=0.1, total_steps=1000, *, drop_fraction=0.3, update_frequency=100, "
    "end_fraction=0.75, sparse_init='random', **masking_options)",
    "snfs": "(model, optimizer, density=0.1, total_steps=1000, *, drop_fraction=0.5, update_frequency=100, "
    "end_fraction=0.75, sparse_init='random', **masking_options)",
    "rigl": "(model, optimizer, density=0.1, total_steps=1000, *, drop_fraction=0.3, update_frequency=100, "
    "end_fraction=0.75, sparse_init='random', redistribution_mode='none', **masking_options)",
    "srigl": "(model, optimizer, density=0.1, total_steps=1000, *, drop_fraction=0.3, update_frequency=100, "
    "end_fraction=0.75, sparse_init='fan-in-erdos-renyi-kernel', ablation=True, **masking_options)",
    "struct_rigl": "(model, optimizer, density=0.1, total_steps=1000, *, drop_fraction=0.3, update_frequency=100, "
    "end_fraction=0.75, sparse_init='struct-erdos-renyi-kernel', criterion='mean', **masking_options)",
    "rigl_reinit": "(model, optimizer, lottery_mask_path, total_steps=1000, *, shuffle=False, drop_fraction=0.3, "
    "update_frequency=100, end_fraction=0.75, redistribution_mode='none', **masking_options)",
    "pruning": "(model, optimizer, density=0.1, total_steps=1000, *, start_fraction=0.0, end_fraction=0.75, "
    "interval=100, **masking_options)",
    "lottery": "(model, optimizer, lottery_mask_path, *, shuffle=False, **masking_options)",
    "nm": "(model, optimizer, n=2, m=4, total_steps=1000, *, sparse_refined_decay=0.0002, **masking_options)",
}


def _plain_signature(function) -> str:
    parameters = [
        p.replace(annotation=inspect.Parameter.empty) for p in inspect.signature(function).parameters.values()
    ]
    return str(inspect.Signature(parameters))


def test_the_named_builders_keep_their_signatures() -> None:
    builders = {m.builder for m in method_table.table.values() if m.builder}
    assert builders == set(SIGNATURES)
    assert {name: _plain_signature(getattr(methods, name)) for name in SIGNATURES} == SIGNATURES


def test_the_named_builders_defaults_are_their_entry_s() -> None:
    for method in method_table.table.values():
        if method.builder is None:
            continue
        parameters = inspect.signature(getattr(methods, method.builder)).parameters
        expected = {
            "density": method.python.density,
            "sparse_init": method.python.sparse_init,
            "drop_fraction": method.drop_fraction,
            "end_fraction": method.end_fraction,
            "update_frequency": method.python.interval,
            "interval": method.python.interval,
            "start_fraction": method.python.start_fraction,
        }
        for key, value in expected.items():
            if key in parameters:
                assert parameters[key].default == value, (method.name, key)


def test_the_methods_page_lists_every_entry() -> None:
    page = METHODS_PAGE.read_text(encoding="utf-8")
    missing = [name for name in method_table.BUILT_IN if f"`masking={name}`" not in page]
    missing += [m.builder for m in method_table.table.values() if m.builder and f"`methods.{m.builder}`" not in page]
    assert missing == []


# ------------------------------------------------------------------ every entry, from Python and from the CLI


def _settings(masking: Masking) -> dict:
    """What a Masking was built with: its rules, density, initial masks, schedule and decay."""
    rate_decay = masking.prune_rate_decay
    config = dict(masking.state_dict()["config"])
    config.pop("seed")
    return {
        **config,
        "decay": None if rate_decay is None else type(rate_decay).__name__,
        "drop_fraction": getattr(rate_decay, "prune_rate", None),
        "final_sparsity": getattr(rate_decay, "final_sparsity", None),
        "update_frequency": masking.update_frequency,
        "start_when": masking.start_when,
        "end_when": masking.end_when,
        "total_steps": masking.total_steps,
    }


def _expected_differences(method: Method) -> dict[str, tuple]:
    """The settings in which the Python and the command-line builds of `method` differ, by its entry."""
    python, cli = method.python, method.cli_defaults
    expected = {}
    if python.density != cli.density and method.uses_density and not method.narrows_model:
        if method.kind == PRUNING:
            expected["final_sparsity"] = (1 - python.density, 1 - cli.density)
        else:
            expected["density"] = (python.density, cli.density)
    if python.sparse_init != cli.sparse_init:
        expected["sparse_init"] = (python.sparse_init, cli.sparse_init)
    if cli.per_epoch:  # the CLI's interval counts epochs: one epoch is STEPS steps here
        expected["update_frequency"] = (1, STEPS)
    if python.start_fraction != cli.start_fraction:
        expected["start_when"] = (int(python.start_fraction * STEPS), math.ceil(cli.start_fraction * STEPS))
    return expected


def _python_build(method: Method, mask_file: Path) -> tuple[nn.Module, torch.optim.Optimizer, Masking]:
    torch.manual_seed(0)
    model = ConvNet()
    optimizer = _optimizer(model)
    options: dict = {"total_steps": STEPS}  # the command line always knows it; static methods only warn past it
    if method.from_saved_masks:
        options["lottery_mask_path"] = mask_file
    if method.masks_change:
        options["update_frequency" if method.kind == DYNAMIC else "interval"] = 1
    if method.kind == NM:  # conv1's fan-in, 9, is no multiple of 4
        options["exclude"] = ["conv1"]
    return model, optimizer, methods.build(method.name, model, optimizer, **options)


def _cli_overrides(method: Method, mask_file: Path) -> list[str]:
    overrides = [*RUN, f"masking={method.name}"]
    if method.from_saved_masks:
        overrides.append(f"masking.lottery_mask_path={mask_file}")
    if method.masks_change:
        overrides.append("masking.interval=1")
    if method.kind == NM:
        overrides.append("+masking.exclude=[conv1]")
    return overrides


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_entry_trains_from_python_and_the_cli_with_the_same_settings(
    registered: Method, mask_file: Path, tmp_path: Path, name: str
) -> None:
    method = method_table.get(name)
    model, optimizer, from_python = _python_build(method, mask_file)
    cfg = compose_config(_cli_overrides(method, mask_file))
    check_config(cfg)
    cli_model = build_model(cfg, INFO)
    from_cli = build_masking(cfg, cli_model, build_optimizer(cfg, cli_model), schedule_for(cfg, STEPS))

    python_settings, cli_settings = _settings(from_python), _settings(from_cli)
    differing = {key: (python_settings[key], cli_settings[key]) for key in python_settings}
    differing = {key: pair for key, pair in differing.items() if pair[0] != pair[1]}
    assert differing == _expected_differences(method)
    assert python_settings["growth_mode"] == method.growth_mode
    schedule = None if method.decay_schedule is None else decay.registry[method.decay_schedule].__name__
    assert python_settings["decay"] == cli_settings["decay"] == schedule
    assert python_settings["drop_fraction"] == method.drop_fraction

    train_steps(model, optimizer, from_python, STEPS)
    assert inactive_values_are_zero(from_python)
    summary = train(cfg, tmp_path / "run")
    assert (summary["method"], summary["steps"]) == (name, STEPS)
    if method.kind == "dense":
        assert summary["active_weights"] == summary["masked_weights"]


def test_a_registered_method_is_built_by_name_from_python(registered: Method) -> None:
    model = ConvNet()
    masking = methods.build("Linear_SET", model, _optimizer(model), total_steps=40)
    assert isinstance(masking.prune_rate_decay, LinearDecay)
    assert (masking.prune_rate_decay.prune_rate, masking.prune_rate_decay.T_max) == (0.4, 30)
    assert (masking.growth_mode, masking.prune_mode, masking.redistribution_mode) == ("random", "magnitude", "none")
    assert (masking.update_frequency, masking.end_when, masking.density) == (100, 30, 0.1)


def test_a_registered_method_is_a_masking_option_of_the_command_line(registered: Method) -> None:
    cfg = compose_config([*SMALL, "masking=Linear_SET"])
    assert OmegaConf.to_container(cfg.masking) == method_table.cli_config(LINEAR_SET)
    assert cfg.masking.prune_rate == 0.4 and cfg.masking.decay_schedule == "linear"


def test_an_unregistered_method_is_gone_from_python_and_the_command_line() -> None:
    extra = Method("Extra_Static", "Static, registered for a moment.", "static", "static")
    method_table.register(extra)
    assert compose_config([*SMALL, "masking=Extra_Static"]).masking.name == "Extra_Static"
    method_table.unregister("Extra_Static")
    with pytest.raises(HydraException, match="Extra_Static"):
        compose_config([*SMALL, "masking=Extra_Static"])
    model = ConvNet()
    with pytest.raises(SparseLearningError, match=r"^unknown method 'Extra_Static'; allowed: Dense, Small_Dense, "):
        methods.build("Extra_Static", model, _optimizer(model))
    with pytest.raises(SparseLearningError, match="'RigL' is built in and cannot be unregistered"):
        method_table.unregister("RigL")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (Method("RigL", "again", "static", "static"), "a method named 'RigL' is already registered; pick another name"),
        (
            Method("Bad", "x", "static", "static", growth_mode="sideways"),
            "unknown growth_mode of method Bad 'sideways'",
        ),
        (
            Method("Bad", "x", DYNAMIC, "rigl", drop_fraction=0.3, decay_schedule="magnitude-prune"),
            "decay_schedule of method Bad 'magnitude-prune' does not fit Bad, which anneals a drop fraction; "
            "allowed: cosine, linear",
        ),
    ],
)
def test_register_refuses_an_entry_that_cannot_work(entry: Method, message: str) -> None:
    with pytest.raises(SparseLearningError) as refused:
        method_table.register(entry)
    assert str(refused.value).startswith(message)
    assert "Bad" not in method_table.table


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "two words"}, "method name 'two words' is not usable as masking=<name>; use letters, digits and _"),
        ({"kind": "sometimes"}, "unknown kind of method X 'sometimes'; allowed: dense, static, dynamic, pruning"),
        ({"kind": DYNAMIC}, "method X (dynamic) needs a decay_schedule"),
        ({"kind": DYNAMIC, "decay_schedule": "cosine"}, "method X (dynamic) needs a drop_fraction"),
        ({"decay_schedule": "cosine"}, "method X (static) never changes its masks: no decay_schedule"),
        (
            {"kind": PRUNING, "decay_schedule": "magnitude-prune", "from_saved_masks": True},
            "method X (pruning) cannot start from saved masks",
        ),
        ({"cli": Defaults(density=0.05)}, "method X: say why its command-line defaults differ (cli_reason)"),
        ({"cli_reason": "because"}, "method X: drop cli_reason"),
        ({"flops_kind": "cheap"}, "unknown flops_kind of method X 'cheap'"),
    ],
)
def test_an_inconsistent_entry_is_refused_in_one_line(fields: dict, message: str) -> None:
    arguments = {"name": "X", "summary": "x", "kind": "static", "flops_kind": "static", **fields}
    with pytest.raises(SparseLearningError) as refused:
        Method(**arguments)
    assert str(refused.value).startswith(message)


# ------------------------------------------------------------------ decay schedules come from the registry


def test_rigl_with_a_sparsity_schedule_is_refused_not_run_with_a_cosine(tmp_path: Path) -> None:
    cfg = compose_config([*SMALL, "masking.decay_schedule=magnitude-prune"])
    with pytest.raises(SparseLearningError) as refused:
        train(cfg, tmp_path)
    assert str(refused.value) == (
        "masking.decay_schedule 'magnitude-prune' does not fit RigL, which anneals a drop fraction; "
        "allowed: cosine, linear"
    )
    assert not any(tmp_path.iterdir())
    model = ConvNet()
    with pytest.raises(SparseLearningError, match="^decay_schedule 'magnitude-prune' does not fit RigL, which"):
        methods.rigl(model, _optimizer(model), decay_schedule="magnitude-prune")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["masking=Pruning", "masking.decay_schedule=cosine"],
            "masking.decay_schedule 'cosine' does not fit Pruning, which follows a target sparsity; "
            "allowed: magnitude-prune",
        ),
        (
            ["masking=Static", "+masking.decay_schedule=linear"],
            "masking.decay_schedule 'linear' does not apply to Static: its masks never change",
        ),
        (
            ["masking=Pruning", "+masking.growth_mode=random"],
            "masking.growth_mode 'random' does not fit Pruning, which only removes weights; allowed: none",
        ),
        (["masking.decay_schedule=stepwise"], "unknown masking.decay_schedule 'stepwise'; allowed: cosine, linear, "),
    ],
)
def test_settings_that_do_not_fit_the_method_are_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(SparseLearningError) as refused:
        check_config(compose_config([*SMALL, *overrides]))
    assert str(refused.value).startswith(message)


def test_the_python_builders_take_any_fitting_schedule_and_refuse_the_others() -> None:
    model = ConvNet()
    linear = methods.rigl(model, _optimizer(model), total_steps=100, decay_schedule="linear").prune_rate_decay
    assert isinstance(linear, LinearDecay) and (linear.prune_rate, linear.T_max) == (0.3, 75)
    model = ConvNet()
    cosine = methods.build("SNFS", model, _optimizer(model), total_steps=100).prune_rate_decay
    assert isinstance(cosine, CosineDecay) and (cosine.prune_rate, cosine.T_max) == (0.5, 75)
    model = ConvNet()
    cubic = methods.build("Pruning", model, _optimizer(model), total_steps=100, interval=10).prune_rate_decay
    assert isinstance(cubic, MagnitudePruneDecay) and (cubic.final_sparsity, cubic.T_max) == (pytest.approx(0.9), 75)
    with pytest.raises(SparseLearningError, match="^decay_schedule 'cosine' does not fit Pruning, which follows"):
        methods.pruning(ConvNet(), _optimizer(model), decay_schedule="cosine")
    with pytest.raises(SparseLearningError, match="^decay_schedule 'linear' does not apply to Static: its masks"):
        methods.static(ConvNet(), _optimizer(model), decay_schedule="linear")
    with pytest.raises(SparseLearningError, match="^Dense trains every weight: leave density out"):
        methods.dense(ConvNet(), _optimizer(model), density=0.5)
    with pytest.raises(SparseLearningError, match="^RigL_reinit starts from a finished run's masks: pass lottery_"):
        methods.build("RigL_reinit", ConvNet(), _optimizer(model))


class ConstantDecay(Decay):
    """The same drop fraction at every update, built as the table builds drop-fraction schedules."""

    def __init__(self, prune_rate: float = 0.3, T_max: int = 1000) -> None:
        self.prune_rate = prune_rate
        self.T_max = T_max

    def step(self, step: int = -1) -> None:
        pass

    def get_dr(self) -> float:
        return self.prune_rate


def test_a_schedule_added_to_the_decay_registry_drives_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(decay.registry, "constant", ConstantDecay)
    cfg = compose_config([*SMALL, "masking=SET", "masking.decay_schedule=constant", "masking.prune_rate=0.2"])
    check_config(cfg)
    model = build_model(cfg, DatasetInfo("Synthetic", 10, (1, 28, 28), (0.0,), (1.0,), False))
    masking = build_masking(cfg, model, build_optimizer(cfg, model), schedule_for(cfg, 4))
    assert isinstance(masking.prune_rate_decay, ConstantDecay)
    assert (masking.prune_rate_decay.prune_rate, masking.prune_rate_decay.T_max) == (0.2, 3)


def test_rigl_reinit_restarts_rigl_from_saved_masks_in_python(mask_file: Path) -> None:
    saved = torch.load(mask_file, weights_only=True)["masks"]
    model = ConvNet()
    masking = methods.rigl_reinit(model, _optimizer(model), mask_file, total_steps=40, update_frequency=5)
    assert all(torch.equal(masking.mask_dict[name], saved[name]) for name in saved)
    assert (masking.sparse_init, masking.growth_mode, masking.update_frequency, masking.end_when) == (
        "lottery-ticket",
        "absolute-gradient",
        5,
        30,
    )
    shuffled = methods.rigl_reinit(ConvNet(), _optimizer(model), mask_file, shuffle=True)
    assert shuffled.sparse_init == "lottery-ticket-dist"
    assert {n: int(m.sum()) for n, m in shuffled.mask_dict.items()} == {n: int(m.sum()) for n, m in saved.items()}
