"""The lanes of a running stack, over HTTP.

``replica up`` serves this on 127.0.0.1 so later commands (``scenarios run``,
``reproduce``) open lanes on the running stack without paying for a fork server
of their own: ``POST /lanes`` starts a backend behind fresh proxies and answers
once it is up, ``GET /lanes/{id}/log`` gives its log tail, ``DELETE /lanes/{id}``
stops it. Request bodies are validated strictly; bad JSON gets a 422 that says
which field is wrong.
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict
from typing import AsyncIterator

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from replica.drivers.base import LaneRequest
from replica.drivers.lanes import OpenLane
from replica.drivers.local.driver import LocalDriver
from replica.errors import ReplicaError


class LaneInfo(BaseModel):
    id: str
    base_url: str
    proxies: dict[str, str]
    outcome: dict


def lanes_app(driver: LocalDriver) -> FastAPI:
    lanes: dict[str, tuple[AsyncExitStack, OpenLane]] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        for stack, _lane in list(lanes.values()):
            await stack.aclose()
        lanes.clear()

    app = FastAPI(title="staging-replica lanes", lifespan=lifespan)

    def lookup(lane_id: str) -> tuple[AsyncExitStack, OpenLane]:
        if lane_id not in lanes:
            raise HTTPException(404, f"no open lane {lane_id!r}")
        return lanes[lane_id]

    @app.post("/lanes", status_code=201)
    async def open_lane(request: LaneRequest) -> LaneInfo:
        stack = AsyncExitStack()
        try:
            lane = await stack.enter_async_context(driver.lane(request))
        except ReplicaError as exc:
            await stack.aclose()
            raise HTTPException(502, exc.message) from exc
        lane_id = uuid.uuid4().hex[:12]
        lanes[lane_id] = (stack, lane)
        return LaneInfo(id=lane_id, base_url=lane.base_url, proxies=lane.faults.proxies, outcome=asdict(lane.outcome))

    @app.get("/lanes/{lane_id}/log")
    async def lane_log(lane_id: str, lines: int = 40) -> dict[str, str]:
        return {"log": await lookup(lane_id)[1].backend_log(lines)}

    @app.delete("/lanes/{lane_id}", status_code=204)
    async def close_lane(lane_id: str) -> None:
        stack, _lane = lookup(lane_id)
        del lanes[lane_id]
        await stack.aclose()

    return app
