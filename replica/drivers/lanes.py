"""The lane lifecycle, once for every driver that starts backends itself.

request → proxies → backend start → readiness → the lane (probed by the runner) →
teardown. A driver (a :class:`LaneDriver`) supplies only where a lane's hops are
(:meth:`~LaneDriver.proxy_listen`, :meth:`~LaneDriver.proxy_address`,
:meth:`~LaneDriver.place_backend`) and how a backend starts
(:meth:`~LaneDriver.start_backend`, returning a :class:`RunningBackend`).

The backend listens on a place the harness chose and holds: a socket bound on
127.0.0.1 port 0 and handed to the child (local), or a port inside a container no
one else uses (compose). Nothing is picked "free" and hoped to stay so.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from abc import ABC, abstractmethod
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping, Protocol
from urllib.parse import urlsplit, urlunsplit

from faults.toxiproxy.client import AsyncToxiproxyAPI, ToxiproxyError
from replica import http1
from replica.auth.tokens import mint_token, mint_with_claims
from replica.drivers.base import BackendOutcome, LaneRequest
from replica.drivers.fault_api import LaneFaultAPI
from replica.errors import USAGE_ERROR, ConfigError, InfrastructureError
from replica.polling import wait_until_async
from replica.scenarios import HopDown, ToxicSpec
from replica.tls import tls_for

if TYPE_CHECKING:
    from replica.project import Endpoint, Project
    from replica.user_backend import ProjectBackend

#: The dependencies every lane puts a proxy in front of; ``backend`` is the fourth hop.
DEPENDENCIES = ("postgres", "redis", "auth")
HOPS = (*DEPENDENCIES, "backend")
#: Readiness polls back off from 5 ms to this: a fresh backend answers within ~0.1-0.5 s.
READY_POLL_MAX_S = 0.02
#: One readiness request's limit (a backend that accepted but does not answer is tried again).
HEALTH_TIMEOUT_S = 0.5


# ----------------------------------------------------------------------------- faults


@dataclass
class LaneFaults:
    """A lane's proxies (hop → proxy name) and the faults on them, through the fault proxy's API."""

    client: AsyncToxiproxyAPI
    proxies: dict[str, str]
    #: (proxy, toxic name) of the toxics to remove once the backend is ready.
    until_ready: list[tuple[str, str]] = field(default_factory=list)

    async def add_toxic(self, toxic: ToxicSpec) -> None:
        proxy = self.proxies[toxic.hop]
        added = await self.client.add_toxic(
            proxy,
            toxic.type,
            stream=toxic.stream,
            toxicity=toxic.toxicity,
            attributes=dict(toxic.attributes),
        )
        if toxic.until == "ready":
            self.until_ready.append((proxy, added.name))

    async def remove_startup_toxics(self) -> None:
        """Remove the toxics that last only while the backend starts (``until: ready``)."""
        while self.until_ready:
            await self.client.remove_toxic(*self.until_ready.pop())

    async def set_down(self, down: HopDown) -> None:
        await self.client.update_proxy(self.proxies[down.hop], enabled=False)

    async def apply(self, request: LaneRequest, when: str) -> None:
        """Add the toxics and take down the hops whose ``when`` is ``when``, in order."""
        for toxic in request.toxics:
            if toxic.when == when:
                await self.add_toxic(toxic)
        for hop in request.down:
            if hop.when == when:
                await self.set_down(hop)


async def delete_proxies(client: AsyncToxiproxyAPI, names: list[str]) -> None:
    """Delete proxies, all at once, ignoring ones already gone. Deleting a proxy closes
    its connections, which frees a backend blocked on a hung dependency."""

    async def delete(name: str) -> None:
        try:
            await client.delete_proxy(name)
        except ToxiproxyError:  # NotFound included: already gone
            pass

    await asyncio.gather(*(delete(name) for name in names))


# ----------------------------------------------------------------------------- backend


class RunningBackend(Protocol):
    """A started backend, wherever it runs."""

    name: str

    async def exit_code(self) -> int | None:
        """Its exit status once it has exited, else None."""
        ...

    async def log(self, n_lines: int = 40) -> str:
        """The last lines of its output."""
        ...

    async def stop(self) -> None:
        """Stop it (gracefully, then for sure); may return before it is gone."""
        ...


@dataclass
class BackendPlace:
    """Where a lane's backend listens, as the harness holds it until the backend starts."""

    #: ``host:port`` the fault proxy forwards the lane's ``backend`` hop to.
    upstream: str
    #: Base URL the readiness wait polls (never through a proxy that gets toxics).
    health_url: str
    #: What the backend is handed to listen on (a bound socket, a slot number, ...).
    listener: Any = None

    def release(self) -> None:
        """Drop the harness's hold (its copy of a handed-over socket)."""
        close = getattr(self.listener, "close", None)
        if close is not None:
            close()


