"""The backend replica as real processes: uvicorn (or gunicorn) on loopback, real
Postgres and Redis, the real auth service over HTTP, a real websockets client.

Each handler variant is checked by the fingerprint a client sees: handshake
outcome, welcome or not, close code and reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from replica.auth.tokens import mint_token
from replica.backend.auth_client import encode_subprotocol_token
from replica.drivers.local.group import ProcessGroup
from replica.drivers.local.ports import bind_loopback
from replica.drivers.local.process import ManagedProcess
from replica.polling import port_is_open, wait_for_http, wait_for_tcp, wait_until
from replica.drivers.local.postgres import PostgresServer
from replica.drivers.local.redis import RedisServer, start_redis
from tests.servers_support import postgres_server, redis_server, server_group  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

RECV_TIMEOUT_S = 10.0

# --- processes ------------------------------------------------------------------------------------


@dataclass
class Stack:
    group: ProcessGroup
    postgres_url: str
    redis_url: str
    auth_url: str
    secret: str

    def token(self, sub: str = "staging-e2e-user-001") -> str:
        return mint_token(self.secret, sub=sub)


@dataclass
class Backend:
    process: ManagedProcess
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self) -> int:
        return self.process.stop(timeout=10)


@pytest.fixture(scope="module")
def stack(server_group: ProcessGroup, postgres_server: PostgresServer, redis_server: RedisServer) -> Iterator[Stack]:
    secret = secrets.token_urlsafe(32)
    with ProcessGroup() as group, bind_loopback() as listener:  # bound here and handed over: no port race
        port = listener.getsockname()[1]
        env = {**os.environ, "AUTH_HOST": "127.0.0.1", "AUTH_FD": str(listener.fileno()), "JWT_SECRET": secret}
        auth = group.start([sys.executable, "-m", "replica.auth"], name="auth", env=env, pass_fds=[listener.fileno()])
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/health", timeout=20, process=auth, what="the auth service")
        yield Stack(group, postgres_server.url, redis_server.url, url, secret)


def backend_env(stack: Stack, port: int, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICA_") and k != "ENVIRONMENT"}
    env.update(
        ENVIRONMENT="staging",
        REPLICA_HOST="127.0.0.1",
        REPLICA_PORT=str(port),
        REPLICA_DATABASE_URL=stack.postgres_url,
        REPLICA_REDIS_URL=stack.redis_url,
        REPLICA_AUTH_URL=stack.auth_url,
        REPLICA_DEPENDENCY_TIMEOUT_S="2",
        REPLICA_AUTH_TIMEOUT_S="2",
    )
    env.update({("ENVIRONMENT" if k == "environment" else "REPLICA_" + k.upper()): v for k, v in settings.items()})
    return env


def launch(stack: Stack, *, wait: bool = True, pythonpath: str | None = None, **settings: str) -> Backend:
    with bind_loopback() as listener:  # bound here and handed over: no other server can take the port
        port = listener.getsockname()[1]
        env = {**backend_env(stack, port, **settings), "REPLICA_FD": str(listener.fileno())}
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        process = stack.group.start(
            [sys.executable, "-m", "replica.backend"], name=f"backend-{port}", env=env, pass_fds=[listener.fileno()]
        )
    backend = Backend(process, port)
    if wait:
        try:
            wait_for_http(f"{backend.http}/health", timeout=60, process=process, what="the backend")
        except BaseException:
            backend.stop()
            raise
    return backend


@pytest.fixture
def start_backend(stack: Stack) -> Iterator[Callable[..., Backend]]:
    """Start backends for one test; all are stopped after it."""
    started: list[Backend] = []

    def start(**kwargs: Any) -> Backend:
        backend = launch(stack, **kwargs)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture(scope="module")
def incident_backend(stack: Stack) -> Iterator[Backend]:
    """A healthy backend running the incident handler, shared by the tests that only connect."""
    backend = launch(stack, handler="incident")
    yield backend
    backend.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- the client -------------------------------------------------------------------------------------


@dataclass
class Closed:
    messages: list[dict[str, Any]]
    code: int | None
    reason: str | None
    seconds_after_open: float


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT_S))


async def drain_until_closed(ws: ClientConnection, opened: float) -> Closed:
    """Read until the server closes; the messages it sent first, and its close frame."""
    received: list[dict[str, Any]] = []
    try:
        while True:
            received.append(await recv_json(ws))
    except ConnectionClosed as exc:
        rcvd = exc.rcvd
        return Closed(received, rcvd.code if rcvd else None, rcvd.reason if rcvd else None, time.monotonic() - opened)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def observe_close(url: str, headers: dict[str, str]) -> Closed:
    async with connect(url, additional_headers=headers, open_timeout=10) as ws:
        return await drain_until_closed(ws, time.monotonic())


async def handshake_status(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    with pytest.raises(InvalidStatus) as excinfo:
        async with connect(url, additional_headers=headers or {}, open_timeout=10):
            pass
    response = excinfo.value.response
    return response.status_code, {k.lower(): v for k, v in response.headers.raw_items()}


async def chat(ws: ClientConnection, content: str, thread_id: str | None = None) -> list[dict[str, Any]]:
    data: dict[str, Any] = {"content": content}
    if thread_id:
        data["thread_id"] = thread_id
    await ws.send(json.dumps({"type": "user_message", "data": data}))
    events = []
    while True:
        event = await recv_json(ws)
        if event["type"] == "ping":  # server heartbeat
            continue
        events.append(event)
        if event["type"] in ("agent_completed", "error_message"):
            return events


async def welcome_and_chat(url: str, token: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Connect with ``token``; the welcome, then the events a "hello" brings."""
    async with connect(url, additional_headers=bearer(token), open_timeout=10) as ws:
        welcome = await recv_json(ws)
        return welcome, await chat(ws, "hello")


