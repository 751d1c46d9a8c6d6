"""``python -m replica.drivers.compose.agent``: the lanes container's backend starter.

One long-lived container per compose stack holds a preloaded fork server (the
local driver's, :class:`~replica.drivers.local.forkserver.ForkServer`) and forks a
fresh backend per run, so a lane costs a fork, not a container start. Lane slot
``i`` serves on container port ``BACKEND_PORT_BASE + i``, bound here and handed to
the backend; at most one backend per slot runs at a time.

The API (JSON over HTTP, every request carrying ``Authorization: Bearer
$LANES_TOKEN``, a secret the driver generates per stack):

* ``POST /backends`` ``{"name", "slot", "env"}`` → 201: forks the backend;
* ``GET /backends/{name}`` → ``{"exit_code": int | null}``;
* ``GET /backends/{name}/log?lines=N`` → ``{"log": "..."}``;
* ``DELETE /backends/{name}`` → 204 at once; it stops in the background (SIGTERM,
  then SIGKILL), and a start on its slot waits until it is gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from replica.drivers.local.forkserver import ForkedProcess, ForkServer

logger = logging.getLogger("replica.lanes-agent")

BACKEND_MAIN = "replica.backend.__main__:main"
AGENT_PORT = 8400
BACKEND_PORT_BASE = 9000
MAX_SLOTS = 32
LOG_DIR = Path("/tmp/lanes")
STOP_TIMEOUT_S = 3.0


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    slot: int = Field(ge=0, lt=MAX_SLOTS)
    env: dict[Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]{0,63}$")], Annotated[str, Field(max_length=8192)]] = Field(
        max_length=64
    )


def bind_slot(slot: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("0.0.0.0", BACKEND_PORT_BASE + slot))
    except OSError:
        sock.close()
        raise
    return sock


def agent_app(token: str, slots: int) -> FastAPI:
    forks = ForkServer()
    backends: dict[str, tuple[int, ForkedProcess]] = {}
    stopping: dict[int, asyncio.Future[object]] = {}  # slot → the stop of its last backend
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("LANES_")}

    async def authorized(authorization: Annotated[str, Header()] = "") -> None:
        if not secrets.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong bearer token")

    app = FastAPI(title="staging-replica lanes agent", dependencies=[Depends(authorized)], docs_url=None, redoc_url=None)
    forks.warm()

    def lookup(name: str) -> ForkedProcess:
        if name not in backends:
            raise HTTPException(404, f"no backend {name!r}")
        return backends[name][1]

    @app.get("/health")
    async def health() -> dict[str, int]:
        for slot in [slot for slot, stop in stopping.items() if stop.done()]:
            del stopping[slot]
        return {"backends": len(backends) + len(stopping)}

    @app.post("/backends", status_code=201)
    async def start(request: StartRequest) -> dict[str, str]:
        if request.slot >= slots:
            raise HTTPException(422, f"slot {request.slot} out of range (this agent has {slots})")
        if request.name in backends or any(slot == request.slot for slot, _ in backends.values()):
            raise HTTPException(409, f"backend {request.name!r} or slot {request.slot} is in use")
        if request.slot in stopping:
            try:
                await stopping.pop(request.slot)
            except Exception:  # the slot's last backend is gone either way; say why it did not stop cleanly
                logger.exception("stopping the last backend of slot %s failed", request.slot)
        try:
            listener = bind_slot(request.slot)
        except OSError as exc:
            raise HTTPException(409, f"slot {request.slot} cannot be bound: {exc.strerror}") from exc
        with listener:
            try:
                process = forks.start(
                    BACKEND_MAIN, {**base_env, **request.env}, LOG_DIR / f"{request.name}.log", request.name,
                    listener=listener, fd_env="REPLICA_FD",
                )
            except Exception as exc:
                logger.exception("forking backend %s failed", request.name)
                raise HTTPException(503, f"forking the backend failed: {type(exc).__name__}: {exc}") from exc
        backends[request.name] = (request.slot, process)
        return {"name": request.name}

    @app.get("/backends/{name}")
    async def status(name: str) -> dict[str, int | None]:
        return {"exit_code": lookup(name).poll()}

    @app.get("/backends/{name}/log")
    async def log(name: str, lines: int = Query(40, ge=1, le=1000)) -> dict[str, str]:
        return {"log": lookup(name).log_tail(lines)}

    @app.delete("/backends/{name}", status_code=204)
    async def stop(name: str) -> None:
        process = lookup(name)
        slot, _ = backends.pop(name)

        def kill() -> None:
            process.kill(STOP_TIMEOUT_S)
            process.log_path.unlink(missing_ok=True)

        stopping[slot] = asyncio.ensure_future(asyncio.to_thread(kill))

    return app


def main() -> int:
    token = os.environ.get("LANES_TOKEN", "")
    if len(token) < 32:
        print("error: LANES_TOKEN must be set to a secret of at least 32 characters", file=sys.stderr)
        return 2
    slots = int(os.environ.get("LANES_SLOTS", "4"))
    if not 1 <= slots <= MAX_SLOTS:
        print(f"error: LANES_SLOTS must be between 1 and {MAX_SLOTS}", file=sys.stderr)
        return 2
    import uvicorn

    LOG_DIR.mkdir(mode=0o700, exist_ok=True)
    uvicorn.run(agent_app(token, slots), host="0.0.0.0", port=AGENT_PORT, log_level="warning", lifespan="off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
