"""Seeded fuzzing of the fault proxy's API: random and malformed HTTP requests and JSON bodies.

Invariants, on a live server: no 5xx except the documented ones (bind and
address errors, which the original answers 500; Go's own 501 and 505 for an
unknown transfer encoding or HTTP version), ``/version`` answered within 1 s
throughout (a watcher polls it while the fuzzers run), and once everything is
deleted the server's fd count is back to its baseline and its RSS close to it.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx
import pytest

from tests.integration.toxiproxy_support import ServerProcess, start_server

pytestmark = pytest.mark.slow

SEED = 20260911
WORKERS = 4
REQUESTS_PER_WORKER = 1500
RSS_SLACK_KB = 24 * 1024  # allocator pages Python keeps after 1 MiB bodies come and go

DOCUMENTED_5XX = re.compile(
    rb'^HTTP/1\.1 (500 Internal Server Error\r\n.*"error":"(listen tcp|address |lookup )'
    rb"|501 Not Implemented\r\n.*Unsupported transfer encoding$"
    rb"|505 HTTP Version Not Supported: unsupported protocol version\r\n)",
    re.S,
)

NAMES = ["a", "b", "pg", "x\u00e9", "n" * 200, "n" * 201, "a/b", "tab\t", "\ud800", "", "%2F", "..", "?q"]
HOSTS = ["127.0.0.1", "localhost", "", "[::1]", "999.1.1.1", "nosuch.invalid", "127.1", "[::ffff:127.0.0.1]"]
PORTS = ["0", "1", "65535", "65536", "-1", "+0", "http", "x", ""]
KEYS = ["name", "listen", "upstream", "enabled", "type", "stream", "toxicity", "attributes", "toxics", "NAME", "extra"]
ATTRIBUTES = ["latency", "jitter", "rate", "delay", "timeout", "bytes", "average_size", "size_variation", "latncy"]
TYPES = ["latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data", "noop", "nope", ""]
METHODS = ["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS", "TRACE", "G\u00e9T", ""]


def random_number(rng: random.Random) -> str:
    return rng.choice(
        [
            str(rng.randint(-5, 5)),
            str(rng.randint(-(2**64), 2**64)),
            f"{rng.uniform(-2, 2):.6f}",
            "1e300",
            "-1e-300",
            "9" * rng.choice([19, 20, 400, 5000]),
            "0.5e1",
            "1E+2",
        ]
    )


def random_value(rng: random.Random, depth: int = 0) -> str:
    """A JSON text (as a string, so numbers keep any form) built from the API's own words."""
    kind = rng.randrange(9 if depth < 3 else 5)
    if kind == 0:
        return rng.choice(["true", "false", "null"])
    if kind == 1:
        return random_number(rng)
    if kind in (2, 3):
        return json.dumps(random_string(rng))
    if kind == 4:
        return json.dumps(f"{rng.choice(HOSTS)}:{rng.choice(PORTS)}")
    if kind == 5:
        return "[" + ",".join(random_value(rng, depth + 1) for _ in range(rng.randrange(4))) + "]"
    keys = KEYS if depth == 0 else KEYS + ATTRIBUTES
    return "{" + ",".join(f"{json.dumps(rng.choice(keys))}:{random_value(rng, depth + 1)}" for _ in range(rng.randrange(6))) + "}"


def random_string(rng: random.Random) -> str:
    return rng.choice([rng.choice(NAMES), rng.choice(TYPES), rng.choice(["upstream", "downstream", "UpStream"]), "x" * rng.randrange(500)])


def plausible_body(rng: random.Random) -> bytes:
    """Mostly well-formed API bodies with random values, to get past the decoder into the handlers."""
    choice = rng.randrange(5)
    if choice == 0:  # a proxy
        fields = {"name": random_string(rng), "upstream": f"{rng.choice(HOSTS)}:{rng.choice(PORTS)}"}
        if rng.random() < 0.7:
            fields["listen"] = f"{rng.choice(HOSTS[:4])}:0" if rng.random() < 0.8 else f"{rng.choice(HOSTS)}:{rng.choice(PORTS)}"
        if rng.random() < 0.5:
            fields["enabled"] = rng.random() < 0.5
        return json.dumps(fields).encode()
    if choice == 1:  # a toxic
        attributes = ",".join(f'"{rng.choice(ATTRIBUTES)}":{random_number(rng)}' for _ in range(rng.randrange(3)))
        stream = rng.choice(["upstream", "downstream", "sideways"])
        return (
            f'{{"type":"{rng.choice(TYPES)}","stream":"{stream}","toxicity":{random_number(rng)},'
            f'"attributes":{{{attributes}}}}}'
        ).encode()
    if choice == 2:  # a populate array
        return ("[" + ",".join(plausible_body(rng).decode() for _ in range(rng.randrange(4))) + "]").encode()
    return random_value(rng).encode()


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        position = rng.randrange(len(out) + 1)
        action = rng.randrange(4)
        if action == 0 and out:
            del out[min(position, len(out) - 1)]
        elif action == 1:
            out.insert(position, rng.randrange(256))
        elif action == 2:
            out[position:position] = rng.choice([b"[" * 40, b"\\ud800", b"\x00", b"1e999", b'"', b"}", b"\r\n"])
        else:
            del out[position:]
    return bytes(out)


