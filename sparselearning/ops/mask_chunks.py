"""Bool masks used in float arithmetic without keeping a float copy of them.

On CPU a multiply by a float32 mask is several times faster than a multiply by a bool mask (which casts every
element on the fly), but a float copy of every mask costs 4 bytes per weight for as long as it is kept. Here each
mask is turned into 0.0/1.0 one chunk at a time, into a single buffer small enough to stay in a core's L2 cache,
and the float arithmetic runs on that chunk: the multiply keeps its speed, the masks cost their 1 byte per weight,
and the buffer lives only as long as the call.

Other devices multiply by the bool mask directly: their elementwise kernels convert on the fly without a
per-element penalty worth a chunked detour.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

# Entries per float chunk: 256 Ki float32 values (1 MiB) fit a core's L2 cache with room for the operands. Measured
# on the 2048 x 2048 multiply (`python -m benchmarks.mask_multiply`): 64 Ki entries pay too much per call, 1 Mi
# entries spill out of L2.
CHUNK = 1 << 18


def group_small(numels: Sequence[int], chunk: int | None = None) -> list[list[int]]:
    """Indices of the tensors smaller than `chunk` entries, in order, gathered into groups of at most `chunk`
    entries in all (each group is converted and multiplied with one call each); larger tensors are in none."""
    chunk = chunk or CHUNK
    groups: list[list[int]] = []
    room = 0
    for index, numel in enumerate(numels):
        if numel >= chunk or numel == 0:
            continue
        if numel > room:
            groups.append([])
            room = chunk
        groups[-1].append(index)
        room -= numel
    return groups


def mask_bytes(mask: torch.Tensor) -> torch.Tensor:
    """A mask as flat uint8 0/1 (a view of a contiguous bool mask; other dtypes count nonzero as active): copying
    uint8 into floats is far faster than copying bool."""
    flat = mask.reshape(-1)
    return (flat if flat.dtype == torch.bool else flat != 0).view(torch.uint8)


def multiply_by_bool_masks(
    tensors: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], chunk: int | None = None
) -> None:
    """`tensor *= mask` in place for each pair (each mask bool, shaped like its tensor), as fast as a multiply by
    float masks on CPU and with one chunk-sized float buffer instead of a float copy of every mask."""
    chunk = chunk or CHUNK
    batched: dict[tuple[torch.device, torch.dtype], list[tuple[torch.Tensor, torch.Tensor]]] = {}
    direct: list[tuple[torch.Tensor, torch.Tensor]] = []
    for tensor, mask in zip(tensors, masks, strict=True):
        if tensor.device.type == "cpu" and tensor.is_contiguous() and tensor.is_floating_point():
            batched.setdefault((tensor.device, tensor.dtype), []).append((tensor.view(-1), mask_bytes(mask)))
        else:
            direct.append((tensor, mask))
    if direct:
        torch._foreach_mul_([tensor for tensor, _ in direct], [mask for _, mask in direct])
    for (device, dtype), pairs in batched.items():
        buffer = torch.empty(min(chunk, sum(flat.numel() for flat, _ in pairs)), dtype=dtype, device=device)
        for flat, mask in pairs:
            if flat.numel() >= chunk:  # large: chunk by chunk, one conversion and one multiply each
                for piece, bits in zip(flat.split(chunk), mask.split(chunk), strict=True):
                    piece.mul_((buffer if piece.numel() == chunk else buffer[: piece.numel()]).copy_(bits))
        for group in group_small([flat.numel() for flat, _ in pairs], chunk):  # small: many per call
            sizes = [pairs[index][0].numel() for index in group]
            floats = list(buffer[: sum(sizes)].split(sizes))
            torch._foreach_copy_(floats, [pairs[index][1] for index in group])
            torch._foreach_mul_([pairs[index][0] for index in group], floats)


def float_chunks(
    mask: torch.Tensor, *tensors: torch.Tensor, dtype: torch.dtype = torch.float32, chunk: int | None = None
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Walk a bool mask and flat tensors of as many entries chunk by chunk: yields the mask's chunk as 0.0/1.0 in
    `dtype` (a reused buffer, valid until the next chunk), then the same chunk of each tensor (views, so in-place
    work on them lands in the tensors)."""
    chunk = chunk or CHUNK
    flat_mask = mask_bytes(mask)
    count = flat_mask.numel()
    for tensor in tensors:
        if tensor.dim() != 1 or tensor.numel() != count:
            raise ValueError(f"float_chunks needs flat tensors of {count} entries, got shape {tuple(tensor.shape)}")
    buffer = torch.empty(min(chunk, count), dtype=dtype, device=mask.device)
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        floats = buffer[: stop - start].copy_(flat_mask[start:stop])
        yield (floats, *(tensor[start:stop] for tensor in tensors))
