"""The data plane of one proxied connection.

A :class:`ProxiedConnection` joins two sockets (:class:`Side`): the accepted client and
the dialled upstream. Each direction is a :class:`Link` (``upstream`` =
client→server, ``downstream`` = server→client) carrying an ordered chain of
:class:`Stage` objects, one per toxic, each running its toxic's ``pipe``.

Fast path: while no stage of a link would touch the data (no toxic, or only
toxics that toxicity switched off, and nothing buffered) bytes go straight
from ``data_received`` to the other transport's ``write``.

Every chain change (add, update, remove) is a synchronous operation on the
event loop: it never awaits the data path, so the control API cannot hang on
traffic. Removing a stage cancels its pipe and passes on what it held, in order.
Back-pressure: a link pauses reading its source while its destination's write
buffer is full or while its chain buffers more than ``HIGH_WATER`` bytes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from . import splice
from .address import literal_ip
from .model import Direction, ToxicConfig
from .toxics import Chunk, Toxic
from .toxics.noop import NoopToxic

if TYPE_CHECKING:
    from .proxy import Proxy

log = logging.getLogger(__name__)

HIGH_WATER = 1 << 20
LOW_WATER = 1 << 18
_LINGER_ZERO = struct.pack("ii", 1, 0)


class Stage:
    """One toxic on one direction of one connection; also the stub its pipe sees."""

    def __init__(self, link: Link, spec: ToxicConfig) -> None:
        self.link = link
        self.spec = spec
        self.toxic: Toxic = spec.kind()
        self.rng: random.Random = link.rng
        self.state: dict[str, Any] = {}
        self.inbox: deque[Chunk] = deque()
        self.eof = False
        self.held: Chunk | None = None
        self.next: Stage | None = None
        self.finished = False
        self.active = False
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pipe: Callable[..., Any] = self._passthrough

    # -- lifecycle ------------------------------------------------------------

    @property
    def passive(self) -> bool:
        """True when the stage would pass data unchanged."""
        return not self.active or type(self.toxic) is NoopToxic

    def start(self) -> None:
        """Draw toxicity for this connection and run the pipe."""
        if self.finished:
            return
        self.active = self.rng.random() < self.spec.toxicity
        self._pipe = self.toxic.pipe if self.active else self._passthrough
        acts_idle = self.active and self.toxic.acts_when_idle(self.spec.attributes)
        if acts_idle or self.held is not None or self.inbox or self.eof:
            self._spawn()

    def _spawn(self) -> None:
        """Run the pipe; deferred until there is data so idle connections cost no task."""
        if self._task is None and not self.finished:
            self._task = asyncio.get_running_loop().create_task(self._run(self._pipe))

    def _passthrough(self, stub: Stage, attrs: Any) -> Any:
        return Toxic.pipe(self.toxic, stub, attrs)

    async def _run(self, pipe: Callable[..., Any]) -> None:
        try:
            await pipe(self, dict(self.spec.attributes))
        except asyncio.CancelledError:
            pass
        except Exception:  # a toxic bug must not take the server down
            log.exception("toxic %s failed; closing its connection", self.spec.name)
            self.link.conn.close()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()
        self._waiter = None

    def flush(self) -> None:
        """Pass on everything held or queued (the toxic is being removed)."""
        if self.held is not None:
            self.forward()
        while self.inbox:
            self._emit(self.inbox.popleft())
        if self.eof and not self.finished:
            self.finish()

    # -- input side (called by the previous stage or the link) ----------------

    def push(self, chunk: Chunk) -> None:
        self.inbox.append(chunk)
        self._wake()

    def push_eof(self) -> None:
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        """Start the toxic's task, or wake it where it waits for input."""
        if self._task is None:
            self._spawn()
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- the Stub interface ---------------------------------------------------

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def read(self) -> Chunk | None:
        if self.held is not None:
            return self.held
        while not self.inbox:
            if self.eof:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.held = self.inbox.popleft()
        return self.held

    def forward(self, size: int | None = None) -> None:
        chunk = self.held
        if chunk is None:
            return
        if size is None or size >= len(chunk.data):
            self.held = None
            self._emit(chunk)
            return
        view = chunk.data if isinstance(chunk.data, memoryview) else memoryview(chunk.data)
        chunk.data = view[size:]
        self._emit(Chunk(view[:size], chunk.ts))  # type: ignore[arg-type]

    def drop(self) -> None:
        if self.held is not None:
            self.link.discard(len(self.held.data))
            self.held = None

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.next is not None:
            self.next.push_eof()
        else:
            self.link.deliver_eof()

    def close_connection(self) -> None:
        self.link.conn.close()

    def reset_connection(self) -> None:
        self.link.conn.reset()

    def _emit(self, chunk: Chunk) -> None:
        if self.next is not None:
            self.next.push(chunk)
        else:
            self.link.deliver(chunk.data)


