"""Serving the lanes API inside ``replica up``'s own event loop, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from replica.drivers.up.api import lanes_app
from replica.drivers.local.driver import LocalDriver
from replica.drivers.local.ports import free_port


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: Ctrl-C belongs to ``replica up``."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


class LanesServer:
    def __init__(self, driver: LocalDriver) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(lanes_app(driver), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the lanes API stopped before it started")
            await asyncio.sleep(0.01)  # polling a bounded in-process start (uvicorn sets `started`)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._task, 10)
