"""The backend replica's FastAPI application.

``create_app(settings)`` validates the handler name, the failpoint spec and the
defect list first (raising :class:`InvalidSettingError`), so a bad setting stops the
process before it binds its port.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from dataclasses import dataclass
from typing import AsyncIterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute
from starlette.websockets import WebSocket

from faults import FailpointError, FailpointSpec, failpoint
from replica.backend.auth_client import auth_http
from replica.backend import injection
from replica.backend.handlers import Handler, HandlerLoadError, load_handler
from replica.backend.startup import StartupError, close_resources, init_state, run_startup
from replica.settings import BackendSettings

logger = logging.getLogger("replica.backend")


class InvalidSettingError(ValueError):
    """A setting the backend refuses to start with."""


class StartupInterrupted(RuntimeError):
    """A stop was requested (SIGTERM) while a blocking startup was still running."""


def request_stop(app: FastAPI) -> None:
    """Ask a blocking startup in progress to give up (safe to call from a signal handler)."""
    loop = getattr(app.state, "loop", None)
    event = getattr(app.state, "stop_requested", None)
    if loop is not None and event is not None and not loop.is_closed():
        loop.call_soon_threadsafe(event.set)


@dataclass(frozen=True)
class BackendConfig:
    failpoints: FailpointSpec
    defects: frozenset[str]
    handler: Handler


def load_config(settings: BackendSettings) -> BackendConfig:
    injection.use_redis(settings.redis_url)
    try:
        spec = injection.parse_failpoints(settings.failpoints)
    except FailpointError as exc:
        raise InvalidSettingError(f"REPLICA_FAILPOINTS: {exc}") from None
    try:
        defects = injection.parse_defects(settings.defects)
    except ValueError as exc:
        raise InvalidSettingError(f"REPLICA_DEFECTS: {exc}") from None
    try:
        handler = load_handler(settings.handler)
    except HandlerLoadError as exc:
        raise InvalidSettingError(f"REPLICA_HANDLER: {exc}") from None
    return BackendConfig(spec, defects, handler)


def create_app(settings: BackendSettings, config: BackendConfig | None = None) -> FastAPI:
    config = config or load_config(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.server_id = f"backend-{socket.gethostname()}-{os.getpid()}"
        app.state.auth_http = auth_http(settings)
        logger.info(
            "backend %s: environment=%s handler=%s startup=%s failpoints=%r defects=%s",
            app.state.server_id, settings.environment, settings.handler, settings.startup_mode,
            str(config.failpoints), ",".join(sorted(config.defects)) or "-",
        )
        app.state.loop = asyncio.get_running_loop()
        app.state.stop_requested = asyncio.Event()
        task: asyncio.Task[None] | None = None
        failpoint.arm(config.failpoints, declared=injection.POINTS)
        try:
            if settings.startup_mode == "blocking":
                await _blocking_startup(app, settings)
            else:
                task = asyncio.create_task(_background_startup(app, settings))
            yield
        finally:
            failpoint.disarm()
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await app.state.auth_http.aclose()
            await close_resources(app)
            logger.info("backend stopped")

    app = FastAPI(
        title="staging replica backend", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
        routes=list(routes()),
    )
    app.state.settings = settings
    app.state.defects = config.defects
    app.state.handler = config.handler
    app.state.server_id = f"backend-{socket.gethostname()}-{os.getpid()}"
    init_state(app, settings)
    return app


async def health() -> dict[str, str]:
    """Shallow, as in the incident: 200 as soon as the process serves."""
    return {"status": "healthy"}


async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    report = state.startup_report.to_dict()
    report["environment"] = state.settings.environment
    return JSONResponse(report, status_code=200 if state.startup_complete else 503)


async def ws(websocket: WebSocket) -> None:
    await websocket.app.state.handler(websocket)


@functools.cache
def routes() -> tuple[BaseRoute, ...]:
    """The backend's routes, built once per process: they read everything else from
    ``app.state``, so every app (and every fork of a process that built them) shares them."""
    router = APIRouter()
    router.add_api_route("/health", health, methods=["GET"])
    router.add_api_route("/health/ready", ready, methods=["GET"])
    router.add_api_websocket_route("/ws", ws)
    return tuple(router.routes)


async def _blocking_startup(app: FastAPI, settings: BackendSettings) -> None:
    """Await the startup before serving; a stop request abandons it."""
    startup = asyncio.create_task(run_startup(app, settings))
    stop = asyncio.create_task(app.state.stop_requested.wait())
    try:
        await asyncio.wait({startup, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not startup.done():
        startup.cancel()
        await asyncio.gather(startup, return_exceptions=True)
        raise StartupInterrupted("stop requested before startup completed")
    startup.result()


async def _background_startup(app: FastAPI, settings: BackendSettings) -> None:
    try:
        await run_startup(app, settings)
    except StartupError as exc:
        logger.error("background startup failed: %s", exc)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("background startup failed")