async def get_thread(ws: ClientConnection, thread_id: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "get_thread", "data": {"thread_id": thread_id}}))
    while True:
        message = await recv_json(ws)
        if message["type"] != "ping":
            return message


# --- healthy path -------------------------------------------------------------------------------------


def test_healthy_incident_backend_welcomes_answers_and_stores_a_thread(stack: Stack, incident_backend: Backend) -> None:
    backend = incident_backend
    assert httpx.get(f"{backend.http}/health", timeout=5).json() == {"status": "healthy"}
    ready = httpx.get(f"{backend.http}/health/ready", timeout=5)
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["startup_complete"] is True
    assert [p["name"] for p in body["phases"]] == ["INIT", "DEPENDENCIES", "DATABASE", "CACHE", "SERVICES", "FINALIZE"]
    assert all(p["status"] == "ok" and p["duration_ms"] is not None for p in body["phases"])

    async def session() -> tuple[dict, dict, list[dict], dict, dict]:
        async with connect(backend.ws, additional_headers=bearer(stack.token()), open_timeout=10) as ws:
            welcome = await recv_json(ws)
            await ws.send(json.dumps({"type": "ping"}))
            pong = await recv_json(ws)
            events = await chat(ws, "how many words here")
            history = await get_thread(ws, events[-1]["payload"]["thread_id"])
            await ws.send(json.dumps({"type": "heartbeat"}))
            ack = await recv_json(ws)
            return welcome, pong, events, history, ack

    welcome, pong, events, history, ack = run(session())
    assert welcome["type"] == "system_message"
    assert welcome["data"]["event"] == "connection_established"
    assert welcome["data"]["user_id"] == "staging-e2e-user-001"
    assert welcome["data"]["environment"] == "staging" and welcome["data"]["startup_complete"] is True
    assert pong["type"] == "pong" and pong["data"]["user_id"] == "staging-e2e-user-001"
    assert [e["type"] for e in events] == [
        "agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed",
    ]
    assert len({e["run_id"] for e in events}) == 1
    thread_id = events[-1]["payload"]["thread_id"]
    assert history["type"] == "thread_history" and history["data"]["thread_id"] == thread_id
    assert history["data"]["messages"] == [
        {"role": "user", "content": "how many words here"},
        {"role": "assistant", "content": "Received 4 words: how many words here"},
    ]
    assert ack["type"] == "heartbeat_ack" and ack["data"]["status"] == "healthy"

    async def rows() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(stack.postgres_url, timeout=5)
        try:
            return await conn.fetch(
                "SELECT t.user_id, m.role FROM threads t JOIN messages m ON m.thread_id = t.id WHERE t.id = $1 ORDER BY m.id",
                thread_id,
            )
        finally:
            await conn.close()

    assert [(r["user_id"], r["role"]) for r in run(rows())] == [
        ("staging-e2e-user-001", "user"), ("staging-e2e-user-001", "assistant"),
    ]


