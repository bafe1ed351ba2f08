"""N:M training by SR-STE (`methods.nm`, `sparselearning.sr_ste.NMMasking`): exact N:M weights in the model
after every step while dense weights train, the update equal to a hand computation, a bit-exact state round
trip, and one-line refusals."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from sparselearning import methods
from sparselearning.errors import SparseLearningError
from sparselearning.funcs.n_m import is_exactly_n_m, nm_mask
from sparselearning.sr_ste import NMMasking


class ConvMLP(nn.Module):
    """A convolution (fan-in 4 * 3 * 3 = 36) and two Linear layers, on 4x6x6 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3)
        self.fc1 = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.conv(inputs)).flatten(1)
        return self.fc2(torch.relu(self.fc1(hidden)))


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, 6, 6, generator=generator), torch.randint(0, 4, (16,), generator=generator)


def _setup(n: int = 2, m: int = 4, **options) -> tuple[ConvMLP, torch.optim.Optimizer, NMMasking]:
    torch.manual_seed(0)
    model = ConvMLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    masking = methods.nm(model, optimizer, n=n, m=m, total_steps=100, **options)
    assert isinstance(masking, NMMasking)
    return model, optimizer, masking


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, masking: NMMasking, steps: int, first: int = 0) -> None:
    for step in range(first, first + steps):
        inputs, labels = _batch(step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        masking.step()


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4)])
def test_every_group_of_every_masked_layer_holds_exactly_n_after_training(n: int, m: int) -> None:
    model, optimizer, masking = _setup(n, m)
    initial = {name: weight.clone() for name, weight in masking.dense_weights.items()}
    _train(model, optimizer, masking, 12)
    for name, parameter in masking.params.items():
        assert is_exactly_n_m(parameter, n, m), name
        dense = masking.dense_weights[name]
        assert torch.equal(masking.mask_dict[name], nm_mask(dense, n, m))
        assert torch.equal(parameter.detach(), dense * masking.mask_dict[name])
        assert not torch.equal(dense, initial[name])
        # Dense weights (and momentum) train at masked-out positions too.
        outside = ~masking.mask_dict[name]
        assert int(dense[outside].count_nonzero()) == int(outside.sum())
        assert int(optimizer.state[parameter]["momentum_buffer"][outside].count_nonzero()) > 0
    assert masking.stats.total_density == n / m
    assert masking.mask_step == 12
    masking.check()  # masked weights are zero in the model


def test_masks_move_during_training_and_the_ever_active_record_follows() -> None:
    model, optimizer, masking = _setup(1, 4, sparse_refined_decay=0.0)
    before = {name: mask.clone() for name, mask in masking.mask_dict.items()}
    _train(model, optimizer, masking, 10)
    assert any(not torch.equal(before[name], mask) for name, mask in masking.mask_dict.items())
    for name, ever in masking.ever_active.items():
        assert bool((ever | ~masking.mask_dict[name]).all()) and bool((ever | ~before[name]).all())
        assert int(ever.sum()) > int(masking.mask_dict[name].sum())


def test_evaluation_uses_the_n_m_weights() -> None:
    model, optimizer, masking = _setup()
    _train(model, optimizer, masking, 3)
    inputs, _ = _batch(99)
    reference = ConvMLP()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        for name, dense in masking.dense_weights.items():
            reference.get_parameter(name).copy_(dense * nm_mask(dense, 2, 4))
        assert torch.equal(model(inputs), reference(inputs))


def test_one_step_is_the_straight_through_gradient_plus_the_sparse_refined_decay_by_hand() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(8, 2, bias=False).double()
    dense = layer.weight.detach().clone()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    masking = methods.nm(layer, optimizer, n=2, m=4, sparse_refined_decay=0.1)
    inputs = torch.randn(5, 8, dtype=torch.float64)

    mask = nm_mask(dense, 2, 4)
    masked = (dense * mask).requires_grad_()
    (inputs @ masked.T).pow(2).sum().backward()  # the loss at the masked weights, by hand
    assert masked.grad is not None
    expected_dense = dense - 0.5 * (masked.grad + 0.1 * (1 - mask.double()) * dense)

    layer(inputs).pow(2).sum().backward()
    masking.step()
    torch.testing.assert_close(masking.dense_weights["weight"], expected_dense, rtol=0, atol=1e-14)
    assert torch.equal(masking.mask_dict["weight"], nm_mask(masking.dense_weights["weight"], 2, 4))
    assert torch.equal(layer.weight.detach(), masking.dense_weights["weight"] * masking.mask_dict["weight"])
    # The gradient the optimizer used is left in .grad, refined term included.
    torch.testing.assert_close(layer.weight.grad, masked.grad + 0.1 * (1 - mask.double()) * dense, rtol=0, atol=0)


