"""The handler the replica recommends.

- no test-header logic anywhere;
- not ready (startup incomplete, a service missing) → refuse the handshake with
  HTTP 503 + ``Retry-After`` (ASGI websocket denial response);
- authenticate before accept: no or invalid token → ``close()`` before accept =
  HTTP 403; auth service unreachable → 503;
- readiness lost after accept (Redis/Postgres errors or timeouts) → close 1013
  with a specific reason;
- the catch-all logs the traceback and closes 1011 "Internal error": real bugs only.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from faults import failpoint
from replica.backend.auth_client import authenticate
from replica.backend.handlers import steps

logger = logging.getLogger("replica.ws")


async def deny(conn: steps.Connection, status: int, reason: str, *, retry_after: bool) -> None:
    headers = {"Retry-After": str(conn.settings.retry_after_s)} if retry_after else {}
    logger.warning("WebSocket handshake refused: HTTP %d %s", status, reason)
    await conn.websocket.send_denial_response(JSONResponse({"error": reason}, status_code=status, headers=headers))


def not_ready_reason(websocket: WebSocket) -> str | None:
    state = websocket.app.state
    if not state.startup_complete:
        return "startup incomplete"
    missing = [n for n in ("agent_supervisor", "thread_service") if getattr(state, n, None) is None]
    return f"{' and '.join(missing)} unavailable" if missing else None


def unavailable_reason(exc: BaseException) -> str | None:
    dependency = steps.dependency_of(exc)
    return None if dependency is None else f"{dependency} unavailable"


async def handle(websocket: WebSocket) -> None:
    conn = steps.Connection.of(websocket)
    app_state = websocket.app.state
    try:
        await failpoint("ws.startup_wait")
        reason = not_ready_reason(websocket)
        if reason is not None:
            await deny(conn, 503, reason, retry_after=True)
            return
        await failpoint("ws.auth")
        await steps.log_auth_attempt(conn, fixed=True)
        auth = await authenticate(websocket)
        if auth.unavailable:
            await deny(conn, 503, "auth service unavailable", retry_after=True)
            return
        if not auth.ok:
            logger.warning("WebSocket auth failed: %s", auth.error)
            await websocket.close()  # before accept: HTTP 403
            return
        conn.user_id = auth.user_id or "anonymous"
        supervisor = app_state.agent_supervisor
        thread_service = app_state.thread_service
        await failpoint("ws.dependency_check")
        await steps.accept(conn)
        await steps.register(conn)
        steps.start_heartbeat(conn)
        await steps.send_welcome(conn)
        router = steps.Router(conn, supervisor, thread_service)
        await steps.message_loop(conn, router, is_fatal=lambda exc: steps.dependency_of(exc) is not None)
    except WebSocketDisconnect:
        logger.info("WebSocket %s disconnected", conn.connection_id)
    except Exception as exc:
        reason = unavailable_reason(exc)
        if websocket.application_state == WebSocketState.CONNECTING:
            logger.exception("WebSocket error before accept")
            status = 503 if reason else 500
            await deny(conn, status, reason or "internal error", retry_after=reason is not None)
        elif reason is not None:
            logger.warning("WebSocket %s: %s (%s), closing 1013", conn.connection_id, reason, exc)
            await steps.close(conn, 1013, reason)
        else:
            logger.exception("WebSocket error: %s", exc)
            await steps.close(conn, 1011, "Internal error")
    finally:
        await steps.cleanup(conn)
