"""Session-scoped real servers for tests, plus helpers to check for leftovers.

Use from a test module or conftest::

    from tests.servers_support import postgres_server, redis_server  # noqa: F401

or list ``"tests.servers_support"`` in ``pytest_plugins``. Both servers share one
:class:`ProcessGroup`, torn down at the end of the session.
"""

from __future__ import annotations

import os
import select
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from replica.drivers.local.group import ProcessGroup
from replica.drivers.local.postgres import PostgresServer, start_postgres
from replica.drivers.local.redis import RedisServer, start_redis

__all__ = [
    "server_group",
    "postgres_server",
    "redis_server",
    "pid_alive",
    "descendants",
    "read_line",
]


@pytest.fixture(scope="session")
def server_group() -> Iterator[ProcessGroup]:
    """The process group that owns the session's servers."""
    with ProcessGroup() as group:
        yield group


@pytest.fixture(scope="session")
def postgres_server(server_group: ProcessGroup) -> PostgresServer:
    """A real PostgreSQL on 127.0.0.1 (user and database ``replica``); see ``.url``."""
    return start_postgres(server_group)


@pytest.fixture(scope="session")
def redis_server(server_group: ProcessGroup) -> RedisServer:
    """A real Redis on 127.0.0.1 without persistence; see ``.url``."""
    return start_redis(server_group)


def proc_file(pid: int, name: str) -> bytes:
    """``/proc/PID/NAME`` (cmdline, environ, ...); empty when the process is gone, as a
    short-lived one (a connection's backend, a probe) may be by the time it is read."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (zombies count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    """All live descendants of ``pid`` (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def read_line(proc: "subprocess.Popen[str]", timeout: float) -> str:
    """One line of ``proc``'s stdout, failing if none comes within ``timeout``."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output from pid {proc.pid} within {timeout}s"
    return proc.stdout.readline()
