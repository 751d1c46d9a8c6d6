"""``latency``: delays every chunk by ``latency`` ± U(``jitter``) ms from its arrival.

Delays do not stack: a chunk that arrived while an earlier one waited only waits
for what is left of its own delay. The chunk's timestamp moves forward by the
delay, so two latency toxics in a chain add up.
"""

from __future__ import annotations

import asyncio
from typing import Mapping

from .base import Attribute, Stub, Toxic


class LatencyToxic(Toxic):
    type_name = "latency"
    go_struct = "LatencyToxic"
    attributes = (Attribute("latency"), Attribute("jitter"))

    async def pipe(self, stub: Stub, attrs: Mapping[str, int]) -> None:
        latency, jitter = attrs["latency"], attrs["jitter"]
        while (chunk := await stub.read()) is not None:
            delay_ms = float(latency)
            if jitter > 0:
                delay_ms += stub.rng.uniform(-jitter, jitter)
            due = chunk.ts + max(delay_ms, 0.0) / 1000.0
            wait = due - stub.now()
            if wait > 0:
                await asyncio.sleep(wait)
            chunk.ts = due
            stub.forward()
        stub.finish()
