"""Readiness waits, ports, signals and the error hierarchy (no child processes)."""

from __future__ import annotations

import asyncio
import signal
import socket
import time

import pytest

from replica.drivers.local.ports import ensure_port_free, free_port
from replica import interrupts, polling
from replica.interrupts import install_sigterm_handler
from replica.polling import port_is_open, wait_until, wait_until_async
from replica.errors import ConfigError, InfrastructureError, ReplicaError


def test_error_hierarchy_and_exit_codes() -> None:
    assert issubclass(InfrastructureError, ReplicaError)
    assert issubclass(ConfigError, ReplicaError)
    assert not issubclass(ConfigError, InfrastructureError)
    assert ReplicaError("x").exit_code == 2
    assert InfrastructureError("x").exit_code == 2
    assert ConfigError("bad spec", exit_code=64).exit_code == 64
    assert ConfigError("bad spec").message == "bad spec"


def test_wait_until_returns_once_check_passes() -> None:
    calls: list[int] = []

    def check() -> bool:
        calls.append(1)
        return len(calls) >= 3

    wait_until(check, 5.0, what="three calls")
    assert len(calls) == 3


def test_wait_until_timeout_is_bounded_and_says_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(InfrastructureError) as info:
        wait_until(lambda: False, 0.3, what="the moon to turn blue")
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.5
    assert "timed out after 0.3s waiting for the moon to turn blue" in str(info.value)


def test_wait_until_reports_last_retryable_error() -> None:
    def check() -> bool:
        raise ConnectionRefusedError("refused by test")

    with pytest.raises(InfrastructureError, match="ConnectionRefusedError: refused by test"):
        wait_until(check, 0.2, what="a refused connection")


def test_wait_until_propagates_other_errors_at_once() -> None:
    calls: list[int] = []

    def check() -> bool:
        calls.append(1)
        raise ValueError("a bug in the check")

    with pytest.raises(ValueError, match="a bug in the check"):
        wait_until(check, 5.0)
    assert calls == [1]


def test_wait_until_async_with_coroutine_check() -> None:
    calls: list[int] = []

    async def check() -> bool:
        calls.append(1)
        return len(calls) >= 2

    asyncio.run(wait_until_async(check, 5.0, what="two calls"))
    assert len(calls) == 2


def test_wait_until_async_cuts_off_a_hanging_check() -> None:
    async def hangs() -> bool:
        await asyncio.sleep(30)
        return True

    started = time.monotonic()
    with pytest.raises(InfrastructureError, match="timed out after 0.3s waiting for a hanging check"):
        asyncio.run(
            wait_until_async(hangs, 0.3, what="a hanging check", retry_on=(OSError, asyncio.TimeoutError))
        )
    assert time.monotonic() - started < 2.0


def test_wait_until_async_tries_again_as_soon_as_it_is_woken(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pause after a failed try would last a minute; the wake cuts it short."""
    monkeypatch.setattr(polling, "_POLL_FIRST_S", 60.0)

    async def main() -> int:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        tries: list[int] = []

        def check() -> bool:
            tries.append(1)
            if len(tries) == 1:
                asyncio.get_running_loop().call_soon(wake.set_result, None)  # the event comes during the pause
            return len(tries) == 2

        await wait_until_async(check, 120.0, what="the second try", wake=wake)
        return len(tries)

    started = time.monotonic()
    assert asyncio.run(main()) == 2
    assert time.monotonic() - started < 30.0


def test_wait_until_async_is_woken_once_then_polls_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wake that is already done does not turn the wait into a busy loop."""
    monkeypatch.setattr(polling, "_POLL_FIRST_S", 0.05)
    tries: list[int] = []

    async def main() -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        wake.set_result(None)
        await wait_until_async(lambda: bool(tries.append(1)), 0.5, what="nothing", wake=wake, poll_max_s=0.05)

    with pytest.raises(InfrastructureError, match="timed out after 0.5s waiting for nothing"):
        asyncio.run(main())
    assert 3 <= len(tries) <= 12  # one try per 50 ms pause, not thousands


def test_free_port_is_bindable_and_closed() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    assert not port_is_open("127.0.0.1", port)
    ensure_port_free("127.0.0.1", port)


def test_ensure_port_free_names_the_port_in_use() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(InfrastructureError) as info:
            ensure_port_free("127.0.0.1", port, what="Redis")
    message = str(info.value)
    assert f"cannot start Redis: port 127.0.0.1:{port} is already in use" in message
    assert "pick another port" in message


def test_sigterm_handler_raises_keyboard_interrupt_and_restores() -> None:
    before = signal.getsignal(signal.SIGTERM)
    restore = install_sigterm_handler()
    try:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
    finally:
        restore()
        interrupts._interrupted.clear()  # the interrupt is recorded for good; later tests start processes
    assert signal.getsignal(signal.SIGTERM) is before
