"""Start a user's backend (or an ``http`` dependency of theirs) as a process, and see it serve.

An ``app`` is served like staging serves it: ``uvicorn`` (or ``gunicorn`` with
uvicorn workers) with the harness's Python, on a listening socket the harness
bound on 127.0.0.1 and hands over (``--fd N`` / ``--bind fd://N``), so no other
process can take the port in between. A ``command`` gets the same socket when it
names ``{fd}``; one that only takes ``{port}`` must bind the port itself: the
harness picks a free one and, should another process take it first (the program
exits saying "address already in use"), starts it again on another, at most
:data:`PORT_ATTEMPTS` times.

The process runs in its own process group, in the service's ``path``, with a
small environment (``PATH``, ``HOME``, locale, ``TZ=UTC``) plus its rendered
``env`` and whatever the caller adds (e.g. ``REPLICA_FAILPOINTS``). It is ready
when ``health`` answers 2xx; without ``health``, when it answers any HTTP
request on a handed-over socket (the socket accepts before the app serves), or
accepts TCP connections on a port of its own. A process that exits first is an
outcome, not an exception: its exit status and last log lines.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import httpx

from replica.drivers.base import BackendOutcome
from replica.drivers.local.group import ProcessGroup
from replica.drivers.local.ports import free_port
from replica.drivers.local.process import ManagedProcess
from replica.errors import InfrastructureError
from replica.polling import port_is_open, wait_until_async
from faults.failpoints import ENV_DECLARED, ENV_SPEC
from replica.project import Endpoint, Project, ServiceConfig, render, template_fields, template_values

LOOPBACK = "127.0.0.1"
PORT_ATTEMPTS = 3
LOG_TAIL_LINES = 30
#: How long a lane's backend may take to stop after SIGTERM (a handler hung by a fault never finishes).
LANE_STOP_GRACE_S = 2.0
_ADDRESS_IN_USE = re.compile(r"address already in use|EADDRINUSE|errno 98", re.IGNORECASE)
_IMPORT_FAILURE = re.compile(
    r"Error loading ASGI app.*|Failed to find attribute.*|(ModuleNotFoundError|ImportError): .*"
)


def import_failure(log_tail: str) -> str | None:
    """The line of a server's log that says its app cannot be imported, if there is one."""
    found = _IMPORT_FAILURE.search(log_tail)
    return found.group(0) if found else None


def listen_on_loopback(backlog: int = 128) -> socket.socket:
    """A listening TCP socket on 127.0.0.1, on a port the kernel picks."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, 0))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def takes_socket(service: ServiceConfig) -> bool:
    """True when the harness can hand the service a bound socket (an app, or a command naming {fd})."""
    return service.app is not None or any("fd" in template_fields(t) for t in (*(service.command or ()), *service.env.values()))


def service_argv(service: ServiceConfig, root: Path, *, fd: int | None) -> list[str]:
    """What to run: the server for an ``app`` on socket ``fd``, or the ``command`` as written (unrendered)."""
    if service.command is not None:
        return list(service.command)
    assert fd is not None, "an app is always served on a handed-over socket"
    app_dir = str((root / service.path).resolve())
    if service.server == "gunicorn":
        return [
            sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}", "--chdir", app_dir,
            "--worker-class", "uvicorn.workers.UvicornWorker", "--workers", str(service.workers),
            "--graceful-timeout", "2", service.app or "",
        ]
    return [sys.executable, "-m", "uvicorn", "--fd", str(fd), "--app-dir", app_dir, service.app or ""]


def service_env(service: ServiceConfig, values: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The process environment: a small base, the service's rendered ``env``, then ``extra``."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONUNBUFFERED": "1",
    }
    env.update({key: render(value, values) for key, value in service.env.items()})
    env.update(extra)
    return env


@dataclass(frozen=True)
class StartOutcome:
    """How a service came up: ``ready``, or why not (exit status and last log lines when it exited)."""

    ready: bool
    detail: str = ""
    startup_ms: float | None = None
    exit_status: int | None = None
    log_tail: str = ""
    #: The app could not even be imported: a configuration error, whatever the fault.
    cannot_import: bool = False


class UserService:
    """One started service of the user's: where it listens, its process, its readiness."""

    def __init__(self, *, name: str, key: str, service: ServiceConfig, process: ManagedProcess, port: int, handed_over: bool) -> None:
        self.name, self.key, self.service = name, key, service
        self.process, self.port, self.handed_over = process, port, handed_over
        self.started = time.monotonic()

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log_tail(self, n_lines: int = LOG_TAIL_LINES) -> str:
        return self.process.log_tail(n_lines)

    def stop(self) -> int:
        return self.process.stop()

    async def _answers(self, client: httpx.AsyncClient) -> bool:
        if self.service.health is not None:
            response = await client.get(self.base_url + self.service.health)
            return response.is_success
        if self.handed_over:
            await client.get(self.base_url + "/")
            return True
        return await asyncio.to_thread(port_is_open, LOOPBACK, self.port, 0.25)

    async def wait_ready(self, timeout: float | None = None) -> StartOutcome:
        """Wait until the service serves, exits, or ``timeout`` (its ``startup_timeout``) runs out."""
        timeout = self.service.startup_timeout if timeout is None else timeout
        ready = False

        async def check() -> bool:
            nonlocal ready
            if self.process.poll() is not None:
                return True
            ready = await self._answers(client)
            return ready

        async with httpx.AsyncClient(timeout=httpx.Timeout(1.0), trust_env=False) as client:
            try:
                await wait_until_async(check, timeout, what=f"{self.name} to serve", retry_on=(httpx.HTTPError, OSError))
            except InfrastructureError:
                return StartOutcome(
                    ready=False,
                    detail=f"{self.name} did not serve within {timeout:g}s ({self._readiness()})",
                    log_tail=self.log_tail(),
                )
        if ready and self.process.poll() is None:
            return StartOutcome(ready=True, startup_ms=round((time.monotonic() - self.started) * 1000, 1))
        return self._exited()

    def _readiness(self) -> str:
        if self.service.health is not None:
            return f"GET {self.service.health} never answered 2xx"
        return "it never answered HTTP" if self.handed_over else f"port {self.port} never accepted"

    def _exited(self) -> StartOutcome:
        status = self.process.poll()
        tail = self.log_tail()
        how = f"was killed by signal {-status}" if status is not None and status < 0 else f"exited with status {status}"
        failure = import_failure(tail) if self.service.app is not None else None
        if failure is not None:
            detail = f"{self.key}.app {self.service.app!r} cannot be imported from {self.service.path!r}: {failure}"
        else:
            detail = f"{self.name} {how} at startup; last lines of its log:\n{tail or '(empty)'}"
        return StartOutcome(ready=False, detail=detail, exit_status=status, log_tail=tail, cannot_import=failure is not None)

    def address_in_use(self) -> bool:
        return self.process.poll() is not None and bool(_ADDRESS_IN_USE.search(self.log_tail()))


