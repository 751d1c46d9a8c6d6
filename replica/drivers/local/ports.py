"""Loopback ports for the local driver's servers."""

from __future__ import annotations

import errno
import socket

from replica.errors import InfrastructureError


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free right now.

    The port is picked by the kernel and released before returning, so another
    process may take it in between; starters retry on "address in use".
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
