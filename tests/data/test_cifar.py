"""CIFAR-10/100 on tiny archives built here: folder and .tar.gz layouts, pixel layout, labels, the validation cut,
refusal of hostile pickles and path tricks, and the download path (checksum and network failures, faked)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sparselearning.data import cifar
from sparselearning.data.cifar import LAYOUTS, load_cifar, unpickle_batch, verify_archive
from sparselearning.errors import SparseLearningError

PER_BATCH = 4


def make_batch(rng: np.random.Generator, count: int, num_classes: int, label_key: str) -> dict[str, Any]:
    return {
        "batch_label": "a fake batch",
        label_key: [int(label) for label in rng.integers(0, num_classes, count)],
        "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        "filenames": [f"image_{index}.png" for index in range(count)],
    }


def write_folder(root: Path, num_classes: int = 10, protocol: int = 2, seed: int = 0) -> dict[str, dict[str, Any]]:
    """The batches of a small CIFAR archive, extracted under `root`; returns them by file name."""
    layout = LAYOUTS[num_classes]
    rng = np.random.default_rng(seed)
    folder = root / layout.folder
    folder.mkdir(parents=True)
    batches = {}
    for name in layout.train + layout.test:
        count = PER_BATCH * (5 if num_classes == 100 and name == "train" else 1)
        batches[name] = make_batch(rng, count, num_classes, layout.label_key)
        (folder / name).write_bytes(pickle.dumps(batches[name], protocol=protocol))
    return batches


def pack(source: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(source)), recursive=False)
    return archive


def add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def expected(batches: dict[str, dict[str, Any]], names: tuple[str, ...], key: str) -> tuple[np.ndarray, list[int]]:
    return np.concatenate([batches[name]["data"] for name in names]), [
        label for name in names for label in batches[name][key]
    ]


def one_line(excinfo: pytest.ExceptionInfo[SparseLearningError]) -> str:
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def check_cifar10(data: dict[str, torch.Tensor], batches: dict[str, dict[str, Any]]) -> None:
    layout = LAYOUTS[10]
    train_rows, train_labels = expected(batches, layout.train, "labels")
    assert data["train_images"].shape == (15, 3, 32, 32) and data["val_images"].shape == (5, 3, 32, 32)
    assert data["test_images"].shape == (4, 3, 32, 32)
    for key, tensor in data.items():
        assert tensor.dtype == (torch.uint8 if key.endswith("images") else torch.int64)
    assert data["train_labels"].tolist() + data["val_labels"].tolist() == train_labels
    assert data["test_labels"].tolist() == batches["test_batch"]["labels"]
    images = torch.cat([data["train_images"], data["val_images"]]).numpy()
    np.testing.assert_array_equal(images.reshape(20, 3072), train_rows)
    # Row-major 3072-byte layout: 1024 red, 1024 green, 1024 blue, each 32 rows of 32.
    row = train_rows[6]
    assert images[6, 0, 0, 1] == row[1] and images[6, 0, 1, 0] == row[32]
    assert images[6, 1, 0, 0] == row[1024] and images[6, 2, 31, 31] == row[3071]
    np.testing.assert_array_equal(data["test_images"].numpy().reshape(4, 3072), batches["test_batch"]["data"])


def test_cifar10_from_extracted_folder(tmp_path: Path) -> None:
    batches = write_folder(tmp_path)
    check_cifar10(load_cifar(tmp_path, num_classes=10, validation_size=5), batches)
    # The extracted folder itself may be the root too.
    check_cifar10(load_cifar(tmp_path / "cifar-10-batches-py", validation_size=5), batches)


def test_cifar10_from_tar_gz_without_extracting(tmp_path: Path) -> None:
    batches = write_folder(tmp_path / "build", protocol=4)
    root = tmp_path / "root"
    root.mkdir()
    archive = pack(tmp_path / "build", root / "cifar-10-python.tar.gz")
    check_cifar10(load_cifar(root, validation_size=5), batches)
    check_cifar10(load_cifar(archive, validation_size=5), batches)
    assert sorted(path.name for path in root.iterdir()) == ["cifar-10-python.tar.gz"]


def test_default_validation_cut_is_the_last_5000_training_images(tmp_path: Path) -> None:
    write_folder(tmp_path)
    with pytest.raises(SparseLearningError, match="validation_size 5000 leaves no training images out of 20"):
        load_cifar(tmp_path)
    data = load_cifar(tmp_path, validation_size=0)
    assert len(data["train_labels"]) == 20 and len(data["val_labels"]) == 0
    with pytest.raises(SparseLearningError, match="validation_size must be"):
        load_cifar(tmp_path, validation_size=-1)


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    batches = write_folder(tmp_path / "build", num_classes=100, protocol=5)
    archive = pack(tmp_path / "build", tmp_path / "cifar-100-python.tar.gz")
    data = load_cifar(tmp_path, num_classes=100, validation_size=3)
    labels = batches["train"]["fine_labels"]
    assert data["train_labels"].tolist() == labels[:17] and data["val_labels"].tolist() == labels[17:]
    assert data["test_labels"].tolist() == batches["test"]["fine_labels"]
    assert data["train_images"].shape == (17, 3, 32, 32) and data["test_images"].shape == (4, 3, 32, 32)
    assert load_cifar(archive, num_classes=100, validation_size=3)["val_labels"].tolist() == labels[17:]
    with pytest.raises(SparseLearningError, match="CIFAR-10 not found"):
        load_cifar(tmp_path, num_classes=10)


def test_python2_style_pickles_are_read(tmp_path: Path) -> None:
    """The official files were written by Python 2 (strings as BINSTRING, module numpy.core.multiarray)."""

    def text(value: str | bytes) -> bytes:
        raw = value.encode("latin1") if isinstance(value, str) else value
        return b"U" + bytes([len(raw)]) + raw if len(raw) < 256 else b"T" + struct.pack("<i", len(raw)) + raw

    def integer(value: int) -> bytes:
        return b"J" + struct.pack("<i", value)

    def array(value: np.ndarray) -> bytes:
        dtype = b"cnumpy\ndtype\n" + text("u1") + b"K\x00K\x01\x87R(K\x03" + text("|") + b"NNNJ\xff\xff\xff\xff"
        dtype += b"J\xff\xff\xff\xffK\x00tb"
        shape = b"(" + b"".join(integer(size) for size in value.shape) + b"t"
        head = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + text("b") + b"\x87R"
        return head + b"(K\x01" + shape + dtype + b"\x89" + text(value.tobytes()) + b"tb"

    def encode(value: Any) -> bytes:
        if isinstance(value, np.ndarray):
            return array(value)
        if isinstance(value, list):
            return b"](" + b"".join(encode(item) for item in value) + b"e"
        return integer(value) if isinstance(value, int) else text(value)

    batches = write_folder(tmp_path)
    for name, batch in batches.items():
        body = b"".join(text(key) + encode(value) for key, value in batch.items())
        (tmp_path / "cifar-10-batches-py" / name).write_bytes(b"\x80\x02}(" + body + b"u.")
    check_cifar10(load_cifar(tmp_path, validation_size=5), batches)


class Hostile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_pickle_with_a_forbidden_global_is_refused_without_running(tmp_path: Path, protocol: int) -> None:
    batches = write_folder(tmp_path)
    marker = tmp_path / "pwned"
    batches["data_batch_3"]["labels"] = Hostile(marker)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps(batches["data_batch_3"], protocol))
    with pytest.raises(SparseLearningError, match=rf"global {os.system.__module__}\.system is not allowed") as excinfo:
        load_cifar(tmp_path, validation_size=5)
    assert "data_batch_3" in one_line(excinfo)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps({"data": eval}),  # builtins.eval
        pickle.dumps({"data": np.zeros(3, dtype=object)}),  # object arrays could hide anything
        b"\x80\x02cnumpy\nndarray\n(K\x05tR.",  # numpy.ndarray may not be called directly
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncos\nsystem\nK\x00\x85U\x01b\x87R.",
        pickle.dumps([1, 2, 3]),
        b"not a pickle",
    ],
)
def test_malformed_or_hostile_batches_raise_sparselearning_errors(payload: bytes) -> None:
    with pytest.raises(SparseLearningError) as excinfo:
        cifar._decode_batch(payload, "somewhere:data_batch_1", "labels", 10)
    assert "somewhere:data_batch_1" in one_line(excinfo)


def test_batch_contents_are_validated(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    good = make_batch(rng, 3, 10, "labels")
    assert unpickle_batch(pickle.dumps(good), "x")["labels"] == good["labels"]
    cases = {
        "labels span 0..10": {**good, "labels": [0, 1, 10]},
        "one int per image": {**good, "labels": [0, 1]},
        r"shape \(N, 3072\)": {**good, "data": good["data"][:, :100]},
        "lacks 'data'": {"labels": good["labels"]},
    }
    for message, batch in cases.items():
        with pytest.raises(SparseLearningError, match=message):
            cifar._decode_batch(pickle.dumps(batch), "x", "labels", 10)


@pytest.mark.parametrize("name", ["../cifar-10-batches-py/data_batch_1", "/etc/cifar-10-batches-py/test_batch"])
def test_archives_with_path_tricks_are_refused(tmp_path: Path, name: str) -> None:
    batches = write_folder(tmp_path / "build")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        add_member(tar, name, pickle.dumps(batches["test_batch"]))
        for path in sorted((tmp_path / "build").rglob("*")):
            tar.add(path, arcname=str(path.relative_to(tmp_path / "build")), recursive=False)
    with pytest.raises(SparseLearningError, match="refusing") as excinfo:
        load_cifar(tmp_path, validation_size=5)
    assert name in one_line(excinfo)


def test_links_and_duplicates_in_archives_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(SparseLearningError, match="is a link or special file"):
        load_cifar(archive, validation_size=5)
    with tarfile.open(archive, "w:gz") as tar:
        add_member(tar, "cifar-10-batches-py/test_batch", b"x")
        add_member(tar, "./cifar-10-batches-py/test_batch", b"y")
    with pytest.raises(SparseLearningError, match="twice"):
        load_cifar(archive, validation_size=5)


def test_broken_or_incomplete_archives(tmp_path: Path) -> None:
    write_folder(tmp_path / "build")
    archive = pack(tmp_path / "build", tmp_path / "cifar-10-python.tar.gz")
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(SparseLearningError, match="not a readable .tar.gz") as excinfo:
        load_cifar(tmp_path)
    one_line(excinfo)
    (tmp_path / "build" / "cifar-10-batches-py" / "data_batch_4").unlink()
    pack(tmp_path / "build", archive)
    with pytest.raises(SparseLearningError, match="lacks cifar-10-batches-py/data_batch_4"):
        load_cifar(tmp_path)
    with pytest.raises(SparseLearningError, match="lacks data_batch_4"):
        load_cifar(tmp_path / "build")


def test_missing_dataset_and_bad_num_classes(tmp_path: Path) -> None:
    with pytest.raises(SparseLearningError) as excinfo:
        load_cifar(tmp_path)
    message = one_line(excinfo)
    assert "put cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/) there" in message
    assert str(tmp_path) in message and "download=True" in message
    with pytest.raises(SparseLearningError, match="num_classes must be 10 or 100, got 20"):
        load_cifar(tmp_path, num_classes=20)


class FakeResponse(io.BytesIO):
    def __enter__(self) -> FakeResponse:
        return self


def test_download_checks_the_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requested = []

    def fake_urlopen(url: str, timeout: float) -> FakeResponse:
        requested.append(url)
        return FakeResponse(b"this is not the CIFAR archive")

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(SparseLearningError) as excinfo:
        load_cifar(tmp_path / "root", download=True)
    message = one_line(excinfo)
    bad = hashlib.md5(b"this is not the CIFAR archive").hexdigest()
    assert f"checksum mismatch for {LAYOUTS[10].url}: md5 {bad}, expected c58f30108f718f92721af3b95e74349a" in message
    assert "put an intact cifar-10-python.tar.gz in" in message
    assert requested == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert list((tmp_path / "root").iterdir()) == []  # nothing partial is left behind


def test_download_of_a_matching_archive_is_kept_and_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = write_folder(tmp_path / "build", num_classes=100)
    payload = pack(tmp_path / "build", tmp_path / "upstream.tar.gz").read_bytes()
    monkeypatch.setitem(LAYOUTS, 100, dataclasses.replace(LAYOUTS[100], md5=hashlib.md5(payload).hexdigest()))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: FakeResponse(payload))
    data = load_cifar(tmp_path / "root", num_classes=100, download=True, validation_size=2)
    assert data["test_labels"].tolist() == batches["test"]["fine_labels"]
    assert (tmp_path / "root" / "cifar-100-python.tar.gz").read_bytes() == payload
    verify_archive(tmp_path / "root" / "cifar-100-python.tar.gz", num_classes=100)


def test_download_without_network_says_where_to_put_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, timeout: float) -> FakeResponse:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(SparseLearningError) as excinfo:
        load_cifar(tmp_path, num_classes=100, download=True)
    message = one_line(excinfo)
    assert "could not download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in message
    assert f"put cifar-100-python.tar.gz in {tmp_path}" in message
    assert list(tmp_path.iterdir()) == []


def test_verify_archive_reports_a_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"truncated")
    with pytest.raises(SparseLearningError, match="checksum mismatch .* expected c58f30108f718f92721af3b95e74349a"):
        verify_archive(path)