def test_routing_errors_are_reported_and_threads_are_private(stack: Stack, incident_backend: Backend) -> None:
    async def session() -> tuple[list[dict], dict]:
        async with connect(incident_backend.ws, additional_headers=bearer(stack.token("staging-e2e-user-001")),
                           open_timeout=10) as ws:
            await recv_json(ws)
            thread_id = (await chat(ws, "private"))[-1]["payload"]["thread_id"]
            errors = []
            await ws.send(json.dumps({"type": "dance"}))
            errors.append(await recv_json(ws))
            await ws.send(b"\x00binary")
            errors.append(await recv_json(ws))
            await ws.send("{not json")
            errors.append(await recv_json(ws))
        async with connect(incident_backend.ws, additional_headers=bearer(stack.token("staging-e2e-user-002")),
                           open_timeout=10) as other:
            await recv_json(other)
            return errors, await get_thread(other, thread_id)

    errors, foreign = run(session())
    assert [(e["error_code"], e["error_message"]) for e in errors] == [
        ("UNKNOWN_MESSAGE_TYPE", "unknown message type 'dance'"),
        ("MESSAGE_PROCESSING_ERROR", "binary frames are not supported: send JSON text"),
        ("MESSAGE_PROCESSING_ERROR", "message is not JSON"),
    ]
    assert foreign["type"] == "error_message" and foreign["error_code"] == "THREAD_NOT_FOUND"


def test_threads_survive_a_backend_restart_and_sigterm_exits_0(stack: Stack, start_backend) -> None:
    token = stack.token("staging-e2e-user-002")
    first = start_backend(handler="recommended")

    async def write() -> str:
        async with connect(first.ws, additional_headers=bearer(token), open_timeout=10) as ws:
            await recv_json(ws)
            events = await chat(ws, "remember this")
            return events[-1]["payload"]["thread_id"]

    thread_id = run(write())
    assert first.stop() == 0  # SIGTERM: graceful shutdown, exit 0
    assert "backend stopped" in first.process.log_tail(50)

    second = start_backend(handler="incident")

    async def read() -> dict[str, Any]:
        async with connect(second.ws, additional_headers=bearer(token), open_timeout=10) as ws:
            await recv_json(ws)
            return await get_thread(ws, thread_id)

    history = run(read())
    assert history["data"]["messages"] == [
        {"role": "user", "content": "remember this"},
        {"role": "assistant", "content": "Received 2 words: remember this"},
    ]


def test_subprotocol_token_and_jwt_auth_choice(stack: Stack, incident_backend: Backend) -> None:
    backend = incident_backend

    async def session() -> tuple[str | None, dict]:
        protocols = ["jwt-auth", encode_subprotocol_token(stack.token())]
        async with connect(backend.ws, subprotocols=protocols, open_timeout=10) as ws:
            return ws.subprotocol, await recv_json(ws)

    chosen, welcome = run(session())
    assert chosen == "jwt-auth"
    assert welcome["data"]["event"] == "connection_established"


# --- the incident's candidate causes, told apart ----------------------------------------------------


def test_incident_auth_log_defect_closes_1011_internal_error_at_once(stack: Stack, start_backend) -> None:
    backend = start_backend(handler="incident", defects="auth-log-json")
    closed = run(observe_close(backend.ws, bearer(stack.token())))
    assert (closed.code, closed.reason) == (1011, "Internal error")
    assert closed.messages == []  # no welcome, no error message
    assert closed.seconds_after_open < 1.0
    wait_until(lambda: "WebSocket error: Object of type WebSocketState is not JSON serializable" in backend.process.log_tail(80),
               5, what="the catch-all log line")


