"""Fast server starts: fork from a process that has already imported the servers.

Importing FastAPI, uvicorn, asyncpg and redis-py costs most of a second; a
scenario needs a fresh backend process per run. :class:`ForkServer` keeps a
``multiprocessing`` fork server with those modules preloaded
(:mod:`replica.drivers.local.preload`), and each server it starts is a fork of it
running a module's ``main`` (what ``python -m MODULE`` runs) with its own
environment, its own session and its output in a log file.

A started server serves on a socket the harness bound: the socket travels to the
fork with the start request (``SCM_RIGHTS``) and its descriptor number is put in
the server's environment (``REPLICA_FD``, ``AUTH_FD``), so no port is ever picked
"free" and hoped to stay so. A fork dies with the fork server, and the fork server
with the harness.

Each fork also gets one end of a socket pair (``$REPLICA_NOTIFY_FD``): a server
that writes a byte to it once it serves (the backend does) is seen ready at once,
and its end closing tells that the process is gone, so a readiness wait is woken
by the event instead of finding it at its next poll.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.process
import multiprocessing.resource_tracker
import os
import shutil
import signal
import socket
import sys
import threading
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from replica.drivers.local.process import die_with_parent, tail_lines
from replica.drivers.local.tempdirs import make_owned_temp_dir
from replica.errors import InfrastructureError
from replica.interrupts import held_interrupts

#: Where a fork finds its end of the readiness socket.
NOTIFY_ENV = "REPLICA_NOTIFY_FD"
#: Imported once by the fork server: everything a server needs, with its shared
#: state warmed up.
PRELOAD = ["replica.drivers.local.preload"]


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start a fork without the harness's main module.

    multiprocessing tells each fork to import the parent's ``__main__`` (for a
    ``python -m replica`` or ``replica`` harness: the whole CLI, ~60-190 ms of
    CPU per fork, measured), and CPython never hands the fork server the main
    path to preload it once. A fork runs a module's ``main``; it needs nothing
    from the harness's, so it is not told about it.
    """
    with _MAIN_SWAP:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


_MAIN_SWAP = threading.Lock()


def _release_fork_server_fds() -> None:
    """Close the fork server's "harness alive" pipe and the resource tracker's pipe.

    multiprocessing hands every fork a copy of both. A server holding them would
    keep the fork server (and so itself) alive after the harness is gone; without
    them, the harness's exit ends the fork server, whose exit ends the server.
    """
    for fd in (
        getattr(multiprocessing.forkserver._forkserver, "_forkserver_alive_fd", None),
        getattr(multiprocessing.resource_tracker._resource_tracker, "_fd", None),
    ):
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    multiprocessing.forkserver._forkserver._forkserver_alive_fd = None
    multiprocessing.resource_tracker._resource_tracker._fd = None


def _child(
    main: str, env: dict[str, str], log_path: str, listener: socket.socket, fd_env: str, notify: socket.socket
) -> None:
    """Runs in the fork: become a session, log to the file, serve on ``listener``."""
    _release_fork_server_fds()
    os.setsid()
    die_with_parent(signal.SIGKILL)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    os.environ.clear()
    os.environ.update(env)
    os.environ[fd_env] = str(listener.detach())  # the server owns the descriptor from here
    os.environ[NOTIFY_ENV] = str(notify.detach())
    sys.path[:0] = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    module, _, function = main.partition(":")
    sys.exit(getattr(importlib.import_module(module), function)())


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


#: multiprocessing's table of children: ``Process.start()`` walks it and polls each
#: child's ``_popen``, which ``Process.close()`` (in a stopping thread) sets to None —
#: an AttributeError out of an unrelated start. Starts and closes take turns.
_PROCESS_TABLE = threading.Lock()
#: How long closing the fork server waits for a start in flight (a start takes milliseconds).
START_GRACE_S = 10.0


