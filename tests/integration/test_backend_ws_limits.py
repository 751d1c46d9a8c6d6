"""The backend's own WebSocket keeps the limits it advertises and keeps database
errors to itself: real uvicorn, real Postgres and Redis, the real auth service."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from replica.backend import messages
from tests.integration.inprocess import BackendUnderTest, backend  # noqa: F401 - fixture
from tests.servers_support import postgres_server, redis_server, server_group  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

RECV_TIMEOUT_S = 10.0


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))
        if message["type"] != "ping":  # the server's heartbeat
            return message


async def open_session(backend: BackendUnderTest, sub: str = "limits-user") -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(
        backend.ws, additional_headers={"Authorization": f"Bearer {backend.token(sub)}"}, open_timeout=10,
        max_size=None,
    )
    return ws, await recv_json(ws)


async def close_code_after(ws: ClientConnection) -> int | None:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def ping_pong(backend: BackendUnderTest) -> str:
    ws, welcome = await open_session(backend)
    async with ws:
        assert welcome["data"]["event"] == "connection_established"
        await ws.send(json.dumps({"type": "ping"}))
        return (await recv_json(ws))["type"]


def test_the_advertised_size_is_accepted_and_one_byte_more_closes_1009(backend: BackendUnderTest) -> None:
    async def session() -> tuple[int, str, int | None]:
        ws, welcome = await open_session(backend)
        advertised = welcome["data"]["config"]["max_message_size"]
        async with ws:
            padding = advertised - len(json.dumps({"type": "ping", "pad": ""}))
            exact = json.dumps({"type": "ping", "pad": "x" * padding})
            assert len(exact.encode()) == advertised
            await ws.send(exact)
            answer = (await recv_json(ws))["type"]
            await ws.send(exact[:-2] + 'xx"}')  # one byte over
            return advertised, answer, await close_code_after(ws)

    advertised, answer, code = asyncio.run(session())
    assert advertised == messages.MAX_MESSAGE_SIZE == 65536
    assert answer == "pong"
    assert code == 1009


def test_a_10_mb_frame_is_refused_from_its_header_and_the_server_stays_up(backend: BackendUnderTest) -> None:
    async def session() -> tuple[int | None, float]:
        ws, _ = await open_session(backend)
        async with ws:
            started = time.monotonic()
            try:
                await ws.send(b"\0" * (10 * 1024 * 1024))
            except ConnectionClosed:
                pass  # the server may close before the client has written it all
            return await close_code_after(ws), time.monotonic() - started

    code, seconds = asyncio.run(session())
    assert code == 1009
    assert seconds < 5
    assert httpx.get(f"{backend.http}/health", timeout=5).status_code == 200
    assert asyncio.run(ping_pong(backend)) == "pong"


def test_a_database_error_is_logged_not_sent_to_the_client(backend: BackendUnderTest, caplog) -> None:
    """A user id Postgres cannot store (a NUL in the token's subject) makes the INSERT fail."""

    async def session() -> list[dict[str, Any]]:
        ws, _ = await open_session(backend, sub="nul\x00user")
        async with ws:
            await ws.send(json.dumps({"type": "user_message", "data": {"content": "hello"}}))
            answers = [await recv_json(ws)]
            await ws.send(json.dumps({"type": "ping"}))
            answers.append(await recv_json(ws))
            return answers

    with caplog.at_level("ERROR", logger="replica.ws"):
        error, pong = asyncio.run(session())
    assert error["type"] == "error_message" and error["error_code"] == "MESSAGE_PROCESSING_ERROR"
    assert error["error_message"] == "the message could not be processed"
    assert "0x00" not in json.dumps(error) and "UTF8" not in json.dumps(error)
    assert pong["type"] == "pong"
    assert any("0x00" in record.getMessage() + str(record.exc_info and record.exc_info[1]) for record in caplog.records)


def test_nul_in_content_gets_a_clear_error_not_the_database_text(backend: BackendUnderTest) -> None:
    async def session() -> dict[str, Any]:
        ws, _ = await open_session(backend)
        async with ws:
            await ws.send(json.dumps({"type": "user_message", "data": {"content": "a\x00b"}}))
            return await recv_json(ws)

    error = asyncio.run(session())
    assert error["type"] == "error_message"
    assert error["error_message"] == "data.content must not contain NUL characters"


def test_deeply_nested_json_is_a_routing_error(backend: BackendUnderTest) -> None:
    async def session() -> tuple[dict[str, Any], str]:
        ws, _ = await open_session(backend)
        async with ws:
            await ws.send("[" * 30000 + "]" * 30000)
            error = await recv_json(ws)
            await ws.send(json.dumps({"type": "ping"}))
            return error, (await recv_json(ws))["type"]

    error, answer = asyncio.run(session())
    assert error["error_message"] == "message is nested too deeply"
    assert answer == "pong"
