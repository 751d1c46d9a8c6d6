"""``python -m replica.drivers.compose.agent``: the lanes container's backend starter.

One long-lived container per compose stack holds a preloaded fork server (the
local driver's, :class:`~replica.drivers.local.forkserver.ForkServer`) and forks a
fresh backend per run, so a lane costs a fork, not a container start. It forks the
stack's auth service too, at start (port ``AUTH_PORT``, ``JWT_SECRET`` from
``LANES_JWT_SECRET``), as the local driver does: a container fewer to start and
stop, and the stack is ready only once the fork server is warm. If the auth service
exits, so does the agent, and the container with it. Lane slot
``i`` serves on container port ``BACKEND_PORT_BASE + i``, bound here and handed to
the backend; at most one backend per slot runs at a time. Those ports are not
published: the host reaches a backend through its lane's proxy, and its health
through this API. It reaches the lanes' proxies through the agent's tunnel port
(:mod:`replica.drivers.compose.tunnel`, ``TUNNEL_PORT``, the same token): one
published port for every slot.

The API (JSON over HTTP, every request but the health relay carrying
``Authorization: Bearer $LANES_TOKEN``, a secret the driver generates per stack):

* ``POST /backends`` ``{"name", "slot", "env"}`` → 201 ``{"name", "pid"}``: forks the backend;
* ``GET /backends/{name}`` → ``{"exit_code": int | null}``;
* ``GET /backends/{name}/log?lines=N`` → ``{"log": "..."}``;
* ``DELETE /backends/{name}`` → 204 at once; it is killed in the background (its
  run is over and its proxies are gone: nothing it could still do is observed),
  and a start on its slot waits until it is gone;
* ``GET /ready`` → 200 once the stack's services answer from inside its network
  (``SELECT 1`` on PostgreSQL, ``PING`` on Redis, the auth service's ``/health``;
  their URLs in ``LANES_POSTGRES_URL`` and ``LANES_REDIS_URL``; its body names the
  tunnel port), else 503 naming the first that does not: the driver's one readiness wait. While
  the fork server preloads, it first waits (up to ``READY_WAIT_S``) for the auth
  service's fork, so a stack that starts is asked a few times, not every few ms;
* ``GET /slots/{slot}/health`` and ``/slots/{slot}/health/ready``, no token: the
  reply of slot ``slot``'s backend to the same path, relayed (502 when it does not
  answer). A backend still starting is waited for, up to ``RELAY_SERVE_WAIT_S``,
  until it says it serves or exits (its readiness socket): the driver's readiness
  poll gets its answer the moment there is one, not at its next try. Only those two
  read-only paths, which the lane's own proxy port serves to anyone on the host anyway.
"""

from __future__ import annotations

if __name__ == "__main__":  # the container's command: the fork server's preload (the longest part of the
    # stack's start) begins on the other core before this module's own imports, not after them
    from replica.drivers.local.forkserver import ForkServer

    ForkServer().warm()

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import signal
import socket
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, AsyncIterator

from pydantic import BaseModel, ConfigDict, Field

from replica.drivers.compose.tunnel import MAX_TUNNELS, TUNNEL_PORT, Tunnel
from replica.drivers.local.forkserver import ForkedProcess, ForkServer
from replica.errors import InfrastructureError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp

logger = logging.getLogger("replica.lanes-agent")

