"""A handler of your own, checked by the replica before it is deployed.

    cd examples && replica scenarios run --all --handler my_handler:websocket_endpoint

It is an ordinary FastAPI/Starlette WebSocket endpoint. It sees the replica's
``app.state`` (``startup_complete``, ``agent_supervisor``, ``thread_service``,
``environment``) and authenticates with the replica's auth helper. It refuses the
upgrade while the backend is not ready, so clients retry instead of seeing 1011.
"""

from __future__ import annotations

import json
import uuid

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from replica.backend import messages
from replica.backend.auth_client import authenticate


def _ready(websocket: WebSocket) -> bool:
    state = websocket.app.state
    return bool(getattr(state, "startup_complete", False)) and None not in (
        getattr(state, "agent_supervisor", None),
        getattr(state, "thread_service", None),
    )


async def websocket_endpoint(websocket: WebSocket) -> None:
    if not _ready(websocket):
        await websocket.send_denial_response(
            JSONResponse({"error": "starting up"}, status_code=503, headers={"Retry-After": "5"})
        )
        return
    auth = await authenticate(websocket)
    if not auth.ok:
        await websocket.close()  # before accept: the client sees HTTP 403
        return
    await websocket.accept()
    state = websocket.app.state
    await websocket.send_json(
        messages.welcome(
            connection_id=uuid.uuid4().hex,
            user_id=auth.user_id or "",
            environment=state.settings.environment,
            startup_complete=True,
            heartbeat_interval=state.settings.heartbeat_s,
            server_id=state.server_id,
        )
    )
    try:
        while True:
            message = json.loads(await websocket.receive_text())
            if message.get("type") == "ping":
                await websocket.send_json(messages.pong(auth.user_id or "", server_id=state.server_id))
    except WebSocketDisconnect:
        pass
