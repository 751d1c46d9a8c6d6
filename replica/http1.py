"""Short HTTP/1.1 exchanges on asyncio: the probe's health checks and the lanes API of a
running stack (on its unix socket).

h11, the protocol library under httpx and uvicorn, writes the request and reads the
reply; asyncio carries them (with TLS for ``https``). One request per connection, the
whole exchange under one timeout, the reply's body capped. httpx does this and much
more; a command that runs one scenario need not import it and its async backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import h11

#: A reply's body beyond this is refused (a backend log tail is far smaller).
MAX_BODY_BYTES = 16 * 1024 * 1024
_READ_SIZE = 64 * 1024
_CLOSE_TIMEOUT_S = 1.0


class HTTPError(Exception):
    """No complete reply: refused, reset, timed out, closed early or not HTTP/1.1.
    ``reason`` names what happened (``ConnectionRefusedError``, ``TimeoutError``, ...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)


async def request(
    method: str,
    url: str,
    *,
    timeout: float,
    json: Any = None,
    params: dict[str, Any] | None = None,
    unix_socket: str | None = None,
    tls: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """``method url`` (``http`` or ``https``; over ``unix_socket`` when given, the URL's host
    then only fills the Host header), with ``json`` as the body and ``headers`` besides
    those it writes itself; raises :class:`HTTPError`."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if params:
        target += ("&" if parts.query else "?") + urlencode(params)
    body = b"" if json is None else jsonlib.dumps(json).encode()
    sent = [("Host", parts.netloc), ("Connection", "close"), *(headers or {}).items()]
    if json is not None:
        sent += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            if unix_socket is not None:
                reader, writer = await asyncio.open_unix_connection(unix_socket)
            else:
                https = parts.scheme == "https"
                port = parts.port or (443 if https else 80)
                reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=tls if https else None)
            connection = h11.Connection(h11.CLIENT)
            writer.write(connection.send(h11.Request(method=method, target=target, headers=sent)))
            if body:
                writer.write(connection.send(h11.Data(data=body)))
            writer.write(connection.send(h11.EndOfMessage()))
            await writer.drain()
            return await _reply(connection, reader)
    except (OSError, TimeoutError, EOFError, h11.ProtocolError) as exc:
        raise HTTPError(type(exc).__name__, str(exc)) from exc
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):  # a TLS peer may never answer the close
                    await writer.wait_closed()


async def _reply(connection: h11.Connection, reader: asyncio.StreamReader) -> Response:
    status = 0
    chunks: list[bytes] = []
    size = 0
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(_READ_SIZE))  # b"": the server closed
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_BODY_BYTES:
                raise HTTPError("ReplyTooLarge", f"body over {MAX_BODY_BYTES} bytes")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return Response(status, b"".join(chunks))
        elif isinstance(event, h11.ConnectionClosed):
            raise HTTPError("RemoteProtocolError", "the server closed the connection before a full reply")
