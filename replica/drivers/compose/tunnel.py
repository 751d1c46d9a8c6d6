"""One published port for the backend hop of every lane slot.

The host reaches a compose lane's backend through that lane's ``backend`` proxy in
the fault proxy's container (faults apply there). Publishing one port per slot would
cost the engine a proxy process and NAT rules per slot, at every stack's start and
again, about half a second, at its removal. Instead the lanes agent publishes one
port, :data:`TUNNEL_PORT`:

* on the host, :func:`host_relay` listens on a loopback port of its own for one lane
  (``asyncio`` binds it, port 0) and relays each connection it accepts to the tunnel
  port, first sending one line, the stack's lanes token and the slot;
* in the lanes container, :class:`Tunnel` checks that line and connects the rest
  of the connection to the slot's proxy (``LANE_PORT_BASE + slot`` in the fault
  proxy's container), nowhere else.

Both relay bytes as the engine's own port proxy does (:func:`splice`): each direction
until end of file or an error, then that direction is closed for writing on the other
side (a half-close); both sockets close once both directions are done. A connection
the tunnel refuses (a wrong token or slot, a slot whose proxy is down) is closed, as
the engine's proxy closes one it cannot connect onwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from contextlib import asynccontextmanager
from typing import AsyncIterator

#: The lanes container's tunnel port (published on 127.0.0.1).
TUNNEL_PORT = 8401
#: Container port of slot i's ``backend`` proxy in the fault proxy's container: LANE_PORT_BASE + i.
LANE_PORT_BASE = 18100
#: The line naming the slot: ``<token> <slot>\n``, at most this long, within this time.
PREAMBLE_MAX_BYTES = 256
PREAMBLE_TIMEOUT_S = 5.0
#: Tunnelled connections the agent carries at once (beyond: closed at once).
MAX_TUNNELS = 1024
_READ_SIZE = 64 * 1024


def preamble(token: str, slot: int) -> bytes:
    return f"{token} {slot}\n".encode()


def parse_preamble(line: bytes, token: str, slots: int) -> int:
    """The slot ``line`` names; :class:`ValueError` saying why it is refused."""
    if len(line) > PREAMBLE_MAX_BYTES or not line.endswith(b"\n"):
        raise ValueError("no preamble line")
    given, _, slot = line[:-1].partition(b" ")
    if not secrets.compare_digest(given, token.encode()):
        raise ValueError("wrong token")
    if not slot.isdigit() or not 0 <= int(slot) < slots:
        raise ValueError(f"no slot {slot[:8]!r}")
    return int(slot)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of file or an error, then close ``writer``'s sending side."""
    try:
        while data := await reader.read(_READ_SIZE):
            writer.write(data)
            await writer.drain()
    except OSError:  # reset or broken on either side: this direction is over
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if not writer.is_closing() and writer.can_write_eof():
                writer.write_eof()


async def splice(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter], b: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    """Relay between two connections until both directions are done; then close both."""
    try:
        await asyncio.gather(_pump(a[0], b[1]), _pump(b[0], a[1]))
    finally:
        a[1].close()
        b[1].close()


class Tunnel:
    """The agent's side: each connection's line checked, the rest relayed to the slot's proxy."""

    def __init__(self, token: str, slots: int, proxy_host: str, port_base: int = LANE_PORT_BASE) -> None:
        self.token, self.slots, self.proxy_host, self.port_base = token, slots, proxy_host, port_base
        self.carried = 0
        self._address: str | None = None  # the proxy's, looked up once (its container keeps it)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.carried >= MAX_TUNNELS:
            writer.close()
            return
        self.carried += 1
        try:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), PREAMBLE_TIMEOUT_S)
                slot = parse_preamble(line, self.token, self.slots)
                onward = await asyncio.open_connection(await self._proxy_address(), self.port_base + slot)
            except (ValueError, OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                writer.close()
                return
            await splice((reader, writer), onward)
        finally:
            self.carried -= 1

    async def _proxy_address(self) -> str:
        if self._address is None:
            infos = await asyncio.get_running_loop().getaddrinfo(self.proxy_host, None, type=socket.SOCK_STREAM)
            self._address = infos[0][4][0]
        return self._address


@asynccontextmanager
async def host_relay(tunnel: tuple[str, int], token: str, slot: int) -> AsyncIterator[int]:
    """A loopback port whose connections reach slot ``slot``'s backend proxy through the
    tunnel at ``tunnel``; on exit the port closes and its relayed connections are cut."""
    live: set[asyncio.StreamWriter] = set()
    closed = False

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ends = {writer}
        live.add(writer)
        try:
            try:
                onward = await asyncio.open_connection(*tunnel)
            except OSError:
                writer.close()
                return
            ends.add(onward[1])
            live.add(onward[1])
            if closed:  # the lane ended while this connection was being made
                for end in ends:
                    end.transport.abort()
                return
            onward[1].write(preamble(token, slot))
            await splice((reader, writer), onward)
        finally:
            live.difference_update(ends)

    server = await asyncio.start_server(relay, "127.0.0.1", 0, backlog=MAX_TUNNELS)  # a burst is queued, not refused
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        closed = True
        server.close()
        for writer in list(live):
            writer.transport.abort()
        await server.wait_closed()
