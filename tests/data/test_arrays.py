"""`dataset=Arrays`: an .npz file read as data only, its inputs shaped and normalised, its validation split held
out when it has none, its fingerprint exact, and every bad file refused in one line."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sparselearning.data.arrays import load_arrays
from sparselearning.data.loader import InMemoryLoader
from sparselearning.data.own import fingerprint
from sparselearning.data.registry import load_dataset
from sparselearning.errors import SparseLearningError


def _arrays(train: int = 20, test: int = 6, pixels: bool = True) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(0)
    if pixels:
        make = lambda n: generator.integers(0, 256, size=(n, 4, 4), dtype=np.uint8)  # noqa: E731
    else:
        make = lambda n: generator.normal(2.0, 3.0, size=(n, 5))  # noqa: E731
    return {
        "train_x": make(train),
        "train_y": np.arange(train) % 3,
        "test_x": make(test),
        "test_y": np.arange(test) % 3,
    }


def _save(tmp_path: Path, **arrays: np.ndarray) -> str:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def test_uint8_images_without_validation_hold_out_the_last_tenth(tmp_path: Path) -> None:
    arrays = _arrays()
    tensors, info = load_dataset("Arrays", path=_save(tmp_path, **arrays))
    assert tensors["train_images"].shape == (18, 1, 4, 4) and tensors["val_images"].shape == (2, 1, 4, 4)
    assert torch.equal(tensors["val_images"][:, 0], torch.from_numpy(arrays["train_x"][18:]))
    assert tensors["val_labels"].tolist() == [0, 1] and tensors["test_labels"].dtype == torch.int64
    assert (info.name, info.num_classes, info.input_shape, info.input_kind) == ("Arrays", 3, (1, 4, 4), "uint8")
    pixels = tensors["train_images"].double() / 255.0  # measured on the 18 training images the run trains on
    assert info.mean == pytest.approx((float(pixels.mean()),))
    assert info.std == pytest.approx((float(pixels.std(unbiased=False)),))


def test_float_features_become_one_by_one_by_f_and_are_normalised_by_their_training_statistics(tmp_path: Path) -> None:
    arrays = _arrays(pixels=False)
    arrays["val_x"], arrays["val_y"] = arrays["test_x"][:2], arrays["test_y"][:2]
    tensors, info = load_arrays(_save(tmp_path, **arrays))
    assert tensors["train_images"].dtype == torch.float32 and tensors["train_images"].shape == (20, 1, 1, 5)
    assert len(tensors["val_labels"]) == 2  # the file's own validation split, nothing held out
    assert info.input_kind == "float" and info.input_shape == (1, 1, 5)
    values = torch.from_numpy(arrays["train_x"]).float().double()
    assert info.mean == pytest.approx((float(values.mean()),))
    assert info.std == pytest.approx((float(values.std(unbiased=False)),))
    loader = InMemoryLoader(tensors["train_images"], tensors["train_labels"], 20, info.mean, info.std, shuffle=False)
    (batch, _), *_ = list(loader)
    assert float(batch.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(batch.std(unbiased=False)) == pytest.approx(1.0)


def test_val_fraction_pools_train_and_validation(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["val_x"], arrays["val_y"] = arrays["test_x"][:4], arrays["test_y"][:4]
    tensors, _ = load_arrays(_save(tmp_path, **arrays), val_fraction=0.5)
    assert len(tensors["train_labels"]) == 12 and len(tensors["val_labels"]) == 12


def test_the_fingerprint_is_the_data_not_the_file(tmp_path: Path) -> None:
    arrays = _arrays()
    first = load_arrays(_save(tmp_path, **arrays))[1].fingerprint
    moved = tmp_path / "moved"
    moved.mkdir()
    assert load_arrays(_save(moved, **arrays))[1].fingerprint == first
    assert load_arrays(_save(tmp_path, **arrays), val_fraction=0.2)[1].fingerprint == first  # the split is a setting
    arrays["train_x"][3, 1, 2] ^= 1  # one bit of one pixel
    assert load_arrays(_save(tmp_path, **arrays))[1].fingerprint != first
    assert first is not None and first.startswith("sha256:") and len(first) == 71


def test_a_symbolic_link_to_a_file_reads_the_file(tmp_path: Path) -> None:
    target = _save(tmp_path, **_arrays())
    link = tmp_path / "link.npz"
    os.symlink(target, link)
    assert load_arrays(str(link))[1].fingerprint == load_arrays(target)[1].fingerprint


def _bad(arrays: dict[str, np.ndarray], **changes: object) -> dict[str, np.ndarray]:
    result = {**arrays, **changes}
    return {key: value for key, value in result.items() if value is not None}  # type: ignore[misc]


BASE = _arrays()
FLOATS = _arrays(pixels=False)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (_bad(BASE, test_y=None), r"has no array test_y; it needs train_x, train_y, test_x, test_y"),
        (_bad(BASE, extra=np.zeros(3)), r"holds array\(s\) extra that Arrays does not read; allowed: train_x"),
        (_bad(BASE, val_x=BASE["test_x"]), "holds only one of val_x and val_y; give both or neither"),
        (_bad(BASE, train_y=np.arange(19) % 3), "the train labels of .* hold 19 labels for 20 inputs|holds 19 labels"),
        (_bad(BASE, train_y=np.zeros(20)), r"array 'train_y' of .* is float64; labels must be integers"),
        (_bad(BASE, train_y=np.ones(20, dtype=bool)), r"array 'train_y' of .* is bool; labels must be integers"),
        (_bad(BASE, test_y=-np.ones(6, dtype=np.int64)), "holds the label -1"),
        (_bad(BASE, train_x=BASE["train_x"].astype(np.int32)), r"array 'train_x' of .* is int32; allowed: uint8"),
        (_bad(BASE, train_x=BASE["train_x"][:, :, 0]), r"the train inputs of .* is torch.uint8 of shape \[20, 4\]"),
        (_bad(FLOATS, train_x=FLOATS["train_x"][:, :, None]), r"is torch.float64 of shape \[20, 5, 1\]; allowed"),
        (_bad(FLOATS, test_x=np.full((6, 5), np.nan)), "the test inputs of .* holds 30 NaN or infinite values"),
        (_bad(FLOATS, train_x=np.full((20, 5), 1e300)), "holds 100 NaN or infinite values \\(as float32\\)"),
        (_bad(BASE, test_x=FLOATS["test_x"]), "the test inputs of .* are torch.float32 \\[1, 1, 5\\] per example"),
        (_bad(BASE, train_x=BASE["train_x"][:0], train_y=BASE["train_y"][:0]), "the train split of .* is empty"),
        (_bad(BASE, train_y=np.zeros(20, dtype=np.int64), test_y=np.zeros(6, dtype=np.int64)), "every label is 0"),
    ],
)
def test_bad_files_are_refused_in_one_line(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(SparseLearningError, match=message) as caught:
        load_arrays(_save(tmp_path, **arrays))
    assert "\n" not in str(caught.value)


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    arrays = {**BASE, "train_y": np.array([object()] * 20, dtype=object)}
    with pytest.raises(SparseLearningError, match=r"cannot read array 'train_y' of .*allow_pickle=False"):
        load_arrays(_save(tmp_path, **arrays))


def test_files_that_are_not_npz_archives_are_refused(tmp_path: Path) -> None:
    single = tmp_path / "one.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(SparseLearningError, match="holds one array, not an .npz archive"):
        load_arrays(str(single))
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(SparseLearningError, match="cannot read .* as an .npz file"):
        load_arrays(str(text))
    with pytest.raises(SparseLearningError, match="no such file"):
        load_arrays(str(tmp_path / "missing.npz"))
    with pytest.raises(SparseLearningError, match="is not a regular file"):
        load_arrays(str(tmp_path))
    with pytest.raises(SparseLearningError, match="dataset=Arrays needs dataset.path"):
        load_arrays(None)


def test_num_classes_given_must_cover_the_labels(tmp_path: Path) -> None:
    path = _save(tmp_path, **BASE)
    assert load_arrays(path, num_classes=5)[1].num_classes == 5
    with pytest.raises(SparseLearningError, match=r"holds the label 2, but dataset.num_classes=2; labels are 0..1"):
        load_arrays(path, num_classes=2)


def test_a_hold_out_must_leave_both_splits_an_example(tmp_path: Path) -> None:
    path = _save(tmp_path, **_arrays(train=3))
    with pytest.raises(SparseLearningError, match=r"dataset.val_fraction=0.1 of 3 examples holds out 0"):
        load_arrays(path)


def test_the_fingerprint_is_the_sha256_of_every_tensor_in_key_order() -> None:
    tensors = {"train_labels": torch.tensor([3]), "train_images": torch.tensor([[[[1, 2]]]], dtype=torch.uint8)}
    text = b"train_images:torch.uint8:[1, 1, 1, 2];\x01\x02train_labels:torch.int64:[1];" + (3).to_bytes(8, "little")
    assert fingerprint(tensors) == f"sha256:{hashlib.sha256(text).hexdigest()}"
