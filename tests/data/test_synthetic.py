"""The synthetic dataset: layout, determinism, balance, and that it is learnable."""

from __future__ import annotations

import pytest
import torch

from sparselearning.data.synthetic import make_synthetic
from sparselearning.errors import SparseLearningError


def test_layout_counts_and_dtypes() -> None:
    data = make_synthetic()
    assert data["train_images"].shape == (2048, 1, 28, 28)
    assert data["val_images"].shape == (256, 1, 28, 28)
    assert data["test_images"].shape == (512, 1, 28, 28)
    for split, count in (("train", 2048), ("val", 256), ("test", 512)):
        assert data[f"{split}_images"].dtype == torch.uint8
        assert data[f"{split}_labels"].dtype == torch.int64 and data[f"{split}_labels"].shape == (count,)
    assert torch.bincount(data["train_labels"]).tolist() == [205] * 8 + [204] * 2
    assert torch.bincount(data["test_labels"], minlength=10).min() == 51


def test_same_arguments_give_the_same_bytes_and_leave_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    first, second = make_synthetic(seed=3, train=64, val=8, test=8), make_synthetic(seed=3, train=64, val=8, test=8)
    assert torch.equal(torch.get_rng_state(), state)
    for key in first:
        assert torch.equal(first[key], second[key])
    other = make_synthetic(seed=4, train=64, val=8, test=8)
    assert not torch.equal(first["train_images"], other["train_images"])
    assert not torch.equal(first["train_images"][:8], first["val_images"])


def test_nearest_class_mean_classifies_held_out_data() -> None:
    for shape, num_classes in (((1, 28, 28), 10), ((3, 8, 8), 100)):
        data = make_synthetic(num_classes=num_classes, shape=shape, train=20 * num_classes, val=0, test=500, seed=1)
        train = data["train_images"].flatten(1).float()
        centres = torch.stack([train[data["train_labels"] == label].mean(0) for label in range(num_classes)])
        predicted = torch.cdist(data["test_images"].flatten(1).float(), centres).argmin(1)
        assert data["test_images"].shape[1:] == shape
        assert (predicted == data["test_labels"]).float().mean() > 0.95


def test_pixels_use_the_whole_uint8_range() -> None:
    images = make_synthetic(train=256, val=0, test=0)["train_images"]
    assert int(images.min()) == 0 and int(images.max()) == 255
    assert 0.4 < images.float().mean().item() / 255 < 0.6


@pytest.mark.parametrize(
    "arguments",
    [{"num_classes": 1}, {"shape": (28, 28)}, {"shape": (1, 0, 28)}, {"train": 0}, {"val": -1}, {"seed": -1}],
)
def test_bad_arguments_are_refused(arguments: dict[str, object]) -> None:
    with pytest.raises(SparseLearningError, match="synthetic"):
        make_synthetic(**arguments)  # type: ignore[arg-type]