def with_hostport(url: str, hostport: str) -> str:
    """``url`` pointed at ``hostport``, credentials and path kept."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=userinfo + hostport))


def hostport(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def plain_postgres(url: str) -> str:
    """``url`` with ``sslmode=disable``: the stack's PostgreSQL serves no TLS, and asyncpg's
    default (``prefer``) would build a TLS context and ask for TLS first on every
    connection, a round trip through the lane's proxy for a refusal."""
    parts = urlsplit(url)
    if "sslmode=" in parts.query:
        return url
    query = "&".join(q for q in (parts.query, "sslmode=disable") if q)
    return urlunsplit(parts._replace(query=query))


def backend_environment(request: LaneRequest, dependency_urls: Mapping[str, str]) -> dict[str, str]:
    """The built-in backend's environment for a lane: its spec and where its
    dependencies answer (through the lane's proxies). Where it listens is the
    starter's to add (``REPLICA_FD``, or host and port)."""
    from replica.settings import BackendSettings

    spec = request.backend
    values: dict[str, object] = {
        "environment": spec.environment,
        "database_url": plain_postgres(dependency_urls["postgres"]),
        "redis_url": dependency_urls["redis"],
        "auth_url": dependency_urls["auth"],
        "handler": spec.handler,
        "server": spec.server,
        "startup_mode": spec.startup_mode,
        "failpoints": spec.failpoints,
        "defects": ",".join(spec.defects),
        "startup_wait_s": spec.startup_wait_s,
        "ws_ping_interval_s": spec.ws_ping_interval_s,
        "ws_ping_timeout_s": spec.ws_ping_timeout_s,
    }
    env = BackendSettings.model_validate({k: v for k, v in values.items() if v is not None}).to_env()
    for key in ("REPLICA_HOST", "REPLICA_PORT"):
        del env[key]
    return env


# ----------------------------------------------------------------------------- readiness


class NotReady(Exception):
    """The backend answered, but not (yet) that it is ready."""


def phase_finished(ready: http1.Response, phase: str) -> bool:
    """Whether ``/health/ready`` reports ``phase`` as done (ok, failed or cancelled)."""
    try:
        phases = {p["name"]: p["status"] for p in ready.json()["phases"]}
    except (ValueError, KeyError, TypeError):
        return False
    return phases.get(phase) in ("ok", "failed", "cancelled")


async def wait_ready(backend: RunningBackend, health_url: str, timeout: float, probe_after: str) -> BackendOutcome:
    """Until the backend answers ``/health`` (and, unless ``probe_after`` is ``listening``,
    ``/health/ready`` shows that startup phase finished), exits, or ``timeout`` runs out.

    A backend that signals when it serves or exits (``signalled()``: the local driver's
    forks) is checked the moment it does, not at the next poll."""
    path = "/health" if probe_after == "listening" else "/health/ready"
    started = time.monotonic()
    exited: list[int] = []
    signalled = getattr(backend, "signalled", None)
    pid = getattr(backend, "pid", None)  # where the driver knows it

    tls = tls_for(health_url)

    async def has_exited() -> bool:
        code = await backend.exit_code()
        if code is not None:
            exited.append(code)
        return code is not None

    async def check() -> bool:
        """Asked first: the health path (a backend that answers it is alive); only when
        it does not answer so: whether the backend exited (for the compose driver, each
        question is a request to the lanes agent)."""
        try:
            response = await http1.request("GET", health_url + path, timeout=HEALTH_TIMEOUT_S, tls=tls)
        except http1.HTTPError:
            if await has_exited():
                return True
            raise
        if response.status == 200 or (path != "/health" and phase_finished(response, probe_after)):
            return True
        if await has_exited():
            return True
        raise NotReady(f"HTTP {response.status}")

    wake = asyncio.ensure_future(signalled()) if signalled is not None else None
    try:
        await wait_until_async(
            check, timeout, what=f"the backend to answer {path}", retry_on=(http1.HTTPError, NotReady),
            poll_max_s=READY_POLL_MAX_S, wake=wake,
        )
    except InfrastructureError as exc:
        return BackendOutcome(False, exc.message, pid=pid)
    finally:
        if wake is not None:
            wake.cancel()
    if exited:
        tail = [line for line in (await backend.log(15)).splitlines() if line.strip()]
        detail = f"backend exited with code {exited[0]}: {tail[-1] if tail else 'no output'}"
        return BackendOutcome(False, detail, refused_settings=exited[0] == USAGE_ERROR, exit_status=exited[0], pid=pid)
    return BackendOutcome(True, "", round((time.monotonic() - started) * 1000, 1), pid=pid)


# ----------------------------------------------------------------------------- the lane


@dataclass
class OpenLane:
    """A lane this process opened: the backend, its proxies, how it came up."""

    base_url: str
    faults: LaneFaults
    outcome: BackendOutcome = field(default_factory=lambda: BackendOutcome(ready=False, detail="not started"))
    backend: RunningBackend | None = None

    async def backend_log(self, n_lines: int = 40) -> str:
        return await self.backend.log(n_lines) if self.backend else ""


