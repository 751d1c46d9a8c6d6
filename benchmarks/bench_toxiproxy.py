"""Throughput and added latency of the toxiproxy server with no toxics, against a direct connection.

Run: ``python benchmarks/bench_toxiproxy.py [--gib 1] [--pings 20000]``

One run measures both paths on the same machine:

Each measurement is repeated (``--repeat``, interleaved) and the best throughput
kept, because a shared 2-core machine is noisy.

* throughput: a 1 GiB stream from a sender thread to a sink thread (recv_into a
  reused buffer), directly and through a proxy, in MB/s (10^6 bytes);
* latency: 1-byte ping-pong against an echo thread, directly and through the
  proxy; the proxy's added round-trip latency is reported at p50 and p99 (µs).

The proxy runs as its own process (``python -m faults.toxiproxy``), as in use;
the stream is also measured through a second server with the splice relay
disabled (``FAULTS_TOXIPROXY_SPLICE=0``), i.e. every byte through the event loop.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
CHUNK = 1 << 20


def _sink(server: socket.socket, total: int, done: threading.Event, result: list[float]) -> None:
    conn, _ = server.accept()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    got = 0
    while got < total:
        n = conn.recv_into(view)
        if not n:
            break
        got += n
    result.append(time.perf_counter())
    result.append(got)
    conn.close()
    done.set()


def throughput(port_of_target: int, sink: socket.socket, total: int) -> float:
    """MB/s of a ``total``-byte stream sent to ``port_of_target`` and drained by ``sink``."""
    done = threading.Event()
    result: list[float] = []
    thread = threading.Thread(target=_sink, args=(sink, total, done, result), daemon=True)
    thread.start()
    payload = memoryview(b"\0" * CHUNK)
    with socket.create_connection(("127.0.0.1", port_of_target)) as sock:
        start = time.perf_counter()
        sent = 0
        while sent < total:
            sock.sendall(payload[: min(CHUNK, total - sent)])
            sent += min(CHUNK, total - sent)
        done.wait(120)
    thread.join(5)
    end, got = result
    assert got == total, f"received {got} of {total} bytes"
    return total / (end - start) / 1e6


def _echo(server: socket.socket) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while data := conn.recv(64):
                conn.sendall(data)


def ping_pong(port: int, count: int) -> list[float]:
    """Round-trip times in µs of ``count`` 1-byte exchanges (after a warm-up)."""
    samples = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(count + 500):
            start = time.perf_counter_ns()
            sock.sendall(b"x")
            sock.recv(1)
            if i >= 500:
                samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_proxy_server(splice: bool = True) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "FAULTS_TOXIPROXY_SPLICE": "1" if splice else "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "faults.toxiproxy", "--port", "0"], cwd=REPO, stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    return process, line.rsplit(" ", 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="stream size in GiB (default 1)")
    parser.add_argument("--pings", type=int, default=20000, help="round trips per path (default 20000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per path; best throughput is kept (default 3)")
    args = parser.parse_args()
    total = int(args.gib * (1 << 30))

    process, url = start_proxy_server()
    loop_only, loop_url = start_proxy_server(splice=False)
    try:
        sink = socket.create_server(("127.0.0.1", 0))
        echo = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=_echo, args=(echo,), daemon=True).start()
        with httpx.Client(base_url=url, timeout=5) as api:
            sink_proxy = api.post("/proxies", json={"name": "sink", "upstream": f"127.0.0.1:{sink.getsockname()[1]}"})
            echo_proxy = api.post("/proxies", json={"name": "echo", "upstream": f"127.0.0.1:{echo.getsockname()[1]}"})
        with httpx.Client(base_url=loop_url, timeout=5) as api:
            loop_proxy = api.post("/proxies", json={"name": "sink", "upstream": f"127.0.0.1:{sink.getsockname()[1]}"})
        loop_port = int(loop_proxy.json()["listen"].rsplit(":", 1)[1])
        sink_port = int(sink_proxy.json()["listen"].rsplit(":", 1)[1])
        echo_port = int(echo_proxy.json()["listen"].rsplit(":", 1)[1])

        direct_runs, proxy_runs, loop_runs = [], [], []
        direct_rtt, proxy_rtt = [], []
        for _ in range(args.repeat):  # interleaved, so both paths see the same machine load
            direct_runs.append(throughput(sink.getsockname()[1], sink, total))
            proxy_runs.append(throughput(sink_port, sink, total))
            loop_runs.append(throughput(loop_port, sink, total))
            direct_rtt += ping_pong(echo.getsockname()[1], args.pings)
            proxy_rtt += ping_pong(echo_port, args.pings)
        direct_mbs, proxy_mbs = max(direct_runs), max(proxy_runs)
    finally:
        for proc in (process, loop_only):
            proc.terminate()
            proc.wait(10)

    d50, d99 = percentile(direct_rtt, 0.5), percentile(direct_rtt, 0.99)
    p50, p99 = percentile(proxy_rtt, 0.5), percentile(proxy_rtt, 0.99)
    print(f"machine: {os.cpu_count()} cpus, python {sys.version.split()[0]}")
    print(f"throughput runs (MB/s): direct {[round(x) for x in direct_runs]}, proxy {[round(x) for x in proxy_runs]}")
    print(f"throughput ({args.gib:g} GiB stream, best of {args.repeat}): direct {direct_mbs:,.0f} MB/s, proxy {proxy_mbs:,.0f} MB/s "
          f"({proxy_mbs / direct_mbs:.0%} of direct)")
    print(f"  event loop only (FAULTS_TOXIPROXY_SPLICE=0): best {max(loop_runs):,.0f} MB/s "
          f"({max(loop_runs) / direct_mbs:.0%} of direct); runs {[round(x) for x in loop_runs]}")
    print(f"round trip (1-byte ping-pong, {len(proxy_rtt)} samples per path): direct p50 {d50:.1f} µs p99 {d99:.1f} µs; "
          f"proxy p50 {p50:.1f} µs p99 {p99:.1f} µs")
    print(f"added by the proxy: p50 {p50 - d50:.1f} µs, p99 {p99 - d99:.1f} µs "
          f"(mean {statistics.fmean(proxy_rtt) - statistics.fmean(direct_rtt):.1f} µs)")


if __name__ == "__main__":
    main()
