"""``slow_close``: holds the close back for ``delay`` ms after the source's EOF."""

from __future__ import annotations

import asyncio
from typing import Mapping

from .base import Attribute, Stub, Toxic


class SlowCloseToxic(Toxic):
    type_name = "slow_close"
    go_struct = "SlowCloseToxic"
    attributes = (Attribute("delay"),)

    async def pipe(self, stub: Stub, attrs: Mapping[str, int]) -> None:
        while await stub.read() is not None:
            stub.forward()
        await asyncio.sleep(attrs["delay"] / 1000.0)
        stub.finish()