def random_body(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.02:
        return b"[" + b",".join([plausible_body(rng)] * rng.randrange(8000, 12000)) + b"]"  # around 1 MiB
    if roll < 0.04:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(2000)))
    body = plausible_body(rng)
    return mutate(rng, body) if rng.random() < 0.3 else body


def random_path(rng: random.Random) -> str:
    name = rng.choice(NAMES)
    quoted = quote(name.encode("utf-8", "surrogatepass"), safe="")
    toxic = rng.choice(["latency_downstream", "t", "noop_downstream", quoted])
    return rng.choice(
        [
            "/proxies",
            f"/proxies/{quoted}",
            f"/proxies/{quoted}/toxics",
            f"/proxies/{quoted}/toxics/{toxic}",
            "/populate",
            "/reset",
            "/version",
            "/metrics",
            "/proxies/",
            f"/{random_string(rng)[:20]}",
            "/proxies?x=%zz",
            "*",
        ]
    )


def framing(rng: random.Random, body: bytes) -> bytes:
    """Headers that frame ``body``: mostly right, sometimes a smuggling shape or a lie."""
    roll = rng.random()
    if roll < 0.75:
        return b"Content-Length: %d\r\n" % len(body)
    if roll < 0.85:
        return b"Transfer-Encoding: chunked\r\n"
    return rng.choice(
        [
            b"Content-Length: %d\r\nContent-Length: 1\r\n" % len(body),
            b"Content-Length: 1_0\r\n",
            b"Content-Length: +%d\r\n" % len(body),
            b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(body),
            b"Transfer-Encoding: xchunkedx\r\n",
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            b"Content-Length: 99999999999999999999999\r\n",
            b"Content-Length: %d\r\n" % (len(body) + 10),
        ]
    )


def chunked(rng: random.Random, body: bytes) -> bytes:
    out = b""
    rest = body
    while rest:
        size = rng.randrange(1, 4096)
        piece, rest = rest[:size], rest[size:]
        size_text = rng.choice([b"%x" % len(piece), b"%X;ext=1" % len(piece), b"0_%x" % len(piece), b"%x " % len(piece)])
        out += size_text + b"\r\n" + piece + b"\r\n"
    return out + b"0\r\n\r\n"


VALID_NAMES = ["a", "b", "pg", "x\u00e9"]


def api_call(rng: random.Random) -> bytes:
    """A well-framed request whose method, path and body fit together, so the handlers run."""
    name = rng.choice(VALID_NAMES)
    path_name = quote(name, safe="")
    toxic = rng.choice(["latency_downstream", "noop_upstream", "t"])
    listen = rng.choice(["127.0.0.1:0", "", "localhost:0", "[::1]:0", "nonsense", "999.1.1.1:80", "127.0.0.1:99999"])
    upstream = f"{rng.choice(HOSTS)}:{rng.choice(PORTS)}"
    calls = [
        ("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": rng.random() < 0.8}),
        ("POST", f"/proxies/{path_name}/toxics", None),
        ("PATCH", f"/proxies/{path_name}", {"listen": listen} if rng.random() < 0.5 else {"enabled": rng.random() < 0.5}),
        ("PATCH", f"/proxies/{path_name}/toxics/{toxic}", {"toxicity": rng.random(), "attributes": {}}),
        ("DELETE", rng.choice([f"/proxies/{path_name}", f"/proxies/{path_name}/toxics/{toxic}"]), None),
        ("GET", rng.choice(["/proxies", f"/proxies/{path_name}", f"/proxies/{path_name}/toxics", "/metrics", "/version"]), None),
        ("POST", rng.choice(["/reset", "/populate"]), None),
    ]
    method, path, fields = rng.choice(calls)
    if path == "/populate":
        body = plausible_body(rng) if rng.random() < 0.3 else json.dumps(
            [{"name": n, "upstream": upstream, "listen": "127.0.0.1:0"} for n in rng.sample(VALID_NAMES, 2)]
        ).encode()
    elif path.endswith("/toxics"):
        body = plausible_body(rng) if rng.random() < 0.5 else json.dumps(
            {"type": rng.choice(TYPES[:-2]), "name": toxic, "stream": rng.choice(["upstream", "downstream"])}
        ).encode()
    else:
        body = json.dumps(fields).encode() if fields is not None else b""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )


