"""Serving the lanes API inside ``replica up``'s own event loop, on a unix socket.

The socket lives in the private state dir (0700) and is itself 0600: only the
user who ran ``replica up`` can reach it, so nobody else can make it start a
backend (and import a handler module) on their behalf. Clients connect with
``httpx.AsyncHTTPTransport(uds=...)`` to :data:`LANES_URL`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import uvicorn

from replica.drivers.local.driver import LocalDriver
from replica.drivers.up.api import MAX_OPEN_LANES, lanes_app
from replica.unix_sockets import bind_unix_socket

#: The base URL clients use over the socket (the host part only fills the Host header).
LANES_URL = "http://lanes.localhost"
#: Connections served at once; more get 503 until one ends.
MAX_CONNECTIONS = 64


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: Ctrl-C belongs to ``replica up``."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


class LanesServer:
    def __init__(self, driver: LocalDriver, socket_path: Path, *, max_open_lanes: int | None = None) -> None:
        self.socket_path = socket_path
        self.url = LANES_URL
        config = uvicorn.Config(
            lanes_app(driver, max_open_lanes or MAX_OPEN_LANES), log_level="warning", lifespan="on",
            limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=5,
        )
        self._server = _Server(config)
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._socket = bind_unix_socket(self.socket_path)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the lanes API stopped before it started")
            await asyncio.sleep(0.01)  # polling a bounded in-process start (uvicorn sets `started`)

    async def stop(self) -> None:
        try:
            if self._task is not None:
                self._server.should_exit = True
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(self._task, 10)
        finally:
            if self._socket is not None:
                self._socket.close()
            self.socket_path.unlink(missing_ok=True)
