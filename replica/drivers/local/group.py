"""A :class:`ProcessGroup` owns started processes and private temp dirs and tears
them down on exit, in reverse start order, also after an exception or Ctrl-C.
Dirs left by a SIGKILLed harness are swept by the next group."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
from pathlib import Path
from types import TracebackType
from typing import Callable, Mapping, Sequence

from replica.drivers.local.process import ManagedProcess
from replica.drivers.local.tempdirs import TEMP_PREFIX, make_owned_temp_dir, ram_temp_root, sweep_stale_temp_dirs
from replica.errors import InfrastructureError
from replica.interrupts import deferred_signals, raise_if_interrupted


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
        self.tmp_dir = make_owned_temp_dir(prefix)
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
                self._ram_dir = make_owned_temp_dir(self._prefix, root)
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
        stdin: bytes | None = None,
        pass_fds: Sequence[int] = (),
    ) -> ManagedProcess:
        """Start ``argv`` as a :class:`ManagedProcess` owned by this group.

        The log goes to ``<tmp>/logs/<name>.log`` unless ``log_path`` is given;
        ``stdin`` (a secret, say) is written to its input, which is then closed;
        ``pass_fds`` are inherited (a listening socket the caller bound, say).
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
            stdin=stdin,
            pass_fds=pass_fds,
        )
        self.processes.append(process)
        raise_if_interrupted()
        return process

    def add_cleanup(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` at teardown, in reverse order of registration, before
        the processes are stopped.

        A bound method of an object that has since become ``finished`` (a forked
        server its lane stopped and reaped) is dropped at the next registration,
        so a long-running group does not keep everything it ever started."""
        self._cleanups = [c for c in self._cleanups if not _finished(c)]
        self._cleanups.append(callback)

    def close(self, timeout: float = 5.0) -> None:
        """Stop every process (each asked in reverse start order, then each waited for)
        and remove the temp dirs.

        Idempotent. Also runs at interpreter exit if nobody called it. Ctrl-C or
        SIGTERM during teardown is held until teardown is done, then raised as
        :class:`KeyboardInterrupt`.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        with deferred_signals() as received:
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
        for process in reversed(self.processes):  # all asked first: they shut down side by side
            process.request_stop()
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


def _finished(callback: Callable[[], None]) -> bool:
    """The callback's object says there is nothing left to clean up."""
    return getattr(getattr(callback, "__self__", None), "finished", False) is True
