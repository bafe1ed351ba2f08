"""`sparselearning train masking=NM`: composes, trains, leaves exact N:M weights in its checkpoint and summary,
refuses bad settings in one line, and a run killed and resumed ends bit-identical to one that never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparselearning.errors import SparseLearningError
from sparselearning.funcs.n_m import is_exactly_n_m
from sparselearning.train.loop import train
from tests.train.kill_and_resume import SYNTHETIC_RUN, assert_identical, kill_and_resume

MODEL = "model=lenet300-100"


@pytest.mark.parametrize(("n", "density"), [(2, 0.5), (1, 0.25)])
def test_nm_trains_and_its_checkpoint_holds_exact_n_m_weights(
    small_config, tmp_path: Path, n: int, density: float
) -> None:
    summary = train(small_config(MODEL, "masking=NM", f"masking.n={n}"), tmp_path)
    assert (summary["method"], summary["density"], summary["steps"]) == ("NM", density, 4)
    assert summary["inference_flops"] == density
    assert summary["train_flops"] == pytest.approx((2 * density + 1) / 3)  # sparse forward, dense weight gradient
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    weights = {name: checkpoint["model"][name] for name in checkpoint["masking"]["masks"]}
    assert sorted(weights) == ["layers.0.weight", "layers.2.weight", "layers.4.weight"]
    for name, weight in weights.items():
        assert is_exactly_n_m(weight, n, 4), name
        assert not is_exactly_n_m(checkpoint["masking"]["dense_weights"][name], n, 4)


def test_the_option_holds_the_table_s_defaults(small_config) -> None:
    cfg = small_config(MODEL, "masking=NM")
    assert dict(cfg.masking) == {"name": "NM", "density": None, "n": 2, "m": 4, "sparse_refined_decay": 0.0002}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["masking.density=0.1"], r"masking.density=0.1 conflicts with 2:4 sparsity"),
        (["masking.n=5"], r"masking.n=5, masking.m=4 is not an N:M pattern"),
        (["masking.n=0"], r"masking.n=0, masking.m=4 is not an N:M pattern"),
        (["masking.m=3"], r"layer 'layers.0.weight' has fan-in 784, not a multiple of m=3"),
        (
            ["masking.sparse_refined_decay=-1"],
            r"masking.sparse_refined_decay \(SR-STE lambda_w\) must be a number >= 0",
        ),
    ],
)
def test_bad_settings_are_refused_in_one_line(small_config, tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(SparseLearningError, match=message) as refusal:
        train(small_config(MODEL, "masking=NM", *overrides), tmp_path)
    assert "\n" not in str(refusal.value)


def test_a_first_convolution_of_fan_in_25_is_refused_until_excluded(small_config, tmp_path: Path) -> None:
    with pytest.raises(SparseLearningError, match=r"layer 'conv1.weight' has fan-in 25, not a multiple of m=4"):
        train(small_config("model=lenet5", "masking=NM"), tmp_path / "refused")
    summary = train(small_config("model=lenet5", "masking=NM", "+masking.exclude=[conv1]"), tmp_path / "excluded")
    densities = summary["layer_density"]
    assert "conv1.weight" not in densities and "conv2.weight" in densities
    assert set(densities.values()) == {0.5}


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    pair = kill_and_resume([*SYNTHETIC_RUN, MODEL, "masking=NM"], tmp_path, {"OMP_NUM_THREADS": "1"})
    assert_identical(pair, masking_keys=("masks", "dense_weights"))