def start_service(
    group: ProcessGroup,
    service: ServiceConfig,
    root: Path,
    *,
    name: str = "backend",
    key: str = "backend",
    endpoints: Mapping[str, Endpoint],
    secret: str,
    extra_env: Mapping[str, str] | None = None,
    listener: socket.socket | None = None,
    port: int | None = None,
) -> UserService:
    """Start ``service`` (a ``[backend]`` or an http dependency of a project rooted at ``root``).

    ``listener``: a bound socket to hand over (a listening one on 127.0.0.1 is made
    when None); ignored by a command that does not name ``{fd}``, which binds
    ``port`` itself (a free one when None). The process is stopped with ``group``;
    call :meth:`UserService.wait_ready` next.
    """
    cwd = (root / service.path).resolve()
    if not takes_socket(service):
        port = port or free_port(LOOPBACK)
        log_path = group.path("logs", f"{name}-{port}.log")
        values = template_values(endpoints, port=port, secret=secret)
        argv = [render(a, values) for a in service_argv(service, root, fd=None)]
        process = group.start(argv, name=name, env=service_env(service, values, extra_env or {}), cwd=cwd, log_path=log_path)
        return UserService(name=name, key=key, service=service, process=process, port=port, handed_over=False)
    sock = listener or listen_on_loopback()
    try:
        fd = sock.fileno()
        port = sock.getsockname()[1]
        log_path = group.path("logs", f"{name}-{port}.log")
        values = template_values(endpoints, port=port, secret=secret, fd=fd)
        argv = [render(a, values) for a in service_argv(service, root, fd=fd)]
        env = service_env(service, values, extra_env or {})
        process = group.start(argv, name=name, env=env, cwd=cwd, log_path=log_path, pass_fds=(fd,))
    finally:
        if listener is None:
            sock.close()  # the child holds its own copy
    return UserService(name=name, key=key, service=service, process=process, port=port, handed_over=True)


async def start_ready(
    group: ProcessGroup, service: ServiceConfig, root: Path, **options: Any
) -> tuple[UserService, StartOutcome]:
    """:func:`start_service` (same ``options``), then wait until it serves; a program that lost
    its port to another process is started again on another port (at most :data:`PORT_ATTEMPTS` times)."""
    for _ in range(PORT_ATTEMPTS):
        started = start_service(group, service, root, **options)
        outcome = await started.wait_ready()
        if outcome.ready or started.handed_over or not started.address_in_use():
            return started, outcome
        started.stop()
    return started, outcome


class ProjectBackend:
    """A lane's backend of a project: a :class:`UserService` as the lane lifecycle sees it."""

    def __init__(self, service: UserService) -> None:
        self.service = service
        self.name = service.name

    async def exit_code(self) -> int | None:
        return self.service.process.poll()

    async def log(self, n_lines: int = 40) -> str:
        return self.service.log_tail(n_lines)

    async def stop(self) -> None:
        await asyncio.to_thread(self.service.process.stop, LANE_STOP_GRACE_S)

    async def wait_ready(self, timeout: float) -> BackendOutcome:
        """Until it serves (its ``health``, or its port), exits, or ``timeout`` runs out."""
        outcome = await self.service.wait_ready(timeout)
        return BackendOutcome(
            ready=outcome.ready,
            detail=outcome.detail,
            startup_ms=outcome.startup_ms,
            refused_settings=outcome.cannot_import,
            exit_status=outcome.exit_status,
        )


def failpoint_env(project: Project, spec: str) -> dict[str, str]:
    """The backend's failpoint settings: ``spec`` (checked against the declared points) and those points."""
    return {ENV_SPEC: project.check_failpoints(spec), ENV_DECLARED: ",".join(project.backend.failpoints)}


async def start_backend(
    group: ProcessGroup,
    project: Project,
    *,
    endpoints: Mapping[str, Endpoint],
    secret: str,
    failpoints: str = "",
    extra_env: Mapping[str, str] | None = None,
    listener: socket.socket | None = None,
) -> tuple[UserService, StartOutcome]:
    """A project's ``[backend]`` with ``failpoints`` armed, started and awaited. A spec naming an
    undeclared point is a :class:`~replica.project.ProjectError` before anything starts."""
    env = {**failpoint_env(project, failpoints), **(extra_env or {})}
    return await start_ready(
        group, project.backend, project.root, endpoints=endpoints, secret=secret, extra_env=env, listener=listener
    )