def test_incident_missing_supervisor_closes_1011_service_unavailable(stack: Stack, start_backend) -> None:
    backend = start_backend(handler="incident", failpoints="startup.supervisor=skip")
    closed = run(observe_close(backend.ws, bearer(stack.token())))
    assert (closed.code, closed.reason) == (1011, "Service unavailable")
    assert [m["type"] for m in closed.messages] == ["error_message"]
    assert closed.messages[0]["error_code"] == "SERVICE_UNAVAILABLE"
    assert "agent_supervisor" in closed.messages[0]["error_message"]


def test_incident_background_startup_that_never_finishes_closes_1011_startup_incomplete(
    stack: Stack, start_backend
) -> None:
    backend = start_backend(handler="incident", startup_mode="background", failpoints="startup.finalize=hang",
                            startup_wait_s="1")
    ready = httpx.get(f"{backend.http}/health/ready", timeout=5)
    assert ready.status_code == 503
    assert ready.json()["status"] == "starting"
    assert {p["name"]: p["status"] for p in ready.json()["phases"]}["FINALIZE"] == "running"
    assert httpx.get(f"{backend.http}/health", timeout=5).status_code == 200  # shallow, as in staging

    closed = run(observe_close(backend.ws, bearer(stack.token())))
    assert (closed.code, closed.reason) == (1011, "Service startup incomplete")
    assert [m.get("error_code") for m in closed.messages] == ["STARTUP_INCOMPLETE"]
    assert 1.0 <= closed.seconds_after_open < 10.0  # the 1 s wait, not the default 30 s

    # E2E headers skip the wait in the incident route: the test client is welcomed by a
    # backend whose startup never completed (the services were built before FINALIZE hung).
    async def e2e() -> dict:
        headers = {**bearer(stack.token()), "X-E2E-Test": "true"}
        async with connect(backend.ws, additional_headers=headers, open_timeout=10) as ws:
            return await recv_json(ws)

    welcome = run(e2e())
    assert welcome["data"]["event"] == "connection_established"
    assert welcome["data"]["startup_complete"] is False


def test_incident_auth_failure_closes_1008_after_accept(stack: Stack, incident_backend: Backend) -> None:
    backend = incident_backend
    closed = run(observe_close(backend.ws, bearer(mint_token("not-the-" + stack.secret))))
    assert (closed.code, closed.reason) == (1008, "SSOT Auth failed")
    assert [m.get("error_code") for m in closed.messages] == ["AUTH_FAILED"]
    assert closed.messages[0]["error_message"] == "bad signature"


def test_handler_failpoint_raise_reaches_the_catch_all(stack: Stack, start_backend) -> None:
    backend = start_backend(handler="incident", failpoints="ws.auth_log=raise(TypeError: Object of type WebSocketState is not JSON serializable)")
    closed = run(observe_close(backend.ws, bearer(stack.token())))
    assert (closed.code, closed.reason, closed.messages) == (1011, "Internal error", [])


# --- the fixes -----------------------------------------------------------------------------------------


def test_seed_fix_keeps_the_real_defect_and_degrades_on_a_missing_supervisor(stack: Stack, start_backend) -> None:
    broken = start_backend(handler="seed-fix", defects="auth-log-json")
    closed = run(observe_close(broken.ws, bearer(stack.token())))
    assert (closed.code, closed.reason, closed.messages) == (1011, "Internal error", [])

    degraded = start_backend(handler="seed-fix", failpoints="startup.supervisor=skip")
    welcome, events = run(welcome_and_chat(degraded.ws, stack.token()))
    assert welcome["data"]["event"] == "connection_established" and welcome["data"]["degraded_mode"] is True
    assert [e.get("error_code") for e in events] == ["AGENT_UNAVAILABLE"]


