"""Soak: 200 streaming connections while toxics are added and removed 1,000 times.

Every API call must answer within 1 s, every connection must keep streaming
correct bytes, and the server's file descriptors must return to baseline.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from faults.toxiproxy.client import ToxiproxyClient
from tests.integration.toxiproxy_support import ServerProcess, start_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CONNECTIONS = 200
CYCLES = 1000
BLOCK = 4096
PACE = 0.02  # seconds between blocks per connection (~40 MB/s in total)
TOXICS = [
    ("latency", {"latency": 1, "jitter": 1}),
    ("bandwidth", {"rate": 100_000}),
    ("slicer", {"average_size": 1024, "size_variation": 256, "delay": 10}),
    ("noop", {}),
    ("reset_peer", {"timeout": 0}),  # toxicity 0: must never fire
    ("slow_close", {"delay": 10}),
]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _stream(port: int, index: int, stop: asyncio.Event, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pattern = bytes([index % 251]) * BLOCK
    try:
        while not stop.is_set():
            writer.write(pattern)
            echoed = await asyncio.wait_for(reader.readexactly(BLOCK), 10)
            assert echoed == pattern
            counts[index] += 1
            await asyncio.sleep(PACE)  # pacing, not synchronisation: keeps 2 cores for the API
    finally:
        writer.close()
        await writer.wait_closed()


def _churn(url: str, proxy: str) -> list[float]:
    durations: list[float] = []
    with ToxiproxyClient(url, timeout=5.0) as client:
        for cycle in range(CYCLES):
            kind, attributes = TOXICS[cycle % len(TOXICS)]
            stream = "upstream" if cycle % 2 else "downstream"
            toxicity = 0.0 if kind == "reset_peer" else 1.0
            start = time.perf_counter()
            client.add_toxic(proxy, kind, stream=stream, name=f"t{cycle}", toxicity=toxicity, attributes=attributes)
            durations.append(time.perf_counter() - start)
            if cycle >= 2:  # keep a short chain alive while churning
                start = time.perf_counter()
                client.remove_toxic(proxy, f"t{cycle - 2}")
                durations.append(time.perf_counter() - start)
        for name in (f"t{CYCLES - 2}", f"t{CYCLES - 1}"):
            start = time.perf_counter()
            client.remove_toxic(proxy, name)
            durations.append(time.perf_counter() - start)
    return durations


async def _wait_fds(server: ServerProcess, target: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (count := server.fd_count()) > target and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return count


def test_soak_toxic_churn_under_traffic() -> None:
    server = start_server("--seed", "11")

    async def scenario() -> None:
        upstream = await asyncio.start_server(_echo, "127.0.0.1", 0)
        up_port = upstream.sockets[0].getsockname()[1]
        with ToxiproxyClient(server.url) as client:
            port = client.create_proxy("soak", f"127.0.0.1:{up_port}").listen_port
        baseline = server.fd_count()

        stop = asyncio.Event()
        counts = [0] * CONNECTIONS
        streams = [asyncio.create_task(_stream(port, i, stop, counts)) for i in range(CONNECTIONS)]
        durations = await asyncio.to_thread(_churn, server.url, "soak")
        before = list(counts)
        while any(c == b for c, b in zip(counts, before)):  # every connection still streams
            done = [s for s in streams if s.done()]
            if done:
                done[0].result()  # surface a failure
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*streams)
        upstream.close()

        print(f"api calls: n={len(durations)} mean={sum(durations)/len(durations)*1000:.1f}ms max={max(durations)*1000:.1f}ms blocks={sum(counts)}")
        assert len(durations) == 2 * CYCLES
        assert max(durations) < 1.0, f"slowest API call {max(durations):.3f}s"
        assert min(counts) > 0
        assert await _wait_fds(server, baseline, 10.0) <= baseline
        with ToxiproxyClient(server.url) as client:
            assert client.toxics("soak") == []

    try:
        asyncio.run(scenario())
    finally:
        log = server.log()
        assert server.stop() == 0
    assert "Traceback" not in log, log
