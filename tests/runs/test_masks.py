"""Masks packed one bit per weight: exact round trip, eight times smaller, damaged entries refused."""

from __future__ import annotations

import io

import pytest
import torch

from sparselearning.errors import SparseLearningError
from sparselearning.runs.masks import pack, pack_masks, unpack, unpack_masks


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (8,), (9,), (300, 784), (20, 1, 5, 5)])
def test_round_trip_is_exact_for_any_size(shape: tuple[int, ...]) -> None:
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(0)) < 0.3
    assert torch.equal(unpack(pack(mask), "m"), mask)


def test_a_packed_file_is_about_eight_times_smaller() -> None:
    masks = {"a": torch.rand(300, 784) < 0.05, "b": torch.rand(100, 300) < 0.05}

    def size(payload: object) -> int:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return buffer.tell()

    packed, plain = size(pack_masks(masks)), size({"masks": masks})
    assert plain / packed > 7.5
    loaded = torch.load(io.BytesIO(_saved(pack_masks(masks))), weights_only=True)
    assert all(torch.equal(unpack_masks(loaded, "f")[name], masks[name]) for name in masks)


def _saved(payload: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


TWO_BYTES = torch.zeros(2, dtype=torch.uint8)
CASES = {
    "shape asks for more than the bits hold": ({"shape": torch.tensor([10**9]), "bits": TWO_BYTES}, "needs"),
    "negative size": ({"shape": torch.tensor([-8]), "bits": torch.zeros(1, dtype=torch.uint8)}, "negative"),
    "float bits": ({"shape": torch.tensor([8]), "bits": torch.zeros(1)}, "'bits' must be a 1-D uint8"),
    "float shape": ({"shape": torch.tensor([8.0]), "bits": torch.zeros(1, dtype=torch.uint8)}, "'shape' must be"),
    "padding set": ({"shape": torch.tensor([3]), "bits": torch.tensor([0xFF], dtype=torch.uint8)}, "padding bits"),
    "extra field": ({"shape": torch.tensor([8]), "bits": torch.zeros(1, dtype=torch.uint8), "x": 1}, "exactly"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_entry_is_one_line_naming_the_field(case: str) -> None:
    entry, message = CASES[case]
    with pytest.raises(SparseLearningError, match=message):
        unpack(entry, "mask 'fc.weight'")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(SparseLearningError, match="unknown mask format"):
        unpack_masks({"format": "bits-v9", "packed_masks": {}}, "f")
