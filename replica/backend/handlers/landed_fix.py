"""What was actually shipped after the incident, and each of its changes alone.

- the auth log line fixed (``str(state)``): immune to ``auth-log-json``;
- degraded mode: a missing ``agent_supervisor``/``thread_service`` no longer closes
  the connection; the client gets a welcome and a fallback handler that emits
  mock agent events (nothing stored);
- startup wait cut to 5 s (still 1011 "Service startup incomplete" when it runs out);
- the catch-all 1011 "Internal error" kept.

Each is a switch of the incident route (:class:`~replica.backend.handlers.incident.Changes`).
"""

from __future__ import annotations

from starlette.websockets import WebSocket

from replica.backend.handlers.incident import Changes, route
from replica.backend.handlers.variants import variant

SHORT_WAIT_S = variant("landed-fix").startup_wait_s


async def handle(websocket: WebSocket) -> None:
    await route(websocket, Changes(log_line_fixed=True, fallback_handler=True, startup_wait_s=SHORT_WAIT_S))


async def log_line_fix(websocket: WebSocket) -> None:
    await route(websocket, Changes(log_line_fixed=True))


async def fallback_handler(websocket: WebSocket) -> None:
    await route(websocket, Changes(fallback_handler=True))


async def startup_wait_5s(websocket: WebSocket) -> None:
    await route(websocket, Changes(startup_wait_s=SHORT_WAIT_S))
