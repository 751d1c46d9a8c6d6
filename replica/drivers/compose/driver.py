"""The ``compose`` driver: the replica as containers (``docker-compose.yml``).

The stack — the fault proxy, PostgreSQL, Redis and the lanes container, the first
three in the lanes container's network namespace (a pod: one network endpoint for
the stack, each costing the engine about 0.1 s to create and as much to remove) — is
brought up with ``docker compose up --detach`` under a project name of its own, so
parallel stacks never collide, and is ready once the fault proxy's API answers and
the lanes agent's ``/ready`` does (it queries PostgreSQL, Redis and the auth service
from inside the stack's network): one wait polled every few milliseconds from the
host, not the compose file's healthchecks (1 s apart, and an ``exec`` each; the
driver turns them off for its stacks). The lanes container holds a preloaded fork
server (:mod:`replica.drivers.compose.agent`) that forks the auth service at start
and a fresh backend per run, so a lane costs a fork, not a container start. Each lane has
four proxies of its own inside the proxy container (``postgres-<id>``,
``redis-<id>``, ``auth-<id>``, ``backend-<id>``) on its slot's fixed ports, like
the local driver's lanes. The runner opens up to twice ``max_parallel_lanes`` lanes
at once (its waiting runs on lanes of their own), so there are as many slots. The
host reaches the stack only through three ports published on 127.0.0.1 (each one
an engine proxy process and NAT rules, set up at ``up`` and torn down at ``close``):
the fault proxy's API, the agent's API and the agent's tunnel, through which a
lane's own loopback port on the host reaches the lane's ``backend`` proxy (faults
apply; :mod:`replica.drivers.compose.tunnel`). A backend's readiness is asked through the agent, which relays its
``/health`` from inside the container and, while it starts, answers the moment it
serves.

A user's project (``replica.toml`` with ``[backend] image`` or ``build``) runs
differently: a container of its image per run (:mod:`replica.drivers.compose.user_image`)
on the stack's network, its dependencies the stack's PostgreSQL and Redis through
the lane's proxies. A container per run costs a container start (about a second)
where the built-in backend costs a fork; it is the user's own image, as deployed.

Everything a driver created carries the label
``com.docker.compose.project=<project>`` and is removed by :meth:`close`: every
container of the project removed at once (``docker rm --force``: the data is
throw-away, nothing waits for a graceful stop), then its network, found by label. The
CLI calls it in ``finally`` (Ctrl-C included); a failed start calls it before
raising. The project name is ``$REPLICA_COMPOSE_PROJECT_PREFIX-<random>``
(prefix default ``staging-replica``), fresh for every driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Callable
from urllib.parse import urlsplit

import httpx

from replica.drivers.compose.user_image import CONTAINER_PORT, ContainerBackend, project_image
from replica.drivers.compose.agent import AGENT_PORT, AUTH_PORT, BACKEND_PORT_BASE, MAX_SLOTS
from replica.drivers.compose.tunnel import LANE_PORT_BASE, TUNNEL_PORT, host_relay
from replica.drivers.compose.docker import (
    compose_file,
    compose_problem,
    StackContainer,
    docker,
    exited_services,
    images_env_file,
    last_line,
    missing_files,
    running_containers,
    sweep_project,
)
from replica import http1
from replica.drivers.lanes import BackendPlace, LaneDriver, RunningBackend, with_hostport
from replica.errors import ConfigError, InfrastructureError
from replica.interrupts import deferred_signals
from replica.polling import wait_until
from replica.project import Endpoint, Project
from replica.tls import client_ssl_context
from replica.user_backend import failpoint_env

Progress = Callable[[str], None]

#: Container ports of the proxy container: slot i's ``backend`` proxy listens on
#: LANE_PORT_BASE + i (reached through the agent's tunnel), its dependency proxies on
#: DEP_PORT_BASE + 10i + {0: postgres, 1: redis, 2: auth}. None is published.
DEP_PORT_BASE = 20000
DEP_OFFSETS = {"postgres": 0, "redis": 1, "auth": 2}
#: The compose service of the lanes' fault proxy (no fixed proxies, unlike the hand-run stack's ``toxiproxy``).
PROXY_SERVICE = "lane-proxy"
#: The driver's stack: the lanes container runs the auth service beside the backends (forked, as the local driver does).
STACK_SERVICES = (PROXY_SERVICE, "postgres", "redis", "lanes")
DEFAULT_UP_TIMEOUT_S = 180.0
DEFAULT_COMPOSE_LANES = 4
#: Slots per lane the runner computes on: it opens as many lanes again for runs that mostly wait.
SLOTS_PER_LANE = 2
#: Terminal control sequences compose puts in its logs even when they go to a pipe.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: How often the readiness wait asks docker whether a stack container has exited.
EXITED_CHECK_S = 1.0
#: Each request of a lane to the lanes agent is cut off after this long.
AGENT_TIMEOUT_S = 10.0


class AgentBackend:
    """A backend the lanes container's agent forked; a :class:`RunningBackend`. Its requests
    to the agent are short HTTP/1.1 exchanges (:mod:`replica.http1`), one connection each."""

    def __init__(self, agent_url: str, auth: dict[str, str], name: str, pid: int | None = None) -> None:
        """``auth``: the header carrying the stack's lanes token."""
        self._url = f"{agent_url}/backends/{name}"
        self._auth = auth
        self.name = name
        #: Its process id in the lanes container, as the backend names itself in its messages.
        self.pid = pid

    @classmethod
    async def start(
        cls, agent_url: str, auth: dict[str, str], name: str, slot: object, env: dict[str, str]
    ) -> "AgentBackend":
        """Ask the agent to fork the backend; :class:`InfrastructureError` when it cannot."""
        body = {"name": name, "slot": slot, "env": env}
        try:
            response = await http1.request("POST", f"{agent_url}/backends", json=body, timeout=AGENT_TIMEOUT_S, headers=auth)
        except http1.HTTPError as exc:
            raise InfrastructureError(f"the lanes container did not answer ({exc})") from exc
        if response.status != 201:
            raise InfrastructureError(f"the lanes container could not start a backend: {response.body.decode(errors='replace')}")
        return cls(agent_url, auth, name, response.json().get("pid"))

    async def exit_code(self) -> int | None:
        response = await http1.request("GET", self._url, timeout=AGENT_TIMEOUT_S, headers=self._auth)
        if response.status != 200:
            raise InfrastructureError(f"the lanes container does not know backend {self.name} ({response.status})")
        return response.json()["exit_code"]

    async def log(self, n_lines: int = 40) -> str:
        try:
            response = await http1.request(
                "GET", f"{self._url}/log", params={"lines": n_lines}, timeout=AGENT_TIMEOUT_S, headers=self._auth
            )
        except http1.HTTPError:
            return ""
        return response.json().get("log", "") if response.status == 200 else ""

    async def stop(self) -> None:
        """It stops in the background; the agent frees its slot's port before the next start there."""
        with contextlib.suppress(http1.HTTPError):
            await http1.request("DELETE", self._url, timeout=30, headers=self._auth)


