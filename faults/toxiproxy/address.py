"""Listen-address parsing and the Go-worded errors for binding."""

from __future__ import annotations

import errno
import ipaddress
import socket

DEFAULT_LISTEN_HOST = "127.0.0.1"  # the original binds all interfaces on an empty host


class ListenError(Exception):
    """A bind failure worded like Go's ``net.Listen`` error."""


def split_host_port(address: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort`` for the cases that matter here ("" means any port)."""
    if address == "":
        return "", "0"
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ListenError(f"listen tcp: address {address}: missing ']' in address")
        if end + 1 >= len(address) or address[end + 1] != ":":
            raise ListenError(f"listen tcp: address {address}: missing port in address")
        return address[1:end], address[end + 2 :]
    if ":" not in address:
        raise ListenError(f"listen tcp: address {address}: missing port in address")
    host, _, port = address.rpartition(":")
    if ":" in host:
        raise ListenError(f"listen tcp: address {address}: too many colons in address")
    return host, port


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_listener(address: str) -> tuple[socket.socket, str]:
    """Bind and listen on ``address``; return the socket and the bound address string.

    ``localhost:3310`` → ``127.0.0.1:3310``; port 0 → the real port; an empty
    host → loopback.
    """
    host, port_text = split_host_port(address)
    if not host:
        host = DEFAULT_LISTEN_HOST
    try:
        port = int(port_text) if port_text else 0
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ListenError(f"listen tcp: address {address}: invalid port") from None
    try:
        ipaddress.ip_address(host)
        ip = host
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            raise ListenError(f"listen tcp: lookup {host}: no such host") from None
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        ip = str(infos[0][4][0])
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = {
            errno.EADDRINUSE: "address already in use",
            errno.EADDRNOTAVAIL: "cannot assign requested address",
            errno.EACCES: "permission denied",
        }.get(exc.errno or 0, (exc.strerror or str(exc)).lower())
        raise ListenError(f"listen tcp {format_address(ip, port)}: bind: {reason}") from None
    bound_port = sock.getsockname()[1]
    return sock, format_address(ip, bound_port)


def resolve_listen(address: str) -> str:
    """The address a proxy would report for ``address`` (without binding), for comparisons."""
    try:
        host, port = split_host_port(address)
    except ListenError:
        return address
    if not host:
        host = DEFAULT_LISTEN_HOST
    if host == "localhost":
        host = "127.0.0.1"
    return format_address(host, int(port)) if port.isdigit() else address
