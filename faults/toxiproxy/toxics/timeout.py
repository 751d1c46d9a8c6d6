"""``timeout``: drops all data; closes the connection after ``timeout`` ms, never when 0.

With ``timeout`` 0 the connection hangs like a dead dependency until the toxic
is removed, which closes it.
"""

from __future__ import annotations

import asyncio
from typing import Mapping

from .base import Attribute, Stub, Toxic


class TimeoutToxic(Toxic):
    type_name = "timeout"
    go_struct = "TimeoutToxic"
    attributes = (Attribute("timeout"),)

    def acts_when_idle(self, attrs: Mapping[str, int]) -> bool:
        return attrs["timeout"] > 0

    async def pipe(self, stub: Stub, attrs: Mapping[str, int]) -> None:
        timeout = attrs["timeout"]
        if timeout > 0:
            try:
                await asyncio.wait_for(self._swallow(stub), timeout / 1000.0)
            except TimeoutError:
                stub.close_connection()
        else:
            await self._swallow(stub)

    @staticmethod
    async def _swallow(stub: Stub) -> None:
        while True:
            if await stub.read() is None:
                await asyncio.Event().wait()  # EOF is swallowed too
            stub.drop()

    def on_remove(self, stub: Stub) -> None:
        stub.close_connection()