def test_landed_fix_is_immune_to_the_defect_and_falls_back_to_mock_events(stack: Stack, start_backend) -> None:
    backend = start_backend(
        handler="landed-fix", defects="auth-log-json",
        failpoints="startup.supervisor=skip; startup.thread_service=skip",
    )
    welcome, events = run(welcome_and_chat(backend.ws, stack.token()))
    assert welcome["data"]["event"] == "connection_established" and welcome["data"]["degraded_mode"] is True
    assert [e["type"] for e in events] == [
        "agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed",
    ]
    assert events[-1]["agent_name"] == "fallback_agent" and events[-1]["payload"]["thread_id"] is None


def test_recommended_refuses_the_handshake_with_503_while_not_ready(stack: Stack, start_backend) -> None:
    backend = start_backend(handler="recommended", startup_mode="background", failpoints="startup.finalize=hang",
                            retry_after_s="7")
    status, headers = run(handshake_status(backend.ws, bearer(stack.token())))
    assert status == 503
    assert headers["retry-after"] == "7"


def test_recommended_refuses_a_missing_or_bad_token_with_403(stack: Stack, start_backend) -> None:
    backend = start_backend(handler="recommended", defects="auth-log-json")
    assert run(handshake_status(backend.ws))[0] == 403
    assert run(handshake_status(backend.ws, bearer(mint_token("not-the-" + stack.secret))))[0] == 403

    async def session() -> tuple[dict, dict]:  # immune to the log defect
        async with connect(backend.ws, additional_headers=bearer(stack.token()), open_timeout=10) as ws:
            welcome = await recv_json(ws)
            await ws.send(json.dumps({"type": "ping"}))
            return welcome, await recv_json(ws)

    welcome, pong = run(session())
    assert welcome["data"]["event"] == "connection_established"
    assert pong["type"] == "pong"


def test_recommended_closes_1013_when_redis_hangs_after_accept(stack: Stack, start_backend) -> None:
    own_redis = start_redis(stack.group)
    try:
        backend = start_backend(handler="recommended", redis_url=own_redis.url, dependency_timeout_s="1")

        async def session() -> Closed:
            async with connect(backend.ws, additional_headers=bearer(stack.token()), open_timeout=10) as ws:
                await recv_json(ws)
                os.kill(own_redis.process.pid, signal.SIGSTOP)  # Redis hangs: accepts, never answers
                await ws.send(json.dumps({"type": "user_message", "data": {"content": "hi"}}))
                return await drain_until_closed(ws, time.monotonic())

        closed = run(session())
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
        own_redis.process.stop()
    assert (closed.code, closed.reason) == (1013, "redis unavailable")


# --- serving ---------------------------------------------------------------------------------------------


def test_gunicorn_binds_first_but_the_handshake_waits_for_startup(stack: Stack, start_backend) -> None:
    backend = start_backend(wait=False, server="gunicorn", failpoints="startup.database=delay(2s)")
    wait_for_tcp("127.0.0.1", backend.port, timeout=30, process=backend.process)
    tcp_open = time.monotonic()

    async def session() -> dict:
        async with connect(backend.ws, additional_headers=bearer(stack.token()), open_timeout=20) as ws:
            return await recv_json(ws)

    welcome = run(session())
    assert welcome["data"]["event"] == "connection_established"
    assert time.monotonic() - tcp_open >= 1.0
    assert "startup complete" in backend.process.log_tail(200)
    assert backend.stop() == 0


def test_uvicorn_listens_only_after_blocking_startup(stack: Stack, start_backend) -> None:
    backend = start_backend(wait=False, failpoints="startup.cache=delay(1s)")
    wait_for_tcp("127.0.0.1", backend.port, timeout=30, process=backend.process)
    ready = httpx.get(f"{backend.http}/health/ready", timeout=5)
    assert ready.status_code == 200
    assert {p["name"]: p["duration_ms"] for p in ready.json()["phases"]}["CACHE"] >= 1000


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_blocking_startup_failure_exits_3_without_serving(stack: Stack, start_backend, server: str) -> None:
    backend = start_backend(wait=False, server=server,
                            failpoints="startup.database=raise(ConnectionRefusedError: postgres down)")
    wait_until(lambda: backend.process.poll() is not None, 60, what="the backend to exit")
    assert backend.process.returncode == 3
    log = backend.process.log_tail(200)
    assert "startup phase DATABASE failed" in log and "ConnectionRefusedError: postgres down" in log
    assert not port_is_open("127.0.0.1", backend.port)


