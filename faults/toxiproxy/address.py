"""TCP addresses as Go's ``net`` package reads them, and binding with Go-worded errors."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import socket

DEFAULT_LISTEN_HOST = "127.0.0.1"  # the original binds all interfaces on an empty host
LOOKUP_TIMEOUT = 5.0
LOOPBACK_NAMES = frozenset({"localhost"})


class AddressError(Exception):
    """An address Go's ``net.ResolveTCPAddr`` refuses, with Go's message."""


class ListenError(Exception):
    """A listen failure worded like Go's ``net.Listen`` error."""


def split_host_port(address: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``, errors and all."""

    def fail(why: str) -> AddressError:
        return AddressError(f"address {address}: {why}")

    colon = address.rfind(":")
    if colon < 0:
        raise fail("missing port in address")
    skip_open = skip_close = 0
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise fail("missing ']' in address")
        if end + 1 == len(address):
            raise fail("missing port in address")
        if end + 1 != colon:
            raise fail("too many colons in address" if address[end + 1] == ":" else "missing port in address")
        host = address[1:end]
        skip_open, skip_close = 1, end + 1
    else:
        host = address[:colon]
        if ":" in host:
            raise fail("too many colons in address")
    if "[" in address[skip_open:]:
        raise fail("unexpected '[' in address")
    if "]" in address[skip_close:]:
        raise fail("unexpected ']' in address")
    return host, address[colon + 1 :]


def parse_port(text: str) -> int:
    """Go's ``LookupPort`` for TCP: decimal (an optional sign), else a service name."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if digits == "" or (digits.isascii() and digits.isdigit()):
        value = int(digits or "0")
        port = -value if text.startswith("-") else value
        if not 0 <= port <= 65535:
            raise AddressError(f"address {text}: invalid port")
        return port
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise AddressError(f"lookup tcp/{text}: unknown port") from None


_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be a host to listen on (an IP address or a DNS name), or None."""
    if literal_ip(host) is not None or (len(host) <= 253 and _HOST_NAME.fullmatch(host)):
        return None
    return f"invalid host {host!r}: expected an IP address or a host name"


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def literal_ip(host: str) -> str | None:
    """``host`` as an IP address if it is one (zone kept, ``::ffff:a.b.c.d`` as IPv4), else None."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


async def resolve(address: str) -> tuple[str, int]:
    """Go's ``net.ResolveTCPAddr("tcp", address)``: (IP, port), IPv4 first; an empty host is loopback."""
    host, port_text = split_host_port(address) if address else ("", "")
    port = parse_port(port_text)
    if not host:
        return DEFAULT_LISTEN_HOST, port
    ip = literal_ip(host)
    if ip is not None:
        return ip, port
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(LOOKUP_TIMEOUT):
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise AddressError(f"lookup {host}: i/o timeout") from None
    except socket.gaierror as exc:
        no_host = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
        raise AddressError(f"lookup {host}: {'no such host' if no_host else str(exc.strerror).lower()}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(infos[0][4][0]), port


#: How many ports the kernel may hand out for a port-0 listener before one outside ``avoid`` is found.
AVOID_TRIES = 32


def bind_listener(ip: str, port: int, avoid: frozenset[int] = frozenset()) -> tuple[socket.socket, str]:
    """Bind and listen on (ip, port); return the socket and the bound address (port 0 → the real one).

    With port 0, a port in ``avoid`` is not taken: the kernel is asked again (up to
    :data:`AVOID_TRIES` times) while the ports it handed out are held, so it cannot
    hand the same one back.
    """
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    held: list[socket.socket] = []
    try:
        for _ in range(AVOID_TRIES if port == 0 and avoid else 1):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((ip, port))
                if port == 0 and sock.getsockname()[1] in avoid:
                    held.append(sock)
                    continue
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
            return sock, format_address(ip, sock.getsockname()[1])
    finally:
        for sock in held:
            sock.close()
    raise ListenError(f"listen tcp {format_address(ip, port)}: bind: every port offered is reserved ({AVOID_TRIES} tries)")


async def open_listener(address: str, avoid: frozenset[int] = frozenset()) -> tuple[socket.socket, str]:
    """Go's ``net.Listen("tcp", address)``: ``localhost:3310`` → ``127.0.0.1:3310``; errors as ListenError.
    A port-0 address gets a port outside ``avoid`` (see :func:`bind_listener`)."""
    try:
        ip, port = await resolve(address)
    except AddressError as exc:
        raise ListenError(f"listen tcp: {exc}") from None
    return bind_listener(ip, port, avoid)


async def resolved(address: str) -> str:
    """The address a proxy would report for ``address`` (Go's ``TCPAddr.String``), or AddressError."""
    return format_address(*await resolve(address))


def same_endpoint(target: tuple[str, int], listener: tuple[str, int]) -> bool:
    """Whether a connection to ``target`` (host, port) reaches a socket listening on ``listener``."""
    (host, port), (bound_host, bound_port) = target, listener
    if port != bound_port or port == 0:
        return False
    targets, bound = _ips(host), _ips(bound_host)
    if targets & bound:
        return True
    wildcard = any(_is_local(ip, loopback=False) for ip in bound)
    return wildcard and any(_is_local(ip, loopback=True) for ip in targets)


def _ips(host: str) -> set[str]:
    if not host or host.lower() in LOOPBACK_NAMES:
        return {"127.0.0.1", "::1"}  # an empty upstream host is dialled on loopback
    return {literal_ip(host) or host.lower()}


def _is_local(ip: str, *, loopback: bool) -> bool:
    """Unspecified (0.0.0.0, ::), or also loopback when ``loopback``."""
    try:
        address = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return False
    return address.is_unspecified or (loopback and address.is_loopback)
