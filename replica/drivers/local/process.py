"""One supervised child process (:class:`ManagedProcess`).

It runs one command in its own process group with its output in a log file; on
Linux it dies with the harness even when the harness is SIGKILLed
(``PR_SET_PDEATHSIG``). :meth:`ManagedProcess.stop` signals the whole group,
waits, then kills it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Callable, Mapping, Sequence, TypeVar

from replica.errors import InfrastructureError
from replica.interrupts import held_interrupts

_PR_SET_PDEATHSIG = 1
_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.1

_T = TypeVar("_T")


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


_HARNESS_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def die_with_parent(sig: int) -> None:
    """In a fork: have the kernel send ``sig`` to this process when the thread that
    forked it ends (best effort: Linux only). Loads nothing, so it is safe between
    fork and exec; a caller that must not outlive a parent already gone checks
    ``os.getppid()`` afterwards."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, sig)


def _make_preexec(parent_pid: int) -> Callable[[], None] | None:
    """Child-side setup: die with the parent (best effort, Linux only)."""
    if _PRCTL is None:
        return None

    def preexec() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HARNESS_SIGNALS)  # the forking thread blocks them; a child must not
        die_with_parent(signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class _ForkingThread:
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
        # A Ctrl-C or SIGTERM for the harness must reach a thread that acts on it: delivered
        # to this one, idle in get(), it would leave the main thread asleep in a blocking call.
        signal.pthread_sigmask(signal.SIG_BLOCK, _HARNESS_SIGNALS)
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
                self._thread = threading.Thread(target=self._loop, name="replica-forking-thread", daemon=True)
                self._thread.start()
        future: Future[object] = Future()
        self._queue.put((fn, future))
        return future.result()  # type: ignore[return-value]


_FORKING_THREAD = _ForkingThread()


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
    ``stdin`` is written to the command's input, which is then closed: the way
    to hand a secret over without putting it in argv, the environment or a file.

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
        stdin: bytes | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.name = name
        self.log_path = Path(log_path)
        self.stop_signal = stop_signal
        self._returncode: int | None = None
        self._stopped = False
        self._stop_sent = False  # the stop signal went out (request_stop or stop): never twice
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
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=None if cwd is None else str(cwd),
            start_new_session=True,
            preexec_fn=_make_preexec(os.getpid()),
            close_fds=True,
            pass_fds=tuple(pass_fds),
            **extra,
        )
        try:
            with held_interrupts():  # the caller raises a Ctrl-C once it holds this process
                self._popen: subprocess.Popen[bytes] = _FORKING_THREAD.run(spawn)
                if self._popen.stdin is not None:
                    try:
                        self._popen.stdin.write(stdin or b"")  # small: fits the pipe buffer
                        self._popen.stdin.close()
                    except BrokenPipeError:  # exited before reading: its log says why
                        pass
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

    def request_stop(self) -> None:
        """Send :attr:`stop_signal` to the group now; :meth:`stop` then waits (a group stops
        its processes side by side this way)."""
        with self._lock:
            if not self._stopped and self.poll() is None:
                self._send_stop()

    def _send_stop(self) -> None:
        """:attr:`stop_signal` to the group, once: a second could cut into its own shutdown."""
        if not self._stop_sent:
            self._signal_group(self.stop_signal)
            self._stop_sent = True

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
                self._send_stop()
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