BACKEND_MAIN = "replica.backend.__main__:main"
AUTH_MAIN = "replica.auth.__main__:main"
AGENT_PORT = 8400
AUTH_PORT = 8081
BACKEND_PORT_BASE = 9000
MAX_SLOTS = 64
LOG_DIR = Path("/tmp/lanes")
STOP_TIMEOUT_S = 3.0
#: A relayed health request waits this long for a starting backend to serve, then is
#: cut off after the second: together under the driver's own limit of 0.5 s a request.
RELAY_SERVE_WAIT_S = 0.25
HEALTH_RELAY_TIMEOUT_S = 0.15
HEALTH_PATHS = ("health", "health/ready")
#: Connections the agent serves at once (beyond: 503): the driver keeps a few per lane,
#: and the unauthenticated health relay must not let anyone on the host pile up more.
MAX_CONNECTIONS = 4 * MAX_SLOTS
#: A request body's limit: a start request (64 variables of up to 8 KiB) fits with room.
MAX_BODY_BYTES = 1024 * 1024
#: Each readiness check of a stack service is cut off after this long.
READY_CHECK_TIMEOUT_S = 2.0
#: ``/ready`` waits this long for the auth service's fork before it checks (the driver asks with a 5 s limit).
READY_WAIT_S = 2.0
#: A start waits this long for its slot's port while the last backend's process group lets go of it.
SLOT_FREE_WAIT_S = 3.0


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    slot: int = Field(ge=0, lt=MAX_SLOTS)
    env: dict[Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]{0,63}$")], Annotated[str, Field(max_length=8192)]] = Field(
        max_length=64
    )


def bind_port(port: int) -> socket.socket:
    """A socket bound on ``port`` of the container's interfaces (the stack's network), to hand to a fork."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("0.0.0.0", port))
    except OSError:
        sock.close()
        raise
    return sock


async def bind_when_free(port: int, timeout: float) -> socket.socket:
    """:func:`bind_port` of a slot's port, retried while it is in use, up to ``timeout``: the
    slot's last backend is reaped before the next starts, but the rest of its process group
    may hold the port a moment longer (a gunicorn worker exits just after its master is
    reaped). Raises :class:`~replica.errors.InfrastructureError` if it stays in use."""
    from replica.polling import wait_until_async

    bound: list[socket.socket] = []

    def free() -> bool:
        try:
            bound.append(bind_port(port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return False
        return True

    await wait_until_async(free, timeout, what=f"port {port} to be free", retry_on=())
    return bound[0]


async def stack_problem(urls: dict[str, str]) -> str | None:
    """Which of the stack's services (``postgres``, ``redis``, ``auth`` URLs) does not answer yet, and how; None: all do."""
    import asyncpg
    import redis.asyncio as aioredis

    from replica import http1

    async def postgres(url: str) -> None:
        conn = await asyncpg.connect(url, timeout=READY_CHECK_TIMEOUT_S)
        try:
            await conn.fetchval("SELECT 1", timeout=READY_CHECK_TIMEOUT_S)
        finally:
            await conn.close(timeout=READY_CHECK_TIMEOUT_S)

    async def redis(url: str) -> None:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=READY_CHECK_TIMEOUT_S, socket_timeout=READY_CHECK_TIMEOUT_S)
        try:
            await client.ping()
        finally:
            await client.aclose()

    async def auth(url: str) -> None:
        response = await http1.request("GET", url.rstrip("/") + "/health", timeout=READY_CHECK_TIMEOUT_S)
        if response.status != 200:
            raise http1.HTTPError(f"HTTP {response.status}")

    checks = {"postgres": postgres, "redis": redis, "auth": auth}
    names = [name for name in checks if urls.get(name)]
    outcomes = await asyncio.gather(*(checks[name](urls[name]) for name in names), return_exceptions=True)
    for name, outcome in zip(names, outcomes):
        if isinstance(outcome, BaseException):
            return f"{name}: {type(outcome).__name__}: {outcome}"
    return None


@dataclass
class Backend:
    """A backend this agent forked, on its slot; ``served`` ends once it serves or has exited."""

    slot: int
    process: ForkedProcess
    served: "asyncio.Task[None]"