class ForkedProcess:
    """One server forked from the fork server; a :class:`~replica.drivers.lanes.RunningBackend`.

    Once stopped and reaped (:meth:`kill`), its ``multiprocessing.Process`` is
    closed, which frees the two pipes it holds, and it is :attr:`finished`.
    """

    def __init__(
        self, process: multiprocessing.process.BaseProcess, name: str, log_path: Path, notify: socket.socket
    ) -> None:
        assert process.pid is not None, "a ForkedProcess wraps a started process"
        self._process: multiprocessing.process.BaseProcess | None = process
        self.pid: int = process.pid
        self.name = name
        self.log_path = log_path
        self._exitcode: int | None = None
        self._state = threading.Lock()  # guards the swap of _process for _exitcode
        self._killing = threading.Lock()  # one kill at a time: the lane's and the teardown's
        self._stopping: asyncio.Future[int | None] | None = None
        self._notify = notify  # our end of the readiness socket (non-blocking)

    @property
    def returncode(self) -> int | None:
        return self.poll()

    @property
    def finished(self) -> bool:
        """Stopped, reaped and closed: nothing of it is left to clean up."""
        return self._process is None

    def poll(self) -> int | None:
        with self._state:
            if self._process is not None:
                return self._process.exitcode
            return self._exitcode

    def log_tail(self, n_lines: int = 40) -> str:
        return tail_lines(self.log_path, n_lines)

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            try:  # not yet its own session leader
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self, timeout: float = 5.0, *, graceful: bool = True) -> int | None:
        """SIGTERM the group, wait, then SIGKILL it (``graceful=False``: SIGKILL at once);
        once reaped, close the process. Idempotent; blocks."""
        with self._killing:
            process = self._process
            if process is None:
                return self._exitcode
            if graceful and process.exitcode is None:
                self._signal_group(signal.SIGTERM)
                process.join(timeout)
            self._signal_group(signal.SIGKILL)  # workers a gunicorn master left behind, too
            process.join(timeout)
            if process.exitcode is None:  # not reaped yet: keep it, a later kill tries again
                return None
            with self._state:
                self._exitcode = process.exitcode
                self._process = None
            with _PROCESS_TABLE:
                process.close()
            self._notify.close()
            return self._exitcode

    # -- RunningBackend --------------------------------------------------------------

    async def exit_code(self) -> int | None:
        return self.poll()

    async def log(self, n_lines: int = 40) -> str:
        return self.log_tail(n_lines)

    async def signalled(self) -> None:
        """Returns once the server says it serves, or its process is gone (whichever first).
        Cancel it before :meth:`kill` if it has not returned."""
        await asyncio.get_running_loop().sock_recv(self._notify, 1)

    async def stop(self, timeout: float = 3.0) -> None:
        """Kill it (SIGKILL, its whole group) and reap it in the background: the next run
        need not wait, and the fork server's owner kills it at exit at the latest.

        Not gracefully: a lane's backend is thrown away once its run is judged, and
        nothing observes its shutdown (its proxies are deleted meanwhile, so its pools
        could not say goodbye anyway); a graceful one would spend CPU the other lanes
        need, on closing pools and logging their lost connections.

        A bare executor future, not a task: ``asyncio.run`` cancels the tasks still
        pending when it ends, which would drop a kill not yet started, but it waits
        for the default executor's queued work."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().run_in_executor(None, self.discard, timeout)

    def discard(self, timeout: float = 3.0) -> None:
        """Kill it at once (its whole group), reap it and remove its log: a lane's log is
        read while its run is judged, never after (a long-running ``replica up`` or lanes
        agent would otherwise keep one per lane it ever opened). Blocks."""
        if self.kill(timeout, graceful=False) is not None:
            self.log_path.unlink(missing_ok=True)


def _stop_servers() -> None:
    """Kill and reap this process's fork server and resource tracker, if they run."""
    server = multiprocessing.forkserver._forkserver
    if getattr(server, "_forkserver_pid", None) is not None:
        _kill(server._forkserver_pid)  # its forks die with it (PR_SET_PDEATHSIG)
        server._stop()  # closes our end of its pipe and reaps it
    tracker = multiprocessing.resource_tracker._resource_tracker
    if getattr(tracker, "_pid", None) is not None:
        _kill(tracker._pid)
        tracker._stop()


