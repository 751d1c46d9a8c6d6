"""Loopback ports for the local driver's servers.

A server that can serve on an inherited socket (the backend, the auth service) gets
one from :func:`bind_loopback`: bound by the harness, so its port is never free for
anyone else to take. The fault proxy binds port 0 itself and says which port it got.
Only servers that cannot take a socket (PostgreSQL, redis-server) are started on a
:func:`free_port` candidate, and retry on "address in use" (bounded).
"""

from __future__ import annotations

import errno
import socket

from replica.errors import InfrastructureError

LOOPBACK = "127.0.0.1"


def bind_loopback() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a port the kernel picks, not yet listening.

    Handed to a server (``fd=``), which listens on it when it is ready: until then a
    connection is refused, as with a server that binds late, and the port stays ours.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, 0))
    except OSError as exc:
        sock.close()
        raise InfrastructureError(f"cannot bind a loopback port: {exc.strerror or exc}") from exc
    return sock


def free_port(host: str = LOOPBACK) -> int:
    """A candidate TCP port on ``host``, free right now.

    The port is picked by the kernel and released before returning, so another
    process may take it in between: only for servers that cannot take a socket,
    whose starters retry on "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(host: str, port: int, *, what: str = "server") -> None:
    """Raise :class:`InfrastructureError` if ``host:port`` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: a port held only by TIME_WAIT connections is usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InfrastructureError(
                    f"cannot start {what}: port {host}:{port} is already in use by another "
                    f"process. Stop that process, or pick another port (or none, to get a "
                    f"free one)."
                ) from exc
            raise InfrastructureError(
                f"cannot start {what}: cannot bind {host}:{port}: {exc.strerror}"
            ) from exc
