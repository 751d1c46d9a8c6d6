"""The lanes of a running stack, over HTTP on a private unix socket.

``replica up`` serves this inside its state dir (see ``replica.drivers.up.server``),
so later commands (``scenarios run``, ``reproduce``) of the same user open lanes
on the running stack without paying for a fork server of their own:

* ``POST /lanes`` starts a backend behind fresh proxies and answers once it is
  up (201), 429 when ``max_open_lanes`` (default :data:`MAX_OPEN_LANES`) are
  open or opening, 502 when the stack could not start it;
* ``GET /lanes`` lists the open lanes, ``GET /lanes/{id}/log?lines=N`` gives a
  backend's log tail (N in 0–:data:`MAX_LOG_LINES`), ``DELETE /lanes/{id}`` closes
  it: its proxies are gone when the 204 comes; its backend's stop (graceful, then
  killed) goes on in the background, off the client's path.

A lane whose backend refused its settings is closed at once (the answer says
why); so is one whose client went away while it opened. A client that names
itself (``?owner_pid=&owner_started=``, its :class:`ProcessIdentity`) gets its
lanes closed once that process is gone, however it ended: a client killed, or
interrupted between the lane's opening and its answer, leaves no lane open. Request bodies are
capped at :data:`MAX_BODY_BYTES` (413) and validated strictly: bad JSON or a bad
value gets a 4xx that says which field is wrong, never a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict
from typing import AsyncIterator

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from replica.body_limit import BodyLimit
from replica.drivers.base import LaneRequest
from replica.drivers.identity import ProcessIdentity
from replica.drivers.lanes import OpenLane
from replica.drivers.local.driver import LocalDriver
from replica.errors import ReplicaError

MAX_OPEN_LANES = 16
MAX_BODY_BYTES = 64 * 1024
MAX_LOG_LINES = 10_000
#: ``owner_started``: a start token (``BOOT_ID:START_TICKS``, see ``replica.drivers.identity``).
START_TOKEN = r"^[0-9a-f-]{0,36}:[0-9]{1,20}$"


def lane_request_model(hops: tuple[str, ...]) -> type[LaneRequest]:
    """A :class:`LaneRequest` whose faults may name only ``hops`` (the stack's: the built-in
    backend's, or its project's); an unknown hop is a 422."""

    class StackLaneRequest(LaneRequest):
        @model_validator(mode="after")
        def _hops_of_this_stack(self) -> "StackLaneRequest":
            for fault in (*self.toxics, *self.down):
                if fault.hop not in hops:
                    raise ValueError(f"unknown hop {fault.hop!r} (known: {', '.join(hops)})")
            return self

    return StackLaneRequest


class LaneInfo(BaseModel):
    id: str
    base_url: str
    proxies: dict[str, str]
    outcome: dict


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: any string, even one holding a
    lone surrogate taken from a request, renders."""

    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


async def _http_error(_request: Request, exc: StarletteHTTPException) -> AsciiJSONResponse:
    return AsciiJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _invalid_request(_request: Request, exc: RequestValidationError) -> AsciiJSONResponse:
    """422 naming each bad field; the offending input is not echoed (it may be any bytes)."""
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return AsciiJSONResponse({"detail": errors}, status_code=422)


def lanes_app(driver: LocalDriver, max_open_lanes: int = MAX_OPEN_LANES) -> ASGIApp:
    lanes: dict[str, tuple[AsyncExitStack, OpenLane]] = {}
    owners: dict[str, int] = {}  # lane id -> pidfd of the process that opened it
    closing: set[asyncio.Task[None]] = set()
    opening = 0

    def forget_owner(lane_id: str) -> None:
        fd = owners.pop(lane_id, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    async def close(lane_id: str) -> None:
        forget_owner(lane_id)
        if lane_id in lanes:
            stack, _lane = lanes.pop(lane_id)
            await stack.aclose()

    def watch_owner(lane_id: str, owner: ProcessIdentity) -> bool:
        """Close the lane when ``owner`` exits (its pidfd turns readable); False if it has already."""
        fd = owner.pidfd()
        if fd is None:
            return False
        owners[lane_id] = fd
        asyncio.get_running_loop().add_reader(fd, owner_gone, lane_id)
        return True

    def owner_gone(lane_id: str) -> None:
        forget_owner(lane_id)
        task = asyncio.create_task(close(lane_id))
        closing.add(task)
        task.add_done_callback(closing.discard)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if closing:
            await asyncio.wait(set(closing))
        for lane_id in list(lanes):
            await close(lane_id)

    app = FastAPI(
        title="staging-replica lanes", lifespan=lifespan, openapi_url=None,
        default_response_class=AsciiJSONResponse,
        exception_handlers={StarletteHTTPException: _http_error, RequestValidationError: _invalid_request},
    )

    def info(lane_id: str, lane: OpenLane) -> LaneInfo:
        return LaneInfo(id=lane_id, base_url=lane.base_url, proxies=lane.faults.proxies, outcome=asdict(lane.outcome))

    def lookup(lane_id: str) -> tuple[AsyncExitStack, OpenLane]:
        if lane_id not in lanes:
            raise HTTPException(404, "no open lane with that id")
        return lanes[lane_id]

    async def open_lane(
        body: LaneRequest, request: Request,
        owner_pid: int | None = Query(None, ge=1, le=2**22), owner_started: str | None = Query(None, pattern=START_TOKEN),
    ) -> LaneInfo:
        nonlocal opening
        if len(lanes) + opening >= max_open_lanes:
            raise HTTPException(429, f"{max_open_lanes} lanes are open already: close one first")
        opening += 1
        stack = AsyncExitStack()
        try:
            lane = await stack.enter_async_context(driver.lane(body))
            if lane.outcome.refused_settings or await request.is_disconnected():
                await stack.aclose()
                return info("closed", lane)
        except ReplicaError as exc:
            await stack.aclose()
            raise HTTPException(502, exc.message) from exc
        except BaseException:
            await stack.aclose()
            raise
        finally:
            opening -= 1
        lane_id = uuid.uuid4().hex[:12]
        lanes[lane_id] = (stack, lane)
        if owner_pid is not None and not watch_owner(lane_id, ProcessIdentity(owner_pid, owner_started or "")):
            await close(lane_id)
            return info("closed", lane)
        return info(lane_id, lane)

    # The body is parsed as a request naming only this stack's hops (a 422 otherwise).
    open_lane.__annotations__["body"] = lane_request_model(driver.hops)
    app.post("/lanes", status_code=201)(open_lane)

    @app.get("/lanes")
    async def list_lanes() -> list[LaneInfo]:
        return [info(lane_id, lane) for lane_id, (_stack, lane) in lanes.items()]

    @app.get("/lanes/{lane_id}/log")
    async def lane_log(lane_id: str, lines: int = Query(40, ge=0, le=MAX_LOG_LINES)) -> dict[str, str]:
        return {"log": await lookup(lane_id)[1].backend_log(lines)}

    @app.delete("/lanes/{lane_id}", status_code=204)
    async def close_lane(lane_id: str) -> None:
        lookup(lane_id)
        await close(lane_id)

    return BodyLimit(app, MAX_BODY_BYTES)
