"""``bandwidth``: limits a direction to ``rate`` KB/s (K = 1000); ``rate`` ≤ 0 is unlimited.

Pieces of at most 100 ms worth of data are released on an absolute schedule,
so timer granularity does not accumulate into a lower rate.
"""

from __future__ import annotations

import asyncio
from typing import Mapping

from .base import Attribute, Stub, Toxic


class BandwidthToxic(Toxic):
    type_name = "bandwidth"
    go_struct = "BandwidthToxic"
    attributes = (Attribute("rate", minimum=None),)

    async def pipe(self, stub: Stub, attrs: Mapping[str, int]) -> None:
        rate = attrs["rate"]  # bytes per millisecond
        if rate <= 0:
            await Toxic.pipe(self, stub, attrs)
            return
        slice_size = rate * 100
        next_free = stub.now()
        while (chunk := await stub.read()) is not None:
            next_free = max(next_free, chunk.ts)
            remaining = len(chunk.data)
            while remaining > 0:
                size = min(remaining, slice_size)
                remaining -= size
                next_free += size / rate / 1000.0
                wait = next_free - stub.now()
                if wait > 0:
                    await asyncio.sleep(wait)
                stub.forward(size)
        stub.finish()
