"""The ``local`` driver: the whole replica as processes on loopback.

Real PostgreSQL and Redis (from wheels or PATH), the auth service, the fault
proxy and one backend per lane, each on a free 127.0.0.1 port, in a private temp
dir, torn down on exit, on Ctrl-C and after a failed start. Each lane gets its own
proxies (``postgres-<id>``, ``redis-<id>``, ``auth-<id>``, ``backend-<id>``), so
lanes run side by side without sharing a fault.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import httpx

from faults.toxiproxy.client import AsyncToxiproxyClient, ToxiproxyError
from replica.auth.tokens import mint_token
from replica.drivers.base import (
    DEFAULT_PARALLEL_LANES,
    BackendOutcome,
    ProxyFaults,
    apply_faults,
    delete_proxies,
    phase_finished,
)
from replica.drivers.local.group import ProcessGroup
from replica.drivers.local.ports import free_port
from replica.polling import wait_for_http
from replica.drivers.local.postgres import start_postgres
from replica.drivers.local.redis import start_redis
from replica.drivers.local.forkserver import BackendSpawner, ForkedBackend
from replica.drivers.stack import StackInfo, new_secret
from replica.errors import InfrastructureError
from replica.scenarios import BackendSpec, HopDown, ToxicSpec
from replica.settings import BackendSettings
from replica.tls import client_ssl_context

Progress = Callable[[str], None]
BACKEND_STOP_TIMEOUT_S = 3.0
BACKEND_USAGE_ERROR = 2  # the backend's exit code for a bad setting, before it binds


def _hostport(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def _with_hostport(url: str, hostport: str) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=userinfo + hostport))


def _python_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    # A handler of the user's own (``pkg.module:function``) is imported from where they stand.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def start_local_stack(group: ProcessGroup, progress: Progress = lambda _m: None) -> StackInfo:
    """Start Postgres, Redis, the auth service and the fault proxy; wait until each answers."""
    secret = new_secret()
    auth_port, proxy_port = free_port(), free_port()
    progress("starting the auth service and the fault proxy")
    auth = group.start(
        [sys.executable, "-m", "replica.auth"],
        name="auth",
        env=_python_env({"AUTH_HOST": "127.0.0.1", "AUTH_PORT": str(auth_port), "JWT_SECRET": secret}),
    )
    proxy = group.start(
        [sys.executable, "-m", "faults.toxiproxy", "--host", "127.0.0.1", "--port", str(proxy_port)],
        name="toxiproxy",
        env=_python_env({}),
    )
    progress("starting PostgreSQL")
    postgres = start_postgres(group)
    progress("starting Redis")
    redis = start_redis(group)
    auth_url, proxy_url = f"http://127.0.0.1:{auth_port}", f"http://127.0.0.1:{proxy_port}"
    wait_for_http(f"{auth_url}/health", timeout=30, process=auth, what="the auth service")
    wait_for_http(f"{proxy_url}/version", timeout=30, process=proxy, what="the fault proxy")
    return StackInfo(
        driver="local",
        owner_pid=os.getpid(),
        postgres_url=postgres.url,
        redis_url=redis.url,
        auth_url=auth_url,
        toxiproxy_url=proxy_url,
        jwt_secret=secret,
        tmp_dir=str(group.tmp_dir),
    )


class LocalLane(ProxyFaults):
    """One backend process and its four proxies."""

    def __init__(self, client: AsyncToxiproxyClient, proxies: dict[str, str], base_url: str) -> None:
        self._client = client
        self.proxies = proxies
        self.base_url = base_url
        self.outcome = BackendOutcome(ready=False, detail="not started")
        self.process: ForkedBackend | None = None

    async def backend_log(self, n_lines: int = 40) -> str:
        return self.process.log_tail(n_lines) if self.process else ""


async def wait_backend(process: ForkedBackend, base_url: str, timeout: float, probe_after: str = "listening") -> BackendOutcome:
    """Wait until the backend answers ``/health`` (and has finished the ``probe_after``
    startup phase), exits, or the timeout runs out."""
    started = time.monotonic()
    deadline = started + timeout
    delay = 0.005
    path = "/health" if probe_after == "listening" else "/health/ready"
    async with httpx.AsyncClient(timeout=0.5, verify=client_ssl_context()) as http:
        while True:
            code = process.poll()
            if code is not None:
                tail = process.log_tail(15).strip().splitlines()
                detail = f"backend exited with code {code}: {tail[-1] if tail else 'no output'}"
                return BackendOutcome(False, detail, refused_settings=code == BACKEND_USAGE_ERROR)
            try:
                response = await http.get(base_url + path)
                if response.status_code == 200 or (path != "/health" and phase_finished(response, probe_after)):
                    return BackendOutcome(True, "", round((time.monotonic() - started) * 1000, 1))
            except httpx.HTTPError:
                pass
            if time.monotonic() >= deadline:
                return BackendOutcome(False, f"backend did not answer {path} within {timeout:g} s")
            await asyncio.sleep(delay)  # polling interval of a bounded readiness wait
            delay = min(delay * 2, 0.05)


class LocalDriver:
    """Lanes of processes on loopback, on a stack this driver started or attached to."""

    name = "local"

    def __init__(
        self,
        info: StackInfo,
        group: ProcessGroup,
        *,
        spawner: BackendSpawner | None = None,
        max_parallel_lanes: int = DEFAULT_PARALLEL_LANES,
    ) -> None:
        self.info = info
        self.group = group
        self.max_parallel_lanes = max_parallel_lanes
        self.spawner = spawner or self.warm_spawner(group)
        self._stopping: set[asyncio.Task[object]] = set()

    @classmethod
    def start(cls, group: ProcessGroup, progress: Progress = lambda _m: None, **kwargs: int) -> "LocalDriver":
        spawner = cls.warm_spawner(group)  # the fork server imports the backend while the stack starts
        return cls(start_local_stack(group, progress), group, spawner=spawner, **kwargs)

    @staticmethod
    def warm_spawner(group: ProcessGroup) -> BackendSpawner:
        spawner = BackendSpawner()
        group.add_cleanup(spawner.close)  # registered first, so it runs after the backends' cleanups
        spawner.warm()
        return spawner

    def mint_token(self, sub: str = "staging-e2e-user-001") -> str:
        return mint_token(self.info.jwt_secret, sub=sub)

    def backend_settings(self, backend: BackendSpec, port: int, proxies: dict[str, int]) -> BackendSettings:
        values = {
            "environment": backend.environment,
            "host": "127.0.0.1",
            "port": port,
            "database_url": _with_hostport(self.info.postgres_url, f"127.0.0.1:{proxies['postgres']}"),
            "redis_url": _with_hostport(self.info.redis_url, f"127.0.0.1:{proxies['redis']}"),
            "auth_url": _with_hostport(self.info.auth_url, f"127.0.0.1:{proxies['auth']}"),
            "handler": backend.handler,
            "server": backend.server,
            "startup_mode": backend.startup_mode,
            "failpoints": backend.failpoints,
            "defects": ",".join(backend.defects),
            "startup_wait_s": backend.startup_wait_s,
        }
        if backend.ws_ping_interval_s is not None:
            values["ws_ping_interval_s"] = backend.ws_ping_interval_s
        if backend.ws_ping_timeout_s is not None:
            values["ws_ping_timeout_s"] = backend.ws_ping_timeout_s
        return BackendSettings.model_validate(values)

    @asynccontextmanager
    async def lane(
        self,
        backend: BackendSpec,
        *,
        toxics: tuple[ToxicSpec, ...] = (),
        down: tuple[HopDown, ...] = (),
        ready_timeout_s: float = 20.0,
        probe_after: str = "listening",
    ) -> AsyncIterator[LocalLane]:
        lane_id = uuid.uuid4().hex[:8]
        created: list[str] = []
        process: ForkedBackend | None = None
        async with AsyncToxiproxyClient(self.info.toxiproxy_url, timeout=5.0, verify=client_ssl_context()) as client:
            try:
                ports: dict[str, int] = {}
                upstreams = {"postgres": self.info.postgres_url, "redis": self.info.redis_url, "auth": self.info.auth_url}
                for hop, url in upstreams.items():
                    proxy = await client.create_proxy(f"{hop}-{lane_id}", upstream=_hostport(url), listen="127.0.0.1:0")
                    created.append(proxy.name)
                    ports[hop] = proxy.listen_port
                backend_port = free_port()
                proxy = await client.create_proxy(
                    f"backend-{lane_id}", upstream=f"127.0.0.1:{backend_port}", listen="127.0.0.1:0"
                )
                created.append(proxy.name)
                proxies = {hop: f"{hop}-{lane_id}" for hop in ("postgres", "redis", "auth", "backend")}
                lane = LocalLane(client, proxies, f"http://127.0.0.1:{proxy.listen_port}")
                await apply_faults(lane, toxics, down, "before_start")
                settings = self.backend_settings(backend, backend_port, ports)
                process = self.spawner.spawn(
                    _python_env(settings.to_env()), self.group.path("logs", f"backend-{lane_id}.log"), f"backend-{lane_id}"
                )
                self.group.add_cleanup(process.stop)
                lane.process = process
                lane.outcome = await wait_backend(
                    process, f"http://127.0.0.1:{backend_port}", ready_timeout_s, probe_after
                )
                if lane.outcome.ready:
                    await apply_faults(lane, toxics, down, "after_ready")
                yield lane
            except ToxiproxyError as exc:
                raise InfrastructureError(f"the fault proxy refused a request: {exc}") from exc
            finally:
                await delete_proxies(client, created)  # first: frees a backend blocked on a hung hop
                if process is not None:
                    # The backend stops in the background (graceful, then killed): the
                    # next run need not wait, and the group kills it at exit at the latest.
                    stopping = asyncio.create_task(asyncio.to_thread(process.stop, BACKEND_STOP_TIMEOUT_S))
                    self._stopping.add(stopping)
                    stopping.add_done_callback(self._stopping.discard)

    def close(self) -> None:
        self.group.close()
