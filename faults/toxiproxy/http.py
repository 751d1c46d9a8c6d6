"""A small HTTP/1.1 server on asyncio streams, writing responses byte for byte like Go.

Hand-written rather than built on a framework because the API must reproduce
Go's ``net/http`` output exactly: the header order (handler headers sorted,
then ``Date`` and ``Content-Length``), ``http.Error`` bodies, 405 with an empty
body, no automatic HEAD or trailing-slash handling, and the bytes Go's server
writes itself for a request it cannot read (``400 Bad Request: missing required
Host header``, ``431``, ``501 Unsupported transfer encoding``, ``505``).

Framing is strict, so no request-smuggling shape is read two ways:
``Content-Length`` is ASCII digits only (one value), ``Transfer-Encoding`` is
exactly ``chunked`` (anything else 501, like Go), both at once is 400 (Go drops
the length instead), chunk sizes are hex digits only. What one client can make
the server hold or wait for is bounded by :class:`Limits`: head and body sizes,
timeouts for the head, the body, idle keep-alive and writing the answer, and
the number of open connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Awaitable, Callable, Iterator, Sequence
from urllib.parse import unquote_to_bytes, urlsplit

log = logging.getLogger(__name__)

BODY_TOO_LARGE = "http: request body too large"  # what Go's MaxBytesReader says
WRITE_CHUNK = 64 * 1024
LINGER = 0.5  # seconds, and bytes below, a refused client's input is drained before closing
LINGER_BYTES = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one client may make the server hold or wait for."""

    max_header: int = 64 * 1024  # request line and headers; 431 beyond
    max_body: int = 1 << 20  # the handler sees BODY_TOO_LARGE beyond
    header_timeout: float = 10.0  # a new connection's first request, and any head once begun
    idle_timeout: float = 60.0  # a kept-alive connection between requests
    body_timeout: float = 10.0
    write_timeout: float = 10.0  # a client that does not read its answer is dropped
    max_connections: int = 1024  # at the cap, the longest-waiting idle connection is dropped


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""
    body_error: str | None = None  # why the body could not be read, in Go's words

    @property
    def path(self) -> str:
        raw = self.target.split("?", 1)[0]
        if not raw.startswith("/"):  # absolute form: http://host/path
            raw = urlsplit(raw).path or "/"
        return unquote_to_bytes(raw.encode("latin-1")).decode("utf-8", errors="replace")


