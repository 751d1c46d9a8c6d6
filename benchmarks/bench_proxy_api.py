"""Latency of the fault proxy's control API under 500 concurrent clients, with and without 400 slowloris clients.

Run: ``python benchmarks/bench_proxy_api.py [--clients 500] [--slow 400] [--requests 20]``

The server runs as its own process (``python -m faults.toxiproxy``, as in use),
holding 20 proxies with toxics. Each API client keeps one connection and sends
``--requests`` requests (mostly reads; one in ten adds and removes a toxic),
each after a think time drawn from 0.2–0.6 s: an open workload of about
``clients / 0.4`` requests per second, where latency is the server's answer
time rather than the queue a saturating loop would build. One phase runs it
alone (the baseline), the next with ``--slow`` clients that each send a request
head one byte per second and never finish it (reconnecting when cut). The
latency of every request is measured from send to the last byte of the answer;
p50/p99 are printed for both phases side by side, with their ratio. Exit 1 if
the p99 under attack reaches 100 ms. The server's CPU time per request is
printed too: unlike latency, it does not depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
P99_LIMIT_MS = 100.0


def start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "faults.toxiproxy", "--port", "0"], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("toxiproxy listening on http://"):
        process.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return process, line.strip().rsplit(" ", 1)[1]


def populate(url: str) -> None:
    toxics = [{"type": "latency", "name": f"l{k}", "attributes": {"latency": k}} for k in range(3)]
    items = [{"name": f"p{k}", "upstream": f"127.0.0.1:{1000 + k}", "toxics": toxics} for k in range(20)]
    assert httpx.post(f"{url}/populate", json=items, timeout=10).status_code == 201


def request_bytes(method: str, path: str, body: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return int(head[9:12])


async def api_client(port: int, index: int, count: int, latencies: list[float], rng: random.Random) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    proxy = f"p{index % 20}"
    toxic_body = f'{{"type":"noop","name":"c{index}"}}'.encode()
    try:
        for number in range(count):
            await asyncio.sleep(rng.uniform(0.2, 0.6))  # think time: an open workload, not a saturating loop
            if number % 10 == 9:
                requests = [request_bytes("POST", f"/proxies/{proxy}/toxics", toxic_body), request_bytes("DELETE", f"/proxies/{proxy}/toxics/c{index}")]
            else:
                path = rng.choice(["/version", "/proxies", f"/proxies/{proxy}", f"/proxies/{proxy}/toxics"])
                requests = [request_bytes("GET", path)]
            for request in requests:
                started = time.perf_counter()  # uvloop's loop.time() only has milliseconds
                status = await exchange(reader, writer, request)
                latencies.append(time.perf_counter() - started)
                assert status < 400, status
    finally:
        writer.close()


async def slowloris(port: int, delay: float) -> None:
    """Send a request head one byte per second, forever; reconnect when the server cuts it."""
    await asyncio.sleep(delay)  # attackers start spread out, as they would arrive
    head = b"GET /version HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 10_000
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            for byte in head:
                writer.write(bytes([byte]))
                await asyncio.sleep(1.0)
                if reader.at_eof():
                    break
        except ConnectionError:
            pass
        finally:
            writer.close()


def run_attackers(port: int, count: int) -> None:
    """The slow clients, in their own process so they do not load the measuring client's loop."""
    async def main() -> None:
        await asyncio.gather(*(slowloris(port, k / count) for k in range(count)))

    asyncio.run(main())


async def phase(port: int, clients: int, requests: int, seed: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(api_client(port, k, requests, latencies, random.Random(seed + k)) for k in range(clients)))
    return latencies, len(latencies) / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the server process has used (independent of what else the machine runs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_sockets(pid: int) -> int:
    """Sockets the server process holds (its listeners plus one per connection)."""
    return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd).startswith("socket:"))


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--slow", type=int, default=400)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    process, url = start_server()
    try:
        populate(url)
        port = int(url.rsplit(":", 1)[1])
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            cpu = cpu_seconds(process.pid)
            base, base_rate = runner.run(phase(port, args.clients, args.requests, 1))
            base_cpu = cpu_seconds(process.pid) - cpu
            attacker = multiprocessing.Process(target=run_attackers, args=(port, args.slow), daemon=True)
            attacker.start()
            deadline = time.monotonic() + 30
            while server_sockets(process.pid) < args.slow and time.monotonic() < deadline:
                time.sleep(0.1)  # wait until the server holds every slow connection
            held = server_sockets(process.pid)
            try:
                cpu = cpu_seconds(process.pid)
                attack, attack_rate = runner.run(phase(port, args.clients, args.requests, 1))
                attack_cpu = cpu_seconds(process.pid) - cpu
            finally:
                attacker.terminate()
                attacker.join(10)
    finally:
        process.terminate()
        process.wait(10)
    rows = [("baseline", base, base_rate, base_cpu), (f"+{args.slow} slowloris", attack, attack_rate, attack_cpu)]
    print(f"fault proxy API, {args.clients} clients x {args.requests} requests (+ toxic add/remove), think 0.2-0.6 s")
    print(f"sockets held by the server when the attacked phase started: {held} (slow clients: {args.slow})")
    print(f"{'phase':<16}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'server CPU µs/req':>19}")
    for name, values, rate, cpu in rows:
        print(
            f"{name:<16}{len(values):>9}{rate:>8.0f}{percentile(values, 50):>9.2f}"
            f"{percentile(values, 99):>9.2f}{max(values) * 1000:>9.1f}{cpu / len(values) * 1e6:>19.0f}"
        )
    p99 = percentile(attack, 99)
    print(f"p99 with slowloris / baseline: {p99 / percentile(base, 99):.2f}x; limit {P99_LIMIT_MS:.0f} ms")
    if p99 >= P99_LIMIT_MS:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
