"""Steps shared by the ``/ws`` handler variants: each variant composes them in its own order.

Everything a handler needs is on ``websocket.app.state`` (settings, defects,
services), exactly as a real route sees it; failpoints come from :mod:`faults`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import asyncpg
import redis.exceptions
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from faults import failpoint
from replica.backend import messages
from replica.backend.auth_client import authenticate, choose_subprotocol, offered_subprotocols
from replica.backend.services import AgentSupervisor, DependencyUnavailable, ThreadService, run_mock_agent
from replica.settings import BackendSettings

logger = logging.getLogger("replica.ws")

STRICT_ENVIRONMENTS = ("staging", "production")
MAX_ROUTING_ERRORS = 5
MAX_THREAD_ID_CHARS = 128
STARTUP_POLL_S = 0.5
REGISTRATION_SLEEP_S = 0.05
AUTH_FAILURE_SLEEP_S = 0.1


@dataclass
class Connection:
    """Per-connection context built from ``app.state``."""

    websocket: WebSocket
    settings: BackendSettings
    defects: frozenset[str]
    server_id: str
    environment: str
    connection_id: str = field(default_factory=lambda: f"conn_{uuid.uuid4().hex[:16]}")
    user_id: str = "anonymous"
    heartbeat: asyncio.Task[None] | None = None
    registered_with: AgentSupervisor | None = None

    @classmethod
    def of(cls, websocket: WebSocket) -> "Connection":
        state = websocket.app.state
        return cls(
            websocket=websocket,
            settings=state.settings,
            defects=state.defects,
            server_id=state.server_id,
            environment=state.environment,
        )

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.websocket.send_text(json.dumps(message))


# --- E2E test detection -------------------------------------------------------------------------

_TRUTHY = ("true", "1", "yes")


def detect_e2e_incident(headers: Mapping[str, str], env: Mapping[str, str] | None = None) -> bool:
    """The incident route's detection (before accept); at that point it only skips the startup wait."""
    env = os.environ if env is None else env
    h = {k.lower(): v.strip().lower() for k, v in headers.items()}
    return any(
        [
            h.get("x-test-type", "") in ("e2e", "integration"),
            h.get("x-test-environment", "") in ("staging", "test"),
            h.get("x-e2e-test", "") in _TRUTHY,
            h.get("x-test-mode", "") in _TRUTHY,
            env.get("E2E_TESTING", "").strip().lower() in _TRUTHY,
        ]
    )


def detect_e2e_seed(headers: Mapping[str, str]) -> bool:
    """The seed's Phase 2 detection: three headers, values case-insensitive."""
    h = {k.lower(): v.strip().lower() for k, v in headers.items()}
    return any(
        [h.get("x-e2e-test", "") == "true", h.get("x-test-type", "") == "e2e", h.get("x-test-mode", "") == "true"]
    )


# --- accept, auth log line ----------------------------------------------------------------------


async def accept(conn: Connection) -> None:
    await failpoint("ws.accept")
    await conn.websocket.accept(subprotocol=choose_subprotocol(offered_subprotocols(conn.websocket)))


async def log_auth_attempt(conn: Connection, *, fixed: bool) -> None:
    """The auth step's debug log line.

    With the ``auth-log-json`` defect on and ``fixed`` false, this is the
    incident's line: an f-string (evaluated even with debug logging off) calling
    ``json.dumps`` on the raw ``WebSocketState`` enum, outside any try block.
    """
    await failpoint("ws.auth_log")
    websocket = conn.websocket
    state: Any = websocket.client_state
    if fixed or "auth-log-json" not in conn.defects:
        state = str(state)
    details = {"connection_id": conn.connection_id, "client_state": state, "path": websocket.url.path}
    logger.debug(f"WebSocket auth attempt: {json.dumps(details)}")


async def authenticate_accepted(conn: Connection, *, log_fixed: bool) -> bool:
    """The incident's auth step, after accept: the debug log line, then the auth
    service; a refused token gets :func:`reject_auth` (False)."""
    await failpoint("ws.auth")
    await log_auth_attempt(conn, fixed=log_fixed)
    auth = await authenticate(conn.websocket)
    if not auth.ok:
        await reject_auth(conn, auth.error)
        return False
    conn.user_id = auth.user_id or "anonymous"
    return True


async def close(conn: Connection, code: int, reason: str) -> None:
    if conn.websocket.application_state == WebSocketState.CONNECTED:
        try:
            await conn.websocket.close(code=code, reason=reason)
        except Exception as exc:  # the client may be gone already
            logger.info("close %s failed: %s", code, exc)


async def send_error_and_close(
    conn: Connection, *, code: int, reason: str, error_code: str, message: str, suggestions: tuple[str, ...] = ()
) -> None:
    try:
        await conn.send(messages.error_message(error_code, message, recovery_suggestions=suggestions))
    except Exception as exc:
        logger.info("could not send %s: %s", error_code, exc)
    await close(conn, code, reason)


