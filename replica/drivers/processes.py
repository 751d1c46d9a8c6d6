"""Supervised child processes on loopback.

Building blocks of the local driver:

* :func:`free_port` picks a free TCP port on a loopback address.
* :class:`ManagedProcess` runs one command in its own process group with its
  output in a log file; on Linux it dies with the harness even when the harness
  is SIGKILLed (``PR_SET_PDEATHSIG``). :meth:`ManagedProcess.stop` signals the
  whole group, waits, then kills it.
* :func:`wait_until`, :func:`wait_for_tcp` and :func:`wait_for_http` poll for
  readiness with short bounded intervals, fail at once if the watched process
  exits, and fail with a precise message on timeout.
* :class:`ProcessGroup` owns started processes and private temp dirs and tears
  them down on exit, in reverse start order, also after an exception or Ctrl-C.
  Dirs left by a SIGKILLed harness are swept by the next group.
* :func:`install_sigterm_handler` makes SIGTERM behave like Ctrl-C.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import functools
import inspect
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from types import FrameType, TracebackType
from typing import Awaitable, Callable, Iterator, Mapping, Sequence, TypeVar

from replica.errors import InfrastructureError

__all__ = [
    "ManagedProcess",
    "ProcessGroup",
    "free_port",
    "ensure_port_free",
    "install_sigterm_handler",
    "install_interrupt_handlers",
    "raise_if_interrupted",
    "wait_until",
    "wait_until_async",
    "port_is_open",
    "sweep_stale_temp_dirs",
    "ram_temp_root",
    "wait_for_tcp",
    "wait_for_http",
    "pid_alive",
    "TEMP_PREFIX",
]

#: Prefix of every private temp dir a :class:`ProcessGroup` creates.
TEMP_PREFIX = "replica-"
_OWNER_FILE = ".replica-owner-pid"
_PR_SET_PDEATHSIG = 1

_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.1

_T = TypeVar("_T")


# --------------------------------------------------------------------------- ports


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free right now.

    The port is picked by the kernel and released before returning, so another
    process may take it in between; starters retry on "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(host: str, port: int, *, what: str = "server") -> None:
    """Raise :class:`InfrastructureError` if ``host:port`` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: a port held only by TIME_WAIT connections is usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InfrastructureError(
                    f"cannot start {what}: port {host}:{port} is already in use by another "
                    f"process. Stop that process, or pick another port (or none, to get a "
                    f"free one)."
                ) from exc
            raise InfrastructureError(
                f"cannot start {what}: cannot bind {host}:{port}: {exc.strerror}"
            ) from exc


def port_is_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if a TCP connection to ``host:port`` succeeds within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# ----------------------------------------------------------------- parent death


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.restype = ctypes.c_int
    return prctl  # type: ignore[no-any-return]


# Resolved in the parent so the child does not load anything between fork and exec.
_PRCTL = _load_prctl()


def _make_preexec(parent_pid: int) -> Callable[[], None] | None:
    """Child-side setup: die with the parent (best effort, Linux only)."""
    prctl = _PRCTL
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class _Spawner:
    """Starts children from one long-lived thread.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, not
    the process. Children started from the main thread are forked there; those
    started from any other thread (``asyncio.to_thread``, executors) are forked
    by this daemon thread, which lives as long as the harness, so a worker
    thread that finishes does not take its children with it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while True:
            fn, future = self._queue.get()
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

    def run(self, fn: Callable[[], _T]) -> _T:
        if threading.current_thread() is threading.main_thread():
            return fn()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="replica-spawner", daemon=True)
                self._thread.start()
        future: Future[object] = Future()
        self._queue.put((fn, future))
        return future.result()  # type: ignore[return-value]


_SPAWNER = _Spawner()


# --------------------------------------------------------------------- process


def tail_lines(path: str | os.PathLike[str], n_lines: int = 40) -> str:
    """The last ``n_lines`` lines of a log file ('' if there is none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 64 * 1024))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(deque(data.decode("utf-8", errors="replace").splitlines(), maxlen=n_lines))


