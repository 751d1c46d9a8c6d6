"""What was actually shipped after the incident.

- the auth log line fixed (``str(state)``): immune to ``auth-log-json``;
- degraded mode: a missing ``agent_supervisor``/``thread_service`` no longer closes
  the connection; the client gets a welcome and a fallback handler that emits
  mock agent events (nothing stored);
- startup wait cut to 5 s (still 1011 "Service startup incomplete" when it runs out);
- the catch-all 1011 "Internal error" kept.
"""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from faults import failpoint
from replica.backend.auth_client import authenticate
from replica.backend.handlers import steps

logger = logging.getLogger("replica.ws")

STARTUP_WAIT_S = 5.0


async def handle(websocket: WebSocket) -> None:
    conn = steps.Connection.of(websocket)
    app_state = websocket.app.state
    is_e2e = steps.detect_e2e_incident(websocket.headers)
    try:
        await steps.accept(conn)
        await failpoint("ws.auth")
        await steps.log_auth_attempt(conn, fixed=True)
        auth = await authenticate(websocket)
        if not auth.ok:
            await steps.reject_auth(conn, auth.error)
            return
        conn.user_id = auth.user_id or "anonymous"
        supervisor = getattr(app_state, "agent_supervisor", None)
        thread_service = getattr(app_state, "thread_service", None)

        await failpoint("ws.startup_wait")
        if not app_state.startup_complete and conn.environment in steps.STRICT_ENVIRONMENTS and not is_e2e:
            if not await steps.wait_for_startup(conn, steps.startup_wait_s(conn, STARTUP_WAIT_S)):
                await steps.send_error_and_close(
                    conn, code=1011, reason="Service startup incomplete", error_code="STARTUP_INCOMPLETE",
                    message="Server startup did not complete in time",
                )
                return

        await failpoint("ws.dependency_check")
        degraded = supervisor is None or thread_service is None
        if degraded:
            logger.warning(
                "WebSocket degraded mode: agent_supervisor=%s thread_service=%s; using the fallback handler",
                supervisor is not None, thread_service is not None,
            )
        await steps.register(conn)
        steps.start_heartbeat(conn)
        await steps.send_welcome(conn, degraded=degraded)
        await steps.message_loop(conn, steps.Router(conn, supervisor, thread_service, fallback=True))
    except WebSocketDisconnect:
        logger.info("WebSocket %s disconnected", conn.connection_id)
    except Exception as e:
        logger.error(f"WebSocket error: {e}")
        await steps.close(conn, 1011, "Internal error")
    finally:
        await steps.cleanup(conn)
