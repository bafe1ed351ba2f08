"""`+masking.sparse_compute=true|auto` on the command line: typed, passed to Masking, refused in one line when bad."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparselearning.conf import schema
from sparselearning.errors import SparseLearningError
from tests.hardening.conftest import run_cli, train_command
from tests.train.conftest import SMALL, compose_config


@pytest.mark.parametrize(("given", "typed"), [([], None), (["+masking.sparse_compute=auto"], "auto")])
def test_the_setting_is_optional_and_typed(given: list[str], typed: object) -> None:
    assert schema.typed(compose_config([*SMALL, *given])).masking.sparse_compute == typed


@pytest.mark.parametrize("value", ["yes", "1.5"])
def test_a_bad_value_is_refused_in_one_line(value: str) -> None:
    with pytest.raises(SparseLearningError) as refused:
        schema.typed(compose_config([*SMALL, f"+masking.sparse_compute={value}"]))
    assert str(refused.value).startswith("masking.sparse_compute must be true, false or auto, got ")
    assert "\n" not in str(refused.value)


def test_a_run_trains_with_sparse_compute_from_the_command_line(tmp_path: Path, capsys) -> None:
    assert run_cli(train_command(tmp_path / "run", "+masking.sparse_compute=true")) == 0
    printed = capsys.readouterr()
    assert "sparse_compute=True on 3 Linear layers: " in printed.out + printed.err
