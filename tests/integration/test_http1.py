"""``replica.http1`` against real servers: uvicorn on a TCP socket and on a unix socket
for the replies a server gives, raw asyncio servers for peers that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from replica import http1
from replica.drivers.local.ports import bind_loopback

pytestmark = pytest.mark.slow

TIMEOUT_S = 10.0


async def status(request: Request) -> Response:
    return Response(status_code=int(request.path_params["code"]))


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"method": request.method, "query": dict(request.query_params), "body": await request.json()})


async def stream(_request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(50):
            yield f"{i:04d}".encode() * 1000

    return StreamingResponse(chunks())  # no length: sent chunked


APP = Starlette(routes=[Route("/status/{code:int}", status), Route("/echo", echo, methods=["POST", "DELETE"]), Route("/stream", stream)])


class _Server(uvicorn.Server):
    """uvicorn that says when it serves."""

    def __init__(self) -> None:
        super().__init__(uvicorn.Config(APP, log_level="warning", lifespan="off"))
        self.serving = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.serving.set()


@contextlib.asynccontextmanager
async def uvicorn_on(sock: socket.socket) -> AsyncIterator[None]:
    server = _Server()
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await asyncio.wait_for(server.serving.wait(), TIMEOUT_S)
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT_S)


@contextlib.asynccontextmanager
async def raw_server(handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> AsyncIterator[str]:
    """A TCP server on loopback (port 0) answering with ``handle``; yields its base URL."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


def test_statuses_json_and_query_over_tcp() -> None:
    async def main() -> None:
        sock = bind_loopback()
        sock.listen()
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with uvicorn_on(sock):
            assert (await http1.request("GET", f"{base}/status/200", timeout=TIMEOUT_S)).status == 200
            assert (await http1.request("GET", f"{base}/status/503", timeout=TIMEOUT_S)).status == 503
            assert (await http1.request("GET", f"{base}/nowhere", timeout=TIMEOUT_S)).status == 404
            answer = await http1.request("POST", f"{base}/echo?a=1", json={"x": [1, "é"]}, params={"b": "2 3"}, timeout=TIMEOUT_S)
            assert answer.status == 200
            assert answer.json() == {"method": "POST", "query": {"a": "1", "b": "2 3"}, "body": {"x": [1, "é"]}}

    asyncio.run(main())


def test_a_unix_socket_and_a_chunked_reply(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"

    async def main() -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.listen()
        async with uvicorn_on(sock):
            answer = await http1.request("DELETE", "http://api.localhost/echo", json={"k": 1}, unix_socket=str(path), timeout=TIMEOUT_S)
            assert (answer.status, answer.json()["method"], answer.json()["body"]) == (200, "DELETE", {"k": 1})
            streamed = await http1.request("GET", "http://api.localhost/stream", unix_socket=str(path), timeout=TIMEOUT_S)
            assert streamed.body == b"".join(f"{i:04d}".encode() * 1000 for i in range(50))

    asyncio.run(main())


def test_refused_is_an_http_error_naming_why() -> None:
    with bind_loopback() as held:  # bound, not listening: connecting is refused, and no one else gets the port
        url = f"http://127.0.0.1:{held.getsockname()[1]}/health"
        with pytest.raises(http1.HTTPError) as error:
            asyncio.run(http1.request("GET", url, timeout=TIMEOUT_S))
    assert error.value.reason == "ConnectionRefusedError"


def test_a_server_that_never_answers_times_out_within_the_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.sleep(60)

    async def main() -> float:
        async with raw_server(silent) as base:
            started = time.monotonic()
            with pytest.raises(http1.HTTPError) as error:
                await http1.request("GET", base, timeout=0.3)
            assert error.value.reason == "TimeoutError"
            return time.monotonic() - started

    assert asyncio.run(main()) < 5.0


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "RemoteProtocolError"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "RemoteProtocolError"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "RemoteProtocolError"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"x" * 3000, "ReplyTooLarge"),
    ],
)
def test_a_peer_that_misbehaves_gets_a_clear_error(reply: bytes, reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "MAX_BODY_BYTES", 2000)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        writer.write(reply)
        await writer.drain()
        writer.close()

    async def main() -> None:
        async with raw_server(answer) as base:
            with pytest.raises(http1.HTTPError) as error:
                await http1.request("GET", base, timeout=TIMEOUT_S)
            assert error.value.reason == reason, error.value

    asyncio.run(main())
