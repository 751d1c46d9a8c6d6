"""The ``/ws`` route as it was at incident time (incident.md §1), step by step."""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from faults import failpoint
from replica.backend.auth_client import authenticate
from replica.backend.handlers import steps

logger = logging.getLogger("replica.ws")

STARTUP_WAIT_S = 30.0


async def handle(websocket: WebSocket) -> None:
    conn = steps.Connection.of(websocket)
    app_state = websocket.app.state
    # 1. E2E detection before accept: at this point it only skips the startup wait.
    is_e2e = steps.detect_e2e_incident(websocket.headers)
    try:
        # 2. accept, choosing jwt-auth when offered
        await steps.accept(conn)
        # 3. authenticate via the auth service (the debug log line is where the defect lives)
        await failpoint("ws.auth")
        await steps.log_auth_attempt(conn, fixed=False)
        auth = await authenticate(websocket)
        if not auth.ok:
            await steps.reject_auth(conn, auth.error)
            return
        conn.user_id = auth.user_id or "anonymous"
        # 4. services read once
        supervisor = getattr(app_state, "agent_supervisor", None)
        thread_service = getattr(app_state, "thread_service", None)
        # 5. startup wait
        await failpoint("ws.startup_wait")
        if not app_state.startup_complete and conn.environment in steps.STRICT_ENVIRONMENTS and not is_e2e:
            if not await steps.wait_for_startup(conn, steps.startup_wait_s(conn, STARTUP_WAIT_S)):
                await steps.send_error_and_close(
                    conn, code=1011, reason="Service startup incomplete", error_code="STARTUP_INCOMPLETE",
                    message="Server startup did not complete in time",
                    suggestions=("Wait a moment and reconnect",),
                )
                return
        # 6. dependency check
        await failpoint("ws.dependency_check")
        if supervisor is None or thread_service is None:
            missing = [n for n, s in (("agent_supervisor", supervisor), ("thread_service", thread_service)) if s is None]
            logger.error("WebSocket dependencies missing: %s", ", ".join(missing))
            await steps.send_error_and_close(
                conn, code=1011, reason="Service unavailable", error_code="SERVICE_UNAVAILABLE",
                message=f"Required services are not available: {', '.join(missing)}",
            )
            return
        # 7. handlers, 50 ms, connection registered; 8. heartbeat; 9. welcome and loop
        await steps.register(conn)
        steps.start_heartbeat(conn)
        await steps.send_welcome(conn)
        await steps.message_loop(conn, steps.Router(conn, supervisor, thread_service))
    except WebSocketDisconnect:
        logger.info("WebSocket %s disconnected", conn.connection_id)
    except Exception as e:
        # 10. the catch-all
        logger.error(f"WebSocket error: {e}")
        await steps.close(conn, 1011, "Internal error")
    finally:
        await steps.cleanup(conn)

