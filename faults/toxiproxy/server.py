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
bound, after a message on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from pathlib import Path
from types import TracebackType

from . import splice
from .api import Api
from .collection import PopulateError, ProxyCollection
from .http import serve_connection
from .model import ApiError, ProxyInput, decode, parse_populate

__all__ = ["ConfigError", "ProxyBindError", "ToxiproxyServer", "load_config", "run"]


class ConfigError(Exception):
    """The config file cannot be read or is not a valid populate array."""


def load_config(path: str) -> list[ProxyInput]:
    """Read and validate a config file (the ``/populate`` JSON array, toxics allowed)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return parse_populate(decode(data))
    except ApiError as exc:
        raise ConfigError(f"invalid config file {path}: {exc.message}") from None


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
    ) -> None:
        self.host = host
        self.port = port
        self.config = config
        self.seed = seed
        self.collection = ProxyCollection(seed)
        self.api = Api(self.collection)
        self._server: asyncio.AbstractServer | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Load the config (``ConfigError``), populate it, then listen (``OSError``)."""
        items = load_config(self.config) if self.config else []
        if items:
            try:
                await self.collection.populate(items)
            except PopulateError as exc:
                self.collection.close()
                if exc.error.status >= 500:  # a listen address of the config cannot be bound
                    raise ProxyBindError(f"cannot start a proxy of {self.config}: {exc.error.message}") from None
                raise ConfigError(f"invalid config file {self.config}: {exc.error.message}") from None
        try:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, reuse_address=True, family=socket.AF_UNSPEC
            )
        except BaseException:
            self.collection.close()
            raise
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = writer
        try:
            await serve_connection(reader, writer, self.api)
        finally:
            self._clients.pop(task, None)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._clients.values()):
            writer.close()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=2.0)
        self.collection.close()
        deadline = asyncio.get_running_loop().time() + 2.0
        while splice.running() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)  # relays hand their sockets back within microseconds
        await asyncio.sleep(0)

    async def __aenter__(self) -> ToxiproxyServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def _main(host: str, port: int, config: str | None, seed: int | None) -> int:
    server = ToxiproxyServer(host, port, config=config, seed=seed)
    try:
        await server.start()
    except ConfigError as exc:
        print(f"toxiproxy: {exc}", file=sys.stderr, flush=True)
        return 2
    except ProxyBindError as exc:
        print(f"toxiproxy: {exc}", file=sys.stderr, flush=True)
        return 3
    except OSError as exc:
        print(f"toxiproxy: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 3
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(f"toxiproxy listening on {server.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0




def run(host: str, port: int, config: str | None = None, seed: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT (blocking); see the module docstring for exit codes."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        code = runner.run(_main(host, port, config, seed))
    if code:
        raise SystemExit(code)
