"""The ``local`` driver: the whole replica as processes on loopback.

Real PostgreSQL and Redis (from wheels or PATH), the auth service, the fault
proxy and one backend per lane, on 127.0.0.1, in a private temp dir, torn down on
exit, on Ctrl-C and after a failed start. The backend and the auth service are
forked from a preloaded fork server onto sockets this process bound; the fault
proxy binds port 0 and says which port it got. Each lane gets its own proxies
(``postgres-<id>``, ``redis-<id>``, ``auth-<id>``, ``backend-<id>``), so lanes run
side by side without sharing a fault.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Mapping

from faults.toxiproxy import TOKEN_ENV
from replica.drivers.base import DEFAULT_PARALLEL_LANES
from replica.drivers.lanes import BackendPlace, LaneDriver, RunningBackend
from replica.drivers.local.forkserver import ForkServer
from replica.drivers.local.group import ProcessGroup
from replica.drivers.local.ports import LOOPBACK, bind_loopback
from replica.drivers.local.postgres import start_postgres
from replica.drivers.local.redis import start_redis
from replica.drivers.stack import StackInfo, new_secret
from replica.errors import ConfigError
from replica.interrupts import raise_if_interrupted
from replica.polling import wait_for_http, wait_for_line
from replica.project import Endpoint, Project
from replica.user_backend import ProjectBackend, failpoint_env, start_ready, start_service, takes_socket

Progress = Callable[[str], None]
BACKEND_MAIN = "replica.backend.__main__:main"
AUTH_MAIN = "replica.auth.__main__:main"


def python_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment for a Python server, plus ``extra``."""
    env = dict(os.environ)
    # A handler of the user's own (``pkg.module:function``) is imported from where they stand.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def start_local_stack(group: ProcessGroup, forks: ForkServer, progress: Progress = lambda _m: None) -> StackInfo:
    """Start the fault proxy, Postgres, Redis and the auth service side by side; wait until each answers.

    Postgres and Redis start in threads of their own while this one forks the auth
    service; every start has finished (or failed) before this returns or raises, so a
    teardown never races a start."""
    secret = new_secret()
    proxy_token = new_secret()  # its API is on loopback, where any local user could reach it
    progress("starting the fault proxy, PostgreSQL, Redis and the auth service")
    proxy = group.start(
        [sys.executable, "-m", "faults.toxiproxy", "--host", LOOPBACK, "--port", "0"],
        name="toxiproxy", env=python_env({TOKEN_ENV: proxy_token}),
    )
    with ThreadPoolExecutor(2, thread_name_prefix="replica-stack") as pool:
        postgres = pool.submit(start_postgres, group)
        redis = pool.submit(start_redis, group)
        with bind_loopback() as listener:
            auth_url = f"http://{LOOPBACK}:{listener.getsockname()[1]}"
            auth = forks.start(
                AUTH_MAIN, python_env({"JWT_SECRET": secret}), group.path("logs", "auth.log"), "auth",
                listener=listener, fd_env="AUTH_FD",
            )
        group.add_cleanup(functools.partial(auth.kill, graceful=False))  # it keeps no state
        raise_if_interrupted()  # a Ctrl-C held while the auth service was forked
        proxy_url = wait_for_line(proxy, r"toxiproxy listening on (http://\S+)", timeout=30).group(1)
        wait_for_http(f"{auth_url}/health", timeout=30, process=auth, what="the auth service")
        postgres_url, redis_url = postgres.result().url, redis.result().url
    return StackInfo(
        driver="local",
        owner_pid=os.getpid(),
        postgres_url=postgres_url,
        redis_url=redis_url,
        auth_url=auth_url,
        toxiproxy_url=proxy_url,
        toxiproxy_token=proxy_token,
        jwt_secret=secret,
        tmp_dir=str(group.tmp_dir),
    )


