"""InMemoryLoader: batch counts, normalisation, order per (seed, epoch), sharding across ranks, augmentation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparselearning.data.loader import CROP_PADDING, InMemoryLoader, augment_batch, derive_seed
from sparselearning.errors import SparseLearningError


def dataset(count: int, channels: int = 1, size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose every pixel of sample i equals i % 256, and labels equal to the sample index."""
    images = (torch.arange(count) % 256).to(torch.uint8).view(count, 1, 1, 1).expand(count, channels, size, size)
    return images.contiguous(), torch.arange(count)


def visited(loader: InMemoryLoader) -> list[int]:
    return [int(label) for _, labels in loader for label in labels]


def test_batches_per_epoch_and_last_batch() -> None:
    images, labels = dataset(10)
    keep = InMemoryLoader(images, labels, batch_size=4, mean=0.5, std=0.25)
    assert len(keep) == keep.steps_per_epoch == 3
    assert [len(batch_labels) for _, batch_labels in keep] == [4, 4, 2]
    drop = InMemoryLoader(images, labels, batch_size=4, mean=0.5, std=0.25, drop_last=True)
    assert len(drop) == drop.steps_per_epoch == 2
    assert [len(batch_labels) for _, batch_labels in drop] == [4, 4]


def test_batches_are_normalised_float32_per_channel() -> None:
    images = torch.zeros(3, 3, 2, 2, dtype=torch.uint8)
    images[:, 0], images[:, 1], images[:, 2] = 0, 51, 255
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    loader = InMemoryLoader(images, torch.tensor([2, 0, 1]), 3, mean, std, shuffle=False)
    inputs, labels = next(iter(loader))
    assert inputs.dtype == torch.float32 and inputs.shape == (3, 3, 2, 2)
    assert labels.dtype == torch.int64 and labels.tolist() == [2, 0, 1]
    for channel, pixel in enumerate((0, 51, 255)):
        expected = (pixel / 255 - mean[channel]) / std[channel]
        torch.testing.assert_close(inputs[:, channel], torch.full((3, 2, 2), expected), rtol=1e-6, atol=1e-6)


def test_unshuffled_order_is_the_dataset_order() -> None:
    loader = InMemoryLoader(*dataset(7), batch_size=3, mean=0.0, std=1.0, shuffle=False)
    assert visited(loader) == list(range(7))
    loader.set_epoch(5)
    assert visited(loader) == list(range(7))


def test_order_depends_only_on_seed_and_epoch() -> None:
    images, labels = dataset(50)
    first = InMemoryLoader(images, labels, batch_size=8, mean=0.5, std=0.5, seed=3)
    second = InMemoryLoader(images, labels, batch_size=8, mean=0.5, std=0.5, seed=3)
    torch.manual_seed(123)
    epoch0 = visited(first)
    torch.manual_seed(456)  # the global RNG plays no part
    state = torch.get_rng_state()
    assert visited(second) == epoch0 and visited(first) == epoch0
    assert torch.equal(torch.get_rng_state(), state)
    assert sorted(epoch0) == list(range(50)) and epoch0 != list(range(50))
    first.set_epoch(1)
    epoch1 = visited(first)
    assert sorted(epoch1) == list(range(50)) and epoch1 != epoch0
    second.set_epoch(1)
    assert visited(second) == epoch1
    other_seed = InMemoryLoader(images, labels, batch_size=8, mean=0.5, std=0.5, seed=4)
    assert visited(other_seed) != epoch0
    assert derive_seed(3, 0, 0) != derive_seed(3, 1, 0) != derive_seed(4, 0, 0)


@pytest.mark.parametrize("shuffle", [True, False])
def test_two_ranks_get_disjoint_equal_shards_covering_the_epoch(shuffle: bool) -> None:
    images, labels = dataset(40)
    ranks = [
        InMemoryLoader(images, labels, 6, 0.5, 0.5, seed=9, shuffle=shuffle, rank=rank, world_size=2)
        for rank in range(2)
    ]
    for epoch in (0, 1):
        for loader in ranks:
            loader.set_epoch(epoch)
        shards = [visited(loader) for loader in ranks]
        assert len(ranks[0]) == len(ranks[1]) == 4
        assert len(shards[0]) == len(shards[1]) == 20
        assert not set(shards[0]) & set(shards[1])
        assert sorted(shards[0] + shards[1]) == list(range(40))
        single = InMemoryLoader(images, labels, 40, 0.5, 0.5, seed=9, shuffle=shuffle)
        single.set_epoch(epoch)
        order = visited(single)
        assert shards[0] == order[0::2] and shards[1] == order[1::2]


def test_uneven_sizes_pad_by_repeating_or_drop_the_remainder() -> None:
    images, labels = dataset(11)
    padded = [InMemoryLoader(images, labels, 4, 0.5, 0.5, seed=1, rank=rank, world_size=3) for rank in range(3)]
    shards = [visited(loader) for loader in padded]
    assert [len(shard) for shard in shards] == [4, 4, 4] and [len(loader) for loader in padded] == [1, 1, 1]
    every = shards[0] + shards[1] + shards[2]
    assert set(every) == set(range(11)) and len(every) == 12
    order = padded[0].epoch_order().tolist()
    assert sorted(every) == sorted([*order, order[0]])  # the one padding sample repeats the head of the order
    dropped = [
        InMemoryLoader(images, labels, 2, 0.5, 0.5, seed=1, drop_last=True, rank=rank, world_size=3)
        for rank in range(3)
    ]
    shards = [visited(loader) for loader in dropped]
    assert [len(shard) for shard in shards] == [2, 2, 2] and [loader.num_samples for loader in dropped] == [3, 3, 3]
    assert len(set(shards[0] + shards[1] + shards[2])) == 6


