"""A proxy: one listener, its toxics and its open connections."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from . import gojson
from .address import open_listener
from .link import ClientProtocol, ProxiedConnection
from .model import Direction, ToxicConfig, ordered_toxics, proxy_json


class Proxy:
    """A named listener forwarding to ``upstream`` through its toxics.

    ``start``/``stop`` bind and close the listener; ``stop`` also closes every
    open connection (``enabled: false``). Toxic changes apply at once to open
    connections and never wait on them. ``dialled`` is shared by the proxies of
    one server: the local ports of their upstream connections (loop detection).
    """

    def __init__(
        self, name: str, listen: str, upstream: str, seed: int | None = None, dialled: set[tuple[int, int]] | None = None
    ) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.seed = seed
        self.dialled = dialled if dialled is not None else set()
        self.toxics: list[ToxicConfig] = []
        self.connections: set[ProxiedConnection] = set()
        self._server: asyncio.AbstractServer | None = None
        #: A disabled proxy's port, bound and not listening (see :meth:`stop`).
        self._held: socket.socket | None = None
        self._accepted = 0
        self._json: bytes | None = None
        self._entry: bytes | None = None
        self.closed_totals: dict[Direction, list[int]] = {d: [0, 0] for d in Direction}

    # -- listener -------------------------------------------------------------

    async def bind(self) -> tuple[socket.socket, str]:
        """A listening socket for ``listen`` and its bound address (``ListenError``); nothing
        changes yet. A disabled proxy listens again on the port it held."""
        held, self._held = self._held, None
        if held is not None:
            try:
                held.listen(1024)
                held.setblocking(False)
                return held, self.listen
            except OSError:
                held.close()
        return await open_listener(self.listen)

    async def start(self) -> None:
        """Bind and accept (raises ``ListenError``, leaving the proxy disabled)."""
        if not self.enabled:
            await self.serve(*await self.bind())

    async def serve(self, sock: socket.socket, bound: str) -> None:
        """Accept on a socket from :meth:`bind` (the proxy takes it over)."""
        try:
            self._server = await asyncio.get_running_loop().create_server(self._new_client, sock=sock)
        except BaseException:
            sock.close()
            raise
        self.listen = bound
        self.enabled = True
        self._json = None

    def stop(self, *, hold: bool = False) -> None:
        """Close the listener and every open connection. With ``hold`` (``enabled: false``)
        its port stays bound, not listening: a connection to it is refused, as to a closed
        port, but the kernel hands the port to no one else until the proxy listens again or
        is deleted (the local driver binds its backends' sockets on port 0 beside this
        server: one handed a disabled proxy's port could not be its upstream)."""
        if self._held is not None and not hold:
            self._held.close()
            self._held = None
        if self._server is not None:
            listener = self._server.sockets[0] if hold and self._server.sockets else None
            address = listener.getsockname() if listener is not None else None
            self._server.close()
            self._server = None
            if listener is not None:
                self._held = _held_port(listener.family, address)
        self.enabled = False
        self._json = None
        for conn in list(self.connections):
            conn.close(abort=True)

    def retarget(self, listen: str, upstream: str) -> None:
        """New addresses (the proxy must be stopped)."""
        self.listen = listen
        self.upstream = upstream
        self._json = None

    def _new_client(self) -> ClientProtocol:
        self._accepted += 1
        seed = None if self.seed is None else f"{self.seed}/{self.name}/{self._accepted}"
        conn = ProxiedConnection(self, seed)
        self.connections.add(conn)
        return conn.client  # type: ignore[return-value]

    def connection_closed(self, conn: ProxiedConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            for direction, (received, sent) in conn.counters().items():
                totals = self.closed_totals[direction]
                totals[0] += received
                totals[1] += sent

    # -- toxics ---------------------------------------------------------------

    def toxic_configs(self) -> list[ToxicConfig]:
        return ordered_toxics(self.toxics)

    def find_toxic(self, name: str) -> ToxicConfig | None:
        return next((t for t in self.toxics if t.name == name), None)

    def add_toxic(self, spec: ToxicConfig) -> None:
        self.toxics.append(spec)
        self._json = None
        for conn in list(self.connections):
            conn.add_toxic(spec)

    def update_toxic(self, spec: ToxicConfig) -> None:
        self.toxics = [spec if t.name == spec.name else t for t in self.toxics]
        self._json = None
        for conn in list(self.connections):
            conn.update_toxic(spec)

    def remove_toxic(self, name: str) -> ToxicConfig | None:
        spec = self.find_toxic(name)
        if spec is None:
            return None
        self.toxics.remove(spec)
        self._json = None
        for conn in list(self.connections):
            conn.remove_toxic(spec)
        return spec

    def remove_all_toxics(self) -> None:
        for spec in list(self.toxics):
            self.remove_toxic(spec.name)

    # -- views ----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return proxy_json(self.name, self.listen, self.upstream, self.enabled, self.toxic_configs())

    def encoded(self) -> bytes:
        """``to_json`` as Go marshals it, kept until the proxy changes (listing many proxies stays cheap)."""
        if self._json is None:
            self._json = gojson.dumps(self.to_json())
            self._entry = None
        return self._json

    def encoded_entry(self) -> bytes:
        """``"name":{…}``, this proxy's member of the ``GET /proxies`` object."""
        json = self.encoded()
        if self._entry is None:
            self._entry = gojson.dumps(self.name) + b":" + json
        return self._entry

    def byte_counts(self) -> dict[Direction, tuple[int, int]]:
        """Received and sent bytes per direction, live connections included."""
        out = {d: (t[0], t[1]) for d, t in self.closed_totals.items()}
        for conn in self.connections:
            for direction, (received, sent) in conn.counters().items():
                r, s = out[direction]
                out[direction] = (r + received, s + sent)
        return out


def _held_port(family: int, address: Any) -> socket.socket | None:
    """A socket bound to ``address``, not listening (None when it cannot be bound)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # its closed connections may linger in TIME_WAIT
        sock.bind(address)
    except OSError:
        sock.close()
        return None
    return sock
