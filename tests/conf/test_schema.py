"""The typed settings: defaults kept once (the dataclasses), the YAML files equal to them, one-line refusals,
and run identities unchanged by the typing (the hashes below were computed before it existed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from sparselearning import method_table
from sparselearning.conf import schema
from sparselearning.errors import SparseLearningError
from sparselearning.runs.identity import directory_hash, run_settings, settings_hash
from sparselearning.runs.naming import plain_config
from tests.hardening.conftest import run_cli, train_command
from tests.train.conftest import SMALL, compose_config

CONF = Path(__file__).resolve().parents[2] / "sparselearning" / "conf"


def _read(path: Path) -> dict:
    """A shipped YAML file as Hydra reads it (`5e-4` is a number; `${...}` stays text)."""
    content = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(content, dict)
    return content


@pytest.mark.parametrize(
    ("overrides", "settings", "directory"),
    [
        ([], "e94109b6", "33e13c49"),
        (["masking=SET", "masking.density=0.1"], "50775820", "c3cee03d"),
        (["masking=Pruning", "optimizer.lr=1", "masking.density=1"], "0e9ec8c2", "c662a0e1"),
        (["+specific=cifar10_wrn_22_2_masking", "masking=RigL"], "7fabdbee", "21d8e42f"),
        (["masking=SNFS", "optimizer=Adam", "dataset=Synthetic", "model=wrn-22-2"], "c6c4efd3", "b33fd96d"),
    ],
)
def test_run_identities_are_the_ones_computed_before_the_settings_were_typed(
    overrides: list[str], settings: str, directory: str
) -> None:
    """Existing run directories and checkpoints stay recognised: same command line, same hashes."""
    identity = run_settings(plain_config(compose_config(overrides)))
    assert (settings_hash(identity), directory_hash(identity)) == (settings, directory)


@pytest.mark.parametrize("group", ["dataset", "model", "optimizer"])
def test_every_option_file_holds_its_dataclass_defaults(group: str) -> None:
    files = {path.stem: _read(path) for path in (CONF / group).glob("*.yaml")}
    assert sorted(files) == sorted(schema.OPTIONS[group])
    for name, content in files.items():
        assert content == schema.option_defaults(group, name), name


def test_the_masking_files_hold_the_method_table_defaults() -> None:
    for path in (CONF / "masking").glob("*.yaml"):
        assert _read(path) == schema.option_defaults("masking", path.stem)
        assert set(_read(path)) <= {field for field in schema.MaskingConfig.__dataclass_fields__}


def test_config_yaml_holds_the_top_level_defaults() -> None:
    content = _read(CONF / "config.yaml")
    top = {key: value for key, value in content.items() if key not in ("defaults", "hydra")}
    assert top == schema.top_level_defaults()


def test_the_typed_config_has_the_composed_values_with_their_types() -> None:
    config = schema.typed(compose_config([*SMALL, "masking=SET", "optimizer.lr=1"]))
    assert isinstance(config.optimizer, schema.SGDConfig)
    assert config.optimizer.lr == 1.0 and isinstance(config.optimizer.lr, float)
    assert isinstance(config.dataset, schema.SyntheticConfig) and config.dataset.shape == [1, 28, 28]
    assert (config.masking.name, config.masking.density, config.masking.prune_rate) == ("SET", 0.05, 0.3)
    assert config.masking.method is method_table.get("SET")
    assert config.masking.keep_grown_momentum is None  # SET's option does not hold the key
    assert (config.seed, config.resume, config.exp_name) == (0, True, "SET")


def test_a_target_model_keeps_its_own_keys() -> None:
    config = schema.typed(compose_config(["+model._target_=sparselearning.models.MLP", "+model.widths=[784,10]"]))
    assert config.model is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["masking.density=abc"], "masking.density must be a number in (0, 1], got 'abc'"),
        (["+masking.foo=1"], "unknown setting masking.foo=1 for masking=RigL; allowed: apply_when, decay_schedule, "),
        (["+seeds=2"], "unknown setting seeds=2 for the top level; allowed: channels_last, device, "),
        (["+optimizer.momentun=0.8"], "unknown setting optimizer.momentun=0.8 for optimizer=SGD; allowed: "),
        (["dataset.shape=abc"], "dataset.shape must be list[int], got 'abc'"),
        (["dataset.root=[1,2]"], "dataset.root must be str or null, got [1, 2]"),
        (["optimizer.epochs=1.5"], "optimizer.epochs must be a whole number >= 1, got 1.5"),
        (["optimizer.schedule=linear"], "unknown optimizer.schedule 'linear'; allowed: step, cosine"),
        (["optimizer=Adam", "optimizer.betas=[0.9]"], "optimizer.betas must be two numbers in [0, 1), got [0.9]"),
        (["masking.apply_when=never"], "unknown masking.apply_when 'never'; allowed: step_end, epoch_end"),
        (["resume=no"], "resume must be true or false, got 'no'"),
    ],
)
def test_a_bad_value_or_unknown_key_is_refused_in_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(SparseLearningError) as refused:
        schema.typed(compose_config([*SMALL, *overrides]))
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_a_misspelt_key_on_the_command_line_names_the_allowed_ones(tmp_path: Path, capsys) -> None:
    assert run_cli(train_command(tmp_path / "run", "optimizer.lrr=0.1")) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith(
        "error: Could not override 'optimizer.lrr'. optimizer=SGD has no key 'lrr' (given 0.1); allowed: "
        "decay_bias_and_norm, decay_factor, decay_frequency, epochs, label_smoothing, lr, momentum, name, "
    )
    assert not (tmp_path / "run").exists()


def test_a_type_error_on_the_command_line_is_one_line_with_exit_2(tmp_path: Path, capsys) -> None:
    assert run_cli(train_command(tmp_path / "run", "masking.density=abc")) == 2
    error = capsys.readouterr().err
    assert error == "error: masking.density must be a number in (0, 1], got 'abc'\n"


def test_the_dataclasses_are_in_the_config_store() -> None:
    schema.register()
    repository = ConfigStore.instance().repo["schema"]
    assert "config.yaml" in repository
    assert sorted(repository["optimizer"]) == ["Adam.yaml", "SGD.yaml"]
    assert sorted(repository["dataset"]) == sorted(f"{name}.yaml" for name in schema.DATASETS)
