"""A private listening unix socket: the way the stack's own APIs are reached."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from replica.errors import ConfigError

_SUN_PATH_MAX = 107


def bind_unix_socket(path: Path, backlog: int = 128) -> socket.socket:
    """A listening unix socket at ``path`` (mode 0600), replacing a stale one.

    It is bound and set up under a temporary name and renamed into place, so a
    client that finds ``path`` finds it listening. The caller owns ``path``'s
    directory (the private state dir), so nobody else can put a file there or
    reach the socket."""
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    if len(str(staging).encode()) > _SUN_PATH_MAX:
        raise ConfigError(
            f"{path} is too long for a unix socket ({_SUN_PATH_MAX - len(staging.name) + len(path.name)} bytes at most): "
            f"set REPLICA_STATE_DIR to a shorter path"
        )
    staging.unlink(missing_ok=True)  # left by a killed run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(staging))
        staging.chmod(0o600)
        sock.listen(backlog)
        os.replace(staging, path)  # also over a stale socket left by a killed run
    except OSError:
        sock.close()
        staging.unlink(missing_ok=True)
        raise
    return sock
