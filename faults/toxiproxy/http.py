"""A small HTTP/1.1 server on asyncio streams, writing responses byte for byte like Go.

Hand-written rather than built on a framework because the API must reproduce
Go's ``net/http`` output exactly: the header order (handler headers sorted,
then ``Date`` and ``Content-Length``), ``http.Error`` bodies, 405 with an empty
body, no automatic HEAD or trailing-slash handling, and a request id header on
every response. Keep-alive, ``Content-Length`` and chunked request bodies and
``Expect: 100-continue`` are supported; that is all the clients use.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Awaitable, Callable
from urllib.parse import unquote

log = logging.getLogger(__name__)

MAX_HEADER = 64 * 1024
MAX_BODY = 16 * 1024 * 1024


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""

    @property
    def path(self) -> str:
        return unquote(self.target.split("?", 1)[0])



@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # canonical names

    def encode(self, keep_alive: bool) -> bytes:
        reason = HTTPStatus(self.status).phrase
        lines = [f"HTTP/1.1 {self.status} {reason}"]
        for name in sorted(self.headers):
            lines.append(f"{name}: {self.headers[name]}")
        if not keep_alive:
            lines.append("Connection: close")
        lines.append(f"Date: {email.utils.formatdate(usegmt=True)}")
        if self.status != 204 and self.status >= 200:
            lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("latin-1") + (b"" if self.status == 204 else self.body)


def text_error(status: int, message: str) -> Response:
    """Go's ``http.Error``: text/plain, nosniff, message plus newline."""
    return Response(
        status,
        message.encode() + b"\n",
        {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"},
    )


Handler = Callable[[Request], Awaitable[Response]]


class HttpError(Exception):
    pass


async def _read_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]) -> bytes:
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise HttpError("body too large")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length_text = headers.get("content-length")
    if not length_text:
        return b""
    length = int(length_text)
    if length < 0 or length > MAX_BODY:
        raise HttpError("bad content length")
    return await reader.readexactly(length)


def _parse_head(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError("malformed request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError("malformed header")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers and key != "user-agent" else value
    return Request(parts[0], parts[1], parts[2], headers)


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler) -> None:
    """Serve requests on one connection until the client closes or asks to."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            except asyncio.LimitOverrunError:
                writer.write(_bad_request())
                return
            while head.startswith(b"\r\n"):
                head = head[2:]
            try:
                request = _parse_head(head)
                request.body = await _read_body(reader, writer, request.headers)
            except (HttpError, ValueError, asyncio.LimitOverrunError):
                writer.write(_bad_request())
                return
            connection = request.headers.get("connection", "").lower()
            keep_alive = (request.version == "HTTP/1.1" and "close" not in connection) or (
                request.version == "HTTP/1.0" and "keep-alive" in connection
            )
            try:
                response = await handler(request)
            except Exception:  # pragma: no cover - defensive
                log.exception("handler failed")
                response = text_error(500, "Internal Server Error")
            writer.write(response.encode(keep_alive))
            await writer.drain()
            if not keep_alive:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


def _bad_request() -> bytes:
    return (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Connection: close\r\n\r\n400 Bad Request"
    )