async def start_http_dependencies(
    group: ProcessGroup, project: Project, info: StackInfo, progress: Progress
) -> dict[str, str]:
    """Start each ``http`` dependency of ``project`` once for the stack, in the order declared,
    reaching the stack's Postgres and Redis and the http dependencies before it directly.
    One that does not come up is a configuration error."""
    from replica.drivers.lanes import endpoint_of

    urls = {"postgres": info.postgres_url, "redis": info.redis_url}
    endpoints = {name: endpoint_of(urls[dep.kind]) for name, dep in project.dependencies.items() if dep.kind != "http"}
    started: dict[str, str] = {}
    for name, dep in project.dependencies.items():
        if dep.kind != "http":
            continue
        progress(f"starting {name} (dependencies.{name})")
        key = f"dependencies.{name}"
        try:
            service, outcome = await start_ready(
                group, dep.config.service(), project.root, name=name, key=key, endpoints=endpoints, secret=info.jwt_secret
            )
        except KeyError as exc:
            raise ConfigError(f"{project.file}: {key}: names {exc.args[0]}, which is not started yet: declare it earlier") from None
        if not outcome.ready:
            raise ConfigError(f"{project.file}: {key}: {outcome.detail}")
        started[name] = service.base_url
        endpoints[name] = endpoint_of(service.base_url)
    return started


class LocalDriver(LaneDriver):
    """Lanes of processes on loopback, on a stack this driver started."""

    name = "local"

    def __init__(
        self,
        info: StackInfo,
        group: ProcessGroup,
        forks: ForkServer,
        *,
        max_parallel_lanes: int = DEFAULT_PARALLEL_LANES,
        project: Project | None = None,
        services: Mapping[str, str] | None = None,
    ) -> None:
        """``services``: the URL of each ``http`` dependency of ``project``, started for this stack."""
        self.info = info
        self.group = group
        self.forks = forks
        self.max_parallel_lanes = max_parallel_lanes
        self.toxiproxy_url = info.toxiproxy_url
        self.toxiproxy_token = info.toxiproxy_token
        self.jwt_secret = info.jwt_secret
        self.project = project
        stack = {"postgres": info.postgres_url, "redis": info.redis_url, "auth": info.auth_url}
        if project is None:
            self.dependency_urls = stack
        else:
            self.dependency_urls = {
                name: (services or {})[name] if dep.kind == "http" else stack[dep.kind]
                for name, dep in project.dependencies.items()
            }

    @classmethod
    def start(
        cls, group: ProcessGroup, progress: Progress = lambda _m: None, *, project: Project | None = None, **kwargs: int
    ) -> "LocalDriver":
        forks = ForkServer()
        group.add_cleanup(forks.close)  # registered first, so it runs after the forks' own cleanups
        forks.warm()  # the fork server imports the servers while Postgres and Redis start
        info = start_local_stack(group, forks, progress)
        services = None
        if project is not None:
            info = info.model_copy(update={"project": str(project.file)})
            services = asyncio.run(start_http_dependencies(group, project, info, progress))
        return cls(info, group, forks, project=project, services=services, **kwargs)

    def proxy_listen(self, hop: str, slot: int) -> str:
        return f"{LOOPBACK}:0"

    def proxy_address(self, hop: str, port: int) -> str:
        return f"{LOOPBACK}:{port}"

    async def place_backend(self, slot: int) -> BackendPlace:
        listener = bind_loopback()
        port = listener.getsockname()[1]
        return BackendPlace(upstream=f"{LOOPBACK}:{port}", health_url=f"http://{LOOPBACK}:{port}", listener=listener)

    async def start_backend(self, env: dict[str, str], place: BackendPlace, name: str) -> RunningBackend:
        process = await self.forks.start_async(
            BACKEND_MAIN, python_env(env), self.group.path("logs", f"{name}.log"), name,
            listener=place.listener, fd_env="REPLICA_FD",
        )
        self.group.add_cleanup(process.kill)
        return process

    async def start_project_backend(
        self, project: Project, failpoints: str, endpoints: dict[str, Endpoint], place: BackendPlace, name: str
    ) -> ProjectBackend:
        """The project's backend on the lane's socket (listening, for a program handed ``{fd}``);
        a program that binds ``{port}`` itself gets the socket's port, released just before."""
        env = failpoint_env(project, failpoints)
        backend = project.backend
        options = dict(name=name, endpoints=endpoints, secret=self.jwt_secret, extra_env=env)
        if not takes_socket(backend):
            port = place.listener.getsockname()[1]
            place.release()
            return ProjectBackend(start_service(self.group, backend, project.root, port=port, **options))
        if backend.command is not None:
            place.listener.listen()
        return ProjectBackend(start_service(self.group, backend, project.root, listener=place.listener, **options))

    def close(self) -> None:
        self.group.close()