class ManagedProcess:
    """One command in its own process group, output going to ``log_path``.

    ``stop_signal`` is what :meth:`stop` sends first (PostgreSQL wants
    ``SIGINT`` for a fast shutdown). ``user``/``group`` run the command as
    another account (root only); supplementary groups are dropped then.

    The group leader is not reaped until :meth:`stop`, so its process-group id
    cannot be reused while the harness may still signal it.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        log_path: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stop_signal: int = signal.SIGTERM,
        user: str | int | None = None,
        group: str | int | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.name = name
        self.log_path = Path(log_path)
        self.stop_signal = stop_signal
        self._returncode: int | None = None
        self._stopped = False
        self._lock = threading.Lock()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        extra: dict[str, object] = {}
        if user is not None:
            extra["user"] = user
            extra["extra_groups"] = []
        if group is not None:
            extra["group"] = group
        log = open(self.log_path, "ab", buffering=0)
        spawn = functools.partial(
            subprocess.Popen,
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=None if cwd is None else str(cwd),
            start_new_session=True,
            preexec_fn=_make_preexec(os.getpid()),
            close_fds=True,
            **extra,
        )
        try:
            self._popen: subprocess.Popen[bytes] = _SPAWNER.run(spawn)
        except FileNotFoundError as exc:
            raise InfrastructureError(
                f"cannot start {name}: executable not found: {self.argv[0]}"
            ) from exc
        except PermissionError as exc:
            raise InfrastructureError(
                f"cannot start {name}: permission denied running {self.argv[0]}"
            ) from exc
        except (OSError, subprocess.SubprocessError) as exc:
            raise InfrastructureError(f"cannot start {name}: {exc}") from exc
        finally:
            log.close()

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited {self.returncode}"
        return f"<ManagedProcess {self.name} pid={self.pid} {state}>"

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def pgid(self) -> int:
        """The process-group id (equal to :attr:`pid`: the child leads its group)."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """Exit status (negative: killed by that signal), or None while running."""
        return self.poll()

    def poll(self) -> int | None:
        """Return the exit status if the process has exited, without reaping it."""
        if self._returncode is not None:
            return self._returncode
        if self._popen.returncode is not None:
            self._returncode = self._popen.returncode
            return self._returncode
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped elsewhere
            self._returncode = self._popen.wait(timeout=0)
            return self._returncode
        if info is None or info.si_pid == 0:
            return None
        if info.si_code == os.CLD_EXITED:
            self._returncode = info.si_status
        else:
            self._returncode = -info.si_status
        return self._returncode

    def is_running(self) -> bool:
        return self.poll() is None

    def log_tail(self, n_lines: int = 40) -> str:
        """The last ``n_lines`` lines of the process's log ('' if there is none)."""
        return tail_lines(self.log_path, n_lines)

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = _POLL_FIRST_S
        while self.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _POLL_MAX_S)
        return True

    def stop(self, timeout: float = 5.0) -> int:
        """Stop the whole process group and return the leader's exit status.

        Sends :attr:`stop_signal` to the group, waits up to ``timeout`` seconds
        for the leader, then SIGKILLs the group (also any member left behind by
        a leader that exited). Idempotent.
        """
        with self._lock:
            if self._stopped:
                assert self._popen.returncode is not None
                return self._popen.returncode
            if self.poll() is None:
                self._signal_group(self.stop_signal)
                self._wait_exit(timeout)
            # Leader is a zombie (or still running): its pgid is still reserved,
            # so killing the group cannot hit an unrelated process.
            self._signal_group(signal.SIGKILL)
            try:
                code = self._popen.wait(timeout=max(timeout, 1.0))
            except subprocess.TimeoutExpired as exc:  # pragma: no cover - SIGKILLed
                raise InfrastructureError(
                    f"{self.name} (pid {self.pid}) did not exit after SIGKILL"
                ) from exc
            self._returncode = code
            self._stopped = True
            return code


# -------------------------------------------------------------------- readiness


def _describe_exit(process: ManagedProcess, what: str, tail_lines: int = 30) -> str:
    code = process.returncode
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
    tail = process.log_tail(tail_lines) or "(empty)"
    return (
        f"{process.name} {how} while waiting for {what}. "
        f"Last lines of {process.log_path}:\n{tail}"
    )


def _timeout_error(
    timeout: float, what: str, last_error: BaseException | None, process: ManagedProcess | None
) -> InfrastructureError:
    message = f"timed out after {timeout:g}s waiting for {what}"
    if last_error is not None:
        message += f" (last error: {type(last_error).__name__}: {last_error})"
    if process is not None:
        message += (
            f". {process.name} (pid {process.pid}) is still running; last lines of "
            f"{process.log_path}:\n{process.log_tail(30) or '(empty)'}"
        )
    return InfrastructureError(message)


