"""The warm command process: forks a ready-imported ``replica`` for each command.

``python -m replica.warm.server SOCKET`` imports what commands use
(:data:`PRELOAD`), then listens on ``SOCKET`` (bound under a temporary name and
renamed into place, so the socket exists only once it is served). One thread and
one ``selectors`` loop: it reads requests (bounded in size, time and number of
clients), checks the peer is its own user, forks a command per request, forwards
the client's signals to it, and reports its exit status. A client that goes away
interrupts its command (SIGINT, then SIGKILL after :data:`KILL_GRACE_S`); SIGTERM
stops the server after its commands, which it interrupts.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from replica.drivers.local.process import die_with_parent
from replica.warm.protocol import (
    FORWARDED_SIGNALS,
    HEADER,
    MAX_REQUEST_BYTES,
    REQUEST_TIMEOUT_S,
    STREAMS,
    answer,
    identity,
    parse_request,
)

if TYPE_CHECKING:
    from replica.drivers.local.group import ProcessGroup
    from replica.drivers.local.process import ManagedProcess

#: What the commands that run on a stack import, loaded once here.
PRELOAD = (
    "typer", "typer.main", "rich.console", "rich.table", "rich.markup",
    "replica.errors", "replica.interrupts", "replica.scenarios", "replica.generic_catalog", "replica.project",
    "replica.runner", "replica.probe", "replica.report", "replica.reproduce", "replica.shard", "replica.junit",
    "replica.html_report", "replica.drivers.stack", "replica.drivers.up.remote", "replica.drivers.lanes",
    "faults.toxiproxy.client",
)
#: Connections at once (clients sending a request and clients whose command runs).
MAX_CLIENTS = 64
#: A command whose client went away has this long after its SIGINT before SIGKILL.
KILL_GRACE_S = 30.0
#: On SIGTERM, running commands have this long after theirs before SIGKILL.
STOP_GRACE_S = 10.0
_PEERCRED = struct.Struct("3i")


class Command:
    """A fork running one client's command (our own child: its pid is ours until reaped)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)
        self.kill_at: float | None = None

    def send(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:  # exited; the pidfd reports it
            pass

    def interrupt(self, grace_s: float, signum: int = signal.SIGINT) -> None:
        if self.kill_at is None:
            self.send(signum)
            self.kill_at = time.monotonic() + grace_s


class Client:
    """One connection: its request as it arrives, then its command."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()  # its key while it is open
        self.buffer = bytearray()
        self.fds: list[int] = []
        self.deadline = time.monotonic() + REQUEST_TIMEOUT_S
        self.command: Command | None = None

    def request_bytes(self) -> bytes | None:
        """The whole request once it is in; ValueError if it cannot be one."""
        if len(self.buffer) < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(self.buffer)
        if length > MAX_REQUEST_BYTES:
            raise ValueError(f"request of {length} bytes (at most {MAX_REQUEST_BYTES})")
        if len(self.buffer) < HEADER.size + length:
            return None
        return bytes(self.buffer[HEADER.size : HEADER.size + length])

    def drop_fds(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def exit_status(wait_status: int) -> int:
    """A command's exit status as a shell reports it (128 + N: killed by signal N)."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


class CommandServer:
    def __init__(self, listener: socket.socket, path: Path, me: dict[str, str]) -> None:
        self.listener = listener
        self.path = path
        self.me = me  # taken before the preload: code changed since is never served
        self.selector = selectors.DefaultSelector()
        self.clients: dict[int, Client] = {}  # by socket fd
        self.commands: dict[int, Client] = {}  # by pidfd
        self.stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        for end in (self._wake_r, self._wake_w):
            end.setblocking(False)

    # ------------------------------------------------------------------ the loop

    def serve(self) -> None:
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.selector.register(self._wake_r, selectors.EVENT_READ)
        signal.set_wakeup_fd(self._wake_w.fileno())
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)  # seen through the wakeup fd
        while not (self.stopping and not self.commands):
            for key, _ in self.selector.select(self._timeout()):
                try:
                    self._dispatch(key.fd)
                except Exception:  # noqa: BLE001 - one client's trouble never ends the server
                    traceback.print_exc()  # to the server's log
                    client = self.clients.get(key.fd)
                    if client is not None and client.command is None:
                        self._refuse(client, "the command server failed on this request (see its log)")
            self._expire()

    def _dispatch(self, fd: int) -> None:
        if fd == self.listener.fileno():
            self._accept()
        elif fd == self._wake_r.fileno():
            self._on_signals()
        elif fd in self.commands:
            self._reap(fd)
        elif fd in self.clients:
            self._read(self.clients[fd])

    def _timeout(self) -> float | None:
        deadlines = [c.deadline for c in self.clients.values() if c.command is None]
        deadlines += [c.command.kill_at for c in self.commands.values() if c.command and c.command.kill_at]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _expire(self) -> None:
        now = time.monotonic()
        for client in list(self.clients.values()):
            if client.command is None and now >= client.deadline:
                self._refuse(client, f"no whole request within {REQUEST_TIMEOUT_S:g} s")
        for client in self.commands.values():
            command = client.command
            if command and command.kill_at is not None and now >= command.kill_at:
                command.send(signal.SIGKILL)
                command.kill_at = None

    def _on_signals(self) -> None:
        try:
            signums = self._wake_r.recv(64)
        except BlockingIOError:
            return
        if self.stopping or not {signal.SIGTERM, signal.SIGINT} & set(signums):
            return
        self.stopping = True
        self.selector.unregister(self.listener)
        self.listener.close()
        self.path.unlink(missing_ok=True)  # new commands run in their own process
        for client in list(self.clients.values()):
            if client.command is None:
                self._refuse(client, "the stack is stopping")
        for client in self.commands.values():
            assert client.command is not None
            client.command.interrupt(STOP_GRACE_S, signal.SIGTERM)

    # ------------------------------------------------------------------ clients

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        try:
            _, uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        except OSError:
            uid = -1
        if uid != os.geteuid() or len(self.clients) >= MAX_CLIENTS:
            sock.close()
            return
        sock.setblocking(False)
        self.clients[sock.fileno()] = Client(sock)
        self.selector.register(sock, selectors.EVENT_READ)

    def _read(self, client: Client) -> None:
        try:
            data, fds, flags, _ = socket.recv_fds(client.sock, 65536, len(STREAMS))
        except BlockingIOError:
            return
        except OSError:
            data, fds, flags = b"", [], 0
        if client.command is not None:
            for fd in fds:  # nothing travels with a signal
                os.close(fd)
            self._forward(client, data)
            return
        client.fds += fds
        if not data:
            self._close(client)
            return
        client.buffer += data
        try:
            if flags & socket.MSG_CTRUNC or len(client.fds) > len(STREAMS):
                raise ValueError("the standard streams, and nothing else, travel with a request")
            payload = client.request_bytes()
            if payload is None:
                return
            request = parse_request(payload)
            refusal = self._refusal(request, client)
        except ValueError as exc:
            refusal = f"bad request: {exc}"
        if refusal:
            self._refuse(client, refusal)
        else:
            self._start(client, request)

    def _refusal(self, request: dict, client: Client) -> str | None:
        if len(client.fds) != len(STREAMS):
            return "the standard streams did not come with the request"
        theirs = {key: request[key] for key in self.me}
        if theirs != self.me:
            return f"another Python or replica package ({theirs}, here {self.me})"
        return None

    def _forward(self, client: Client, data: bytes) -> None:
        command = client.command
        assert command is not None
        if not data:  # the client is gone: its command stops as after a Ctrl-C
            self._close(client)
            command.interrupt(KILL_GRACE_S)
            return
        for signum in set(data) & FORWARDED_SIGNALS:
            command.send(signum)

    def _send(self, client: Client, message: bytes) -> bool:
        """``message`` to a client still connected (a short wait at most: answers are small)."""
        if client.sock.fileno() < 0:
            return False
        try:
            client.sock.settimeout(1.0)
            client.sock.sendall(message)
            return True
        except OSError:
            return False
        finally:
            client.sock.setblocking(False)

    def _refuse(self, client: Client, why: str) -> None:
        self._send(client, answer(refused=why))
        self._close(client)

    def _close(self, client: Client) -> None:
        """Close a client's connection (its command, if any, is still reaped by its pidfd)."""
        client.drop_fds()
        if self.clients.get(client.fd) is client:
            del self.clients[client.fd]
            self.selector.unregister(client.sock)
            client.sock.close()

    # ------------------------------------------------------------------ commands

    def _start(self, client: Client, request: dict) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # nothing of ours may reach the client's terminal
        inherited = [self.listener.fileno(), self.selector.fileno(), self._wake_r.fileno(), self._wake_w.fileno()]
        inherited += [*self.clients, *self.commands]  # every connection, this one's too, and every pidfd
        server = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            self._refuse(client, f"cannot fork: {exc.strerror}")
            return
        if pid == 0:
            run_command_here(request, client.fds, inherited, server)  # never returns
        client.drop_fds()
        client.command = Command(pid)
        self.commands[client.command.pidfd] = client
        self.selector.register(client.command.pidfd, selectors.EVENT_READ)
        if not self._send(client, answer(pid=pid)):
            client.command.interrupt(KILL_GRACE_S)

    def _reap(self, pidfd: int) -> None:
        client = self.commands.pop(pidfd)
        command = client.command
        assert command is not None
        self.selector.unregister(pidfd)
        _, status = os.waitpid(command.pid, 0)
        os.close(pidfd)
        self._send(client, answer(exit=exit_status(status)))
        self._close(client)