def random_request(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return api_call(rng)
    body = random_body(rng) if rng.random() < 0.8 else b""
    method = rng.choice(METHODS if rng.random() < 0.2 else ["GET", "POST", "PATCH", "DELETE", "POST"]).encode()
    version = rng.choice([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b"HTTP/1.2"])
    host = rng.choice([b"Host: 127.0.0.1\r\n"] * 9 + [b"", b"Host: a\r\nHost: b\r\n", b"Host: a b\r\n"])
    extra = rng.choice(
        [b""] * 6
        + [b"Expect: 100-continue\r\n", b"Expect: nothing\r\n", b"User-Agent: Mozilla/5.0\r\n", b"X: \x01\r\n", b" folded\r\n", b"X" * 70_000 + b"\r\n"]
    )
    framed = framing(rng, body)
    payload = chunked(rng, body) if b"chunked" in framed else body
    head = method + b" " + random_path(rng).encode("utf-8", "surrogatepass") + b" " + version + b"\r\n" + host + extra + framed + b"\r\n"
    request = head + payload
    if rng.random() < 0.05:
        request = mutate(rng, request)
    return request


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    unexpected: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def send(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)  # then the server ends the connection after its answer
        except OSError:
            pass  # refused before all was sent: read what it said
        parts = []
        try:
            while data := sock.recv(65536):
                parts.append(data)
        except ConnectionResetError:
            pass
        return b"".join(parts)


def fuzz(port: int, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    for _ in range(REQUESTS_PER_WORKER):
        request = random_request(rng)
        answer = send(port, request)
        if answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
            answer = answer[25:]
        status = answer[9:12].decode("latin-1") if answer.startswith(b"HTTP/1.1 ") else "none"
        with tally.lock:
            tally.statuses[status] += 1
            if status.startswith("5") and not DOCUMENTED_5XX.match(answer):
                tally.unexpected.append(request[:300] + b" -> " + answer[:300])


def rss_kb(server: ServerProcess) -> int:
    for line in open(f"/proc/{server.pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def delete_all(client: httpx.Client) -> None:
    for name in client.get("/proxies").json():
        assert client.delete(f"/proxies/{quote(name, safe='')}").status_code == 204


def test_random_and_malformed_requests(tmp_path: object) -> None:
    server = start_server()
    client = httpx.Client(base_url=server.url, timeout=5)
    try:
        warm = Tally()
        fuzz(server.port, SEED - 1, warm)  # the allocator and caches reach their working size first
        delete_all(client)
        baseline_fds, baseline_rss = server.fd_count(), rss_kb(server)

        tally = Tally()
        slow_answers: list[float] = []
        done = threading.Event()

        def watch() -> None:
            with httpx.Client(base_url=server.url, timeout=1.0) as watcher:
                while not done.is_set():
                    started = time.monotonic()
                    try:
                        ok = watcher.get("/version").status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    if not ok:
                        slow_answers.append(time.monotonic() - started)
                    done.wait(0.1)

        watcher = threading.Thread(target=watch)
        watcher.start()
        workers = [threading.Thread(target=fuzz, args=(server.port, SEED + k, tally)) for k in range(WORKERS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        done.set()
        watcher.join()

        total = sum(tally.statuses.values())
        print(f"fuzz: {total} requests, statuses {dict(sorted(tally.statuses.items()))}")
        assert total == WORKERS * REQUESTS_PER_WORKER
        assert tally.unexpected == []
        assert slow_answers == []  # /version always answered within 1 s
        assert server.process.poll() is None

        delete_all(client)
        deadline = time.monotonic() + 10
        while server.fd_count() > baseline_fds and time.monotonic() < deadline:
            time.sleep(0.05)  # closed connections are reaped by the server's own timeouts
        rss = rss_kb(server)
        print(f"fuzz: fds {baseline_fds} -> {server.fd_count()}, RSS {baseline_rss} kB -> {rss} kB")
        assert server.fd_count() <= baseline_fds
        assert rss <= baseline_rss + RSS_SLACK_KB
    finally:
        client.close()
        log = server.log()
        assert server.stop() == 0
    assert "Traceback" not in log, log