class Link:
    """One direction of a connection: source side → toxic chain → destination side."""

    def __init__(self, conn: ProxiedConnection, direction: Direction, src: Side, dst: Side, rng: random.Random) -> None:
        self.conn = conn
        self.direction = direction
        self.src = src
        self.dst = dst
        self.rng = rng
        self.stages: list[Stage] = []
        self.buffered = 0
        self.direct = True
        self.all_passive = True
        self.eof_in = False
        self.done = False
        self.src_paused = False
        self.received = 0
        self.sent = 0

    # -- chain changes (synchronous) ------------------------------------------

    def add(self, spec: ToxicConfig) -> None:
        stage = Stage(self, spec)
        if self.stages:
            self.stages[-1].next = stage
        self.stages.append(stage)
        if self.eof_in and len(self.stages) == 1 and not self.done:
            stage.push_eof()
        stage.start()
        self._refresh()

    def update(self, spec: ToxicConfig) -> None:
        for stage in self.stages:
            if stage.spec.name == spec.name:
                stage.stop()
                stage.spec = spec
                stage.start()
        self._refresh()

    def remove(self, name: str) -> None:
        for index, stage in enumerate(self.stages):
            if stage.spec.name != name:
                continue
            stage.stop()
            del self.stages[index]
            if index > 0:
                self.stages[index - 1].next = stage.next
            if not self.conn.closed:
                stage.flush()
                stage.toxic.on_remove(stage)
            break
        self._refresh()

    def stop(self) -> None:
        for stage in self.stages:
            stage.stop()

    def _refresh(self) -> None:
        all_passive = True
        for stage in self.stages:
            if not stage.passive:
                all_passive = False
                break
        self.all_passive = all_passive
        self.direct = self.all_passive and self.buffered == 0 and not self.eof_in
        self.update_flow()

    # -- data -----------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes read from the source (the fast path is inlined in Side)."""
        self.received += len(data)
        if self.direct:
            self.sent += len(data)
            self.dst.write(data)
            return
        self.buffered += len(data)
        self.stages[0].push(Chunk(data, self.conn.loop.time()))
        if self.buffered > HIGH_WATER:
            self.update_flow()

    def feed_eof(self) -> None:
        self.eof_in = True
        self.direct = False
        if self.stages:
            self.stages[0].push_eof()
        else:
            self.deliver_eof()

    def deliver(self, data: bytes | memoryview) -> None:
        """Bytes leaving the end of the chain."""
        size = len(data)
        self.buffered -= size
        self.sent += size
        self.dst.write(data)
        if self.buffered == 0 and self.all_passive and not self.eof_in:
            self.direct = True
        if self.src_paused:
            self.update_flow()

    def discard(self, size: int) -> None:
        self.buffered -= size
        if self.buffered == 0 and self.all_passive and not self.eof_in:
            self.direct = True
        if self.src_paused:
            self.update_flow()

    def deliver_eof(self) -> None:
        if self.done:
            return
        self.done = True
        self.dst.write_eof()
        self.conn.link_done()

    def update_flow(self) -> None:
        limit = LOW_WATER if self.src_paused else HIGH_WATER
        pause = self.dst.write_paused or self.buffered > limit
        if pause != self.src_paused:
            self.src_paused = pause
            self.src.set_reading(not pause)


