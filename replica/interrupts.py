"""Ctrl-C and SIGTERM for the harness: always a KeyboardInterrupt, never lost.

* :func:`install_interrupt_handlers` makes SIGINT and SIGTERM raise
  :class:`KeyboardInterrupt` (the CLI installs it at start-up).
* :func:`run_interruptible` runs a coroutine in which they cancel the main task
  instead, so every ``async with`` unwinds in order, and then surface as one
  :class:`KeyboardInterrupt`: no exception lands in the middle of asyncio's own
  code, so no task is left with an exception nobody retrieves.
* :func:`held_interrupts` only records an interrupt while the main thread forks
  or builds an event loop,
  and :func:`raise_if_interrupted` raises it once the child is accounted for.
* :func:`deferred_signals` holds SIGINT/SIGTERM off while a teardown runs.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, Coroutine, Iterator, TypeVar

_T = TypeVar("_T")
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
_held = False


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    _interrupted.set()
    if not _held:
        raise KeyboardInterrupt(f"received signal {signum}")


@contextlib.contextmanager
def held_interrupts() -> Iterator[None]:
    """While the block runs (main thread), an interrupt is only recorded, not raised.

    For steps a KeyboardInterrupt must not cut in half: a fork (raised inside a
    fork callback, ``os.register_at_fork``, it would be printed as "Exception
    ignored" and dropped) or building an event loop. The caller raises it
    afterwards with :func:`raise_if_interrupted`, once it holds what it made.
    """
    global _held
    if threading.current_thread() is not threading.main_thread() or _held:
        yield
        return
    _held = True
    try:
        yield
    finally:
        _held = False


def raise_if_interrupted() -> None:
    """Raise the interrupt a handler held back (see :func:`held_interrupts`)."""
    if _interrupted.is_set():
        raise KeyboardInterrupt("interrupted while a process was being started")


def hold_interrupts() -> None:
    """From now on record SIGINT and SIGTERM without raising them, until
    :func:`install_interrupt_handlers` (a command's start) makes them raise again.

    For a process's first steps, its imports: an exception cut into an import
    leaves that module half made (a later import of it fails, a native extension
    may abort). The command raises the held interrupt once it starts
    (:func:`raise_if_interrupted`)."""
    global _held
    _held = True
    for sig in _SIGNALS:
        signal.signal(sig, _raise_keyboard_interrupt)


def interrupted() -> bool:
    """Whether SIGINT or SIGTERM has come (raised or held)."""
    return _interrupted.is_set()


def install_interrupt_handlers() -> Callable[[], None]:
    """Make SIGINT and SIGTERM raise :class:`KeyboardInterrupt`, even when SIGINT
    was inherited as ignored (shells do that for background jobs), and without
    asyncio trading Ctrl-C for a cancellation a library might absorb.

    Call from the main thread (the CLI does at start-up); ends a
    :func:`hold_interrupts`. Returns a function that restores the previous handlers.
    """
    global _held
    _held = False
    previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


_announced = False


def announce_interrupt() -> None:
    """Say once, on stderr, that the command stopped on an interrupt; from then on
    ignore the next (exiting, a second Ctrl-C must not change the exit code)."""
    global _announced
    ignore_interrupts()
    if not _announced:
        _announced = True
        print("interrupted: everything this run started has been stopped", file=sys.stderr, flush=True)


def ignore_interrupts() -> None:
    """Ignore SIGINT and SIGTERM from now on: for a process that is already
    exiting because of one (the interpreter's exit would otherwise die of the next)."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def install_sigterm_handler() -> Callable[[], None]:
    """Make SIGTERM raise :class:`KeyboardInterrupt` (as Ctrl-C does).

    Call from the main thread (the CLI does at start-up). Returns a function
    that restores the previous handler.
    """
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def run_interruptible(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(main)`` where SIGINT/SIGTERM cancel ``main`` (it unwinds, its
    cleanups run) and then raise :class:`KeyboardInterrupt`, even if something
    inside swallowed the cancellation. The handlers in place before are restored."""
    import asyncio  # here: importing this module is among a command's first steps
    received: list[int] = []

    async def guarded() -> _T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            received.append(signum)
            _interrupted.set()
            task.cancel()

        previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
        for sig in _SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await main
        finally:
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)

    if threading.current_thread() is not threading.main_thread():
        return asyncio.run(main)
    try:
        result = asyncio.run(guarded())
    except asyncio.CancelledError:
        if received or _interrupted.is_set():
            raise KeyboardInterrupt(f"received signal {received[0] if received else signal.SIGINT}") from None
        raise
    if received:
        raise KeyboardInterrupt(f"received signal {received[0]}")
    return result