def agent_app(
    token: str,
    slots: int,
    forks: ForkServer,
    stack: dict[str, str] | None = None,
    jwt_secret: str = "",
    backend_proxy_host: str = "127.0.0.1",
) -> "ASGIApp":
    """The agent's API over ``forks``; with ``jwt_secret``, the auth service is forked once the app runs.
    While it runs, the tunnel to the slots' backend proxies on ``backend_proxy_host`` is served.
    Request bodies are capped at :data:`MAX_BODY_BYTES` (413) before anything reads them."""
    # Imported here: the driver reads this module's constants without loading FastAPI.
    from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Response

    from replica import http1
    from replica.body_limit import BodyLimit

    stack = stack or {}
    backends: dict[str, Backend] = {}
    stopping: dict[int, asyncio.Future[object]] = {}  # slot → the stop of its last backend
    claimed: set[int] = set()  # slots with a backend, or one starting
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("LANES_")}

    async def authorized(authorization: str = Header("")) -> None:
        if not secrets.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong bearer token")

    auth_forked = asyncio.Event()

    async def serve_auth() -> None:
        """Fork the auth service (once the fork server is warm); stop the agent, and so the
        container, when it exits or cannot be started."""
        try:
            with bind_port(AUTH_PORT) as listener:
                auth = await forks.start_async(
                    AUTH_MAIN, {**base_env, "JWT_SECRET": jwt_secret}, LOG_DIR / "auth.log", "auth",
                    listener=listener, fd_env="AUTH_FD",
                )
            auth_forked.set()
            await auth.signalled()  # it never says it serves: this returns when it exits
            logger.error("the auth service exited; its last lines:\n%s", auth.log_tail(20))
        except Exception:
            logger.exception("the auth service could not be started")
        os.kill(os.getpid(), signal.SIGTERM)

    @asynccontextmanager
    async def lifespan(_app: "FastAPI") -> AsyncIterator[None]:
        auth = asyncio.ensure_future(serve_auth()) if jwt_secret else None
        tunnel = Tunnel(token, slots, backend_proxy_host)
        tunnels = await asyncio.start_server(tunnel.serve, sock=bind_port(TUNNEL_PORT), backlog=MAX_TUNNELS)
        try:
            yield
        finally:
            tunnels.close()
            if auth is not None:
                auth.cancel()

    app = FastAPI(title="staging-replica lanes agent", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    api = APIRouter(dependencies=[Depends(authorized)])

    def lookup(name: str) -> Backend:
        if name not in backends:
            raise HTTPException(404, f"no backend {name!r}")
        return backends[name]

    @api.get("/health")
    async def health() -> dict[str, int]:
        for slot in [slot for slot, stop in stopping.items() if stop.done()]:
            del stopping[slot]
        return {"backends": len(backends) + len(stopping)}

    @api.get("/ready")
    async def ready() -> dict[str, str]:
        services = {name: url for name, url in stack.items() if name != "auth"}
        asked = asyncio.ensure_future(stack_problem(services))  # PostgreSQL and Redis meanwhile
        if jwt_secret and not auth_forked.is_set():  # the fork server's preload comes first: wait for it here
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(auth_forked.wait(), READY_WAIT_S)
        problem = await asked
        if problem is None and stack.get("auth"):
            problem = await stack_problem({"auth": stack["auth"]})
        if problem is not None:
            raise HTTPException(503, problem)
        return {"status": "ready", "tunnel": str(TUNNEL_PORT)}

    @api.post("/backends", status_code=201)
    async def start(request: StartRequest) -> dict[str, str | int]:
        if request.slot >= slots:
            raise HTTPException(422, f"slot {request.slot} out of range (this agent has {slots})")
        if request.name in backends or request.slot in claimed:
            raise HTTPException(409, f"backend {request.name!r} or slot {request.slot} is in use")
        claimed.add(request.slot)
        try:
            process = await start_on_slot(request)
        except BaseException:
            claimed.discard(request.slot)
            raise
        backends[request.name] = Backend(request.slot, process, asyncio.ensure_future(process.signalled()))
        return {"name": request.name, "pid": process.pid}

    async def start_on_slot(request: StartRequest) -> ForkedProcess:
        """Fork the backend on its slot's port, once the slot's last backend is gone;
        off the event loop, so the other lanes' requests are served meanwhile."""
        if request.slot in stopping:
            try:
                await stopping.pop(request.slot)
            except Exception:  # the slot's last backend is gone either way; say why it did not stop cleanly
                logger.exception("stopping the last backend of slot %s failed", request.slot)
        try:
            listener = await bind_when_free(BACKEND_PORT_BASE + request.slot, SLOT_FREE_WAIT_S)
        except OSError as exc:
            raise HTTPException(409, f"slot {request.slot} cannot be bound: {exc.strerror}") from exc
        except InfrastructureError as exc:
            raise HTTPException(409, f"slot {request.slot} cannot be bound: {exc.message}") from exc
        with listener:
            try:
                return await forks.start_async(
                    BACKEND_MAIN, {**base_env, **request.env}, LOG_DIR / f"{request.name}.log", request.name,
                    listener=listener, fd_env="REPLICA_FD",
                )
            except Exception as exc:
                logger.exception("forking backend %s failed", request.name)
                raise HTTPException(503, f"forking the backend failed: {type(exc).__name__}: {exc}") from exc

    @api.get("/backends/{name}")
    async def status(name: str) -> dict[str, int | None]:
        return {"exit_code": lookup(name).process.poll()}

    @api.get("/backends/{name}/log")
    async def log(name: str, lines: int = Query(40, ge=1, le=1000)) -> dict[str, str]:
        return {"log": lookup(name).process.log_tail(lines)}

    @api.delete("/backends/{name}", status_code=204)
    async def stop(name: str) -> None:
        backend = lookup(name)
        del backends[name]
        claimed.discard(backend.slot)
        backend.served.cancel()
        await asyncio.wait([backend.served])  # its wait on the readiness socket ends before the kill closes that socket
        stopping[backend.slot] = asyncio.ensure_future(asyncio.to_thread(backend.process.discard, STOP_TIMEOUT_S))

    @app.get("/slots/{slot}/{path:path}")
    async def relay_health(slot: int, path: str) -> Response:
        if path not in HEALTH_PATHS or not 0 <= slot < slots:
            raise HTTPException(404, "only /slots/{slot}/health and /slots/{slot}/health/ready are relayed")
        starting = [backend.served for backend in backends.values() if backend.slot == slot]
        if starting:  # done once it serves or has exited; a stop cancels it
            await asyncio.wait(starting, timeout=RELAY_SERVE_WAIT_S)
        url = f"http://127.0.0.1:{BACKEND_PORT_BASE + slot}/{path}"
        try:
            reply = await http1.request("GET", url, timeout=HEALTH_RELAY_TIMEOUT_S)
        except http1.HTTPError as exc:
            raise HTTPException(502, f"the backend on slot {slot} did not answer: {exc.reason}") from None
        return Response(reply.body, status_code=reply.status, media_type="application/json")

    app.include_router(api)
    return BodyLimit(app, MAX_BODY_BYTES)


def main() -> int:
    token = os.environ.get("LANES_TOKEN", "")
    if len(token) < 32:
        print("error: LANES_TOKEN must be set to a secret of at least 32 characters", file=sys.stderr)
        return 2
    slots = int(os.environ.get("LANES_SLOTS", "4"))
    if not 1 <= slots <= MAX_SLOTS:
        print(f"error: LANES_SLOTS must be between 1 and {MAX_SLOTS}", file=sys.stderr)
        return 2
    forks = ForkServer()
    forks.warm()  # started already when run as the container's command (above): then this only checks it runs
    import uvicorn

    LOG_DIR.mkdir(mode=0o700, exist_ok=True)
    stack = {name: os.environ.get(f"LANES_{name.upper()}_URL", "") for name in ("postgres", "redis")}
    jwt_secret = os.environ.get("LANES_JWT_SECRET", "")
    if jwt_secret:
        stack["auth"] = f"http://127.0.0.1:{AUTH_PORT}"
    app = agent_app(token, slots, forks, stack, jwt_secret, os.environ.get("LANES_BACKEND_PROXY", "127.0.0.1"))
    uvicorn.run(
        app, host="0.0.0.0", port=AGENT_PORT, log_level="warning", lifespan="on", limit_concurrency=MAX_CONNECTIONS
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
