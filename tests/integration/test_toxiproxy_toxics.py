"""Each toxic's behaviour on real sockets through a live server."""

from __future__ import annotations

import queue
import socket
import statistics
import time

import httpx
import pytest

from faults.toxiproxy.client import ProxyInfo, ToxiproxyClient
from tests.integration.toxiproxy_support import (  # noqa: F401 - fixtures
    ServerProcess,
    TcpServer,
    api,
    connect,
    echo,
    free_port,
    recv_exactly,
    recv_until_eof,
    sink_handler,
    start_server,
    toxiproxy,
)

pytestmark = pytest.mark.slow


@pytest.fixture()
def proxy(api: ToxiproxyClient, echo: TcpServer) -> ProxyInfo:
    return api.create_proxy("echo", echo.address)


def round_trip_ms(sock: socket.socket, payload: bytes = b"x") -> float:
    start = time.perf_counter()
    sock.sendall(payload)
    recv_exactly(sock, len(payload))
    return (time.perf_counter() - start) * 1000


def expect_reset(sock: socket.socket, payload: bytes = b"boom") -> None:
    sock.sendall(payload)
    with pytest.raises(ConnectionResetError):
        while sock.recv(65536):
            pass


# ------------------------------------------------------------------ reset_peer


def test_reset_peer_sends_rst(api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    api.add_toxic("echo", "reset_peer", stream="upstream", attributes={"timeout": 0})
    sock = connect(proxy.listen_port)
    expect_reset(sock)
    sock.close()


def test_reset_peer_added_mid_connection_sends_rst(api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    sock = connect(proxy.listen_port)
    assert round_trip_ms(sock) < 1000
    api.add_toxic("echo", "reset_peer", stream="downstream")
    expect_reset(sock)
    sock.close()


def test_reset_peer_waits_its_timeout(api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    api.add_toxic("echo", "reset_peer", stream="upstream", attributes={"timeout": 150})
    sock = connect(proxy.listen_port)
    start = time.perf_counter()
    expect_reset(sock)
    assert time.perf_counter() - start >= 0.145
    sock.close()


def test_reset_peer_never_fires_when_toxicity_says_no(api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    api.add_toxic("echo", "reset_peer", stream="upstream", toxicity=0.0)
    sock = connect(proxy.listen_port)
    for _ in range(3):
        round_trip_ms(sock)
    sock.shutdown(socket.SHUT_WR)
    assert recv_until_eof(sock) == b""  # orderly FIN, no RST
    sock.close()


# --------------------------------------------------------------------- latency


def test_latency_within_5ms(api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    sock = connect(proxy.listen_port)
    baseline = statistics.median(round_trip_ms(sock) for _ in range(5))
    api.add_toxic("echo", "latency", attributes={"latency": 100})
    samples = [round_trip_ms(sock) for _ in range(5)]
    assert min(samples) >= 99.0
    assert abs(statistics.median(samples) - baseline - 100) <= 5, samples
    sock.close()


def test_latency_jitter_stays_in_range(api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    api.add_toxic("echo", "latency", stream="upstream", attributes={"latency": 40, "jitter": 20})
    sock = connect(proxy.listen_port)
    samples = [round_trip_ms(sock) for _ in range(8)]
    assert min(samples) >= 19, samples  # never earlier than latency - jitter
    assert statistics.median(samples) <= 62, samples
    assert max(samples) - min(samples) > 2  # jitter really varies
    sock.close()


def test_chained_latencies_add_up(api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    api.add_toxic("echo", "latency", name="a", attributes={"latency": 30})
    api.add_toxic("echo", "latency", name="b", attributes={"latency": 30})
    sock = connect(proxy.listen_port)
    samples = [round_trip_ms(sock) for _ in range(3)]
    assert 59 <= min(samples) <= 75, samples  # 30 + 30, not 30 and not more (noise only adds)
    sock.close()


def downstream_received(url: str, proxy: str) -> int:
    """The live byte counter of what the proxy read from the upstream."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith('toxiproxy_proxy_received_bytes_total{direction="downstream"') and f'proxy="{proxy}"' in line:
            return int(line.rsplit(" ", 1)[1])
    return 0


def test_removing_a_toxic_flushes_what_it_held(toxiproxy: ServerProcess, api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    api.add_toxic("echo", "latency", attributes={"latency": 20_000})
    sock = connect(proxy.listen_port)
    sock.sendall(b"held-1")
    sock.sendall(b"held-2")
    deadline = time.monotonic() + 5
    while downstream_received(toxiproxy.url, "echo") < 12:  # the echo is now held by the toxic
        assert time.monotonic() < deadline
    start = time.perf_counter()
    api.remove_toxic("echo", "latency_downstream")
    assert recv_exactly(sock, 12) == b"held-1held-2"
    assert time.perf_counter() - start < 1.0
    sock.close()


def test_update_acts_on_open_connections(toxiproxy: ServerProcess, api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    api.add_toxic("echo", "latency", attributes={"latency": 20_000})
    sock = connect(proxy.listen_port)
    sock.sendall(b"q")
    deadline = time.monotonic() + 5
    while downstream_received(toxiproxy.url, "echo") < 1:  # held by the 20 s latency
        assert time.monotonic() < deadline
    start = time.perf_counter()
    api.update_toxic("echo", "latency_downstream", attributes={"latency": 0})
    assert recv_exactly(sock, 1) == b"q"
    assert time.perf_counter() - start < 1.0
    sock.close()


# ------------------------------------------------------------------- bandwidth


def test_bandwidth_within_5_percent(api: ToxiproxyClient, echo: TcpServer) -> None:
    size = 3_000_000
    source = TcpServer(lambda conn: (conn.sendall(b"b" * size), conn.close()))
    try:
        proxy = api.create_proxy("bw", source.address)
        api.add_toxic("bw", "bandwidth", attributes={"rate": 5000})  # 5 MB/s
        sock = connect(proxy.listen_port)
        marks: list[tuple[float, int]] = []
        total = 0
        while data := sock.recv(65536):
            total += len(data)
            marks.append((time.perf_counter(), total))
        sock.close()
    finally:
        source.close()
    assert total == size
    # Least-squares slope of bytes over time between the 10 % and 90 % marks: immune to
    # connection set-up, and a reader scheduled late now and then averages out.
    window = [(t, n) for t, n in marks if size * 0.1 <= n <= size * 0.9]
    slope = statistics.linear_regression([t for t, _ in window], [n for _, n in window]).slope
    rate = slope / 1000
    assert abs(rate - 5000) / 5000 <= 0.05, rate


# ------------------------------------------------------------------ limit_data


def test_limit_data_upstream_counts_bytes(api: ToxiproxyClient) -> None:
    received: queue.Queue[bytes] = queue.Queue()
    sink = TcpServer(sink_handler(received))
    try:
        proxy = api.create_proxy("lim", sink.address)
        api.add_toxic("lim", "limit_data", stream="upstream", attributes={"bytes": 1000})
        sock = connect(proxy.listen_port)
        try:
            sock.sendall(b"a" * 600)
            sock.sendall(b"b" * 600)
        except OSError:
            pass
        assert received.get(timeout=5) == b"a" * 600 + b"b" * 400
        assert recv_until_eof(sock) == b""
        sock.close()
    finally:
        sink.close()


def test_limit_data_downstream_counts_bytes(api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    api.add_toxic("echo", "limit_data", attributes={"bytes": 150})
    sock = connect(proxy.listen_port)
    sock.sendall(b"x" * 100)
    assert recv_exactly(sock, 100) == b"x" * 100
    sock.sendall(b"y" * 100)
    assert recv_until_eof(sock) == b"y" * 50
    sock.close()


# ---------------------------------------------------------- slow_close, timeout


def test_slow_close_delays_the_close(api: ToxiproxyClient) -> None:
    source = TcpServer(lambda conn: (conn.sendall(b"bye"), conn.close()))
    try:
        proxy = api.create_proxy("sc", source.address)
        api.add_toxic("sc", "slow_close", attributes={"delay": 300})
        sock = connect(proxy.listen_port)
        assert recv_exactly(sock, 3) == b"bye"
        start = time.perf_counter()
        assert sock.recv(10) == b""
        elapsed = time.perf_counter() - start
        sock.close()
    finally:
        source.close()
    assert 0.28 <= elapsed <= 0.45, elapsed


def test_timeout_zero_holds_until_removed(api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    api.add_toxic("echo", "timeout", attributes={"timeout": 0})
    sock = connect(proxy.listen_port)
    sock.sendall(b"lost")
    sock.settimeout(0.3)
    with pytest.raises(socket.timeout):  # nothing comes back: a hung dependency
        sock.recv(10)
    sock.settimeout(5)
    start = time.perf_counter()
    api.remove_toxic("echo", "timeout_downstream")
    assert sock.recv(10) == b""
    assert time.perf_counter() - start < 1.0
    sock.close()


def test_timeout_closes_after_its_delay(api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    api.add_toxic("echo", "timeout", stream="upstream", attributes={"timeout": 200})
    sock = connect(proxy.listen_port)
    start = time.perf_counter()
    sock.sendall(b"dropped")
    assert sock.recv(10) == b""
    assert 0.19 <= time.perf_counter() - start <= 0.5
    sock.close()


# --------------------------------------------------------------- slicer, noop


def test_slicer_splits_and_delays(api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    api.add_toxic("echo", "slicer", attributes={"average_size": 100, "size_variation": 0, "delay": 10_000})
    sock = connect(proxy.listen_port)
    payload = bytes(range(256)) * 4
    start = time.perf_counter()
    sock.sendall(payload)
    pieces = []
    while sum(map(len, pieces)) < len(payload):
        pieces.append(sock.recv(65536))
    assert b"".join(pieces) == payload
    assert len(pieces) >= 4
    assert time.perf_counter() - start >= 0.07
    sock.close()


def test_noop_passes_data(api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    api.add_toxic("echo", "noop", stream="upstream")
    sock = connect(proxy.listen_port)
    payload = b"n" * 200_000
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    sock.close()


# ------------------------------------------------------------- down, upstream


def test_down_proxy_refuses_and_closes(api: ToxiproxyClient, proxy: ProxyInfo) -> None:
    sock = connect(proxy.listen_port)
    round_trip_ms(sock)
    api.update_proxy("echo", enabled=False)
    try:
        assert sock.recv(10) == b""
    except ConnectionResetError:
        pass
    with pytest.raises(ConnectionRefusedError):
        connect(proxy.listen_port)
    api.update_proxy("echo", enabled=True)
    again = connect(proxy.listen_port)
    assert round_trip_ms(again) < 1000
    again.close()
    sock.close()


def test_unreachable_upstream_closes_the_client(api: ToxiproxyClient) -> None:
    proxy = api.create_proxy("dead", f"127.0.0.1:{free_port()}")
    sock = connect(proxy.listen_port)
    try:
        assert sock.recv(10) == b""
    except ConnectionResetError:
        pass
    sock.close()


# ------------------------------------------------------------------- toxicity


def _delayed_pattern(server: ServerProcess, upstream: str) -> list[bool]:
    with ToxiproxyClient(server.url) as client:
        proxy = client.create_proxy("seeded", upstream)
        client.add_toxic("seeded", "latency", toxicity=0.5, attributes={"latency": 60})
        pattern = []
        for _ in range(12):
            sock = connect(proxy.listen_port)
            pattern.append(min(round_trip_ms(sock), round_trip_ms(sock)) > 30)  # noise only adds
            sock.close()
        return pattern


def test_seed_makes_toxicity_reproducible(echo: TcpServer) -> None:
    patterns = []
    for _ in range(2):
        server = start_server("--seed", "1234")
        try:
            patterns.append(_delayed_pattern(server, echo.address))
        finally:
            server.stop()
    assert patterns[0] == patterns[1]
    assert any(patterns[0]) and not all(patterns[0])  # drawn per connection
