"""``slicer``: splits chunks into pieces of about ``average_size`` ± ``size_variation``
bytes, sent ``delay`` µs apart.

The original recursed forever on ``average_size`` 0 and could index out of range
when ``size_variation`` exceeded it; here ``average_size`` must be ≥ 1 and split
points are clamped inside the chunk.
"""

from __future__ import annotations

import asyncio
import random
from typing import Mapping

from .base import Attribute, Stub, Toxic


def slice_sizes(length: int, average: int, variation: int, rng: random.Random) -> list[int]:
    """Sizes of the pieces a chunk of ``length`` bytes is cut into (they sum to it)."""
    sizes: list[int] = []
    stack = [length]
    while stack:
        size = stack.pop()
        if size - average <= variation or size <= 1:
            sizes.append(size)
            continue
        mid = size // 2
        if variation > 0:
            mid += rng.randrange(variation * 2) - variation
        mid = min(max(mid, 1), size - 1)
        stack.append(size - mid)  # right half popped after the left one
        stack.append(mid)
    return sizes


class SlicerToxic(Toxic):
    type_name = "slicer"
    go_struct = "SlicerToxic"
    attributes = (
        Attribute("average_size", "int", minimum=1),
        Attribute("size_variation", "int"),
        Attribute("delay", "int"),
    )

    async def pipe(self, stub: Stub, attrs: Mapping[str, int]) -> None:
        delay = attrs["delay"] / 1_000_000.0
        while (chunk := await stub.read()) is not None:
            sizes = slice_sizes(len(chunk.data), attrs["average_size"], attrs["size_variation"], stub.rng)
            for size in sizes:
                if delay > 0:
                    await asyncio.sleep(delay)
                stub.forward(size)
        stub.finish()