class ComposeDriver(LaneDriver):
    """Lanes of backends forked in the lanes container of a compose stack this driver started."""

    name = "compose"

    def __init__(
        self,
        name: str,
        *,
        max_parallel_lanes: int = DEFAULT_COMPOSE_LANES,
        progress: Progress = lambda _m: None,
        project: Project | None = None,
    ) -> None:
        """``name``: the compose project's; ``project``: the user's project whose backend the lanes run."""
        if not 1 <= max_parallel_lanes <= MAX_SLOTS // SLOTS_PER_LANE:
            raise ConfigError(
                f"the compose driver runs 1 to {MAX_SLOTS // SLOTS_PER_LANE} lanes at once (got {max_parallel_lanes})"
            )
        refusal = project.compose_refusal() if project is not None else None
        if refusal is not None:
            raise refusal
        self.compose_project = name
        self.project = project
        #: Lane slots: each has fixed ports in the proxy container, reached from the host through the tunnel.
        self.slots = SLOTS_PER_LANE * max_parallel_lanes
        self.image = ""
        self.max_parallel_lanes = max_parallel_lanes
        self.progress = progress
        self.compose_file = compose_file()
        self.images_env = images_env_file()
        self.jwt_secret = secrets.token_hex(32)
        self.lanes_token = secrets.token_hex(32)
        #: The header every request to the lanes agent carries.
        self.agent_auth = {"Authorization": f"Bearer {self.lanes_token}"}
        self.toxiproxy_token = secrets.token_hex(32)  # its API is published on 127.0.0.1: any local user reaches it
        postgres_password = secrets.token_hex(16)
        redis_password = secrets.token_hex(16)
        self._secrets = {
            "JWT_SECRET": self.jwt_secret,
            "POSTGRES_PASSWORD": postgres_password,
            "REDIS_PASSWORD": redis_password,
            "POSTGRES_USER": "replica",
            "POSTGRES_DB": "replica",
            "LANES_TOKEN": self.lanes_token,
            "TOXIPROXY_TOKEN": self.toxiproxy_token,
            "LANES_SLOTS": str(self.slots),
        }
        stack = {
            "postgres": f"postgresql://replica:{postgres_password}@postgres:5432/replica",
            "redis": f"redis://:{redis_password}@redis:6379/0",
            "auth": f"http://lanes:{AUTH_PORT}",
        }
        self.dependency_urls = {n: stack[d.kind] for n, d in project.dependencies.items()} if project else stack
        self._tmp = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self._override = self._tmp / "lanes.yml"
        self._free_slots = list(range(self.slots))
        #: slot → the loopback port of its lane's relay to the tunnel, while the lane is open.
        self._relay_ports: dict[int, int] = {}
        self._slot_freed: tuple[asyncio.AbstractEventLoop, asyncio.Condition] | None = None
        self._containers: dict[str, StackContainer] = {}
        self.toxiproxy_url = ""
        self.agent_url = ""
        self.tunnel = ("127.0.0.1", 0)
        self._closed = False
        self.up_seconds: float | None = None

    # -- start / stop ------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        progress: Progress = lambda _m: None,
        *,
        name: str | None = None,
        project: Project | None = None,
        max_parallel_lanes: int = DEFAULT_COMPOSE_LANES,
        timeout: float = DEFAULT_UP_TIMEOUT_S,
    ) -> "ComposeDriver":
        """Bring the stack up (ready) or raise :class:`InfrastructureError`; after a
        failed or interrupted start nothing of the compose project is left. A user's
        ``project`` gets its image first (built, or checked present). What the
        driver needs (an engine, Compose v2, the images) is checked when ``up``
        fails, to say why, not before every start."""
        problem = missing_files()
        if problem:
            raise InfrastructureError(f"the compose driver cannot run: {problem}")
        if name is None:
            # A fresh name per run: never the name of a stack someone started by hand.
            prefix = os.environ.get("REPLICA_COMPOSE_PROJECT_PREFIX") or "staging-replica"
            name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        driver = cls(name, max_parallel_lanes=max_parallel_lanes, progress=progress, project=project)
        try:
            if project is not None:
                driver.image = project_image(project, driver.images_env, progress)
            driver._up(timeout)
        except BaseException:
            driver.close()
            raise
        return driver

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "REPLICA_COMPOSE_PROJECT": self.compose_project, **self._secrets}

    def _compose_args(self) -> list[str]:
        return [
            "compose",
            "--project-name",
            self.compose_project,
            "--project-directory",
            str(self.compose_file.parent),
            "-f",
            str(self.compose_file),
            "-f",
            str(self._override),
            "--env-file",
            str(self.images_env),
            "--profile",
            "lanes",
        ]

    def _write_override(self) -> None:
        """The user's code (read-only) for their handlers; no healthchecks (the driver waits
        itself); PostgreSQL and Redis in the lanes container's network namespace, as the
        fault proxy is (one network endpoint for the stack; the lanes container starts
        first, and its fork server's preload is the longest part of the stack's start)."""
        in_lanes_namespace = '    network_mode: "service:lanes"\n'
        no_healthcheck = "    healthcheck:\n      disable: true\n"
        services = {
            "lanes": f"{no_healthcheck}    volumes:\n      - {json.dumps(os.getcwd() + ':/user-code:ro')}\n",
            "postgres": in_lanes_namespace + no_healthcheck,
            "redis": in_lanes_namespace + no_healthcheck,
        }
        self._override.write_text(
            f"# lane slots of the compose driver (project {self.compose_project}); it waits for the stack itself\n"
            "services:\n" + "".join(f"  {name}:\n{body}" for name, body in services.items())
        )

    def _up(self, timeout: float) -> None:
        self._write_override()
        self.progress(f"starting the compose stack (project {self.compose_project})")
        started = time.monotonic()
        try:
            out = docker(
                [*self._compose_args(), "up", "--detach", "--no-build", "--pull", "never", *STACK_SERVICES],
                timeout=timeout,
                env=self.env,
            )
        except subprocess.TimeoutExpired:
            raise InfrastructureError(f"`docker compose up` did not finish within {timeout:g} s:\n{self._logs()}") from None
        if out.returncode != 0:
            problem = compose_problem()
            why = f"the compose driver cannot run: {problem}" if problem else last_line(out.stderr)
            raise InfrastructureError(f"`docker compose up` failed ({out.returncode}): {why}\n{self._logs()}")
        self._read_stack()
        self._wait_ready(started + timeout - time.monotonic())
        self.up_seconds = time.monotonic() - started
        self.progress(f"compose stack healthy in {self.up_seconds:.1f} s")

    def _wait_ready(self, timeout: float) -> None:
        """Until the fault proxy's API and the lanes agent's ``/ready`` answer; fails at
        once, with the logs, when a stack container has exited."""
        http = httpx.Client(timeout=5.0, verify=client_ssl_context())
        last_exit_check = [time.monotonic()]
        problem = ["no answer yet"]
        fatal: list[str] = []  # why waiting longer is pointless

        def ready() -> bool:
            if time.monotonic() - last_exit_check[0] >= EXITED_CHECK_S:
                last_exit_check[0] = time.monotonic()
                exited = self._exited()
                if exited:
                    fatal.append(f"the compose stack's {', '.join(exited)} exited:\n{self._logs()}")
                    return True
            http.get(f"{self.toxiproxy_url}/version", timeout=1.0).raise_for_status()
            response = http.get(f"{self.agent_url}/ready", headers=self.agent_auth)
            if response.status_code == 503:
                problem[0] = response.json().get("detail", response.text)
                return False
            if response.status_code == 404:
                fatal.append("the lanes container's image has no readiness endpoint (built before it): run `make images`")
                return True
            response.raise_for_status()
            if response.json().get("tunnel") != str(TUNNEL_PORT):
                fatal.append("the lanes container's image serves no tunnel to the lanes (built before it): run `make images`")
            return True

        try:
            wait_until(ready, max(timeout, 0.0), what="the compose stack to answer", retry_on=(httpx.HTTPError,))
        except InfrastructureError as exc:
            raise InfrastructureError(f"the compose stack did not become ready ({problem[0]}): {exc.message}\n{self._logs()}") from None
        finally:
            http.close()
        if fatal:
            raise InfrastructureError(fatal[0])

    def _exited(self) -> list[str]:
        """The stack's services whose container has exited (asked of the engine: the compose CLI costs more)."""
        return exited_services(self.compose_project)

    def _logs(self, tail: int = 20) -> str:
        try:
            out = docker([*self._compose_args(), "logs", "--no-color", "--tail", str(tail)], timeout=30, env=self.env)
        except subprocess.TimeoutExpired:
            return ""
        return ANSI_ESCAPE.sub("", out.stdout)[-6000:]

    def _read_stack(self) -> None:
        """Where the host reaches the stack (its published ports) and where its containers are on
        its network: the lanes' proxies and backends are given addresses, not names, so no
        connection waits for a name lookup."""
        self._containers = running_containers(self.compose_project)
        absent = [service for service in STACK_SERVICES if service not in self._containers]
        if absent:
            exited = self._exited()
            what = f"{', '.join(exited)} exited" if exited else f"{', '.join(absent)} is not on its network"
            raise InfrastructureError(f"the compose stack's {what}:\n{self._logs()}")
        needed = [(PROXY_SERVICE, 8474), ("lanes", AGENT_PORT), ("lanes", TUNNEL_PORT)]
        missing = [f"{service}:{port}" for service, port in needed if port not in self._containers[service].published]
        if missing:
            raise InfrastructureError(f"the stack does not publish {', '.join(missing)} on 127.0.0.1")
        self.toxiproxy_url = f"http://127.0.0.1:{self._containers[PROXY_SERVICE].published[8474]}"
        self.agent_url = f"http://127.0.0.1:{self._containers['lanes'].published[AGENT_PORT]}"
        self.tunnel = ("127.0.0.1", self._containers["lanes"].published[TUNNEL_PORT])
        self.dependency_urls = {name: self._addressed(url) for name, url in self.dependency_urls.items()}

    def _addressed(self, url: str) -> str:
        """``url``, whose host is a service of the stack, with that container's address instead."""
        parts = urlsplit(url)
        return with_hostport(url, f"{self._containers[parts.hostname or ''].ip}:{parts.port}")

    def close(self) -> None:
        """Remove every container, network and volume of the project (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with deferred_signals() as received:
            try:
                sweep_project(self.compose_project)
            finally:
                shutil.rmtree(self._tmp, ignore_errors=True)
        if received:
            raise KeyboardInterrupt(f"received signal {received[0]} during teardown")

    def __enter__(self) -> "ComposeDriver":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- where a lane's hops are, how its backend starts ------------------------------

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """A free lane slot; waits for one while all are taken (the runner may open more
        lanes than there are slots: those that wait by design)."""
        if self._closed:
            raise InfrastructureError("the compose driver is closed")
        freed = self._slot_condition()
        async with freed:
            await freed.wait_for(lambda: bool(self._free_slots))
            slot = self._free_slots.pop(0)
        try:
            async with host_relay(self.tunnel, self.lanes_token, slot) as port:
                self._relay_ports[slot] = port
                yield slot
        finally:
            self._relay_ports.pop(slot, None)
            async with freed:
                self._free_slots.append(slot)
                freed.notify()

    def _slot_condition(self) -> asyncio.Condition:
        """The condition a freed slot is announced on, for the running event loop (a
        driver outlives the ``asyncio.run`` of one command's runs)."""
        loop = asyncio.get_running_loop()
        if self._slot_freed is None or self._slot_freed[0] is not loop:
            self._slot_freed = (loop, asyncio.Condition())
        return self._slot_freed[1]

    def proxy_listen(self, hop: str, slot: int) -> str:
        if hop == "backend":
            return f"0.0.0.0:{LANE_PORT_BASE + slot}"
        return f"0.0.0.0:{DEP_PORT_BASE + 10 * slot + DEP_OFFSETS[hop]}"

    def proxy_address(self, hop: str, port: int) -> str:
        if hop == "backend":
            return f"127.0.0.1:{self._relay_ports[port - LANE_PORT_BASE]}"
        return f"{self._containers[PROXY_SERVICE].ip}:{port}"

    async def place_backend(self, slot: int) -> BackendPlace:
        if self.project is not None:
            # A container of its own, reached by name on the stack's network; its health port is known once it runs.
            container = f"{self.compose_project}-backend-{uuid.uuid4().hex[:8]}"
            return BackendPlace(upstream=f"{container}:{CONTAINER_PORT}", health_url="", listener=container)
        upstream = f"{self._containers['lanes'].ip}:{BACKEND_PORT_BASE + slot}"
        return BackendPlace(upstream=upstream, health_url=f"{self.agent_url}/slots/{slot}", listener=slot)

    async def start_backend(self, env: dict[str, str], place: BackendPlace, name: str) -> RunningBackend:
        return await AgentBackend.start(self.agent_url, self.agent_auth, name, place.listener, env)

    async def start_project_backend(
        self, project: Project, failpoints: str, endpoints: dict[str, Endpoint], place: BackendPlace, name: str
    ) -> ContainerBackend:
        return await ContainerBackend.start(
            name=place.listener,
            image=self.image,
            network=f"{self.compose_project}_default",
            compose_project=self.compose_project,
            project=project,
            endpoints=endpoints,
            secret=self.jwt_secret,
            extra_env=failpoint_env(project, failpoints),
        )


__all__ = ["ComposeDriver", "AgentBackend"]
