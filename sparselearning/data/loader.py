"""Batches from a dataset held whole in memory: reproducible order, sharding across ranks, batched augmentation.

A dataset of a few hundred megabytes of uint8 pixels fits in memory (or on the GPU), so a `DataLoader` with
worker processes only adds start-up time and nondeterminism. `InMemoryLoader` instead indexes the uint8
tensor directly and turns each batch into normalised float32 with two tensor operations. Float inputs (a
user's own arrays of features or measurements) are held as float32 and normalised the same way, without
the division by 255 (`normalisation`, which an exported model's preprocessing record repeats exactly).

Reproducibility. The order of an epoch is `torch.randperm` under a `torch.Generator` seeded from
(`seed`, epoch) alone; augmentation draws from a generator seeded from (`seed`, epoch, rank, batch index). The
seeds are mixed by `sparselearning.ops.rng.derive_seed` (as for masks), so nearby seeds and epochs give
unrelated streams, and the global RNG is never read or advanced. Call `set_epoch` before each epoch: like
`DistributedSampler`, the loader does not advance the epoch by itself, so iterating twice without it repeats
the same batches.

Sharding. With `world_size > 1`, every rank computes the same epoch order and keeps every `world_size`-th
index starting at its `rank`, so the shards are disjoint and of equal size and all ranks run the same number
of batches. When the dataset size is not a multiple of `world_size`:
  * `drop_last=False` pads the order by repeating its first indices (as `DistributedSampler` does), so every
    sample is seen and a few are seen twice in that epoch;
  * `drop_last=True` drops the last indices of the (shuffled) order instead, so no sample repeats.
`drop_last` also decides whether a final, smaller batch is kept (False) or dropped (True).

Augmentation (`augment=True`): the standard CIFAR recipe, on whole batches: pad each image by 4 zero pixels
on every side (zero in pixel space, i.e. black, before normalisation), take a random crop of the original
size, and flip it horizontally with probability 1/2. It is one gather over the padded batch, no Python loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from sparselearning.errors import SparseLearningError, check_positive_int
from sparselearning.ops.rng import derive_seed

CROP_PADDING = 4
_ORDER_STREAM = 0
_AUGMENT_STREAM = 1
_LABEL_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _generator(*words: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*words))


def _per_channel(values: float | Sequence[float], channels: int, name: str) -> torch.Tensor:
    numbers = [float(values)] if isinstance(values, (int, float)) else [float(value) for value in values]
    if len(numbers) == 1:
        numbers *= channels
    if len(numbers) != channels or not all(math.isfinite(number) for number in numbers):
        raise SparseLearningError(
            f"{name} needs one number per channel ({channels}) or a single number, all finite, got {values!r}"
        )
    return torch.tensor(numbers, dtype=torch.float32)


def normalisation(
    mean: float | Sequence[float], std: float | Sequence[float], channels: int, pixels: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(scale, shift)` of shape (1, C, 1, 1), float32, such that `inputs.float() * scale + shift` is the
    normalised batch: `(u / 255 - mean) / std` for uint8 pixels (`pixels`), `(x - mean) / std` for float inputs.

    The one place this arithmetic is written, so that training batches and an exported model's preprocessing
    give the same float32 numbers bit for bit.
    """
    mean_values = _per_channel(mean, channels, "mean")
    std_values = _per_channel(std, channels, "std")
    if not bool((std_values > 0).all()):
        raise SparseLearningError(f"std must be positive for every channel, got {std!r}")
    divisor = 255.0 * std_values if pixels else std_values
    scale = (1.0 / divisor).view(1, channels, 1, 1)
    shift = (-mean_values / std_values).view(1, channels, 1, 1)
    return scale, shift


