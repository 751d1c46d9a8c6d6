"""The ``compose`` driver: the replica as containers (``docker-compose.yml``).

The stack — the fault proxy, PostgreSQL, Redis and the auth service — is brought
up with ``docker compose up --wait`` under a project name of its own, so parallel
stacks never collide. Each lane is one backend container on the project's
network with four proxies of its own inside the proxy container
(``postgres-<id>``, ``redis-<id>``, ``auth-<id>``, ``backend-<id>``), like the
local driver's lanes. The host reaches a lane only through ports of the proxy
container published on 127.0.0.1: the lane's ``backend`` proxy (faults apply)
and a ``health`` proxy that never gets a toxic (readiness polling).

Everything a driver created carries the label
``com.docker.compose.project=<project>`` and is removed by :meth:`close`:
``docker compose down --volumes --remove-orphans``, then a sweep by label. The
CLI calls it in ``finally`` (Ctrl-C included); a failed start calls it before
raising. The project name is ``$REPLICA_COMPOSE_PROJECT_PREFIX-<random>``
(prefix default ``staging-replica``), fresh for every driver. Docker commands
run in their own session, so a Ctrl-C in the terminal reaches only the harness,
which then tears down in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Callable, Mapping, Sequence

import httpx

from faults.toxiproxy.client import AsyncToxiproxyClient, ToxiproxyError
from replica.auth.tokens import mint_token
from replica.drivers.base import BackendOutcome, ProxyFaults, apply_faults, delete_proxies, phase_finished
from replica.errors import ConfigError, InfrastructureError
from replica.interrupts import deferred_signals
from replica.scenarios import BackendSpec, HopDown, ToxicSpec
from replica.settings import BUILTIN_HANDLERS
from replica.tls import client_ssl_context

Progress = Callable[[str], None]

PROJECT_LABEL = "com.docker.compose.project"
LANE_LABEL = "io.staging-replica.lane"
BACKEND_USAGE_ERROR = 2  # the backend's exit code for a bad setting, before it binds
#: Container ports of the proxy container published for lanes: slot i uses
#: LANE_PORT_BASE + 2i (the lane's backend proxy) and + 2i + 1 (its health proxy).
LANE_PORT_BASE = 18100
#: Container ports (not published) of the lanes' dependency proxies: slot i uses
#: DEP_PORT_BASE + 10i + {0: postgres, 1: redis, 2: auth}.
DEP_PORT_BASE = 20000
DEP_OFFSETS = {"postgres": 0, "redis": 1, "auth": 2}
UPSTREAMS = {"postgres": "postgres:5432", "redis": "redis:6379", "auth": "auth:8081"}
STACK_SERVICES = ("toxiproxy", "postgres", "redis", "auth")
DEFAULT_UP_TIMEOUT_S = 180.0
DOCKER_TIMEOUT_S = 60.0


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def compose_file() -> Path:
    return Path(os.environ.get("REPLICA_COMPOSE_FILE") or repo_root() / "docker-compose.yml")


def images_env_file() -> Path:
    return Path(os.environ.get("REPLICA_IMAGES_ENV") or compose_file().parent / ".replica" / "images.env")


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


# --- docker commands ------------------------------------------------------------------


def _docker(
    args: Sequence[str], *, timeout: float = DOCKER_TIMEOUT_S, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS`` in a session of its own (a terminal Ctrl-C does not reach
    it), bounded; on timeout or interrupt the command is stopped, then the
    exception propagates."""
    proc = subprocess.Popen(
        ["docker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


async def _adocker(args: Sequence[str], *, timeout: float = DOCKER_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        "docker",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
        raise
    return subprocess.CompletedProcess(
        ["docker", *args], proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
    )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def compose_problem() -> str | None:
    """Why the compose driver cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "the docker client is not installed (scripts/ensure-docker.sh)"
    try:
        if _docker(["info", "--format", "{{.ServerVersion}}"], timeout=10).returncode != 0:
            return "no Docker engine answers (scripts/ensure-docker.sh starts one)"
        if _docker(["compose", "version", "--short"], timeout=10).returncode != 0:
            return "'docker compose' (v2) is missing (scripts/ensure-docker.sh installs it)"
    except subprocess.TimeoutExpired:
        return "the Docker engine does not answer within 10 s"
    if not compose_file().exists():
        return f"{compose_file()} is missing"
    if not images_env_file().exists():
        return f"{images_env_file()} is missing: run `make images`"
    images = read_env_file(images_env_file())
    for key in ("REPLICA_IMAGE", "TOXIPROXY_IMAGE", "POSTGRES_IMAGE", "REDIS_IMAGE"):
        ref = images.get(key)
        if not ref:
            return f"{images_env_file()} names no {key}: run `make images`"
        if _docker(["image", "inspect", ref], timeout=20).returncode != 0:
            return f"image {ref} is not present: run `make images`"
    return None


def compose_ready() -> bool:
    """Whether an engine, Compose v2 and the project's images are all there."""
    return compose_problem() is None


# --- lanes ----------------------------------------------------------------------------


@dataclass
class ComposeLane(ProxyFaults):
    """One backend container and its proxies."""

    lane_id: str
    container: str
    proxies: dict[str, str]
    base_url: str
    #: ``http://127.0.0.1:PORT`` of the backend through a proxy that never gets a toxic.
    health_root: str
    _client: AsyncToxiproxyClient
    outcome: BackendOutcome = field(default_factory=lambda: BackendOutcome(ready=False, detail="not started"))

    async def backend_log(self, n_lines: int = 40) -> str:
        try:
            out = await _adocker(["logs", "--tail", str(n_lines), self.container], timeout=20)
        except asyncio.TimeoutError:
            return ""
        return out.stdout + out.stderr


async def _wait_backend(
    lane: ComposeLane, exited: asyncio.Task[int | None], timeout: float, probe_after: str = "listening"
) -> BackendOutcome:
    """Until the backend answers ``GET /health`` (and, unless ``probe_after`` is
    ``listening``, ``/health/ready`` shows that startup phase finished) through the
    lane's health proxy, its container exits, or the timeout runs out."""
    started = time.monotonic()
    deadline = started + timeout
    delay = 0.01
    path = "/health" if probe_after == "listening" else "/health/ready"
    last = "no answer"
    async with httpx.AsyncClient(timeout=0.5, verify=client_ssl_context()) as http:
        while True:
            if exited.done():
                code = exited.result()
                tail = [line for line in (await lane.backend_log(15)).strip().splitlines() if line.strip()]
                detail = f"backend exited with code {code}: {tail[-1] if tail else 'no output'}"
                return BackendOutcome(False, detail, refused_settings=code == BACKEND_USAGE_ERROR)
            try:
                response = await http.get(lane.health_root + path)
                if response.status_code == 200 or (path != "/health" and phase_finished(response, probe_after)):
                    return BackendOutcome(True, "", round((time.monotonic() - started) * 1000, 1))
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            if time.monotonic() >= deadline:
                return BackendOutcome(False, f"backend did not answer {path} within {timeout:g} s (last: {last})")
            await asyncio.sleep(delay)  # polling interval of a bounded readiness wait
            delay = min(delay * 2, 0.1)


async def _container_exit(container: str) -> int | None:
    """The exit code once the container stops (``docker wait``)."""
    out = await _adocker(["wait", container], timeout=24 * 3600)
    try:
        return int(out.stdout.strip())
    except ValueError:
        return None


# --- the driver -----------------------------------------------------------------------


class ComposeDriver:
    """Lanes of backend containers on a compose stack this driver started."""

    name = "compose"

    def __init__(self, project: str, *, max_parallel_lanes: int = 2, progress: Progress = lambda _m: None) -> None:
        if max_parallel_lanes < 1:
            raise ConfigError("max_parallel_lanes must be at least 1")
        self.project = project
        self.max_parallel_lanes = max_parallel_lanes
        self.progress = progress
        self.compose_file = compose_file()
        self.images_env = images_env_file()
        self.images = read_env_file(self.images_env) if self.images_env.exists() else {}
        self.jwt_secret = secrets.token_hex(32)
        self.postgres_user = "replica"
        self.postgres_db = "replica"
        self.postgres_password = secrets.token_hex(16)
        self.redis_password = secrets.token_hex(16)
        self.network = f"{project}_default"
        self._tmp = Path(tempfile.mkdtemp(prefix=f"{project}-"))
        self._override = self._tmp / "lanes.yml"
        self._free_slots = list(range(max_parallel_lanes))
        self._slot_lock: asyncio.Lock | None = None
        self._host_ports: dict[int, int] = {}
        self.toxiproxy_url = ""
        self._closed = False
        self.up_seconds: float | None = None

    # -- start / stop ------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        progress: Progress = lambda _m: None,
        *,
        project: str | None = None,
        max_parallel_lanes: int = 2,
        timeout: float = DEFAULT_UP_TIMEOUT_S,
    ) -> "ComposeDriver":
        """Bring the stack up (healthy) or raise :class:`InfrastructureError`; after a
        failed or interrupted start nothing of the project is left."""
        problem = compose_problem()
        if problem:
            raise InfrastructureError(f"the compose driver cannot run: {problem}")
        if project is None:
            # A fresh name per run: never the name of a stack someone started by hand.
            prefix = os.environ.get("REPLICA_COMPOSE_PROJECT_PREFIX") or "staging-replica"
            project = f"{prefix}-{uuid.uuid4().hex[:8]}"
        driver = cls(project, max_parallel_lanes=max_parallel_lanes, progress=progress)
        try:
            driver._up(timeout)
        except BaseException:
            driver.close()
            raise
        return driver

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            REPLICA_COMPOSE_PROJECT=self.project,
            JWT_SECRET=self.jwt_secret,
            POSTGRES_PASSWORD=self.postgres_password,
            REDIS_PASSWORD=self.redis_password,
            POSTGRES_USER=self.postgres_user,
            POSTGRES_DB=self.postgres_db,
        )
        return env

    def _compose_args(self) -> list[str]:
        return [
            "compose",
            "--project-name",
            self.project,
            "--project-directory",
            str(self.compose_file.parent),
            "-f",
            str(self.compose_file),
            "-f",
            str(self._override),
            "--env-file",
            str(self.images_env),
        ]

    def _write_override(self) -> None:
        ports = "\n".join(
            f'      - "127.0.0.1::{LANE_PORT_BASE + 2 * slot + k}"' for slot in range(self.max_parallel_lanes) for k in (0, 1)
        )
        self._override.write_text(
            f"# lane ports of the compose driver (project {self.project})\n"
            f"services:\n  toxiproxy:\n    ports:\n{ports}\n"
        )

    def _up(self, timeout: float) -> None:
        self._write_override()
        self.progress(f"starting the compose stack (project {self.project})")
        started = time.monotonic()
        try:
            out = _docker(
                [*self._compose_args(), "up", "--detach", "--wait", "--no-build", "--pull", "never", *STACK_SERVICES],
                timeout=timeout,
                env=self.env,
            )
        except subprocess.TimeoutExpired:
            raise InfrastructureError(
                f"the compose stack did not become healthy within {timeout:g} s:\n{self._logs()}"
            ) from None
        if out.returncode != 0:
            raise InfrastructureError(
                f"`docker compose up` failed ({out.returncode}): {_last_line(out.stderr)}\n{self._logs()}"
            )
        self._read_ports()
        self.up_seconds = time.monotonic() - started
        self.progress(f"compose stack healthy in {self.up_seconds:.1f} s")

    def _logs(self, tail: int = 20) -> str:
        try:
            out = _docker([*self._compose_args(), "logs", "--no-color", "--tail", str(tail)], timeout=30, env=self.env)
        except subprocess.TimeoutExpired:
            return ""
        return out.stdout[-6000:]

    def _read_ports(self) -> None:
        out = _docker([*self._compose_args(), "ps", "--format", "json", "toxiproxy"], timeout=30, env=self.env)
        if out.returncode != 0:
            raise InfrastructureError(f"cannot read the proxy container's ports: {_last_line(out.stderr)}")
        text = out.stdout.strip()
        rows = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
        published: dict[int, int] = {}
        for row in rows:
            for pub in row.get("Publishers") or []:
                if pub.get("PublishedPort") and pub.get("URL") == "127.0.0.1":
                    published[int(pub["TargetPort"])] = int(pub["PublishedPort"])
        needed = [8474] + [LANE_PORT_BASE + k for k in range(2 * self.max_parallel_lanes)]
        missing = [p for p in needed if p not in published]
        if missing:
            raise InfrastructureError(f"the proxy container does not publish ports {missing} on 127.0.0.1")
        self._host_ports = published
        self.toxiproxy_url = f"http://127.0.0.1:{published[8474]}"

    def close(self) -> None:
        """Remove every container, network and volume of the project (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with deferred_signals() as received:
            try:
                if self._override.exists():
                    _docker(
                        [*self._compose_args(), "down", "--volumes", "--remove-orphans", "--timeout", "5"],
                        timeout=120,
                        env=self.env,
                    )
            except subprocess.TimeoutExpired:
                pass
            finally:
                sweep_project(self.project)
                shutil.rmtree(self._tmp, ignore_errors=True)
        if received:
            raise KeyboardInterrupt(f"received signal {received[0]} during teardown")

    def __enter__(self) -> "ComposeDriver":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the driver interface ----------------------------------------------------------

    def mint_token(self, sub: str = "staging-e2e-user-001") -> str:
        return mint_token(self.jwt_secret, sub=sub)

    def backend_env(self, backend: BackendSpec, slot: int) -> dict[str, str]:
        ports = {hop: DEP_PORT_BASE + 10 * slot + off for hop, off in DEP_OFFSETS.items()}
        env = {
            "ENVIRONMENT": backend.environment,
            "REPLICA_HOST": "0.0.0.0",
            "REPLICA_PORT": "8000",
            "REPLICA_DATABASE_URL": (
                f"postgresql://{self.postgres_user}:{self.postgres_password}@toxiproxy:{ports['postgres']}/{self.postgres_db}"
            ),
            "REPLICA_REDIS_URL": f"redis://:{self.redis_password}@toxiproxy:{ports['redis']}/0",
            "REPLICA_AUTH_URL": f"http://toxiproxy:{ports['auth']}",
            "REPLICA_HANDLER": backend.handler,
            "REPLICA_SERVER": backend.server,
            "REPLICA_STARTUP_MODE": backend.startup_mode,
            "REPLICA_FAILPOINTS": backend.failpoints,
            "REPLICA_DEFECTS": ",".join(backend.defects),
        }
        if backend.startup_wait_s is not None:
            env["REPLICA_STARTUP_WAIT_S"] = str(backend.startup_wait_s)
        if backend.ws_ping_interval_s is not None:
            env["REPLICA_WS_PING_INTERVAL_S"] = str(backend.ws_ping_interval_s)
        if backend.ws_ping_timeout_s is not None:
            env["REPLICA_WS_PING_TIMEOUT_S"] = str(backend.ws_ping_timeout_s)
        return env

    async def _take_slot(self) -> int:
        if self._slot_lock is None:
            self._slot_lock = asyncio.Lock()
        async with self._slot_lock:
            if not self._free_slots:
                raise InfrastructureError(
                    f"more than {self.max_parallel_lanes} lanes open at once on the compose driver"
                )
            return self._free_slots.pop(0)

    @asynccontextmanager
    async def lane(
        self,
        backend: BackendSpec,
        *,
        toxics: tuple[ToxicSpec, ...] = (),
        down: tuple[HopDown, ...] = (),
        ready_timeout_s: float = 20.0,
        probe_after: str = "listening",
    ) -> AsyncIterator[ComposeLane]:
        if self._closed:
            raise InfrastructureError("the compose driver is closed")
        slot = await self._take_slot()
        lane_id = uuid.uuid4().hex[:8]
        container = f"{self.project}-lane-{lane_id}"
        client = AsyncToxiproxyClient(self.toxiproxy_url, timeout=5.0, verify=client_ssl_context())
        created: list[str] = []
        exited: asyncio.Task[int | None] | None = None
        started_container = False
        try:
            for hop, off in DEP_OFFSETS.items():
                name = f"{hop}-{lane_id}"
                await client.create_proxy(name, UPSTREAMS[hop], listen=f"0.0.0.0:{DEP_PORT_BASE + 10 * slot + off}")
                created.append(name)
            backend_port, health_port = LANE_PORT_BASE + 2 * slot, LANE_PORT_BASE + 2 * slot + 1
            for name, port in ((f"backend-{lane_id}", backend_port), (f"health-{lane_id}", health_port)):
                await client.create_proxy(name, f"lane-{lane_id}:8000", listen=f"0.0.0.0:{port}")
                created.append(name)
            lane = ComposeLane(
                lane_id=lane_id,
                container=container,
                proxies={hop: f"{hop}-{lane_id}" for hop in ("postgres", "redis", "auth", "backend")},
                base_url=f"http://127.0.0.1:{self._host_ports[backend_port]}",
                health_root=f"http://127.0.0.1:{self._host_ports[health_port]}",
                _client=client,
            )
            await apply_faults(lane, toxics, down, "before_start")
            await self._run_backend(container, lane_id, backend, slot)
            started_container = True
            exited = asyncio.ensure_future(_container_exit(container))
            lane.outcome = await _wait_backend(lane, exited, ready_timeout_s, probe_after)
            if lane.outcome.ready:
                await apply_faults(lane, toxics, down, "after_ready")
            yield lane
        except ToxiproxyError as exc:
            raise InfrastructureError(f"the fault proxy refused a request: {exc}") from exc
        finally:
            await delete_proxies(client, created)  # first: frees a backend blocked on a hung hop
            await client.aclose()
            if started_container:
                await _adocker(["rm", "--force", "--volumes", container], timeout=60)
            if exited is not None and not exited.done():
                exited.cancel()
                try:
                    await exited
                except (asyncio.CancelledError, Exception):
                    pass
            self._free_slots.append(slot)

    async def _run_backend(self, container: str, lane_id: str, backend: BackendSpec, slot: int) -> None:
        image = self.images.get("REPLICA_IMAGE", "staging-replica/replica:latest")
        args = [
            "run",
            "--detach",
            "--init",
            "--name",
            container,
            "--network",
            self.network,
            "--network-alias",
            f"lane-{lane_id}",
            "--label",
            f"{PROJECT_LABEL}={self.project}",
            "--label",
            f"{LANE_LABEL}={lane_id}",
        ]
        for key, value in self.backend_env(backend, slot).items():
            args += ["--env", f"{key}={value}"]
        if backend.handler not in BUILTIN_HANDLERS:
            # A handler of the user's own (``pkg.module:function``) is imported from
            # where they stand, as with the local driver.
            args += ["--volume", f"{os.getcwd()}:/user-code:ro", "--env", "PYTHONPATH=/user-code"]
        args += [image, "python", "-m", "replica.backend"]
        out = await _adocker(args, timeout=60)
        if out.returncode != 0:
            raise InfrastructureError(f"cannot start the lane's backend container: {_last_line(out.stderr)}")


def project_resources(project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes that carry the project's label."""
    label = f"label={PROJECT_LABEL}={project}"
    found: dict[str, list[str]] = {}
    for kind, argv in (
        ("containers", ["ps", "--all", "--quiet", "--filter", label]),
        ("networks", ["network", "ls", "--quiet", "--filter", label]),
        ("volumes", ["volume", "ls", "--quiet", "--filter", label]),
    ):
        try:
            found[kind] = _docker(argv, timeout=30).stdout.split()
        except subprocess.TimeoutExpired:
            found[kind] = []
    return found


def sweep_project(project: str) -> dict[str, list[str]]:
    """Remove whatever of the project is still there (after ``down``); returns it."""
    left = project_resources(project)
    try:
        if left["containers"]:
            _docker(["rm", "--force", "--volumes", *left["containers"]], timeout=60)
        if left["networks"]:
            _docker(["network", "rm", *left["networks"]], timeout=60)
        if left["volumes"]:
            _docker(["volume", "rm", "--force", *left["volumes"]], timeout=60)
    except subprocess.TimeoutExpired:
        pass
    return left


__all__ = ["ComposeDriver", "ComposeLane", "compose_ready", "compose_problem", "project_resources", "sweep_project"]