async def reject_auth(conn: Connection, error: str | None) -> None:
    """Incident behaviour after accept: error message, 0.1 s, close 1008."""
    logger.warning("WebSocket auth failed: %s", error)
    await conn.send(messages.error_message("AUTH_FAILED", error or "authentication failed"))
    await asyncio.sleep(AUTH_FAILURE_SLEEP_S)
    await close(conn, 1008, "SSOT Auth failed")


# --- startup wait, dependencies -----------------------------------------------------------------


def startup_wait_s(conn: Connection, default: float) -> float:
    return conn.settings.startup_wait_s if conn.settings.startup_wait_s is not None else default


async def wait_for_startup(conn: Connection, timeout_s: float) -> bool:
    """Poll ``app.state.startup_complete`` every 0.5 s for up to ``timeout_s``."""
    state = conn.websocket.app.state
    waited = 0.0
    while not state.startup_complete and waited < timeout_s:
        await asyncio.sleep(STARTUP_POLL_S)
        waited += STARTUP_POLL_S
    return bool(state.startup_complete)


def dependency_of(exc: BaseException) -> str | None:
    """Which dependency an exception says is unavailable, or None for anything else (a bug)."""
    if isinstance(exc, DependencyUnavailable):
        return exc.dependency
    if isinstance(exc, redis.exceptions.RedisError):
        return "redis"
    if isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.InterfaceError)):
        return "database"
    return None


async def register(conn: Connection) -> None:
    """Message handlers registered, 50 ms, connection registered (incident step 7).

    The registry is in memory, as the incident's connection manager was: nothing on
    the way to the welcome touches Redis or Postgres. The supervisor records the
    connection in Redis when it first runs an agent for it.
    """
    await asyncio.sleep(REGISTRATION_SLEEP_S)
    conn.websocket.app.state.connections[conn.connection_id] = conn.user_id


# --- heartbeat, welcome -------------------------------------------------------------------------


async def _heartbeat(conn: Connection) -> None:
    try:
        while True:
            await asyncio.sleep(conn.settings.heartbeat_s)
            await conn.send(messages.server_ping(server_id=conn.server_id))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        logger.info("heartbeat stopped: %s", exc)


def start_heartbeat(conn: Connection) -> None:
    conn.heartbeat = asyncio.create_task(_heartbeat(conn))


async def send_welcome(conn: Connection, *, degraded: bool = False) -> None:
    await failpoint("ws.welcome")
    await conn.send(
        messages.welcome(
            connection_id=conn.connection_id,
            user_id=conn.user_id,
            environment=conn.environment,
            startup_complete=bool(conn.websocket.app.state.startup_complete),
            heartbeat_interval=conn.settings.heartbeat_s,
            max_message_size=messages.MAX_MESSAGE_SIZE,
            server_id=conn.server_id,
            degraded=degraded,
        )
    )
    logger.info("WebSocket %s ready for %s", conn.connection_id, conn.user_id)


async def cleanup(conn: Connection) -> None:
    if conn.heartbeat is not None:
        conn.heartbeat.cancel()
        await asyncio.gather(conn.heartbeat, return_exceptions=True)
    conn.websocket.app.state.connections.pop(conn.connection_id, None)
    if conn.registered_with is not None:
        try:
            await asyncio.wait_for(conn.registered_with.unregister_connection(conn.connection_id), 2)
        except Exception as exc:
            logger.info("unregister %s failed: %s", conn.connection_id, exc)


# --- message routing and loop -------------------------------------------------------------------


class RoutingError(Exception):
    """A client message that could not be handled (counted towards the loop's error budget).

    ``reported``: the client was already sent a specific error message.
    """

    def __init__(self, message: str, *, reported: bool = False) -> None:
        super().__init__(message)
        self.reported = reported


