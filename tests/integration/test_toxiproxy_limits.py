"""The fault proxy API's time and connection limits, on an in-process server with short limits."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import pytest

from faults.toxiproxy.http import Limits
from faults.toxiproxy.model import ProxyInput, ProxyUpdate
from faults.toxiproxy.server import ToxiproxyServer

pytestmark = pytest.mark.slow

LIMITS = Limits(header_timeout=0.3, idle_timeout=0.6, body_timeout=0.3, write_timeout=0.5, max_connections=8)
VERSION = b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"

Scenario = Callable[[ToxiproxyServer], Awaitable[None]]


def serve(scenario: Scenario, limits: Limits = LIMITS) -> None:
    async def main() -> None:
        async with ToxiproxyServer("127.0.0.1", 0, limits=limits) as server:
            await scenario(server)

    asyncio.run(main())


async def open_client(server: ToxiproxyServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def until_closed(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(5):
        try:
            data = await reader.read()
        except ConnectionResetError:
            data = b""
    return data, loop.time() - started


async def version_answers(server: ToxiproxyServer) -> bool:
    reader, writer = await open_client(server)
    writer.write(VERSION)
    async with asyncio.timeout(1):
        head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    return head.startswith(b"HTTP/1.1 200 OK")


async def connections_settle(server: ToxiproxyServer, count: int) -> None:
    """Wait (bounded) until the server holds ``count`` connections: their tasks end on their own."""
    async with asyncio.timeout(5):
        while len(server.http.connections) > count:
            await asyncio.wait(list(server.http.connections), return_when=asyncio.FIRST_COMPLETED)


def test_a_slowloris_head_is_cut_after_the_header_timeout() -> None:
    async def scenario(server: ToxiproxyServer) -> None:
        reader, writer = await open_client(server)

        async def drip() -> None:  # one byte every 50 ms: never idle, never done
            for byte in b"GET /version HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx":
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)

        dripping = asyncio.create_task(drip())
        data, elapsed = await until_closed(reader)
        dripping.cancel()
        assert data == b"" and LIMITS.header_timeout * 0.9 <= elapsed < LIMITS.header_timeout + 1.0
        await connections_settle(server, 0)
        writer.close()

    serve(scenario)


def test_a_silent_connection_and_an_idle_keep_alive_are_closed() -> None:
    async def scenario(server: ToxiproxyServer) -> None:
        silent, silent_writer = await open_client(server)
        assert (await until_closed(silent))[0] == b""
        reader, writer = await open_client(server)
        writer.write(VERSION)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        assert len(await reader.readexactly(length)) == length
        data, elapsed = await until_closed(reader)  # kept alive, then idle
        assert data == b"" and elapsed >= LIMITS.idle_timeout * 0.9
        await connections_settle(server, 0)
        for w in (silent_writer, writer):
            w.close()

    serve(scenario)


def test_a_body_that_never_completes_is_cut() -> None:
    async def scenario(server: ToxiproxyServer) -> None:
        reader, writer = await open_client(server)
        writer.write(b"POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        data, elapsed = await until_closed(reader)
        assert data == b"" and elapsed >= LIMITS.body_timeout * 0.9
        assert server.collection.proxies == {}
        writer.close()

    serve(scenario)


def test_at_the_connection_cap_the_longest_waiting_connection_makes_room() -> None:
    async def scenario(server: ToxiproxyServer) -> None:
        idle = [await open_client(server) for _ in range(LIMITS.max_connections)]
        async with asyncio.timeout(5):
            while len(server.http.connections) < LIMITS.max_connections:
                await asyncio.sleep(0)  # let the server accept them all
        assert await version_answers(server)
        data, elapsed = await until_closed(idle[0][0])  # the oldest was dropped for the newcomer
        assert data == b"" and elapsed < 1.0  # long before its header timeout
        for _, writer in idle:
            writer.close()

    serve(scenario, Limits(header_timeout=30, max_connections=LIMITS.max_connections))


def test_a_client_that_does_not_read_its_answers_is_dropped() -> None:
    async def scenario(server: ToxiproxyServer) -> None:
        body = b"[" + b",".join(b'{"name":"%s%d","upstream":"x:1","enabled":false}' % (b"n" * 190, k) for k in range(1000)) + b"]"
        reader, writer = await open_client(server)
        writer.write(b"POST /populate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 201 ")
        writer.close()
        greedy, greedy_writer = await open_client(server)
        greedy_writer.transport.pause_reading()  # type: ignore[attr-defined]
        greedy_writer.write(b"GET /proxies HTTP/1.1\r\nHost: x\r\n\r\n" * 100)  # ~20 MB of answers, never read
        await connections_settle(server, 0)  # dropped after the write timeout
        assert await version_answers(server)
        greedy_writer.close()

    serve(scenario)


def test_a_delete_during_an_update_leaves_no_listener_behind() -> None:
    """Found by the fuzz suite: a DELETE while a PATCH awaited a name lookup left the PATCH's new listener open."""

    async def scenario(server: ToxiproxyServer) -> None:
        collection = server.collection
        proxy = await collection.add(ProxyInput("p", "127.0.0.1:0", "x:1"))
        update = asyncio.create_task(collection.update("p", ProxyUpdate("localhost:0", "x:1", True)))
        await asyncio.sleep(0)  # the update runs up to its name lookup
        await collection.remove("p")
        await update
        assert collection.proxies == {} and not proxy.enabled and proxy.connections == set()

    serve(scenario)
