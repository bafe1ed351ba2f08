"""`to_sparse`: exact outputs, which layer becomes what, and the input model left alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparselearning import methods
from sparselearning.errors import SparseLearningError
from sparselearning.export import BiasOnly, SparseConv2d, SparseLinear, nm_mask, to_sparse, to_sparse_with_report
from sparselearning.export.semi_structured import is_nm_sparse, semi_structured_unavailable
from sparselearning.models import LeNet5
from tests.export.helpers import FAMILIES, masked_reference, max_difference, random_masks, with_random_statistics


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_outputs_equal_the_masked_model_with_every_layer_sparse(family: str) -> None:
    factory, shape, _ = FAMILIES[family]
    model = with_random_statistics(factory())
    masks = random_masks(model, 0.1)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    # A threshold of 1 makes every Conv2d a SparseConv2d, so the unfold path is checked on every family.
    sparse = to_sparse(model, masks, conv_density_threshold=1.0)
    inputs = torch.randn(3, *shape)
    assert max_difference(masked_reference(model, masks), sparse, inputs) < 1e-5
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert model.training and not sparse.training
    kinds = {type(module) for module in sparse.modules()}
    assert SparseLinear in kinds and nn.Linear not in kinds
    first = next(module for module in sparse.modules() if isinstance(module, SparseLinear))
    assert first.weight.layout == torch.sparse_csr and first.weight.col_indices().dtype == torch.int32
    if any(isinstance(module, nn.Conv2d) for module in model.modules()):
        assert SparseConv2d in kinds and nn.Conv2d not in kinds


def test_conv_choice_is_measured_on_the_example_input() -> None:
    model = LeNet5()
    masks = random_masks(model, 0.05)
    inputs = torch.randn(2, 1, 28, 28)
    sparse, decisions = to_sparse_with_report(model, masks, example_input=inputs)
    assert max_difference(masked_reference(model, masks), sparse, inputs) < 1e-5
    convs = [d for d in decisions if isinstance(model.get_submodule(d.name), nn.Conv2d)]
    assert convs and all(d.dense_ms is not None and d.sparse_ms is not None for d in convs)
    for decision in convs:
        chosen = type(sparse.get_submodule(decision.name))
        assert chosen is (SparseConv2d if decision.kind == "csr_conv" else nn.Conv2d)
        assert (decision.kind == "csr_conv") == (decision.sparse_ms < decision.dense_ms)
    assert [d.kind for d in decisions if d.name.startswith("fc")] == ["csr_linear", "csr_linear"]


def test_conv_threshold_without_example_input() -> None:
    model = LeNet5()
    masks = random_masks(model, 0.2)
    masks["conv2.weight"] = torch.rand(masks["conv2.weight"].shape) < 0.005
    sparse = to_sparse(model, masks)
    assert isinstance(sparse.conv1, nn.Conv2d) and isinstance(sparse.conv2, SparseConv2d)
    assert max_difference(masked_reference(model, masks), sparse, torch.randn(2, 1, 28, 28)) < 1e-5


def test_full_and_empty_layers() -> None:
    model = LeNet5()
    masks = random_masks(model, 0.1)
    masks["conv1.weight"] = torch.zeros_like(masks["conv1.weight"])
    masks["conv2.weight"] = torch.ones_like(masks["conv2.weight"])
    masks["fc3.weight"] = torch.zeros_like(masks["fc3.weight"])
    masks["fc4.weight"] = torch.ones_like(masks["fc4.weight"])
    sparse = to_sparse(model, masks, conv_density_threshold=1.0)
    assert isinstance(sparse.conv1, BiasOnly) and isinstance(sparse.fc3, BiasOnly)
    assert type(sparse.conv2) is nn.Conv2d and type(sparse.fc4) is nn.Linear
    inputs = torch.randn(2, 1, 28, 28)
    assert max_difference(masked_reference(model, masks), sparse, inputs) < 1e-5
    # A layer with no active weight and no bias returns zeros of the right shape.
    empty = to_sparse(nn.Linear(5, 3, bias=False), {"weight": torch.zeros(3, 5, dtype=torch.bool)})
    assert isinstance(empty, BiasOnly) and torch.equal(empty(torch.randn(4, 5)), torch.zeros(4, 3))


def test_masking_object_and_inferred_masks() -> None:
    model = FAMILIES["mlp"][0]()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    masking = methods.static(model, optimizer, density=0.2)
    inputs = torch.randn(4, 48)
    from_masking = to_sparse(model, masking)
    from_zeros = to_sparse(model)  # masked weights are zero already, so None infers the same masks
    with torch.no_grad():
        expected = model.eval()(inputs)
    for sparse in (from_masking, from_zeros):
        assert isinstance(sparse.layers[0], SparseLinear)
        assert float((sparse(inputs) - expected).abs().max()) < 1e-5
    dense = FAMILIES["mlp"][0]()
    assert all(type(m) is not SparseLinear for m in to_sparse(dense).modules())  # 100% dense stays dense


def test_index_dtype() -> None:
    model = FAMILIES["mlp"][0]()
    masks = random_masks(model, 0.3)
    assert to_sparse(model, masks).layers[0].col_indices.dtype == torch.int32
    wide = to_sparse(model, masks, index_dtype="int64")
    assert wide.layers[0].crow_indices.dtype == torch.int64
    assert max_difference(masked_reference(model, masks), wide, torch.randn(2, 48)) < 1e-5
    with pytest.raises(SparseLearningError, match="index_dtype"):
        to_sparse(model, masks, index_dtype="int8")


def test_bad_masks_are_refused() -> None:
    model = FAMILIES["mlp"][0]()
    with pytest.raises(SparseLearningError, match="names no parameter"):
        to_sparse(model, {"nowhere.weight": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(SparseLearningError, match="has shape"):
        to_sparse(model, {"layers.0.weight": torch.ones(2, 2, dtype=torch.bool)})


def test_sparse_layers_survive_copies_and_single_examples() -> None:
    import copy

    model = FAMILIES["lenet5"][0]()
    masks = random_masks(model, 0.1)
    sparse = to_sparse(model, masks, conv_density_threshold=1.0)
    duplicate = copy.deepcopy(sparse).double()
    inputs = torch.randn(1, 1, 28, 28)
    reference = masked_reference(model, masks)
    assert max_difference(reference, sparse, inputs) < 1e-5
    assert max_difference(reference.double(), duplicate, inputs.double()) < 1e-5
    layer = sparse.fc3
    single = torch.randn(layer.in_features)
    with torch.no_grad():
        assert layer(single).shape == (layer.out_features,)


def test_nm_mask_keeps_the_largest_two_of_four() -> None:
    weight = torch.tensor([[0.1, -3.0, 2.0, 0.5, 1.0, 1.0, 1.0, -4.0]])
    mask = nm_mask(weight)
    assert mask.tolist() == [[False, True, True, False, True, False, False, True]]
    big = nm_mask(torch.randn(64, 128))
    assert big.sum() == 64 * 64 and is_nm_sparse(torch.randn(64, 128) * big)
    with pytest.raises(SparseLearningError, match="multiple"):
        nm_mask(torch.randn(4, 6))


@pytest.mark.skipif(semi_structured_unavailable() is None, reason="a GPU with 2:4 kernels is present")
def test_semi_structured_without_a_gpu_is_a_clear_error() -> None:
    model = nn.Sequential(nn.Linear(64, 64))
    masks = {"0.weight": nm_mask(model[0].weight)}
    with pytest.raises(SparseLearningError, match="semi_structured=True is not possible"):
        to_sparse(model, masks, semi_structured=True)