def test_tiny_dataset_with_many_ranks_still_gives_every_rank_a_batch() -> None:
    images, labels = dataset(2)
    shards = [visited(InMemoryLoader(images, labels, 8, 0.5, 0.5, rank=rank, world_size=5)) for rank in range(5)]
    assert all(len(shard) == 1 for shard in shards) and {index for shard in shards for index in shard} == {0, 1}


def reference_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-sample crop-then-flip, drawing the same numbers as `augment_batch`."""
    count, _, height, width = images.shape
    offsets = torch.randint(0, 2 * CROP_PADDING + 1, (count, 2), generator=generator)
    flips = torch.randint(0, 2, (count, 1), generator=generator).bool()
    padded = F.pad(images, [CROP_PADDING] * 4)
    out = []
    for index in range(count):
        top, left = offsets[index].tolist()
        crop = padded[index, :, top : top + height, left : left + width]
        out.append(crop.flip(-1) if flips[index] else crop)
    return torch.stack(out)


def test_augment_batch_matches_a_per_sample_crop_and_flip() -> None:
    images = torch.randint(0, 256, (64, 3, 10, 12), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    augmented = augment_batch(images, torch.Generator().manual_seed(7))
    assert augmented.shape == images.shape and augmented.dtype == torch.uint8
    assert torch.equal(augmented, reference_augment(images, torch.Generator().manual_seed(7)))
    assert not torch.equal(augmented, images)
    ones = augment_batch(torch.full((200, 1, 8, 8), 255, dtype=torch.uint8), torch.Generator().manual_seed(1))
    assert (ones == 0).any() and (ones == 255).any()  # padding is zero (black) in pixel space
    flipped_only = augment_batch(images, torch.Generator().manual_seed(2), padding=0)
    for index in range(len(images)):
        assert torch.equal(flipped_only[index], images[index]) or torch.equal(
            flipped_only[index], images[index].flip(-1)
        )


def test_loader_augmentation_is_deterministic_per_seed_epoch_and_batch() -> None:
    images = torch.randint(0, 256, (20, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    labels = torch.arange(20)

    def epoch(seed: int, number: int, augment: bool = True) -> list[torch.Tensor]:
        loader = InMemoryLoader(images, labels, 8, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), seed=seed, augment=augment)
        loader.set_epoch(number)
        return [inputs for inputs, _ in loader]

    first = epoch(0, 0)
    assert [batch.shape for batch in first] == [(8, 3, 8, 8), (8, 3, 8, 8), (4, 3, 8, 8)]
    assert all(batch.dtype == torch.float32 for batch in first)
    assert all(torch.equal(a, b) for a, b in zip(first, epoch(0, 0), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch(0, 0, augment=False), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch(0, 1), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch(1, 0), strict=True))


def test_device_argument_keeps_results_identical_on_cpu() -> None:
    images, labels = dataset(9, channels=3)
    here = InMemoryLoader(images, labels, 4, 0.3, 0.2, augment=True, seed=2)
    there = InMemoryLoader(images, labels, 4, 0.3, 0.2, augment=True, seed=2, device="cpu")
    for (a, la), (b, lb) in zip(here, there, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"images": torch.zeros(4, 1, 2, 2, dtype=torch.int32)}, r"uint8 or floating-point tensor \(N, C, H, W\)"),
        ({"images": torch.zeros(4, 2, 2)}, r"uint8 or floating-point tensor \(N, C, H, W\), got torch.float32"),
        ({"labels": torch.zeros(3, dtype=torch.int64)}, "as many labels"),
        ({"labels": torch.zeros(4)}, "integer tensor"),
        ({"batch_size": 0}, "batch_size"),
        ({"rank": 2, "world_size": 2}, r"rank must be a whole number in 0\.\.1"),
        ({"std": 0.0}, "std must be positive"),
        ({"mean": (0.1, 0.2)}, r"mean needs one number per channel \(1\) or a single number"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_are_refused(change: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "images": torch.zeros(4, 1, 2, 2, dtype=torch.uint8),
        "labels": torch.zeros(4, dtype=torch.int64),
        "batch_size": 2,
        "mean": 0.5,
        "std": 0.5,
    }
    with pytest.raises(SparseLearningError, match=message):
        InMemoryLoader(**{**arguments, **change})  # type: ignore[arg-type]
    with pytest.raises(SparseLearningError, match="epoch"):
        InMemoryLoader(**arguments).set_epoch(-1)  # type: ignore[arg-type]


def test_float_inputs_are_normalised_in_their_own_units() -> None:
    images = torch.tensor([[[[1.0, 3.0]]], [[[5.0, 7.0]]]], dtype=torch.float64)
    loader = InMemoryLoader(images, torch.tensor([0, 1]), 2, mean=4.0, std=2.0, shuffle=False)
    (inputs, labels), *_ = list(loader)
    assert inputs.dtype == torch.float32 and labels.tolist() == [0, 1]
    assert inputs.flatten().tolist() == [-1.5, -0.5, 0.5, 1.5]  # (x - 4) / 2, no division by 255
