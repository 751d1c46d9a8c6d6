"""The chat example (examples/chat) as the replica starts it: real uvicorn, Postgres, Redis, WebSockets."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import asyncpg
import jwt
import pytest
import redis.asyncio as redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from replica.drivers.local.group import ProcessGroup
from replica.generic_catalog import generic_scenarios
from replica.project import Endpoint, ProjectError, load_project
from replica.user_backend import start_backend
from tests.servers_support import pid_alive, postgres_server, redis_server, server_group  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chat" / "replica.toml"
SECRET = "example-secret-of-thirty-two-bytes!"


@pytest.fixture(scope="module")
def project():
    return load_project(EXAMPLE)


@pytest.fixture
def endpoints(postgres_server, redis_server):  # noqa: F811
    return {
        "postgres": Endpoint(postgres_server.host, postgres_server.port, postgres_server.url),
        "redis": Endpoint(redis_server.host, redis_server.port, redis_server.url),
    }


def token(sub: str = "replica-probe") -> str:
    return jwt.encode({"sub": sub}, SECRET, algorithm="HS256")


async def recv(ws, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def started(group, project, endpoints, failpoints: str = "", room: str | None = None):
    room = room or uuid.uuid4().hex
    backend, outcome = await start_backend(
        group, project, endpoints=endpoints, secret=SECRET, failpoints=failpoints, extra_env={"CHAT_ROOM": room}
    )
    return backend, outcome, room


def ws_url(backend) -> str:
    return f"ws://127.0.0.1:{backend.port}/ws"


def test_the_example_project_loads_and_its_catalog_is_the_generic_one(project):
    assert project.backend.app == "chat.main:app" and set(project.dependencies) == {"postgres", "redis"}
    names = [s.name for s in generic_scenarios(project)]
    assert len(names) == 1 + 2 * 5 + 2 * 3 and "ws.publish:raise" in names and "redis:hung" in names


def test_chat_welcomes_answers_pings_and_fans_messages_out_through_redis(project, endpoints):
    async def scenario():
        with ProcessGroup() as group:
            backend, outcome, room = await started(group, project, endpoints)
            assert outcome.ready, outcome.detail
            headers = {"Authorization": f"Bearer {token('alice')}"}
            async with connect(ws_url(backend), additional_headers=headers) as alice:
                welcome = await recv(alice)
                assert welcome == {"type": "welcome", "room": room, "user": "alice", "history": []}
                assert await recv(alice) == {"type": "joined", "author": "alice"}
                await alice.send(json.dumps({"type": "ping"}))
                assert await recv(alice) == {"type": "pong"}
                async with connect(ws_url(backend), additional_headers={"Authorization": f"Bearer {token('bob')}"}) as bob:
                    assert (await recv(bob))["type"] == "welcome"
                    assert await recv(alice) == {"type": "joined", "author": "bob"}
                    await bob.send(json.dumps({"type": "message", "body": "hi alice"}))
                    got = await recv(alice)
                    assert (got["type"], got["author"], got["body"]) == ("message", "bob", "hi alice")
            db = await asyncpg.connect(endpoints["postgres"].url)
            try:
                rows = await db.fetch("SELECT author, body FROM chat_messages WHERE room = $1", room)
            finally:
                await db.close()
            assert [tuple(r) for r in rows] == [("bob", "hi alice")]
            pid = backend.process.pid
        assert not pid_alive(pid)

    asyncio.run(scenario())


def test_chat_refuses_a_connection_without_a_valid_token(project, endpoints):
    async def scenario():
        with ProcessGroup() as group:
            backend, outcome, _ = await started(group, project, endpoints)
            assert outcome.ready, outcome.detail
            for headers in ({}, {"Authorization": "Bearer " + jwt.encode({"sub": "x"}, "another-secret-of-thirty-two-bytes", algorithm="HS256")}):
                with pytest.raises(InvalidStatus) as info:
                    async with connect(ws_url(backend), additional_headers=headers):
                        pass
                assert info.value.response.status_code == 403

    asyncio.run(scenario())


def test_ws_publish_raise_closes_1011_before_the_welcome(project, endpoints):
    async def scenario():
        with ProcessGroup() as group:
            backend, outcome, _ = await started(group, project, endpoints, "ws.publish=raise(RuntimeError: boom)")
            assert outcome.ready, outcome.detail
            async with connect(ws_url(backend), additional_headers={"Authorization": f"Bearer {token()}"}) as ws:
                with pytest.raises(ConnectionClosed) as info:
                    await recv(ws)
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (1011, "internal error")
            assert "RuntimeError: boom" in backend.log_tail()

    asyncio.run(scenario())


def test_startup_cache_skip_leaves_the_cache_cold_and_history_comes_from_postgres(project, endpoints):
    async def scenario():
        room = uuid.uuid4().hex
        cache = redis.Redis.from_url(endpoints["redis"].url)
        try:
            for spec, cached in (("", True), ("startup.cache=skip", False)):
                await cache.delete(f"chat:{room}:recent")
                with ProcessGroup() as group:
                    backend, outcome, _ = await started(group, project, endpoints, spec, room=room)
                    assert outcome.ready, outcome.detail
                    assert bool(await cache.exists(f"chat:{room}:recent")) is cached, spec
                    db = await asyncpg.connect(endpoints["postgres"].url)
                    try:
                        await db.execute("INSERT INTO chat_messages (room, author, body) VALUES ($1, 'db', $2)", room, spec)
                    finally:
                        await db.close()
                    async with connect(ws_url(backend), additional_headers={"Authorization": f"Bearer {token()}"}) as ws:
                        history = [m["body"] for m in (await recv(ws))["history"]]
                    # A warm cache holds what was there at startup; a cold one reads Postgres now.
                    assert history == ([] if cached else ["", spec]), spec
        finally:
            await cache.aclose()

    asyncio.run(scenario())


def test_a_down_database_is_an_observed_exit_at_startup_with_its_log(project, endpoints):
    async def scenario():
        closed = Endpoint("127.0.0.1", 9, "postgresql://replica:x@127.0.0.1:9/replica")  # discard port: refused
        with ProcessGroup() as group:
            backend, outcome, _ = await started(group, project, {**endpoints, "postgres": closed})
            assert not outcome.ready and outcome.exit_status == 3
            assert "Connect call failed" in outcome.log_tail or "ConnectionRefusedError" in outcome.log_tail
            assert "Application startup failed" in outcome.detail

    asyncio.run(scenario())


def test_a_failpoint_spec_naming_an_undeclared_point_starts_nothing(project, endpoints):
    async def scenario():
        with ProcessGroup() as group:
            with pytest.raises(ProjectError, match=r"unknown failpoint 'ws.auth' \(declared: startup.cache, ws.publish\)"):
                await started(group, project, endpoints, "ws.auth=hang")
            assert group.processes == []

    asyncio.run(scenario())
