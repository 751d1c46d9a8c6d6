"""``reset_peer``: on the first chunk, waits ``timeout`` ms, then resets (TCP RST).

Unlike the original, the RST is sent whenever the toxic fires, also on
connections opened before it was added, and never when toxicity says no (an
inactive toxic is not run at all).
"""

from __future__ import annotations

import asyncio
from typing import Mapping

from .base import Attribute, Stub, Toxic


class ResetPeerToxic(Toxic):
    type_name = "reset_peer"
    go_struct = "ResetToxic"
    attributes = (Attribute("timeout"),)

    async def pipe(self, stub: Stub, attrs: Mapping[str, int]) -> None:
        if await stub.read() is None:
            stub.finish()
            return
        stub.drop()
        await asyncio.sleep(attrs["timeout"] / 1000.0)
        stub.reset_connection()
