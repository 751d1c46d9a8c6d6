"""The fix the seed's five-whys proposed (its "Phase 2"), applied to the incident route.

- staging degraded mode: ``agent_supervisor`` None in staging → warning, continue
  (production keeps the 1011 "Service unavailable");
- E2E headers (``X-E2E-Test: true``, ``X-Test-Type: e2e``, ``X-Test-Mode: true``)
  in staging → startup treated as complete (no wait);
- ``thread_service`` None still → 1011 "Service unavailable";
- the auth log line is untouched: the ``auth-log-json`` defect still fires.
"""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from faults import failpoint
from replica.backend.handlers import steps

logger = logging.getLogger("replica.ws")

STARTUP_WAIT_S = 30.0


async def handle(websocket: WebSocket) -> None:
    conn = steps.Connection.of(websocket)
    app_state = websocket.app.state
    environment = conn.environment
    try:
        await steps.accept(conn)
        if not await steps.authenticate_accepted(conn, log_fixed=False):
            return
        supervisor = getattr(app_state, "agent_supervisor", None)
        thread_service = getattr(app_state, "thread_service", None)

        await failpoint("ws.dependency_check")
        if supervisor is None and environment == "staging":
            logger.warning("STAGING: agent_supervisor missing - enabling degraded mode")
        elif supervisor is None and environment == "production":
            await steps.send_error_and_close(
                conn, code=1011, reason="Service unavailable", error_code="SERVICE_UNAVAILABLE",
                message="Required services are not available: agent_supervisor",
            )
            return

        startup_complete = bool(app_state.startup_complete)
        if steps.detect_e2e_seed(websocket.headers) and environment == "staging":
            logger.info("E2E testing detected - bypassing service requirements")
            startup_complete = True

        await failpoint("ws.startup_wait")
        if not startup_complete and environment in steps.STRICT_ENVIRONMENTS:
            if not await steps.wait_for_startup(conn, steps.startup_wait_s(conn, STARTUP_WAIT_S)):
                await steps.send_error_and_close(
                    conn, code=1011, reason="Service startup incomplete", error_code="STARTUP_INCOMPLETE",
                    message="Server startup did not complete in time",
                )
                return

        if thread_service is None:
            await steps.send_error_and_close(
                conn, code=1011, reason="Service unavailable", error_code="SERVICE_UNAVAILABLE",
                message="Required services are not available: thread_service",
            )
            return

        await steps.register(conn)
        steps.start_heartbeat(conn)
        await steps.send_welcome(conn, degraded=supervisor is None)
        await steps.message_loop(conn, steps.Router(conn, supervisor, thread_service))
    except WebSocketDisconnect:
        logger.info("WebSocket %s disconnected", conn.connection_id)
    except Exception as e:
        logger.error(f"WebSocket error: {e}", exc_info=True)
        await steps.close(conn, 1011, "Internal error")
    finally:
        await steps.cleanup(conn)
