"""Bounded polling: wait until something is ready, fail fast if its process died.

:func:`wait_until` / :func:`wait_until_async` poll with short bounded intervals
(5 ms backing off to 100 ms), fail at once if the watched process exits, and fail
with a precise message on timeout. :func:`wait_for_tcp` and :func:`wait_for_http`
are the two checks every server start needs.
"""

from __future__ import annotations

import inspect
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

from replica.errors import InfrastructureError

if TYPE_CHECKING:
    import asyncio

_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.1


class Watched(Protocol):
    """What a wait needs of the process it watches."""

    name: str
    log_path: Path

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def log_tail(self, n_lines: int = 40) -> str: ...


def port_is_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if a TCP connection to ``host:port`` succeeds within ``timeout``."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _describe_exit(process: Watched, what: str, tail_lines: int = 30) -> str:
    code = process.returncode
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
    tail = process.log_tail(tail_lines) or "(empty)"
    return (
        f"{process.name} {how} while waiting for {what}. "
        f"Last lines of {process.log_path}:\n{tail}"
    )


def _timeout_error(
    timeout: float, what: str, last_error: BaseException | None, process: Watched | None
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


def _check_process(process: Watched | None, what: str) -> None:
    if process is not None and process.poll() is not None:
        raise InfrastructureError(_describe_exit(process, what))


class _Backoff:
    """One wait's deadline, growing poll interval and last error (what both loops share)."""

    def __init__(
        self, timeout: float, now: float, process: Watched | None, what: str, poll_max_s: float = _POLL_MAX_S
    ) -> None:
        self.timeout = timeout
        self.deadline = now + timeout
        self.process = process
        self.what = what
        self.delay = _POLL_FIRST_S
        self.poll_max_s = poll_max_s
        self.last_error: BaseException | None = None

    def next_sleep(self, now: float) -> float:
        """After a failed try: how long to sleep; raises if the process died or time is up."""
        _check_process(self.process, self.what)
        if now >= self.deadline:
            raise _timeout_error(self.timeout, self.what, self.last_error, self.process)
        sleep = min(self.delay, self.deadline - now)
        self.delay = min(self.delay * 2, self.poll_max_s)
        return sleep


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    *,
    process: Watched | None = None,
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
    wait = _Backoff(timeout, time.monotonic(), process, what)
    while True:
        _check_process(process, what)
        try:
            if check():
                return
        except retry_on as exc:
            wait.last_error = exc
        time.sleep(wait.next_sleep(time.monotonic()))


async def wait_until_async(
    check: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    *,
    process: Watched | None = None,
    what: str = "a condition",
    retry_on: tuple[type[BaseException], ...] = (OSError,),
    poll_max_s: float = _POLL_MAX_S,
    wake: "asyncio.Future[Any] | None" = None,
) -> None:
    """:func:`wait_until` for asyncio code; ``check`` may be a coroutine function.

    Each try of an async ``check`` is cut off at the remaining time; polls back off
    to ``poll_max_s``. ``wake``, a future done when the awaited thing has likely
    happened (a server saying it serves), ends the pause before the next try early,
    once: the try comes with the event, not at the next poll.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    wait = _Backoff(timeout, loop.time(), process, what, poll_max_s)
    while True:
        _check_process(process, what)
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, max(wait.deadline - loop.time(), 0.001))
            if result:
                return
        except retry_on as exc:
            wait.last_error = exc
        pause = wait.next_sleep(loop.time())
        if wake is not None and not wake.done():
            await asyncio.wait([wake], timeout=pause)
        else:
            await asyncio.sleep(pause)


def wait_for_tcp(
    host: str,
    port: int,
    timeout: float = 10.0,
    *,
    process: Watched | None = None,
    what: str | None = None,
) -> None:
    """Wait until a TCP connection to ``host:port`` succeeds."""
    wait_until(
        lambda: port_is_open(host, port, timeout=0.25),
        timeout,
        process=process,
        what=what or f"TCP {host}:{port} to accept connections",
    )


def wait_for_line(process: Watched, pattern: str, timeout: float = 10.0, *, what: str | None = None) -> re.Match[str]:
    """Wait until a line of ``process``'s log matches ``pattern``; return the match
    (how a server that picked its own port says which)."""
    found: list[re.Match[str]] = []

    def check() -> bool:
        match = re.search(pattern, process.log_tail(200), re.MULTILINE)
        if match:
            found.append(match)
        return match is not None

    wait_until(check, timeout, process=process, what=what or f"{process.name} to log {pattern!r}")
    return found[0]


def wait_for_http(
    url: str,
    status: int = 200,
    timeout: float = 10.0,
    *,
    process: Watched | None = None,
    what: str | None = None,
) -> None:
    """Wait until ``GET url`` answers with ``status``."""
    import httpx

    from replica.tls import tls_for

    tls = tls_for(url)

    def check() -> bool:
        try:
            response = httpx.get(url, timeout=0.5, verify=tls, trust_env=False)
        except httpx.HTTPError:
            return False
        return response.status_code == status

    wait_until(check, timeout, process=process, what=what or f"GET {url} to answer {status}")

