"""The chat app: ``/health`` and ``/ws``.

A client connects to ``/ws`` with ``Authorization: Bearer <JWT>`` (HS256, signed
with ``JWT_SECRET``, a ``sub`` claim), gets ``{"type": "welcome", "history": [...]}``,
and then sends ``{"type": "message", "body": "..."}`` (stored in Postgres, fanned
out to every client of the room through Redis) or ``{"type": "ping"}`` (answered
``{"type": "pong"}``). A dependency that fails closes the socket 1013 "try again
later"; anything else unexpected closes it 1011.

Failpoints: ``startup.cache`` (warming the Redis cache of the room's history;
``skip`` leaves it cold) and ``ws.publish`` (every publish to Redis).
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager

import asyncpg
import jwt
import redis.exceptions
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from chat.broadcast import Broadcast
from chat.history import History
from chat.settings import Settings
from faults import failpoint

logger = logging.getLogger("chat")

#: What a failing dependency raises: the client is told to come back later.
DEPENDENCY_ERRORS = (asyncpg.PostgresError, redis.exceptions.RedisError, OSError, asyncio.TimeoutError)
MAX_BODY_CHARS = 4000


@asynccontextmanager
async def lifespan(app: Starlette):
    failpoint.load_env()  # a bad REPLICA_FAILPOINTS stops the app before it serves
    settings = Settings.from_env()
    history = await History.connect(settings.database_url, settings.dependency_timeout_s)
    try:
        broadcast = await Broadcast.connect(settings.broadcast_url, settings.dependency_timeout_s)
        try:
            if not await failpoint("startup.cache"):
                await broadcast.cache_history(settings.room, await history.recent(settings.room, settings.history_limit))
            app.state.settings, app.state.history, app.state.broadcast = settings, history, broadcast
            yield
        finally:
            await broadcast.close()
    finally:
        await history.close()


async def health(request) -> JSONResponse:
    state = request.app.state
    try:
        await asyncio.wait_for(asyncio.gather(state.history.ping(), state.broadcast.ping()), state.settings.dependency_timeout_s)
    except DEPENDENCY_ERRORS as exc:
        return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok", "environment": state.settings.environment})


def authenticate(websocket: WebSocket, secret: str) -> str | None:
    """The token's subject, or None when there is no valid token."""
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub"]})
    except jwt.InvalidTokenError:
        return None
    return str(claims["sub"])


async def chat(websocket: WebSocket) -> None:
    state = websocket.app.state
    user = authenticate(websocket, state.settings.jwt_secret)
    if user is None:
        await websocket.close(code=1008)  # before accept: the handshake is refused with 403
        return
    await websocket.accept()
    try:
        await _session(websocket, state, user)
    except WebSocketDisconnect:
        pass
    except DEPENDENCY_ERRORS as exc:
        logger.warning("chat: dependency failed for %s: %r", user, exc)
        await websocket.close(code=1013, reason="try again later")
    except Exception:
        logger.exception("chat: unexpected error for %s", user)
        await websocket.close(code=1011, reason="internal error")


async def _session(websocket: WebSocket, state, user: str) -> None:
    room = state.settings.room
    async with state.broadcast.subscribe(room) as events:
        recent = await state.broadcast.cached_history(room)
        if recent is None:
            recent = await state.history.recent(room, state.settings.history_limit)
        await state.broadcast.publish(room, {"type": "joined", "author": user})
        await websocket.send_json({"type": "welcome", "room": room, "user": user, "history": recent})
        receiving = asyncio.create_task(_receive(websocket, state, user))
        forwarding = asyncio.create_task(_forward(websocket, events))
        done, pending = await asyncio.wait({receiving, forwarding}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()


async def _receive(websocket: WebSocket, state, user: str) -> None:
    room = state.settings.room
    while True:
        try:
            message = json.loads(await websocket.receive_text())
        except ValueError:
            await websocket.send_json({"type": "error", "detail": "send JSON objects"})
            continue
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "ping":
            await websocket.send_json({"type": "pong"})
        elif kind == "message" and isinstance(message.get("body"), str) and 0 < len(message["body"]) <= MAX_BODY_CHARS:
            saved = await state.history.add(room, user, message["body"])
            await state.broadcast.publish(room, {"type": "message", **saved})
        else:
            await websocket.send_json({"type": "error", "detail": f"expected ping or a message of 1..{MAX_BODY_CHARS} characters"})


async def _forward(websocket: WebSocket, events) -> None:
    async for event in events:
        await websocket.send_json(event)


app = Starlette(routes=[Route("/health", health), WebSocketRoute("/ws", chat)], lifespan=lifespan)