def _check_process(process: ManagedProcess | None, what: str) -> None:
    if process is not None and process.poll() is not None:
        raise InfrastructureError(_describe_exit(process, what))


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    *,
    process: ManagedProcess | None = None,
    what: str = "a condition",
    retry_on: tuple[type[BaseException], ...] = (OSError,),
) -> None:
    """Poll ``check`` until it returns True.

    ``check`` must itself be bounded (a short per-try timeout) and return False
    or raise one of ``retry_on`` while the thing is not ready yet; any other
    exception propagates. Polls start at 5 ms and back off to 100 ms. If
    ``process`` exits meanwhile, raises :class:`InfrastructureError` at once
    with its exit code and log tail; after ``timeout`` seconds, raises one
    saying what was awaited and for how long.
    """
    deadline = time.monotonic() + timeout
    delay = _POLL_FIRST_S
    last_error: BaseException | None = None
    while True:
        _check_process(process, what)
        try:
            if check():
                return
        except retry_on as exc:
            last_error = exc
        _check_process(process, what)
        now = time.monotonic()
        if now >= deadline:
            raise _timeout_error(timeout, what, last_error, process)
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, _POLL_MAX_S)


async def wait_until_async(
    check: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    *,
    process: ManagedProcess | None = None,
    what: str = "a condition",
    retry_on: tuple[type[BaseException], ...] = (OSError,),
) -> None:
    """:func:`wait_until` for asyncio code; ``check`` may be a coroutine function.

    Each try of an async ``check`` is cut off at the remaining time.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = _POLL_FIRST_S
    last_error: BaseException | None = None
    while True:
        _check_process(process, what)
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, max(deadline - loop.time(), 0.001))
            if result:
                return
        except retry_on as exc:
            last_error = exc
        _check_process(process, what)
        now = loop.time()
        if now >= deadline:
            raise _timeout_error(timeout, what, last_error, process)
        await asyncio.sleep(min(delay, deadline - now))
        delay = min(delay * 2, _POLL_MAX_S)


def wait_for_tcp(
    host: str,
    port: int,
    timeout: float = 10.0,
    *,
    process: ManagedProcess | None = None,
    what: str | None = None,
) -> None:
    """Wait until a TCP connection to ``host:port`` succeeds."""
    wait_until(
        lambda: port_is_open(host, port, timeout=0.25),
        timeout,
        process=process,
        what=what or f"TCP {host}:{port} to accept connections",
    )


def wait_for_http(
    url: str,
    status: int = 200,
    timeout: float = 10.0,
    *,
    process: ManagedProcess | None = None,
    what: str | None = None,
) -> None:
    """Wait until ``GET url`` answers with ``status``."""
    import httpx

    def check() -> bool:
        try:
            response = httpx.get(url, timeout=0.5)
        except httpx.HTTPError:
            return False
        return response.status_code == status

    wait_until(check, timeout, process=process, what=what or f"GET {url} to answer {status}")


# ------------------------------------------------------------------------ group


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_MIN_RAM_FREE = 512 * 1024 * 1024


def ram_temp_root() -> Path | None:
    """A RAM-backed directory for scratch data (``/dev/shm``), or None.

    ``REPLICA_RAM_DIR`` overrides it; set it empty to keep everything on disk.
    None as well when the directory is not writable or has under 512 MiB free
    (containers often mount a 64 MiB ``/dev/shm``).
    """
    configured = os.environ.get("REPLICA_RAM_DIR")
    if configured == "":
        return None
    root = Path(configured or "/dev/shm")
    try:
        stat = os.statvfs(root)
    except OSError:
        return None
    if not os.access(root, os.W_OK | os.X_OK) or stat.f_bavail * stat.f_frsize < _MIN_RAM_FREE:
        return None
    return root


def _make_owned_temp_dir(prefix: str, base: Path | None = None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    (path / _OWNER_FILE).write_text(str(os.getpid()))
    return path


def sweep_stale_temp_dirs(base: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove private temp dirs left by harnesses that were SIGKILLed.

    Looks in ``base`` (default: the system temp dir and :func:`ram_temp_root`).
    Only dirs carrying the owner marker of a :class:`ProcessGroup` whose owner
    process is gone are removed. Returns the removed paths.
    """
    if base is not None:
        roots = [Path(base)]
    else:
        roots = [Path(tempfile.gettempdir())]
        ram = ram_temp_root()
        if ram is not None:
            roots.append(ram)
    removed: list[Path] = []
    for root in roots:
        for path in root.glob(TEMP_PREFIX + "*"):
            marker = path / _OWNER_FILE
            try:
                pid = int(marker.read_text().strip())
            except (OSError, ValueError):
                continue
            if pid == os.getpid() or pid_alive(pid):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def _signals_deferred() -> Iterator[list[int]]:
    """Hold off SIGINT/SIGTERM during teardown (main thread only)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def record(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class ProcessGroup:
    """Owns started processes and private temp dirs; tears them down on exit.

    >>> with ProcessGroup() as group:
    ...     proc = group.start(["redis-server", "--port", "0"], name="redis")

    Teardown stops processes in reverse start order and removes the temp dirs,
    whether the body returned, raised or was interrupted by Ctrl-C.
    """

    def __init__(self, *, prefix: str = TEMP_PREFIX, sweep_stale: bool = True) -> None:
        if sweep_stale:
            sweep_stale_temp_dirs()
        self._prefix = prefix
        self.tmp_dir = _make_owned_temp_dir(prefix)
        self._ram_dir: Path | None = None
        self.processes: list[ManagedProcess] = []
        self._cleanups: list[Callable[[], None]] = []
        self._closed = False
        atexit.register(self.close)

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def path(self, *parts: str) -> Path:
        """A path inside the group's temp dir (not created)."""
        return self.tmp_dir.joinpath(*parts)

    @property
    def ram_dir(self) -> Path:
        """A second private temp dir on RAM-backed storage, for data that is
        written a lot and thrown away (database files). Falls back to a dir
        inside :attr:`tmp_dir` when there is no suitable RAM disk. Removed
        with the group."""
        if self._ram_dir is None:
            if self._closed:
                raise RuntimeError("ProcessGroup is closed")
            root = ram_temp_root()
            if root is None:
                self._ram_dir = self.path("ram")
                self._ram_dir.mkdir(mode=0o700)
            else:
                self._ram_dir = _make_owned_temp_dir(self._prefix, root)
        return self._ram_dir

    def start(
        self,
        argv: Sequence[str],
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        stop_signal: int = signal.SIGTERM,
        user: str | int | None = None,
        group: str | int | None = None,
    ) -> ManagedProcess:
        """Start ``argv`` as a :class:`ManagedProcess` owned by this group.

        The log goes to ``<tmp>/logs/<name>.log`` unless ``log_path`` is given.
        """
        if self._closed:
            raise RuntimeError("ProcessGroup is closed")
        process = ManagedProcess(
            argv,
            name=name,
            env=env,
            cwd=cwd,
            log_path=log_path or self.path("logs", f"{name}.log"),
            stop_signal=stop_signal,
            user=user,
            group=group,
        )
        self.processes.append(process)
        raise_if_interrupted()
        return process

    def adopt(self, process: ManagedProcess) -> ManagedProcess:
        """Make this group responsible for stopping ``process``."""
        self.processes.append(process)
        return process

    def add_cleanup(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` at teardown, in reverse order of registration, before
        the processes are stopped."""
        self._cleanups.append(callback)

    def close(self, timeout: float = 5.0) -> None:
        """Stop every process (reverse start order) and remove the temp dirs.

        Idempotent. Also runs at interpreter exit if nobody called it. Ctrl-C or
        SIGTERM during teardown is held until teardown is done, then raised as
        :class:`KeyboardInterrupt`.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        with _signals_deferred() as received:
            self._teardown(timeout)
        if received:
            raise KeyboardInterrupt(f"received signal {received[0]} during teardown")

    def _teardown(self, timeout: float) -> None:
        errors: list[BaseException] = []
        for callback in reversed(self._cleanups):
            try:
                callback()
            except Exception as exc:  # keep tearing down
                errors.append(exc)
        for process in reversed(self.processes):
            try:
                process.stop(timeout=timeout)
            except Exception as exc:
                errors.append(exc)
        if self._ram_dir is not None:
            shutil.rmtree(self._ram_dir, ignore_errors=True)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        if errors:
            raise InfrastructureError(
                "teardown failed: " + "; ".join(f"{type(e).__name__}: {e}" for e in errors)
            ) from errors[0]


# ---------------------------------------------------------------------- signals


_interrupted = threading.Event()


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    _interrupted.set()
    raise KeyboardInterrupt(f"received signal {signum}")


def raise_if_interrupted() -> None:
    """Raise the interrupt a handler could not.

    A signal that lands while ``subprocess`` forks runs its handler inside an
    ``os.register_at_fork`` callback, where CPython prints and drops exceptions:
    the KeyboardInterrupt is lost. The handler also sets a flag, checked here
    after each start.
    """
    if _interrupted.is_set():
        raise KeyboardInterrupt("interrupted while a process was being started")


def install_interrupt_handlers() -> Callable[[], None]:
    """Make SIGINT and SIGTERM raise :class:`KeyboardInterrupt`, even when SIGINT
    was inherited as ignored (shells do that for background jobs), and without
    asyncio trading Ctrl-C for a cancellation a library might absorb.

    Call from the main thread (the CLI does at start-up). Returns a function
    that restores the previous handlers.
    """
    previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def install_sigterm_handler() -> Callable[[], None]:
    """Make SIGTERM raise :class:`KeyboardInterrupt` (as Ctrl-C does).

    Call from the main thread (the CLI does at start-up). Returns a function
    that restores the previous handler.
    """
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