def run_command_here(request: dict, fds: list[int], inherited: list[int], server: int) -> None:
    """In the fork: become the client's command (its streams, directory, environment,
    ``sys.path``, umask and command line), run it, and exit with its status."""
    code = 2
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        die_with_parent(signal.SIGTERM)  # a command ends (as after SIGTERM) when the server does
        if os.getppid() != server:  # it ended before that took effect
            os._exit(130)
        for target, fd in zip(STREAMS, fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd not in STREAMS:
                os.close(fd)
        sys.stdin = open(0, encoding=request["encoding"], closefd=False)
        sys.stdout = open(1, "w", encoding=request["encoding"], errors=request["errors"], closefd=False, buffering=1 if os.isatty(1) else -1)
        sys.stderr = open(2, "w", encoding=request["encoding"], errors="backslashreplace", closefd=False, buffering=1)
        os.environ.clear()
        os.environ.update(request["env"])
        time.tzset()
        os.umask(request["umask"])
        os.chdir(request["cwd"])
        sys.path[:] = request["path"]
        sys.argv = ["replica", *request["argv"]]
        import replica.warm

        replica.warm.in_warm_process = True
        from replica.__main__ import run_command

        run_command()  # ends the process itself
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the fork must never return into the server
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def start_command_server(group: "ProcessGroup", path: Path) -> "ManagedProcess":
    """Start the command server in ``group``; ``path`` appears once it serves."""
    return group.start([sys.executable, "-m", "replica.warm.server", str(path)], name="command-server")


def preload() -> None:
    from replica.lean import skip_unused_imports

    skip_unused_imports()
    for module in PRELOAD:
        importlib.import_module(module)
    from replica.scenarios import Catalog

    Catalog.load()  # warms what the first load of a catalog builds lazily


def main() -> None:
    from replica.unix_sockets import bind_unix_socket

    path = Path(sys.argv[1])
    gc.set_threshold(10_000, 10, 10)  # as a command's own process (replica.__main__)
    me = identity()
    preload()
    gc.freeze()  # the forks share these objects' pages: no collection touches them
    listener = bind_unix_socket(path, backlog=MAX_CLIENTS)
    try:
        CommandServer(listener, path, me).serve()
    finally:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
