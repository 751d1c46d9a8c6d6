"""The server process: control API listener, proxies, config loading and ``run``.

In-process use (tests, harness)::

    async with ToxiproxyServer(host="127.0.0.1", port=0, seed=1) as server:
        server.url        # "http://127.0.0.1:PORT"
        server.collection # the live ProxyCollection

``await server.start()`` / ``await server.stop()`` do the same without the
context manager. ``stop`` closes the API listener, every proxy listener and
every proxied connection.

Blocking use: :func:`run` (what ``python -m faults.toxiproxy`` and
``replica proxy serve`` call). It prints ``toxiproxy listening on
http://HOST:PORT`` once listening and exits 0 on SIGTERM/SIGINT; it raises
``SystemExit(2)`` for an unreadable or invalid config and ``SystemExit(3)``
when the API port (or a proxy's listen address from the config) cannot be
bound, after a message on stderr. A stop signal ends the process within a
second, whatever is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
from types import TracebackType

from . import TOKEN_ENV, splice
from .address import format_address, host_problem
from .api import Api
from .collection import PopulateError, ProxyCollection
from .http import HttpServer, Limits
from .model import ApiError, ProxyInput, decode, parse_populate

__all__ = ["ConfigFileError", "Limits", "ProxyBindError", "ToxiproxyServer", "load_config", "run"]

MAX_CONFIG = 16 << 20  # bytes of a config file
STOP_TIMEOUT = 0.3  # seconds for connections and relays to wind down on stop
EXIT_DEADLINE = 0.9  # after SIGTERM/SIGINT the process is gone by then, whatever is still running


class ConfigFileError(Exception):
    """The config file cannot be read or is not a valid populate array."""


def load_config(path: str) -> list[ProxyInput]:
    """Read and validate a config file (the ``/populate`` JSON array, toxics allowed)."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CONFIG + 1)
    except OSError as exc:
        raise ConfigFileError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG:
        raise ConfigFileError(f"config file {path} is larger than {MAX_CONFIG >> 20} MiB")
    try:
        return parse_populate(decode(data))
    except ApiError as exc:
        raise ConfigFileError(f"invalid config file {path}: {exc.message}") from None


class ProxyBindError(OSError):
    """A proxy from the config file cannot listen (its address is in use or invalid)."""


class ToxiproxyServer:
    """A Toxiproxy-compatible server running on the current event loop."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8474,
        *,
        config: str | None = None,
        seed: int | None = None,
        limits: Limits | None = None,
        token: str | None = None,
    ) -> None:
        """``token``: the API then answers only requests that carry it as a bearer token
        (``GET /version`` excepted, as a readiness check)."""
        self.host = host
        self.port = port
        self.config = config
        self.seed = seed
        self.collection = ProxyCollection(seed)
        self.api = Api(self.collection, token=token)
        self.http = HttpServer(self.api, limits)
        self._server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Validate the config (``ConfigFileError``), listen (``OSError``), then create the config's proxies."""
        items = load_config(self.config) if self.config else []
        self._server = await asyncio.start_server(
            self.http,
            self.host,
            self.port,
            reuse_address=True,
            family=socket.AF_UNSPEC,
            limit=self.http.limits.max_header,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.collection.api_addresses = [format_address(*s.getsockname()[:2]) for s in self._server.sockets]
        try:
            await self.collection.populate(items)
        except PopulateError as exc:
            await self.stop()
            if exc.error.status >= 500:  # a listen address of the config cannot be bound
                raise ProxyBindError(f"cannot start a proxy of {self.config}: {exc.error.message}") from None
            raise ConfigFileError(f"invalid config file {self.config}: {exc.error.message}") from None

    async def stop(self) -> None:
        """Close the API listener, every connection and every proxy (bounded in time)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        await self.http.close(timeout=STOP_TIMEOUT)
        self.collection.close()
        self.api.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT
        while splice.running() and loop.time() < deadline:
            await asyncio.sleep(0.01)  # relays hand their sockets back within microseconds
        await asyncio.sleep(0)

    async def __aenter__(self) -> ToxiproxyServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def _exit_by_deadline() -> None:
    """Make sure the process ends soon after a stop signal, even if a lookup thread hangs."""
    timer = threading.Timer(EXIT_DEADLINE, os._exit, args=(0,))
    timer.daemon = True
    timer.start()


async def _main(host: str, port: int, config: str | None, seed: int | None, token: str | None) -> int:
    server = ToxiproxyServer(host, port, config=config, seed=seed, token=token)
    try:
        await server.start()
    except ConfigFileError as exc:
        print(f"toxiproxy: {exc}", file=sys.stderr, flush=True)
        return 2
    except ProxyBindError as exc:
        print(f"toxiproxy: {exc}", file=sys.stderr, flush=True)
        return 3
    except (OSError, ValueError) as exc:  # ValueError: a host name idna cannot encode
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"toxiproxy: cannot listen on {host}:{port}: {reason}", file=sys.stderr, flush=True)
        return 3
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        stop.set()
        _exit_by_deadline()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    print(f"toxiproxy listening on {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


def run(host: str, port: int, config: str | None = None, seed: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT (blocking); see the module docstring for exit codes.
    With ``$TOXIPROXY_TOKEN`` set, the API needs it as a bearer token (see :class:`ToxiproxyServer`)."""
    token = os.environ.get(TOKEN_ENV) or None
    problem = host_problem(host) or (None if 0 <= port <= 65535 else f"invalid port {port}: expected 0 to 65535")
    if problem:
        print(f"toxiproxy: {problem}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        code = runner.run(_main(host, port, config, seed, token))
    if code:
        raise SystemExit(code)