class LaneDriver(ABC):
    """A driver that opens lanes by starting backends itself; subclasses say where
    hops are and how a backend starts."""

    name: str
    max_parallel_lanes: int
    #: The fault proxy's API, reachable from this process, and its bearer token.
    toxiproxy_url: str
    toxiproxy_token: str = ""
    #: The secret the stack's auth service validates tokens with.
    jwt_secret: str
    #: hop → URL of each dependency as the fault proxy reaches it (credentials included).
    dependency_urls: dict[str, str]
    #: The user's project whose backend the lanes run; None: the built-in backend.
    project: "Project | None" = None

    def mint_token(self, sub: str = "staging-e2e-user-001", claims: Mapping[str, Any] | None = None) -> str:
        if claims is not None:
            return mint_with_claims(self.jwt_secret, claims)
        return mint_token(self.jwt_secret, sub=sub)

    @abstractmethod
    def proxy_listen(self, hop: str, slot: int) -> str:
        """Where, inside the fault proxy, the lane's proxy for ``hop`` listens."""

    @abstractmethod
    def proxy_address(self, hop: str, port: int) -> str:
        """``host:port`` at which a lane proxy listening on ``port`` is reached by its
        client: the backend for a dependency, this process for ``backend``."""

    @abstractmethod
    async def place_backend(self, slot: int) -> BackendPlace:
        """Reserve where the lane's backend will listen."""

    @abstractmethod
    async def start_backend(self, env: dict[str, str], place: BackendPlace, name: str) -> RunningBackend:
        """Start a backend with ``env`` on ``place``; raise :class:`InfrastructureError`
        when it cannot even be started (a backend that exits is an outcome, not an error)."""

    async def start_project_backend(
        self, project: "Project", failpoints: str, endpoints: dict[str, "Endpoint"], place: BackendPlace, name: str
    ) -> "ProjectBackend":
        """Start a project's backend with ``failpoints`` armed, its dependencies at ``endpoints``."""
        raise ConfigError(f"the {self.name} driver does not run a project's backend yet: use --driver local")

    @property
    def hops(self) -> tuple[str, ...]:
        """This stack's hops: the built-in backend's, or the project's dependencies and ``backend``."""
        return self.project.hops if self.project is not None else HOPS

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """A lane slot, for drivers whose lanes use fixed places (default: no limit)."""
        yield 0

    async def _start(self, request: LaneRequest, urls: dict[str, str], place: BackendPlace, name: str) -> RunningBackend:
        if self.project is None:
            return await self.start_backend(backend_environment(request, urls), place, name)
        endpoints = {hop: endpoint_of(url) for hop, url in urls.items()}
        return await self.start_project_backend(self.project, request.backend.failpoints, endpoints, place, name)

    async def _ready(self, backend: RunningBackend, place: BackendPlace, request: LaneRequest) -> BackendOutcome:
        if self.project is None:
            return await wait_ready(backend, place.health_url, request.ready_timeout_s, request.probe_after)
        return await backend.wait_ready(request.ready_timeout_s)  # type: ignore[attr-defined]

    @asynccontextmanager
    async def lane(self, request: LaneRequest) -> AsyncIterator[OpenLane]:
        lane_id = uuid.uuid4().hex[:8]
        hops = self.hops
        dependencies = hops[:-1]
        names = {hop: f"{hop}-{lane_id}" for hop in hops}
        backend: RunningBackend | None = None
        async with self.slot() as slot, LaneFaultAPI(self.toxiproxy_url, timeout=5.0, token=self.toxiproxy_token) as client:
            place = await self.place_backend(slot)
            try:
                upstreams = {hop: hostport(self.dependency_urls[hop]) for hop in dependencies}
                upstreams["backend"] = place.upstream
                created = await client.populate(
                    [{"name": names[hop], "upstream": upstreams[hop], "listen": self.proxy_listen(hop, slot)} for hop in hops]
                )
                ports = {hop: proxy.listen_port for hop, proxy in zip(hops, created)}
                lane = OpenLane(f"http://{self.proxy_address('backend', ports['backend'])}", LaneFaults(client, names))
                await lane.faults.apply(request, "before_start")
                urls = {hop: with_hostport(self.dependency_urls[hop], self.proxy_address(hop, ports[hop])) for hop in dependencies}
                backend = lane.backend = await self._start(request, urls, place, f"backend-{lane_id}")
                place.release()
                lane.outcome = await self._ready(backend, place, request)
                if lane.outcome.ready:
                    await lane.faults.remove_startup_toxics()
                    await lane.faults.apply(request, "after_ready")
                yield lane
            except ToxiproxyError as exc:
                raise InfrastructureError(f"the fault proxy refused a request: {exc}") from exc
            finally:
                place.release()
                # Side by side: deleting the proxies frees a backend whose graceful stop is blocked on a hung hop.
                endings = [delete_proxies(client, list(names.values()))]
                if backend is not None:
                    endings.append(backend.stop())
                await asyncio.gather(*endings)


def endpoint_of(url: str) -> "Endpoint":
    """A dependency's :class:`~replica.project.Endpoint` from its URL."""
    from replica.project import Endpoint

    parts = urlsplit(url)
    return Endpoint(host=parts.hostname or "", port=parts.port or 0, url=url)


__all__ = [
    "BackendPlace",
    "LaneDriver",
    "LaneFaults",
    "OpenLane",
    "RunningBackend",
    "backend_environment",
    "delete_proxies",
    "wait_ready",
]
