"""Shared fixtures for the toxiproxy tests: a real server process and real TCP peers."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

import httpx
import pytest

from faults.toxiproxy.client import ToxiproxyClient

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 15.0


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    url: str
    stderr: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def log(self) -> str:
        """What the server wrote to stderr so far."""
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.stderr.close()
        return self.process.returncode


def start_server(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """Start ``python -m faults.toxiproxy --port 0 ARGS`` (``env``: variables besides this
    process's) and wait for its listening line."""
    stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server never blocks on it
    process = subprocess.Popen(
        [sys.executable, "-m", "faults.toxiproxy", "--port", "0", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
    try:
        line = lines.get(timeout=START_TIMEOUT)
    except queue.Empty:
        process.kill()
        raise RuntimeError("toxiproxy did not start") from None
    if not line.startswith("toxiproxy listening on http://"):
        process.kill()
        process.wait(5)
        stderr.seek(0)
        raise RuntimeError(f"unexpected first line {line!r}; stderr: {stderr.read().decode(errors='replace')}")
    return ServerProcess(process, line.strip().rsplit(" ", 1)[1], stderr)


@pytest.fixture(scope="module")
def toxiproxy() -> Iterator[ServerProcess]:
    server = start_server("--seed", "7")
    yield server
    log = server.log()
    assert server.stop() == 0
    assert "Traceback" not in log, log  # no exception escaped anywhere in the server


@pytest.fixture()
def api(toxiproxy: ServerProcess) -> Iterator[ToxiproxyClient]:
    """A client on a clean server; every proxy is deleted afterwards."""
    client = ToxiproxyClient(toxiproxy.url, timeout=5.0)
    for name in client.proxies():
        client.delete_proxy(name)
    yield client
    for name in client.proxies():
        client.delete_proxy(name)
    client.close()


@pytest.fixture()
def http(toxiproxy: ServerProcess, api: ToxiproxyClient) -> Iterator[httpx.Client]:
    """A raw HTTP client on a clean server."""
    with httpx.Client(base_url=toxiproxy.url, timeout=5.0) as client:
        yield client


def error(message: str, status: int) -> bytes:
    """The body of an API error, as Go's http.Error sends it."""
    return json.dumps({"error": message, "status": status}, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.content == error(message, status)


class TcpServer:
    """A threaded TCP server on 127.0.0.1 running ``handler(conn)`` per connection."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.accepted: queue.Queue[socket.socket] = queue.Queue()
        self._conns: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self.accepted.put(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass

    def close(self) -> None:
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass
        self._thread.join(timeout=5)


def echo_handler(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def sink_handler(received: "queue.Queue[bytes]") -> Callable[[socket.socket], None]:
    """Read until EOF and put everything received into ``received``."""

    def handler(conn: socket.socket) -> None:
        parts = []
        with conn:
            while data := conn.recv(65536):
                parts.append(data)
        received.put(b"".join(parts))

    return handler


@pytest.fixture(scope="module")
def echo() -> Iterator[TcpServer]:
    server = TcpServer(echo_handler)
    yield server
    server.close()


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts = []
    while size:
        data = sock.recv(size)
        if not data:
            raise EOFError("connection closed early")
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def recv_until_eof(sock: socket.socket) -> bytes:
    parts = []
    while data := sock.recv(65536):
        parts.append(data)
    return b"".join(parts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
