"""The ``/ws`` route as it was at incident time (incident.md §1), step by step.

The route takes the landed fix's three changes as switches (:class:`Changes`), so
each change can run alone against a cause: the log line fixed, a fallback handler
when services are missing, a shorter startup wait.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect

from faults import failpoint
from replica.backend.handlers import steps
from replica.backend.handlers.variants import variant

logger = logging.getLogger("replica.ws")

STARTUP_WAIT_S = variant("incident").startup_wait_s


@dataclass(frozen=True)
class Changes:
    """Which of the changes that shipped after the incident the route has."""

    #: ``str(state)`` in the auth step's debug log line: immune to ``auth-log-json``.
    log_line_fixed: bool = False
    #: Missing supervisor/thread_service → a welcome and mock agent events instead of 1011.
    fallback_handler: bool = False
    startup_wait_s: float = STARTUP_WAIT_S


async def route(websocket: WebSocket, changes: Changes) -> None:
    conn = steps.Connection.of(websocket)
    app_state = websocket.app.state
    # 1. E2E detection before accept: at this point it only skips the startup wait.
    is_e2e = steps.detect_e2e_incident(websocket.headers)
    try:
        # 2. accept, choosing jwt-auth when offered
        await steps.accept(conn)
        # 3. authenticate via the auth service (the debug log line is where the defect lives)
        if not await steps.authenticate_accepted(conn, log_fixed=changes.log_line_fixed):
            return
        # 4. services read once
        supervisor = getattr(app_state, "agent_supervisor", None)
        thread_service = getattr(app_state, "thread_service", None)
        # 5. startup wait
        await failpoint("ws.startup_wait")
        if not app_state.startup_complete and conn.environment in steps.STRICT_ENVIRONMENTS and not is_e2e:
            if not await steps.wait_for_startup(conn, steps.startup_wait_s(conn, changes.startup_wait_s)):
                await steps.send_error_and_close(
                    conn, code=1011, reason="Service startup incomplete", error_code="STARTUP_INCOMPLETE",
                    message="Server startup did not complete in time",
                    suggestions=("Wait a moment and reconnect",),
                )
                return
        # 6. dependency check
        await failpoint("ws.dependency_check")
        missing = [n for n, s in (("agent_supervisor", supervisor), ("thread_service", thread_service)) if s is None]
        if missing and changes.fallback_handler:
            logger.warning("WebSocket degraded mode: %s missing; using the fallback handler", ", ".join(missing))
        elif missing:
            logger.error("WebSocket dependencies missing: %s", ", ".join(missing))
            await steps.send_error_and_close(
                conn, code=1011, reason="Service unavailable", error_code="SERVICE_UNAVAILABLE",
                message=f"Required services are not available: {', '.join(missing)}",
            )
            return
        # 7. handlers, 50 ms, connection registered; 8. heartbeat; 9. welcome and loop
        await steps.register(conn)
        steps.start_heartbeat(conn)
        await steps.send_welcome(conn, degraded=bool(missing))
        router = steps.Router(conn, supervisor, thread_service, fallback=changes.fallback_handler)
        await steps.message_loop(conn, router)
    except WebSocketDisconnect:
        logger.info("WebSocket %s disconnected", conn.connection_id)
    except Exception as e:
        # 10. the catch-all (the revision staging ran logs the traceback too)
        logger.error(f"WebSocket error: {e}", exc_info=True)
        await steps.close(conn, 1011, "Internal error")
    finally:
        await steps.cleanup(conn)


async def handle(websocket: WebSocket) -> None:
    await route(websocket, Changes())