def storable(value: str, field: str) -> str:
    """Text Postgres can store: no NUL and no lone surrogate (JSON can carry both)."""
    if "\x00" in value:
        raise RoutingError(f"{field} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RoutingError(f"{field} is not valid Unicode (a lone surrogate)") from None
    return value


def checked_thread_id(value: Any) -> str:
    """A thread id a client sent: a short, storable, non-empty string."""
    if not isinstance(value, str) or not value or len(value) > MAX_THREAD_ID_CHARS:
        raise RoutingError(f"data.thread_id must be a string of 1 to {MAX_THREAD_ID_CHARS} characters")
    return storable(value, "data.thread_id")


@dataclass
class Router:
    conn: Connection
    supervisor: AgentSupervisor | None
    thread_service: ThreadService | None
    fallback: bool = False  # landed fix: mock agent events when services are missing

    async def route(self, raw: str) -> None:
        conn = self.conn
        try:
            message = json.loads(raw)
        except ValueError:
            raise RoutingError("message is not JSON") from None
        except RecursionError:
            raise RoutingError("message is nested too deeply") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise RoutingError("message has no 'type'")
        kind = message["type"]
        data = message.get("data") if isinstance(message.get("data"), dict) else {}
        correlation_id = message.get("correlation_id")
        if kind == "ping":
            await conn.send(messages.pong(conn.user_id, server_id=conn.server_id, correlation_id=correlation_id))
        elif kind == "heartbeat":
            await conn.send(messages.heartbeat_ack(server_id=conn.server_id, correlation_id=correlation_id))
        elif kind == "pong":
            return  # the client's answer to our heartbeat ping
        elif kind == "user_message":
            await self.user_message(data)
        elif kind == "get_thread":
            await self.get_thread(data, correlation_id)
        else:
            await conn.send(
                messages.error_message("UNKNOWN_MESSAGE_TYPE", f"unknown message type {kind!r}", details={"type": kind})
            )
            raise RoutingError(f"unknown message type {kind!r}", reported=True)

    async def user_message(self, data: Mapping[str, Any]) -> None:
        conn = self.conn
        content = data.get("content")
        if not isinstance(content, str) or not content.strip():
            raise RoutingError("user_message needs data.content")
        storable(content, "data.content")
        thread_id = data.get("thread_id")
        if thread_id is not None:
            thread_id = checked_thread_id(thread_id)
        if self.supervisor is None or self.thread_service is None:
            if self.fallback:
                await run_mock_agent(user_id=conn.user_id, content=content, emit=conn.send)
                return
            await conn.send(messages.error_message("AGENT_UNAVAILABLE", "agent services are not available"))
            return
        if conn.registered_with is None:
            await self.supervisor.register_connection(conn.connection_id, conn.user_id)
            conn.registered_with = self.supervisor
        threads = self.thread_service
        thread_id = await threads.create_thread(conn.user_id, thread_id)
        await threads.add_message(thread_id, "user", content)

        async def store_answer(answer: str) -> None:
            await threads.add_message(thread_id, "assistant", answer)

        await self.supervisor.run_agent(
            user_id=conn.user_id, content=content, thread_id=thread_id, emit=conn.send, before_complete=store_answer
        )

    async def get_thread(self, data: Mapping[str, Any], correlation_id: str | None) -> None:
        conn = self.conn
        thread_id = data.get("thread_id")
        if not isinstance(thread_id, str) or not thread_id:
            raise RoutingError("get_thread needs data.thread_id")
        thread_id = checked_thread_id(thread_id)
        if self.thread_service is None:
            await conn.send(messages.error_message("THREADS_UNAVAILABLE", "thread service is not available"))
            return
        rows = await self.thread_service.get_thread(thread_id, conn.user_id)
        if rows is None:
            await conn.send(
                messages.error_message("THREAD_NOT_FOUND", f"no thread {thread_id!r}", details={"thread_id": thread_id})
            )
            return
        await conn.send(messages.thread_history(thread_id, rows, server_id=conn.server_id, correlation_id=correlation_id))


async def message_loop(
    conn: Connection,
    router: Router,
    *,
    is_fatal: Callable[[Exception], bool] = lambda exc: False,
) -> None:
    """Receive under a timeout equal to the heartbeat interval (a timeout just loops);
    routing errors are reported to the client and counted, five break the loop.
    Exceptions for which ``is_fatal`` is true propagate to the handler."""
    websocket = conn.websocket
    errors = 0
    while True:
        try:
            frame = await asyncio.wait_for(websocket.receive(), timeout=conn.settings.heartbeat_s)
        except asyncio.TimeoutError:
            continue
        if frame["type"] == "websocket.disconnect":
            return
        await failpoint("ws.message_loop")
        try:
            raw = frame.get("text")
            if raw is None:
                raise RoutingError("binary frames are not supported: send JSON text")
            await router.route(raw)
        except WebSocketDisconnect:
            return
        except Exception as exc:
            if is_fatal(exc):
                raise
            errors += 1
            if isinstance(exc, RoutingError):
                logger.warning("message routing error %d/%d: %s", errors, MAX_ROUTING_ERRORS, exc)
                if not exc.reported:
                    await conn.send(messages.error_message("MESSAGE_PROCESSING_ERROR", str(exc)))
            else:  # the detail (a database error, say) is for the log, never for the client
                logger.exception("message processing failed %d/%d", errors, MAX_ROUTING_ERRORS)
                await conn.send(messages.error_message("MESSAGE_PROCESSING_ERROR", "the message could not be processed"))
            if errors >= MAX_ROUTING_ERRORS:
                logger.error("too many routing errors on %s, closing", conn.connection_id)
                await close(conn, 1000, "Too many errors")
                return