class Side(asyncio.Protocol):
    """One socket of a connection; data read here feeds ``out_link``."""

    def __init__(self, conn: ProxiedConnection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.out_link: Link | None = None
        self.in_link: Link | None = None
        self.write_paused = False
        self.reading = True  # what flow control wants
        self.held = False  # reading handed to a splice relay
        self.early: list[bytes] = []  # read before the upstream was dialled
        self.early_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        link = self.out_link
        if link is None:
            self.early.append(data)
            self.set_reading(False)
            return
        if link.direct:  # fast path
            size = len(data)
            link.received += size
            link.sent += size
            link.dst.transport.write(data)  # type: ignore[union-attr]
            if size >= splice.BULK_READ and link.received > splice.SPLICE_AFTER and self.conn.relay is None:
                self.conn.maybe_splice()
        else:
            link.feed(data)

    def eof_received(self) -> bool:
        if self.out_link is not None:
            self.out_link.feed_eof()
        else:
            self.early_eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.conn.close()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.in_link is not None:
            self.in_link.update_flow()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.in_link is not None:
            self.in_link.update_flow()

    # -- helpers --------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def write_eof(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        try:
            if transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()
        except (OSError, RuntimeError):
            transport.close()

    def set_reading(self, on: bool) -> None:
        self.reading = on
        self._apply_reading()

    def _apply_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        try:
            if self.reading and not self.held:
                transport.resume_reading()
            else:
                transport.pause_reading()
        except RuntimeError:
            pass

    def close(self, *, abort: bool = False, rst: bool = False) -> None:
        transport = self.transport
        if transport is None:
            return
        if rst:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
                except OSError:
                    pass
        if abort or rst:
            transport.abort()
        else:
            transport.close()


class ProxiedConnection:
    """An accepted client connection, its upstream connection and both links."""

    def __init__(self, proxy: Proxy, rng_seed: str | None) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.client: Side = ClientProtocol(self)
        self.upstream = Side(self)
        self.rng_seed = rng_seed
        self.links: dict[Direction, Link] = {}
        self.closed = False
        self.relay: splice.SpliceRelay | None = None
        self._close_mode: tuple[bool, bool] | None = None  # close requested while splicing
        self._dial: asyncio.Task[None] | None = None
        self.local_port: tuple[int, int] | None = None  # (family, port) of the dialled upstream socket

    def _rng(self, direction: Direction) -> random.Random:
        if self.rng_seed is None:
            return random.Random()
        return random.Random(f"{self.rng_seed}/{direction.value}")

    def accepted(self) -> None:
        """Called from the client side's ``connection_made``: dial the upstream.

        A client whose address is the local end of an upstream connection this
        server dialled is the server talking to itself (an upstream that names,
        through any host name, one of its own listeners): it is closed at once,
        so a loop ends at its first turn instead of multiplying connections.
        """
        peer = self.client.transport.get_extra_info("peername") if self.client.transport else None
        sock = self.client.transport.get_extra_info("socket") if self.client.transport else None
        if peer and sock is not None and (sock.family, peer[1]) in self.proxy.dialled:
            log.warning("proxy %s: upstream %s loops back to this server; connection refused", self.proxy.name, self.proxy.upstream)
            self.close(abort=True)
            return
        self.client.set_reading(False)
        self._dial = self.loop.create_task(self._connect())

    async def _dial_upstream(self, host: str, port: int) -> None:
        """Connect to the upstream, its local port registered before the peer can see it."""
        last: OSError = OSError(f"cannot resolve {host}")
        ip = literal_ip(host)
        if ip is not None:  # no lookup thread for an address
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            infos = [(family, socket.SOCK_STREAM, 0, "", (ip, port))]
        else:
            infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
                self.local_port = (family, sock.getsockname()[1])
                self.proxy.dialled.add(self.local_port)
                await self.loop.sock_connect(sock, address)
                await self.loop.create_connection(lambda: self.upstream, sock=sock)
                return
            except OSError as exc:
                self._forget_local_port()
                sock.close()
                last = exc
            except BaseException:
                self._forget_local_port()
                sock.close()
                raise
        raise last

    def _forget_local_port(self) -> None:
        if self.local_port is not None:
            self.proxy.dialled.discard(self.local_port)
            self.local_port = None

    async def _connect(self) -> None:
        host, _, port = self.proxy.upstream.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            await asyncio.wait_for(self._dial_upstream(host, int(port)), timeout=10.0)
        except (OSError, ValueError, TimeoutError):
            self.close()
            return
        except asyncio.CancelledError:
            return
        if self.closed:
            self.upstream.close(abort=True)
            return
        up = Link(self, Direction.UPSTREAM, self.client, self.upstream, self._rng(Direction.UPSTREAM))
        down = Link(self, Direction.DOWNSTREAM, self.upstream, self.client, self._rng(Direction.DOWNSTREAM))
        self.links = {Direction.UPSTREAM: up, Direction.DOWNSTREAM: down}
        self.client.out_link, self.client.in_link = up, down
        self.upstream.out_link, self.upstream.in_link = down, up
        for spec in self.proxy.toxic_configs():
            self.links[spec.direction].add(spec)
        for side, link in ((self.client, up), (self.upstream, down)):
            early, side.early = side.early, []
            for data in early:
                link.feed(data)
            if side.early_eof:
                link.feed_eof()
            side.set_reading(True)
        up.update_flow()
        down.update_flow()

    # -- bulk fast path -------------------------------------------------------

    def maybe_splice(self) -> None:
        """Hand both sockets to a splice relay if nothing can touch the bytes."""
        if not splice.AVAILABLE or self.relay is not None or self.closed or len(self.links) != 2:
            return
        up, down = self.links[Direction.UPSTREAM], self.links[Direction.DOWNSTREAM]
        if not (up.direct and down.direct) or up.buffered or down.buffered:
            return
        client, upstream = self.client.transport, self.upstream.transport
        if client is None or upstream is None or client.is_closing() or upstream.is_closing():
            return
        if client.get_write_buffer_size() or upstream.get_write_buffer_size():
            return
        try:
            client_fd = client.get_extra_info("socket").fileno()
            upstream_fd = upstream.get_extra_info("socket").fileno()
        except (AttributeError, OSError):
            return
        for side in (self.client, self.upstream):
            side.held = True
            side._apply_reading()
        self.relay = splice.SpliceRelay(client_fd, upstream_fd, self._relay_exited)
        self.relay.start()

    def _relay_exited(self, up_bytes: int, down_bytes: int) -> None:
        """Runs in the relay thread: continue on the event loop."""
        try:
            self.loop.call_soon_threadsafe(self._splice_done, up_bytes, down_bytes)
        except RuntimeError:  # loop already closed at shutdown
            pass

    def _splice_done(self, up_bytes: int, down_bytes: int) -> None:
        if self.relay is not None:
            self.relay.release()
        self.relay = None
        for direction, moved in ((Direction.UPSTREAM, up_bytes), (Direction.DOWNSTREAM, down_bytes)):
            link = self.links[direction]
            link.received += moved
            link.sent += moved
        for side in (self.client, self.upstream):
            side.held = False
        if self._close_mode is not None:
            abort, rst = self._close_mode
            self._finish_close(abort=abort, rst=rst)
            return
        for side in (self.client, self.upstream):
            side._apply_reading()

    # -- chain changes --------------------------------------------------------

    def add_toxic(self, spec: ToxicConfig) -> None:
        if self.links and not self.closed:
            self.links[spec.direction].add(spec)
            if self.relay is not None:
                self.relay.stop()

    def update_toxic(self, spec: ToxicConfig) -> None:
        if self.links and not self.closed:
            self.links[spec.direction].update(spec)
            if self.relay is not None:  # toxicity may now say yes
                self.relay.stop()

    def remove_toxic(self, spec: ToxicConfig) -> None:
        if self.links and not self.closed:
            self.links[spec.direction].remove(spec.name)

    # -- ending ---------------------------------------------------------------

    def link_done(self) -> None:
        if all(link.done for link in self.links.values()):
            self.close()

    def close(self, *, abort: bool = False, rst: bool = False) -> None:
        """Close both sides (flushing unless ``abort``/``rst``) and stop the pipes."""
        if self.closed:
            if abort or rst:
                self.client.close(abort=abort, rst=rst)
                self.upstream.close(abort=abort, rst=rst)
            return
        self.closed = True
        if self._dial is not None and not self._dial.done():
            self._dial.cancel()
        for link in self.links.values():
            link.stop()
        if self.relay is not None:  # sockets are closed once the relay let go of them
            self._close_mode = (abort, rst)
            self.relay.stop(abandon=True)
            return
        self._finish_close(abort=abort, rst=rst)

    def _finish_close(self, *, abort: bool, rst: bool) -> None:
        self.client.close(abort=abort, rst=rst)
        self.upstream.close(abort=abort, rst=rst)
        self._forget_local_port()
        self.proxy.connection_closed(self)

    def reset(self) -> None:
        """Close both sides with a TCP RST."""
        self.close(rst=True)

    def counters(self) -> dict[Direction, tuple[int, int]]:
        out = {d: (link.received, link.sent) for d, link in self.links.items()}
        if self.relay is not None and out:
            up, down = self.relay.moved()
            for direction, moved in ((Direction.UPSTREAM, up), (Direction.DOWNSTREAM, down)):
                received, sent = out[direction]
                out[direction] = (received + moved, sent + moved)
        return out


class ClientProtocol(Side):
    """The accepting side: creates the connection when a client arrives."""

    def __init__(self, conn: ProxiedConnection) -> None:
        super().__init__(conn)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.conn.accepted()