def test_mask_gradients_adds_the_refined_term_once_per_step() -> None:
    layer = nn.Linear(8, 2, bias=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    masking = methods.nm(layer, optimizer)
    layer(torch.randn(3, 8)).sum().backward()
    assert layer.weight.grad is not None
    plain = layer.weight.grad.clone()
    masking.mask_gradients()
    once = layer.weight.grad.clone()
    masking.mask_gradients()  # before clipping, say; step() must not add it again
    assert torch.equal(layer.weight.grad, once) and not torch.equal(once, plain)
    masking.step()
    assert torch.equal(layer.weight.grad, once)


def test_the_state_round_trip_resumes_bit_exactly() -> None:
    model, optimizer, masking = _setup()
    _train(model, optimizer, masking, 4)
    buffer = io.BytesIO()
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "masking": masking.state_dict()}, buffer
    )
    _train(model, optimizer, masking, 4, first=4)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model, resumed_optimizer, resumed = _setup()
    resumed_model.load_state_dict(saved["model"])
    resumed_optimizer.load_state_dict(saved["optimizer"])
    resumed.load_state_dict(saved["masking"])
    assert resumed.mask_step == 4
    _train(resumed_model, resumed_optimizer, resumed, 4, first=4)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, resumed_model.state_dict()[name]), name
    for name, dense in masking.dense_weights.items():
        assert torch.equal(dense, resumed.dense_weights[name])
        assert torch.equal(masking.mask_dict[name], resumed.mask_dict[name])


def test_a_state_of_another_pattern_is_refused() -> None:
    _, _, masking = _setup(2, 4)
    _, _, other = _setup(1, 4)
    with pytest.raises(SparseLearningError, match=r"checkpoint holds 2:4, this run trains 1:4 sparsity"):
        other.load_state_dict(masking.state_dict())
    state = masking.state_dict()
    del state["dense_weights"]["fc1.weight"]
    with pytest.raises(SparseLearningError, match="dense_weights do not name this model's layers"):
        masking.load_state_dict(state)


def test_density_is_n_over_m() -> None:
    assert _setup(2, 4)[2].density == 0.5
    assert _setup(1, 4, density=0.25)[2].density == 0.25
    with pytest.raises(
        SparseLearningError, match=r"density=0.1 conflicts with 2:4 sparsity, whose density is 2/4 = 0.5"
    ):
        _setup(2, 4, density=0.1)


@pytest.mark.parametrize(("n", "m"), [(0, 4), (5, 4)])
def test_bad_patterns_are_refused(n: int, m: int) -> None:
    with pytest.raises(SparseLearningError, match=r"is not an N:M pattern; allowed: whole numbers with 1 <= n <= m"):
        _setup(n, m)


def test_a_layer_whose_fan_in_m_does_not_divide_is_refused_and_can_be_excluded() -> None:
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SparseLearningError, match=r"layer '0.weight' has fan-in 9, not a multiple of m=4.*exclude="):
        methods.nm(model, optimizer)
    masking = methods.nm(model, optimizer, exclude=["0"])
    assert list(masking.mask_dict) == ["2.weight"]


def test_other_refusals() -> None:
    layer = nn.Linear(8, 4)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    with pytest.raises(SparseLearningError, match="sparse_refined_decay must be a number >= 0"):
        methods.nm(layer, optimizer, sparse_refined_decay=-1.0)
    with pytest.raises(SparseLearningError, match="no density_overrides"):
        methods.nm(layer, optimizer, density_overrides={"weight": 0.5})
    masking = methods.nm(layer, optimizer)
    with pytest.raises(SparseLearningError, match="recomputed by every masking.step"):
        masking.update_connections()


def test_a_scaled_step_with_non_finite_gradients_leaves_weights_and_masks_as_they_were() -> None:
    layer = nn.Linear(8, 4, bias=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    masking = methods.nm(layer, optimizer)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    dense, mask, weight = masking.dense_weights["weight"].clone(), masking.mask_dict["weight"].clone(), layer.weight
    scaler.scale(layer(torch.randn(3, 8)).sum()).backward()
    assert weight.grad is not None
    weight.grad[0, 0] = float("inf")
    masking.step(scaler)
    assert torch.equal(masking.dense_weights["weight"], dense) and torch.equal(masking.mask_dict["weight"], mask)
    assert torch.equal(weight.detach(), dense * mask) and scaler.get_scale() == 2.0
    optimizer.zero_grad()
    scaler.scale(layer(torch.randn(3, 8)).sum()).backward()
    masking.step(scaler)  # a finite step moves the dense weights
    assert not torch.equal(masking.dense_weights["weight"], dense)
    assert is_exactly_n_m(weight, 2, 4)