def augment_batch(images: torch.Tensor, generator: torch.Generator, padding: int = CROP_PADDING) -> torch.Tensor:
    """Random crop of a `padding`-zero-padded batch (B, C, H, W) back to (H, W), then a random horizontal flip.

    The offsets and flips are drawn on the CPU from `generator`, so the result does not depend on the device.
    """
    count, channels, height, width = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (count, 2), generator=generator)
    flips = torch.randint(0, 2, (count, 1), generator=generator).bool()
    rows = offsets[:, :1] + torch.arange(height)
    columns = torch.arange(width).expand(count, width)
    columns = torch.where(flips, width - 1 - columns, columns) + offsets[:, 1:]
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    return padded[
        torch.arange(count, device=device)[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows.to(device)[:, None, :, None],
        columns.to(device)[:, None, None, :],
    ]


class InMemoryLoader:
    """One epoch of `(inputs, labels)` batches per iteration: float32 (B, C, H, W) normalised, and int64 (B,).

    `images` are uint8 pixels (N, C, H, W), with `mean` and `std` per channel on the [0, 1] pixel scale, or
    floating point (N, C, H, W), held as float32, with `mean` and `std` in the inputs' own units (a single value
    stands for every channel). `device`, when given, holds the dataset there and builds batches there.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean: float | Sequence[float],
        std: float | Sequence[float],
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        augment: bool = False,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
    ) -> None:
        pixels = isinstance(images, torch.Tensor) and images.dtype == torch.uint8
        floats = isinstance(images, torch.Tensor) and images.is_floating_point()
        if not (pixels or floats) or images.dim() != 4:
            found = f"{images.dtype} {tuple(images.shape)}" if torch.is_tensor(images) else "no tensor"
            raise SparseLearningError(f"images must be a uint8 or floating-point tensor (N, C, H, W), got {found}")
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.dtype not in _LABEL_DTYPES:
            raise SparseLearningError("labels must be a 1-D integer tensor, one per image")
        if len(labels) != len(images) or len(labels) == 0:
            raise SparseLearningError(f"need as many labels as images, at least one: {len(labels)} vs {len(images)}")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.world_size = check_positive_int(world_size, "world_size")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise SparseLearningError(f"rank must be a whole number in 0..{world_size - 1}, got {rank!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SparseLearningError(f"seed must be a whole number >= 0, got {seed!r}")
        scale, shift = normalisation(mean, std, images.shape[1], pixels)

        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device) if pixels else images.to(self.device, torch.float32)
        self.labels = labels.to(device=self.device, dtype=torch.int64)
        self.rank, self.seed = rank, seed
        self.shuffle, self.drop_last, self.augment = bool(shuffle), bool(drop_last), bool(augment)
        self._scale, self._shift = scale.to(self.device), shift.to(self.device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order (and augmentation) the next iteration uses."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise SparseLearningError(f"epoch must be a whole number >= 0, got {epoch!r}")
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (padded or trimmed so that every rank sees the same number)."""
        total = len(self.labels)
        return total // self.world_size if self.drop_last else math.ceil(total / self.world_size)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch on this rank, the same on every rank (equal to `len(loader)`)."""
        return len(self)

    def epoch_order(self) -> torch.Tensor:
        """The whole dataset's order for the current epoch (the same on every rank), int64 on the CPU."""
        total = len(self.labels)
        if not self.shuffle:
            return torch.arange(total)
        return torch.randperm(total, generator=_generator(self.seed, self.epoch, _ORDER_STREAM))

    def shard_indices(self) -> torch.Tensor:
        """The indices this rank visits in the current epoch, in order (int64 on the CPU)."""
        order = self.epoch_order()
        needed = self.num_samples * self.world_size
        if needed > len(order):  # pad by repeating the start of the order, cyclically if it is very short
            order = order.repeat(math.ceil(needed / len(order)))
        return order[:needed][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches from batch index `start` on: what a run resumed mid-epoch still has to see.

        Each batch depends only on (seed, epoch, rank, batch index), so skipping the first `start` batches
        gives exactly the batches an uninterrupted epoch would have gone on with.
        """
        indices = self.shard_indices()
        for batch in range(start, len(self)):
            chosen = indices[batch * self.batch_size : (batch + 1) * self.batch_size].to(self.device)
            images = self.images[chosen]
            if self.augment:
                generator = _generator(self.seed, self.epoch, _AUGMENT_STREAM, self.rank, batch)
                images = augment_batch(images, generator)
            yield images.float() * self._scale + self._shift, self.labels[chosen]