def _own_multiprocessing_temp_dir() -> None:
    """Put multiprocessing's scratch dir (the fork server's socket) in an owned temp dir.

    Its own (``pymp-*``) is removed only by an orderly exit: a harness killed with
    SIGKILL would leave it for good. An owned ``replica-*`` dir is removed at exit,
    or by the next command's sweep once its owner is gone. Left alone when this
    process's multiprocessing already has one.
    """
    config = multiprocessing.process.current_process()._config  # where multiprocessing.util.get_temp_dir looks
    if config.get("tempdir") is None:
        path = make_owned_temp_dir("replica-mp-")
        config["tempdir"] = str(path)
        atexit.register(shutil.rmtree, path, ignore_errors=True)


def start_early() -> None:
    """Start the fork server now (~6 ms), before the command has imported its own
    modules: it imports the servers on the other core meanwhile, and is ready
    sooner when the stack starts. A command that ends before a :class:`ForkServer`
    uses it (a bad argument, Ctrl-C) stops it at exit."""
    ForkServer().warm()
    atexit.register(_stop_servers)


class ForkServer:
    """Starts preloaded Python servers by forking (see the module docstring)."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)
        self._closed = False

    def warm(self) -> None:
        """Start the fork server now (unless :func:`start_early` did); it imports the
        servers in the background."""
        _own_multiprocessing_temp_dir()
        multiprocessing.forkserver.ensure_running()

    def close(self) -> None:
        """Stop the fork server and its resource tracker, and wait for both.

        Uses CPython's own stop methods (present since 3.8; its test suite uses
        them): left alone, both exit only after the harness has exited. A start
        still in flight on a worker thread (its lane was cancelled by Ctrl-C) is
        let finish first: cut off between connecting and handing over its
        descriptors, it would make the fork server die printing a traceback.
        """
        in_flight_done = _PROCESS_TABLE.acquire(timeout=START_GRACE_S)
        try:
            self._closed = True
            _stop_servers()
        finally:
            if in_flight_done:
                _PROCESS_TABLE.release()

    async def start_async(
        self, main: str, env: Mapping[str, str], log_path: Path, name: str, *, listener: socket.socket, fd_env: str
    ) -> ForkedProcess:
        """:meth:`start` off the event loop: a start waits for the fork server to be
        scheduled, and a busy machine must not stall the loop's other lanes (their
        probes time closes to the millisecond).

        The thread works on its own copy of ``listener``: a caller cancelled by Ctrl-C
        closes its listener at once while the start may still be handing the
        descriptor over (a closed one would make the fork server die printing a
        traceback). A fork whose caller gave up dies with the fork server."""
        own = listener.dup()

        def start_with_own_copy() -> ForkedProcess:
            try:
                return self.start(main, env, log_path, name, listener=own, fd_env=fd_env)
            finally:
                own.close()

        return await asyncio.to_thread(start_with_own_copy)

    def start(
        self, main: str, env: Mapping[str, str], log_path: Path, name: str, *, listener: socket.socket, fd_env: str
    ) -> ForkedProcess:
        """Fork a server running ``main`` (``module:function``) on ``listener``, whose
        descriptor it finds in ``$fd_env``. The caller keeps (and closes) its own copy."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        process = self._ctx.Process(
            target=_child, args=(main, dict(env), str(log_path), listener, fd_env, theirs), name=name, daemon=True
        )
        # On the main thread a Ctrl-C waits until the fork is made (the caller raises it once it
        # holds the fork): cut into multiprocessing's request, it would kill the fork server.
        try:
            with _main_module_hidden(), _PROCESS_TABLE, held_interrupts():
                if self._closed:  # a start that lost the race with close(): it must not launch a new fork server
                    raise InfrastructureError("the fork server is stopped: the stack is shutting down")
                process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the fork holds the other end now: its exit closes the pair
        return ForkedProcess(process, name, log_path, ours)
