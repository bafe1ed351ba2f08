"""Rewrite the `final_masks.pt` of finished runs in the packed form (one bit per weight), in place.

    .venv/bin/python -m experiments.pack_masks results/

Runs written before masks were packed saved one byte per weight; the committed results held 111 MB of them.
Each file is read as data, packed, checked to unpack to exactly the same masks, and replaced atomically;
files already packed are left alone. Lottery restarts and `sparselearning.runs.masks.unpack_masks` read both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sparselearning.errors import SparseLearningError
from sparselearning.funcs.init_scheme import as_boolean_mask
from sparselearning.io import atomic_save, safe_load
from sparselearning.runs.masks import PACKED_KEY, pack_masks, unpack_masks


def pack_file(path: Path) -> bool:
    """Pack one file; returns False when it was packed already."""
    state = safe_load(path, "mask file")
    if not isinstance(state, dict):
        raise SparseLearningError(f"{path} does not hold a mapping of masks")
    if PACKED_KEY in state:
        return False
    masks = state.get("masks")
    if not isinstance(masks, dict):
        raise SparseLearningError(f"{path} holds no masks")
    plain = {name: as_boolean_mask(mask, f"mask {name!r} in {path}") for name, mask in masks.items()}
    payload = pack_masks(plain)
    unpacked = unpack_masks(payload, str(path))
    if set(unpacked) != set(plain) or not all(torch.equal(unpacked[n], plain[n]) for n in plain):
        raise SparseLearningError(f"{path}: the packed masks do not unpack to the originals; left unchanged")
    atomic_save(payload, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    arguments = parser.parse_args(argv)
    try:
        files = sorted(path for folder in arguments.folders for path in folder.rglob("final_masks.pt"))
        packed = sum(pack_file(path) for path in files)
    except SparseLearningError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"packed {packed} of {len(files)} final_masks.pt files ({len(files) - packed} were packed already)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
