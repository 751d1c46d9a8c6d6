"""Ctrl-C and SIGTERM for the harness: always a KeyboardInterrupt, never lost.

* :func:`install_interrupt_handlers` makes SIGINT and SIGTERM raise
  :class:`KeyboardInterrupt` (the CLI installs it at start-up).
* :func:`raise_if_interrupted` re-raises an interrupt CPython dropped inside a
  fork callback.
* :func:`deferred_signals` holds SIGINT/SIGTERM off while a teardown runs.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Callable, Iterator


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """Hold off SIGINT/SIGTERM while the block runs (main thread only); yields the
    list of signals received meanwhile, for the caller to act on afterwards."""
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
