"""Fashion-MNIST: the IDX parser on hand-written files, the split rule, the error messages, and the real files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from sparselearning.data.fashion_mnist import DEFAULT_ROOT, FILES, load_fashion_mnist
from sparselearning.data.idx import read_idx
from sparselearning.errors import SparseLearningError


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    big_endian = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(big_endian).tobytes()


def write(path: Path, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)
    return path


def fake_root(root: Path, train: int = 20, test: int = 5, compressed: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "test_labels": ((np.arange(test) * 3) % 10).astype(np.uint8),
    }
    for key, name in FILES.items():
        write(root / (name if compressed else name.removesuffix(".gz")), idx_bytes(arrays[key]))
    return arrays


def one_line_error(excinfo: pytest.ExceptionInfo[SparseLearningError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("type_code", "dtype"), [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32)]
)
def test_read_idx_decodes_big_endian_values_and_shape(tmp_path: Path, type_code: int, dtype: type) -> None:
    array = np.arange(24).reshape(2, 3, 4) * (3 if dtype is not np.uint8 else 1) - (5 if dtype is not np.uint8 else 0)
    array = array.astype(dtype)
    path = write(tmp_path / "values.idx.gz", idx_bytes(array, type_code))
    decoded = read_idx(path)
    assert decoded.dtype == dtype and decoded.dtype.isnative
    assert decoded.shape == (2, 3, 4)
    np.testing.assert_array_equal(decoded, array)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "values.idx", idx_bytes(array, type_code))), array)


def test_read_idx_rejects_bad_magic(tmp_path: Path) -> None:
    payload = bytearray(idx_bytes(np.zeros((2, 2), np.uint8)))
    payload[0] = 0x1F
    with pytest.raises(SparseLearningError, match="bad magic") as excinfo:
        read_idx(write(tmp_path / "bad.gz", bytes(payload)))
    assert str(tmp_path / "bad.gz") in one_line_error(excinfo)
    with pytest.raises(SparseLearningError, match="unknown IDX element type 0x07"):
        read_idx(write(tmp_path / "type.gz", b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00"))
    with pytest.raises(SparseLearningError, match="bad magic"):
        read_idx(write(tmp_path / "empty.gz", b""))


def test_read_idx_rejects_truncated_and_overlong_files(tmp_path: Path) -> None:
    payload = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(SparseLearningError, match=r"truncated: 2351 of 2352 data bytes") as excinfo:
        read_idx(write(tmp_path / "short.gz", payload[:-1]))
    one_line_error(excinfo)
    with pytest.raises(SparseLearningError, match="truncated inside its header"):
        read_idx(write(tmp_path / "header.gz", payload[:9]))
    with pytest.raises(SparseLearningError, match="beyond the 2352 bytes"):
        read_idx(write(tmp_path / "long.gz", payload + b"\x00"))
    broken = gzip.compress(payload)[:-20]
    (tmp_path / "cut.gz").write_bytes(broken)
    with pytest.raises(SparseLearningError, match="not a readable gzip file") as excinfo:
        read_idx(tmp_path / "cut.gz")
    one_line_error(excinfo)
    (tmp_path / "plain.gz").write_bytes(payload)
    with pytest.raises(SparseLearningError, match="not a readable gzip file"):
        read_idx(tmp_path / "plain.gz")


def test_fake_root_splits_last_tenth_as_validation(tmp_path: Path) -> None:
    arrays = fake_root(tmp_path, train=30, test=7)
    data = load_fashion_mnist(tmp_path)
    assert sorted(data) == sorted(
        f"{split}_{kind}" for split in ("train", "val", "test") for kind in ("images", "labels")
    )
    assert data["train_images"].shape == (27, 1, 28, 28) and data["val_images"].shape == (3, 1, 28, 28)
    assert data["test_images"].shape == (7, 1, 28, 28)
    for key, tensor in data.items():
        assert tensor.dtype == (torch.uint8 if key.endswith("images") else torch.int64)
        assert tensor.is_contiguous()
    np.testing.assert_array_equal(data["train_images"][:, 0].numpy(), arrays["train_images"][:27])
    np.testing.assert_array_equal(data["val_images"][:, 0].numpy(), arrays["train_images"][27:])
    assert data["val_labels"].tolist() == [7, 8, 9]
    assert data["test_labels"].tolist() == [0, 3, 6, 9, 2, 5, 8]


def test_uncompressed_files_are_accepted(tmp_path: Path) -> None:
    fake_root(tmp_path, compressed=False)
    assert load_fashion_mnist(str(tmp_path))["train_labels"].tolist() == list(range(10)) + list(range(8))


def test_missing_files_say_how_to_get_them(tmp_path: Path) -> None:
    fake_root(tmp_path)
    (tmp_path / FILES["test_labels"]).unlink()
    with pytest.raises(SparseLearningError) as excinfo:
        load_fashion_mnist(tmp_path)
    message = one_line_error(excinfo)
    assert "apt-get install dataset-fashion-mnist" in message and "dataset.root" in message
    assert "t10k-labels-idx1-ubyte.gz" in message and "train-images" not in message


def test_inconsistent_files_are_refused(tmp_path: Path) -> None:
    fake_root(tmp_path)
    write(tmp_path / FILES["train_labels"], idx_bytes(np.zeros(19, np.uint8)))
    with pytest.raises(SparseLearningError, match="holds 19 labels but .* holds 20 images"):
        load_fashion_mnist(tmp_path)
    write(tmp_path / FILES["train_labels"], idx_bytes(np.full(20, 10, np.uint8)))
    with pytest.raises(SparseLearningError, match="label 10"):
        load_fashion_mnist(tmp_path)
    write(tmp_path / FILES["train_images"], idx_bytes(np.zeros((20, 32, 32), np.uint8)))
    with pytest.raises(SparseLearningError, match=r"shape \(N, 28, 28\)"):
        load_fashion_mnist(tmp_path)


@pytest.fixture(scope="module")
def real() -> dict[str, torch.Tensor]:
    if not all((DEFAULT_ROOT / name).is_file() for name in FILES.values()):
        pytest.skip(f"Fashion-MNIST is not installed in {DEFAULT_ROOT} (apt-get install dataset-fashion-mnist)")
    return load_fashion_mnist()


def test_real_fashion_mnist_counts_and_first_labels(real: dict[str, torch.Tensor]) -> None:
    assert real["train_images"].shape == (54000, 1, 28, 28)
    assert real["val_images"].shape == (6000, 1, 28, 28)
    assert real["test_images"].shape == (10000, 1, 28, 28)
    assert [len(real[f"{split}_labels"]) for split in ("train", "val", "test")] == [54000, 6000, 10000]
    assert real["train_labels"][:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert real["test_labels"][:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert real["val_labels"][:5].tolist() == [7, 4, 3, 6, 4]
    whole_train = torch.cat([real["train_labels"], real["val_labels"]])
    assert torch.bincount(whole_train).tolist() == [6000] * 10
    assert torch.bincount(real["test_labels"]).tolist() == [1000] * 10


def test_real_fashion_mnist_pixels_match_the_published_statistics(real: dict[str, torch.Tensor]) -> None:
    pixels = torch.cat([real["train_images"], real["val_images"]]).double() / 255.0
    assert abs(pixels.mean().item() - 0.2860) < 5e-4
    assert abs(pixels.std().item() - 0.3530) < 5e-4
    assert real["train_images"].dtype == torch.uint8 and int(real["train_images"].max()) == 255