@pytest.mark.parametrize(("server", "listening"), [("uvicorn", False), ("gunicorn", True)])
def test_sigterm_during_a_hung_blocking_startup_exits_0(
    stack: Stack, start_backend, server: str, listening: bool
) -> None:
    backend = start_backend(wait=False, server=server, failpoints="startup.finalize=hang")
    wait_until(lambda: "failpoint startup.finalize: hang" in backend.process.log_tail(100), 30,
               process=backend.process, what="the startup to hang")
    assert port_is_open("127.0.0.1", backend.port) is listening  # gunicorn binds first
    assert backend.stop() == 0  # exited on SIGTERM by itself: a SIGKILL would show as -9


def test_background_startup_failure_shows_in_readiness(stack: Stack, start_backend) -> None:
    backend = start_backend(handler="recommended", startup_mode="background",
                            failpoints="startup.cache=raise(TimeoutError: redis timed out)")
    wait_until(lambda: httpx.get(f"{backend.http}/health/ready", timeout=5).json()["status"] == "failed", 10,
               what="the background startup to fail")
    body = httpx.get(f"{backend.http}/health/ready", timeout=5).json()
    assert body["failed_phase"] == "CACHE"
    assert body["error"] == "TimeoutError: redis timed out"
    assert run(handshake_status(backend.ws, bearer(stack.token())))[0] == 503


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"failpoints": "ws.autth=skip"}, "error: REPLICA_FAILPOINTS: ws.autth=skip: unknown failpoint 'ws.autth'"),
        ({"failpoints": "startup.database=delay(5x)"}, "error: REPLICA_FAILPOINTS: startup.database=delay(5x): bad duration '5x'"),
        ({"defects": "auth-log-jsn"}, "error: REPLICA_DEFECTS: unknown defect 'auth-log-jsn'"),
        ({"handler": "nosuch_pkg_q.mod:handler"}, "error: REPLICA_HANDLER: handler 'nosuch_pkg_q.mod:handler': module 'nosuch_pkg_q' not found"),
    ],
)
def test_bad_settings_exit_2_before_binding(stack: Stack, start_backend, settings: dict[str, str], message: str) -> None:
    backend = start_backend(wait=False, **settings)
    wait_until(lambda: backend.process.poll() is not None, 60, what="the backend to exit")
    assert backend.process.returncode == 2
    log = backend.process.log_tail(50)
    assert message in log
    assert "Uvicorn running" not in log and "startup phase" not in log


# --- a user's own handler -------------------------------------------------------------------------------

USER_HANDLER = textwrap.dedent(
    """
    from replica.backend.auth_client import authenticate

    async def handler(websocket):
        auth = await authenticate(websocket)
        if not auth.ok:
            await websocket.close()
            return
        await websocket.accept()
        state = websocket.app.state
        await websocket.send_json({
            "user_id": auth.user_id,
            "environment": state.environment,
            "startup_complete": state.startup_complete,
            "has_supervisor": state.agent_supervisor is not None,
            "has_thread_service": state.thread_service is not None,
        })
        await websocket.close(1000)
    """
)


def test_a_user_handler_sees_app_state_and_the_auth_helper(stack: Stack, start_backend, tmp_path: Path) -> None:
    (tmp_path / "my_routes_q.py").write_text(USER_HANDLER)
    backend = start_backend(handler="my_routes_q:handler", failpoints="startup.thread_service=skip",
                            pythonpath=str(tmp_path))

    async def session() -> Closed:
        return await observe_close(backend.ws, bearer(stack.token("staging-e2e-user-003")))

    closed = run(session())
    assert closed.messages == [{
        "user_id": "staging-e2e-user-003", "environment": "staging", "startup_complete": True,
        "has_supervisor": True, "has_thread_service": False,
    }]
    assert closed.code == 1000
    assert run(handshake_status(backend.ws))[0] == 403
