"""Which process a recorded pid is: pid plus start time, so a reused pid never passes.

A :class:`ProcessIdentity` is the pid and a start token (the boot id and the
start time in clock ticks, ``/proc/PID/stat`` field 22). It is alive only while
the process at that pid started at that moment; :meth:`ProcessIdentity.signal`
opens a pidfd first, so the signal cannot reach a process that took the pid
since. Without ``/proc`` (not Linux) the token is empty and the pid alone counts.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal as signals
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_token(pid: int) -> str | None:
    """``BOOT_ID:START_TICKS`` of ``pid``, '' without ``/proc``, None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else ("" if pid_alive(pid) else None)
    except (ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped
        return None
    return f"{_boot_id()}:{fields[19]}"  # field 22 of the whole line


def pid_alive(pid: int) -> bool:
    """Whether any process has this pid (identity unchecked)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class ProcessIdentity:
    """A process, told apart from any later one that reuses its pid."""

    pid: int
    started: str

    @classmethod
    def current(cls) -> "ProcessIdentity":
        return cls.of(os.getpid())  # type: ignore[return-value]

    @classmethod
    def of(cls, pid: int) -> "ProcessIdentity | None":
        token = start_token(pid)
        return None if token is None else cls(pid, token)

    def alive(self) -> bool:
        return self.pid > 0 and ProcessIdentity.of(self.pid) == self

    def pidfd(self) -> int | None:
        """A pidfd of this very process (the caller closes it), or None if it is gone.
        The pidfd holds whatever has the pid when it is opened: it is ours only if the
        start matches, checked after it is open. It turns readable when the process exits."""
        try:
            fd = os.pidfd_open(self.pid)
        except OSError:  # ProcessLookupError included
            return None
        if self.alive():
            return fd
        os.close(fd)
        return None

    @contextlib.contextmanager
    def _pidfd(self) -> Iterator[int | None]:
        fd = self.pidfd()
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    def signal(self, sig: int) -> bool:
        """Send ``sig`` if this very process is alive; False (nothing sent) otherwise."""
        if not hasattr(os, "pidfd_open"):  # pragma: no cover - not Linux
            if not self.alive():
                return False
            os.kill(self.pid, sig)
            return True
        with self._pidfd() as fd:
            if fd is None:
                return False
            try:
                signals.pidfd_send_signal(fd, sig)
            except ProcessLookupError:
                return False
            return True

    def wait_gone(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for this process to exit; True once it has."""
        if not hasattr(os, "pidfd_open"):  # pragma: no cover - not Linux
            from replica.errors import InfrastructureError
            from replica.polling import wait_until

            try:
                wait_until(lambda: not self.alive(), timeout, what=f"pid {self.pid} to exit")
            except InfrastructureError:
                return False
            return True
        with self._pidfd() as fd:
            if fd is None:
                return True
            readable, _, _ = select.select([fd], [], [], timeout)  # a pidfd turns readable at exit
            return bool(readable) or not self.alive()
