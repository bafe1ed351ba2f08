"""One record per masked parameter, and the seed API's dict views over the records."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparselearning.core import Masking
from sparselearning.masking.records import Holding, MaskDict, MaskedParameter, ParameterDict


def _record(name: str = "fc.weight", shape: tuple[int, ...] = (3, 4)) -> MaskedParameter:
    layer = nn.Linear(shape[1], shape[0])
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[0, :2] = True
    return MaskedParameter(name, layer.weight, (Holding("fc", layer, "weight"),), 0, mask)


def test_a_record_counts_its_mask_and_makes_a_fresh_float_form_each_time() -> None:
    record = _record()
    assert record.count() == 2 and (record.active, record.inactive, record.numel) == (2, 10, 12)
    fresh = record.as_float()
    assert fresh.dtype == torch.float32 and fresh.shape == (3, 4) and fresh.sum().item() == 2.0
    record.mask[2, 3] = True
    assert record.as_float().sum().item() == 3.0 and fresh.sum().item() == 2.0, "a copy, never kept or reused"


def test_the_views_read_and_replace_masks_but_never_add_parameters() -> None:
    record = _record()
    records = {record.name: record}
    masks, params = MaskDict(records), ParameterDict(records)
    assert list(masks) == list(params) == ["fc.weight"] and len(masks) == 1
    replacement = torch.ones(3, 4, dtype=torch.bool)
    masks["fc.weight"] = replacement
    assert record.mask is replacement
    assert params["fc.weight"] is record.parameter
    with pytest.raises(KeyError, match="'other.weight' is not a masked parameter; masked: fc.weight"):
        masks["other.weight"] = replacement
    with pytest.raises(TypeError, match="add_module"):
        params["fc.weight"] = nn.Parameter(torch.ones(1))
    with pytest.raises(TypeError, match="remove_weight"):
        del params["fc.weight"]
    del masks["fc.weight"]
    assert records == {}


class _TiedPair(nn.Module):
    """Two Linear layers sharing one weight, and a third with its own."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(8, 8, bias=False)
        self.decoder = nn.Linear(8, 8, bias=False)
        self.decoder.weight = self.encoder.weight
        self.head = nn.Linear(8, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)))


def test_a_tied_parameter_is_one_record_that_knows_both_owners() -> None:
    model = _TiedPair()
    masking = Masking(torch.optim.SGD(model.parameters(), lr=0.1), density=0.5)
    masking.add_module(model)
    assert list(masking.records) == ["encoder.weight", "head.weight"]
    tied = masking.records["encoder.weight"]
    assert tied.aliases == ("encoder.weight", "decoder.weight")
    assert [holding.module for holding in tied.owners] == [model.encoder, model.decoder]
    assert masking.total_params == 64 + 16, "the shared weight is counted once"
    assert [r.index for r in masking.records.values()] == [0, 1]
