"""Random frames against the backend's ``/ws`` on real uvicorn (real Postgres, Redis
and auth service): bad input never gets a 1011 or a dropped connection, no raw
database error reaches the client, and the server answers afterwards.

``CONNECTIONS`` connections, each sending 1–6 random frames (JSON of any shape,
protocol messages with random fields, text that is not JSON, binary, frames
around the 64 KiB limit, deep nesting), then a ping that must get its pong
unless the server closed for a reason of its own (1000 after too many errors,
1009 for a frame over the limit).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from replica.backend import messages
from tests.integration.inprocess import BackendUnderTest, backend  # noqa: F401 - fixture
from tests.servers_support import postgres_server, redis_server, server_group  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

CONNECTIONS = 300
RECV_TIMEOUT_S = 10.0
EXPECTED_CLOSES = {1000: "Too many errors", 1009: None}
LEAKS = ("asyncpg", "invalid byte sequence", "violates", "Traceback", "redis.exceptions")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
texts = st.text(max_size=60) | st.sampled_from(["", " ", "\x00", "a\x00b", "é" * 10, "x" * 200])
protocol_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["ping", "heartbeat", "pong", "user_message", "get_thread", "nope", ""]) | st.text(max_size=8)},
    optional={
        "data": st.fixed_dictionaries(
            {}, optional={"content": texts | json_values, "thread_id": texts | json_values}
        ) | json_values,
        "correlation_id": texts | json_values,
    },
)


def padded(size: int) -> str:
    base = json.dumps({"type": "ping", "pad": ""})
    return json.dumps({"type": "ping", "pad": "x" * max(size - len(base), 0)})


NASTY = [
    {"type": "user_message", "data": {"content": "a\x00b"}},
    {"type": "user_message", "data": {"content": "hi", "thread_id": "t\x00"}},
    {"type": "user_message", "data": {"content": "hi", "thread_id": "t" * 5000}},
    {"type": "get_thread", "data": {"thread_id": "\x00"}},
    {"type": "get_thread", "data": {"thread_id": ["not", "a", "string"]}},
    {"type": "user_message", "data": {"content": "\ud800"}},
]
frames = st.one_of(
    protocol_messages.map(json.dumps),
    st.sampled_from(NASTY).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.sampled_from([65535, 65536, 65537, 300_000]).map(padded),
    st.integers(1, 20_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 20_000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
)


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))


async def exchange(backend: BackendUnderTest, sent: list[str | bytes]) -> tuple[list[dict[str, Any]], int | None, str]:
    """Send the frames, then a ping; everything received until its pong, and the close code if closed."""
    received: list[dict[str, Any]] = []
    async with connect(
        backend.ws, additional_headers={"Authorization": f"Bearer {backend.token()}"}, open_timeout=10, max_size=None
    ) as ws:
        try:
            received.append(await recv_json(ws))  # the welcome
            for frame in sent:
                await ws.send(frame)
            marker = str(uuid.uuid4())
            await ws.send(json.dumps({"type": "ping", "correlation_id": marker}))
            while True:
                message = await recv_json(ws)
                received.append(message)
                if message.get("type") == "pong" and message.get("correlation_id") == marker:
                    return received, None, ""
        except ConnectionClosed as exc:
            return received, exc.rcvd.code if exc.rcvd else 1006, exc.rcvd.reason if exc.rcvd else ""


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def fds_before(backend: BackendUnderTest) -> int:
    """Open fds of this process (client and server) after one warm-up session."""
    assert asyncio.run(exchange(backend, [json.dumps({"type": "ping"})]))[1] is None
    return open_fds()


@settings(max_examples=CONNECTIONS, deadline=None, suppress_health_check=list(HealthCheck))
@given(sent=st.lists(frames, min_size=1, max_size=6))
def test_random_frames_never_get_1011_nor_leak_errors(
    backend: BackendUnderTest, fds_before: int, sent: list[str | bytes]
) -> None:
    received, code, reason = asyncio.run(exchange(backend, sent))
    assert received and received[0]["type"] == "system_message"
    oversized = any(len(f.encode() if isinstance(f, str) else f) > messages.MAX_MESSAGE_SIZE for f in sent)
    if code is not None:
        assert code in EXPECTED_CLOSES, (code, reason)
        assert EXPECTED_CLOSES[code] in (None, reason)
    assert (code == 1009) <= oversized
    assert oversized <= (code in (1000, 1009))  # refused, unless the error budget closed it first
    event(f"closed {code}" if code else "answered")
    for message in received:
        if message.get("type") == "error_message":
            assert not any(leak in message["error_message"] for leak in LEAKS), message


def test_the_server_answers_after_the_fuzzing_with_no_fds_left_open(backend: BackendUnderTest, fds_before: int) -> None:
    """Runs after the fuzz test in this module (pytest keeps file order)."""
    assert httpx.get(f"{backend.http}/health", timeout=5).status_code == 200
    received, code, _ = asyncio.run(exchange(backend, [json.dumps({"type": "heartbeat"})]))
    assert code is None and [m["type"] for m in received] == ["system_message", "heartbeat_ack", "pong"]
    assert open_fds() <= fds_before + 2  # pools may keep a connection more; nothing grows per session
