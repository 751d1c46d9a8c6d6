"""The bulk fast path (splice relay): exact bytes, live counters, toxics and closing mid-stream."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import httpx
import pytest

from faults.toxiproxy.client import ProxyInfo, ToxiproxyClient
from faults.toxiproxy.splice import SPLICE_AFTER
from tests.integration.toxiproxy_support import (  # noqa: F401 - fixtures
    ServerProcess,
    TcpServer,
    api,
    connect,
    echo,
    recv_exactly,
    toxiproxy,
)

pytestmark = pytest.mark.slow

BULK = 4 * SPLICE_AFTER


@pytest.fixture()
def proxy(api: ToxiproxyClient, echo: TcpServer) -> ProxyInfo:
    return api.create_proxy("bulk", echo.address)


def pattern(size: int) -> bytes:
    block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def echo_bulk(sock: socket.socket, size: int) -> bytes:
    """Send ``size`` bytes from a thread while reading the echo; return what came back."""
    payload = pattern(size)
    sender = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
    sender.start()
    data = recv_exactly(sock, size)
    sender.join(5)
    return data


def splice_threads(pid: int) -> int:
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as comm:
                names.append(comm.read().strip())
        except OSError:
            pass
    return sum(name.startswith("toxiproxy-splic") for name in names)


def wait_until(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_bulk_bytes_are_exact_and_counted_live(toxiproxy: ServerProcess, proxy: ProxyInfo, echo: TcpServer) -> None:
    sock = connect(proxy.listen_port)
    assert echo_bulk(sock, BULK) == pattern(BULK)
    assert splice_threads(toxiproxy.pid) >= 1  # the relay took over
    metrics = httpx.get(f"{toxiproxy.url}/metrics", timeout=5).text
    labels = f'listener="{proxy.listen}",proxy="bulk",upstream="{echo.address}"'
    for direction in ("upstream", "downstream"):
        assert f'toxiproxy_proxy_sent_bytes_total{{direction="{direction}",{labels}}} {BULK}' in metrics
    sock.close()
    assert wait_until(lambda: splice_threads(toxiproxy.pid) == 0)


def test_toxics_take_over_from_the_relay(toxiproxy: ServerProcess, api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    sock = connect(proxy.listen_port)
    assert echo_bulk(sock, BULK) == pattern(BULK)
    api.add_toxic("bulk", "latency", attributes={"latency": 100})
    start = time.perf_counter()
    sock.sendall(b"p")
    assert recv_exactly(sock, 1) == b"p"
    assert time.perf_counter() - start >= 0.099
    api.remove_toxic("bulk", "latency_downstream")
    assert echo_bulk(sock, BULK) == pattern(BULK)  # and back to the fast path
    api.add_toxic("bulk", "reset_peer")
    sock.sendall(b"x")
    with pytest.raises(ConnectionResetError):
        while sock.recv(65536):
            pass
    sock.close()


def test_disable_closes_a_spliced_connection(toxiproxy: ServerProcess, api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    assert wait_until(lambda: splice_threads(toxiproxy.pid) == 0)  # earlier tests' relays are gone
    baseline = toxiproxy.fd_count()
    sock = connect(proxy.listen_port)
    assert echo_bulk(sock, BULK) == pattern(BULK)
    api.update_proxy("bulk", enabled=False)
    try:
        assert sock.recv(10) == b""
    except ConnectionResetError:
        pass
    sock.close()
    api.update_proxy("bulk", enabled=True)
    assert wait_until(lambda: toxiproxy.fd_count() <= baseline)
    assert wait_until(lambda: splice_threads(toxiproxy.pid) == 0)


def test_half_close_after_bulk(proxy: ProxyInfo) -> None:
    sock = connect(proxy.listen_port)
    payload = pattern(BULK)
    sender = threading.Thread(target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR)), daemon=True)
    sender.start()
    received = bytearray()
    while data := sock.recv(1 << 16):
        received += data
    sender.join(5)
    assert bytes(received) == payload
    sock.close()


def test_toxicity_switched_on_stops_the_relay(toxiproxy: ServerProcess, api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    api.add_toxic("bulk", "latency", toxicity=0.0, attributes={"latency": 100})
    sock = connect(proxy.listen_port)
    assert echo_bulk(sock, BULK) == pattern(BULK)
    assert splice_threads(toxiproxy.pid) >= 1  # the toxic is off: bulk went kernel-side
    api.update_toxic("bulk", "latency_downstream", toxicity=1.0)
    start = time.perf_counter()
    sock.sendall(b"p")
    assert recv_exactly(sock, 1) == b"p"
    assert time.perf_counter() - start >= 0.099
    sock.close()
