"""Exact selection, uniform sampling and apportioning: the primitives every mask update relies on."""

from __future__ import annotations

import pytest
import torch

from sparselearning.ops import mask_chunks
from sparselearning.ops.select import apportion, bottomk_indices, sample_indices, topk_indices, topk_of_scores


@pytest.mark.parametrize(("size", "k"), [(10, 3), (3000, 2000), (40_000, 1000), (100_000, 30_000), (300_000, 9000)])
def test_topk_matches_torch_topk(size: int, k: int) -> None:
    scores = torch.randn(size, generator=torch.Generator().manual_seed(size))
    expected = torch.sort(torch.topk(scores, k).indices).values
    assert torch.equal(topk_indices(scores, k), expected)


def test_bottomk_matches_torch() -> None:
    scores = torch.rand(70_000, generator=torch.Generator().manual_seed(1))
    expected = torch.sort(torch.topk(scores, 500, largest=False).indices).values
    assert torch.equal(bottomk_indices(scores, 500), expected)


@pytest.mark.parametrize("size", [50, 200_000])
def test_ties_go_to_the_lower_index(size: int) -> None:
    scores = torch.zeros(size)
    scores[7] = 5.0
    chosen = topk_indices(scores, 4)
    assert chosen.tolist() == [0, 1, 2, 7]
    assert bottomk_indices(-scores, 4).tolist() == [0, 1, 2, 7]


def test_edge_counts() -> None:
    scores = torch.arange(5.0)
    assert topk_indices(scores, 0).numel() == 0
    assert topk_indices(scores, -3).numel() == 0
    assert topk_indices(scores, 5).tolist() == [0, 1, 2, 3, 4]
    assert topk_indices(scores, 99).tolist() == [0, 1, 2, 3, 4]
    assert topk_indices(scores.view(1, 5), 2).tolist() == [3, 4]


def test_adversarial_layout_still_exact() -> None:
    # Large values only at positions the strided sample skips.
    scores = torch.zeros(1 << 20)
    scores[1::64] = torch.arange(1.0, (1 << 20) // 64 + 1)
    expected = torch.sort(torch.topk(scores, 1000).indices).values
    assert torch.equal(topk_indices(scores, 1000), expected)


@pytest.mark.parametrize(
    ("size", "fraction", "k"), [(1000, 0.5, 100), (1000, 0.5, 450), (200_000, 0.9, 5000), (200_000, 0.05, 3000)]
)
def test_sample_indices_exact_distinct_eligible_and_reproducible(size: int, fraction: float, k: int) -> None:
    eligible = torch.rand(size, generator=torch.Generator().manual_seed(3)) < fraction
    first = sample_indices(eligible, k, torch.Generator().manual_seed(11))
    again = sample_indices(eligible, k, torch.Generator().manual_seed(11))
    other = sample_indices(eligible, k, torch.Generator().manual_seed(12))
    assert first.numel() == k
    assert first.unique().numel() == k
    assert bool(eligible[first].all())
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_sample_indices_caps_at_available() -> None:
    eligible = torch.tensor([True, False, True, False])
    assert sample_indices(eligible, 10, torch.Generator().manual_seed(0)).tolist() == [0, 2]


def test_sample_indices_is_uniform() -> None:
    eligible = torch.ones(20, dtype=torch.bool)
    hits = torch.zeros(20)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2000):
        hits[sample_indices(eligible, 5, generator)] += 1
    # Each position expected 500 times; binomial sd ~19.
    assert float(hits.min()) > 420 and float(hits.max()) < 580


def test_apportion_sums_exactly_and_respects_caps() -> None:
    assert apportion(10, [1, 1, 1], [10, 10, 10]) == [4, 3, 3]
    assert apportion(100, [5, 1, 1], [20, 100, 100]) == [20, 40, 40]
    assert apportion(7, [0, 0], [3, 3]) == [3, 3]
    assert apportion(5, [1.0, 3.0], [100, 100]) == [1, 4]
    shares = apportion(12345, [0.3, 0.1, 2.5, 0.0], [5000, 9000, 4000, 9000])
    assert sum(shares) == 12345
    assert all(s <= c for s, c in zip(shares, [5000, 9000, 4000, 9000]))


def test_scores_asked_for_a_chunk_at_a_time_give_the_answer_of_the_whole_vector(monkeypatch) -> None:
    monkeypatch.setattr(mask_chunks, "CHUNK", 4096)
    values = torch.randn(100_000, generator=torch.Generator().manual_seed(5))
    values[::1000] = 0.25  # ties across chunk borders
    asked: list[slice | torch.Tensor] = []

    def scores_at(where: slice | torch.Tensor) -> torch.Tensor:
        asked.append(where)
        return values[where] if isinstance(where, slice) else values.take(where)

    for k in (1, 3000, 60_000):
        asked.clear()
        assert torch.equal(topk_of_scores(scores_at, values, k), torch.sort(torch.topk(values, k).indices).values)
        whole_chunks = [where for where in asked if isinstance(where, slice) and where.step is None]
        assert len(whole_chunks) % 25 == 0 and all(where.stop - where.start <= 4096 for where in whole_chunks)
    assert topk_of_scores(scores_at, values, 0).numel() == 0
    assert topk_of_scores(scores_at, values, 100_000).tolist() == list(range(100_000))