@dataclass
class Response:
    status: int
    body: bytes | Sequence[bytes] = b""  # a sequence is sent piece by piece, with back-pressure
    headers: dict[str, str] = field(default_factory=dict)  # canonical names

    def head(self, keep_alive: bool) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}"]
        lines += [f"{name}: {self.headers[name]}" for name in sorted(self.headers)]
        if not keep_alive:
            lines.append("Connection: close")
        lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        if self.status != 204 and self.status >= 200:
            lines.append(f"Content-Length: {self.length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    @property
    def length(self) -> int:
        return len(self.body) if isinstance(self.body, bytes) else sum(map(len, self.body))

    def chunks(self) -> Iterator[bytes]:
        """The body in writes of about WRITE_CHUNK bytes."""
        if self.status == 204:
            return
        if isinstance(self.body, bytes):
            yield self.body
            return
        group: list[bytes] = []
        size = 0
        for piece in self.body:
            group.append(piece)
            size += len(piece)
            if size >= WRITE_CHUNK:
                yield b"".join(group)
                group, size = [], 0
        if group:
            yield b"".join(group)


def text_error(status: int, message: str) -> Response:
    """Go's ``http.Error``: text/plain, nosniff, message plus newline."""
    return Response(
        status,
        message.encode() + b"\n",
        {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"},
    )


Handler = Callable[[Request], Awaitable[Response]]


# ------------------------------------------------------------------ parsing


class Rejected(Exception):
    """A request Go's server answers by itself, before any handler; ``raw`` is what it writes."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(raw.split(b"\r\n", 1)[0].decode())
        self.raw = raw


def _rejected(status: int, detail: str = "", body: str = "") -> Rejected:
    status_text = f"{status} {HTTPStatus(status).phrase}" + (f": {detail}" if detail else "")
    return Rejected(
        f"HTTP/1.1 {status_text}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Connection: close\r\n\r\n{body or status_text}".encode()
    )


BAD_REQUEST = 400
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"HTTP/([0-9])\.([0-9])")
_HOST = re.compile(r"[!$%&'()*+,\-.0-9:;=A-Z\[\]_a-z~]*")  # Go's httpguts.ValidHostHeader
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(rb"[0-9a-fA-F]{1,16}")


@dataclass
class Framing:
    """How the body of a request is delimited."""

    length: int = 0
    chunked: bool = False


def parse_head(head: bytes) -> tuple[Request, Framing]:
    """Parse a request head (up to and including the blank line) in the order Go checks it."""
    lines = head.decode("latin-1").split("\r\n")[:-2]
    method, _, rest = lines[0].partition(" ")
    target, _, version = rest.partition(" ")
    match = _VERSION.fullmatch(version)
    if not match or not _TOKEN.fullmatch(method) or not target or _CONTROL_OR_SPACE.search(target):
        raise _rejected(BAD_REQUEST)
    if not target.startswith("/") and not urlsplit(target).scheme:
        raise _rejected(BAD_REQUEST)
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):  # also obs-fold and "Name :"
            raise _rejected(BAD_REQUEST)
        fields.setdefault(name.lower(), []).append(value.strip(" \t"))
    http11 = (match[1], match[2]) != ("1", "0")
    framing = _framing(fields, http11)
    if match[1] != "1":
        raise _rejected(505, "unsupported protocol version")
    hosts = fields.get("host", [])
    if http11 and not hosts:
        raise _rejected(BAD_REQUEST, "missing required Host header")
    if len(hosts) > 1:
        raise _rejected(BAD_REQUEST, "too many Host headers")
    if hosts and not _HOST.fullmatch(hosts[0]):
        raise _rejected(BAD_REQUEST, "malformed Host header")
    if any(_CONTROL.search(v) for values in fields.values() for v in values):
        raise _rejected(BAD_REQUEST, "invalid header value")
    headers = {name: values[0] if name == "user-agent" else ", ".join(values) for name, values in fields.items()}
    return Request(method, target, version, headers), framing


def _framing(fields: dict[str, list[str]], http11: bool) -> Framing:
    encodings = fields.get("transfer-encoding")
    lengths = fields.get("content-length", [])
    if encodings is not None and http11:  # like Go, HTTP/1.0 ignores Transfer-Encoding
        if len(encodings) != 1 or encodings[0].lower() != "chunked":
            raise _rejected(501, body="Unsupported transfer encoding")
        if lengths:
            raise _rejected(BAD_REQUEST)  # Go drops the length; both at once is a smuggling shape
        return Framing(chunked=True)
    if not lengths:
        return Framing()
    if any(value != lengths[0] for value in lengths[1:]):
        raise _rejected(BAD_REQUEST)
    if not lengths[0]:
        return Framing()
    digits = lengths[0].lstrip("0") or "0"  # Go: strconv.ParseUint(value, 10, 63)
    if not _DIGITS.fullmatch(lengths[0]) or len(digits) > 19 or int(digits) >= 2**63:
        raise _rejected(BAD_REQUEST)
    return Framing(length=int(digits))


class _BodyError(Exception):
    pass


async def _read_chunked(reader: asyncio.StreamReader, max_body: int, max_trailer: int) -> bytes:
    """A chunked body, read as strictly as Go's ``internal/chunked`` reader."""
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\n")
        if len(line) > 4096:
            raise _BodyError("header line too long")
        size_text = line.rstrip(b" \t\r\n").split(b";", 1)[0]
        if not size_text:
            raise _BodyError("empty hex number for chunk length")
        if not _HEX.fullmatch(size_text):
            raise _BodyError("http chunk length too large" if len(size_text) > 16 else "invalid byte in chunk length")
        size = int(size_text, 16)
        if size == 0:
            break
        total += size
        if total > max_body:
            raise _BodyError(BODY_TOO_LARGE)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise _BodyError("malformed chunked encoding")
    trailer = 0
    while (line := await reader.readuntil(b"\n")) not in (b"\r\n", b"\n"):
        trailer += len(line)
        if trailer > max_trailer:
            raise _BodyError("header line too long")
    return b"".join(parts)


# ------------------------------------------------------------------ serving


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    waiting_since: float | None = None  # set while waiting for a request head


class HttpServer:
    """Serves ``handler`` on the connections of an ``asyncio.start_server`` (pass it as the callback).

    Start the listener with ``limit=limits.max_header`` so an oversized head is
    refused with 431.
    """

    def __init__(self, handler: Handler, limits: Limits | None = None) -> None:
        self.handler = handler
        self.limits = limits or Limits()
        self.connections: dict[asyncio.Task[None], _Connection] = {}

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self.connections) >= self.limits.max_connections and not self._evict_idle():
            writer.transport.abort()
            return
        conn = _Connection(writer)
        self.connections[task] = conn
        try:
            await self._serve(reader, conn)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.connections.pop(task, None)
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()  # a client that does not read would keep it open forever
            else:
                writer.close()

    def _evict_idle(self) -> bool:
        """Drop the connection that has waited longest for a request (slowloris first)."""
        waiting = [c for c in self.connections.values() if c.waiting_since is not None]
        if not waiting:
            return False
        victim = min(waiting, key=lambda c: c.waiting_since or 0.0)
        victim.waiting_since = None
        victim.writer.transport.abort()
        return True

    async def close(self, timeout: float) -> None:
        """Close every connection and wait up to ``timeout`` for their tasks."""
        for conn in self.connections.values():
            conn.writer.transport.abort()
        if self.connections:
            await asyncio.wait(list(self.connections), timeout=timeout)

    async def _serve(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        writer = conn.writer
        loop = asyncio.get_running_loop()
        first = True
        while True:
            conn.waiting_since = loop.time()
            try:
                head = await self._read_head(reader, first)
                conn.waiting_since = None
                if head is None:
                    return
                request, framing = parse_head(head)
            except Rejected as exc:
                writer.write(exc.raw)
                await self._linger(reader, writer)
                return
            first = False
            expect = request.headers.get("expect", "")
            if expect and expect.lower() != "100-continue":
                writer.write(Response(417).head(keep_alive=False))
                await self._linger(reader, writer)
                return
            try:
                async with asyncio.timeout(self.limits.body_timeout):
                    await self._read_body(reader, writer, request, framing)
            except TimeoutError:
                return
            connection = request.headers.get("connection", "").lower()
            keep_alive = request.body_error is None and (
                (request.version != "HTTP/1.0" and "close" not in connection)
                or (request.version == "HTTP/1.0" and "keep-alive" in connection)
            )
            try:
                response = await self.handler(request)
            except Exception:  # pragma: no cover - handlers answer every error themselves
                log.exception("handler failed")
                response = text_error(500, "Internal Server Error")
            await self._write(writer, response, keep_alive, head_only=request.method == "HEAD")
            if not keep_alive:
                if request.body_error is not None:
                    await self._linger(reader, writer)
                return

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Close after an answer the client may still be sending to, without a reset eating the answer.

        Like Go's ``closeWriteAndWait``: shut down our side, then discard what
        arrives for a moment (bounded in time and bytes).
        """
        if writer.can_write_eof():
            writer.write_eof()
        discarded = 0
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(LINGER):
                while discarded < LINGER_BYTES and (data := await reader.read(WRITE_CHUNK)):
                    discarded += len(data)

    async def _read_head(self, reader: asyncio.StreamReader, first: bool) -> bytes | None:
        """The next request head, or None when the client closed or stayed idle too long."""
        limits = self.limits
        try:
            async with asyncio.timeout(limits.header_timeout if first else limits.idle_timeout):
                start = await reader.readexactly(1)
                while start in (b"\r", b"\n"):  # empty lines before a request are ignored
                    start = await reader.readexactly(1)
            async with asyncio.timeout(limits.header_timeout):
                return start + await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError):
            return None
        except asyncio.LimitOverrunError:
            raise _rejected(431) from None

    async def _read_body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: Request, framing: Framing
    ) -> None:
        max_body = self.limits.max_body
        if not framing.chunked and framing.length > max_body:
            request.body_error = BODY_TOO_LARGE  # not read at all; the connection closes after the answer
            return
        if (framing.chunked or framing.length) and request.headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if framing.chunked:
            try:
                request.body = await _read_chunked(reader, max_body, self.limits.max_header)
            except _BodyError as exc:
                request.body_error = str(exc)
            except asyncio.LimitOverrunError:
                request.body_error = "header line too long"
        elif framing.length:
            request.body = await reader.readexactly(framing.length)

    async def _write(self, writer: asyncio.StreamWriter, response: Response, keep_alive: bool, head_only: bool) -> None:
        async with asyncio.timeout(self.limits.write_timeout):
            writer.write(response.head(keep_alive))
            if not head_only:
                for chunk in response.chunks():
                    writer.write(chunk)
                    await writer.drain()
            await writer.drain()
