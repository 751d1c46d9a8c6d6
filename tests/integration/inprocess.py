"""The backend and the auth service served by real uvicorn in threads of the test
process, each on a listening socket the test binds first (port 0: nothing to race for).

The backend gets the same uvicorn settings as ``python -m replica.backend``
(:func:`replica.backend.server.uvicorn_options`), real Postgres and Redis from
:mod:`tests.servers_support`, and the real auth service over HTTP.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
from typing import Iterator

import pytest
import uvicorn

from replica.auth.app import create_app as create_auth_app
from replica.auth.tokens import mint_token
from replica.backend.app import create_app
from replica.backend.server import uvicorn_options
from replica.settings import AuthSettings, BackendSettings

START_TIMEOUT_S = 60.0


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


class ThreadedServer(uvicorn.Server):
    """A uvicorn server in its own thread and event loop, on a socket bound beforehand."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.sock = listening_socket()
        self.port = self.sock.getsockname()[1]
        self.startup_done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.startup_done.set()

    def _run(self) -> None:
        try:
            asyncio.run(self.serve(sockets=[self.sock]))
        finally:
            self.startup_done.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ThreadedServer":
        self.thread.start()
        if not self.startup_done.wait(START_TIMEOUT_S) or not self.started:
            self.stop()
            raise RuntimeError(f"the server on port {self.port} did not start")
        return self

    def stop(self) -> None:
        self.should_exit = True
        self.thread.join(30)
        self.sock.close()
        assert not self.thread.is_alive(), "the server thread did not stop"


class BackendUnderTest:
    """A running backend: its URLs and tokens for its auth service."""

    def __init__(self, server: ThreadedServer, secret: str) -> None:
        self.server = server
        self.secret = secret

    @property
    def http(self) -> str:
        return self.server.url

    @property
    def ws(self) -> str:
        return self.server.url.replace("http", "ws", 1) + "/ws"

    def token(self, sub: str = "fuzz-user") -> str:
        return mint_token(self.secret, sub=sub)


def serve_backend(postgres_url: str, redis_url: str, **settings: object) -> Iterator[BackendUnderTest]:
    """Start the auth service and a backend (``settings`` override the defaults); stop both after."""
    secret = secrets.token_urlsafe(32)
    auth_app = create_auth_app(AuthSettings(jwt_secret=secret))
    auth = ThreadedServer(uvicorn.Config(auth_app, log_config=None, lifespan="off")).start()
    try:
        backend_settings = BackendSettings(
            database_url=postgres_url, redis_url=redis_url, auth_url=auth.url,
            dependency_timeout_s=5, auth_timeout_s=5, **settings,
        )
        app = create_app(backend_settings)
        backend = ThreadedServer(uvicorn.Config(app, **uvicorn_options(backend_settings))).start()
        try:
            yield BackendUnderTest(backend, secret)
        finally:
            backend.stop()
    finally:
        auth.stop()


@pytest.fixture(scope="module")
def backend(postgres_server, redis_server) -> Iterator[BackendUnderTest]:  # type: ignore[no-untyped-def]
    """The incident backend, healthy, shared by a module's tests (servers from tests.servers_support)."""
    yield from serve_backend(postgres_server.url, redis_server.url, handler="incident")
