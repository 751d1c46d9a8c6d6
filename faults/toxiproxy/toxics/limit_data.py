"""``limit_data``: passes ``bytes`` bytes per connection and direction, then closes it."""

from __future__ import annotations

from typing import Mapping

from .base import Attribute, Stub, Toxic


class LimitDataToxic(Toxic):
    type_name = "limit_data"
    go_struct = "LimitDataToxic"
    attributes = (Attribute("bytes"),)

    async def pipe(self, stub: Stub, attrs: Mapping[str, int]) -> None:
        limit = attrs["bytes"]
        while (chunk := await stub.read()) is not None:
            sent = stub.state.get("sent", 0)
            size = max(0, min(len(chunk.data), limit - sent))
            if size:
                stub.forward(size)
                stub.state["sent"] = sent + size
            if sent + size >= limit:
                stub.close_connection()
                return
        stub.finish()
