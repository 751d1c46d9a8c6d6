"""``failpoint`` at run time: arming, disarming, the environment, and each action performed."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time

import pytest

from faults import FailpointError, Failpoints, failpoint


def test_an_unarmed_point_costs_no_coroutine_and_answers_false() -> None:
    points = Failpoints(environ={})
    first, second = points("ws.publish"), points("ws.publish")
    assert first is second and not inspect.iscoroutine(first)
    assert asyncio.run(_await(first)) is False
    assert points.sync("ws.publish") is False


def test_the_unarmed_awaitable_works_with_asyncio_helpers_in_any_loop() -> None:
    points = Failpoints(environ={})

    async def main() -> list[object]:
        return [
            await asyncio.wait_for(points("a"), 1), await asyncio.gather(points("a"), points("b")),
            await asyncio.shield(points("a")),
        ]

    assert asyncio.run(main()) == [False, [False, False], False]
    assert asyncio.run(main()) == [False, [False, False], False]  # a second loop


async def _await(awaitable):
    return await awaitable


def test_skip_answers_true_in_both_forms_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    points = Failpoints(environ={})
    with caplog.at_level(logging.WARNING, logger="faults.failpoints"):
        points.arm("startup.cache=skip")
        assert asyncio.run(_await(points("startup.cache"))) is True
        assert points.sync("startup.cache") is True
    assert asyncio.run(_await(points("startup.other"))) is False
    assert [r.getMessage() for r in caplog.records] == ["failpoints armed: startup.cache=skip"] + [
        "failpoint startup.cache: skip"
    ] * 2


def test_raise_raises_the_named_builtin_exception() -> None:
    points = Failpoints(environ={})
    points.arm("ws.auth=raise(TypeError: Object of type WebSocketState is not JSON serializable); ws.bare=raise")
    with pytest.raises(TypeError, match="^Object of type WebSocketState is not JSON serializable$"):
        asyncio.run(_await(points("ws.auth")))
    with pytest.raises(TypeError):
        points.sync("ws.auth")
    with pytest.raises(RuntimeError, match="^failpoint$"):
        points.sync("ws.bare")


def test_delay_yields_to_the_loop_but_block_does_not() -> None:
    async def ticks_during(spec: str) -> int:
        points = Failpoints(environ={})
        points.arm(spec)
        count = 0

        async def ticker() -> None:
            nonlocal count
            while True:
                count += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = count
        assert await points("ws.welcome") is False
        during = count - before
        task.cancel()
        return during

    assert asyncio.run(ticks_during("ws.welcome=delay(200ms)")) >= 5
    started = time.monotonic()
    assert asyncio.run(ticks_during("ws.welcome=block(200ms)")) == 0
    assert time.monotonic() - started >= 0.2


def test_delay_in_sync_code_sleeps_the_thread() -> None:
    points = Failpoints(environ={})
    points.arm("x=delay(100ms)")
    started = time.monotonic()
    assert points.sync("x") is False
    assert time.monotonic() - started >= 0.1


def test_hang_never_completes() -> None:
    points = Failpoints(environ={})
    points.arm("startup.finalize=hang")

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_await(points("startup.finalize")), 0.05)

    asyncio.run(main())


def test_the_environment_is_read_once_at_the_first_call() -> None:
    environ = {"REPLICA_FAILPOINTS": "ws.publish=skip"}
    points = Failpoints(environ=environ)
    assert str(points.spec) == ""  # nothing read yet
    assert points.sync("ws.publish") is True
    environ["REPLICA_FAILPOINTS"] = ""
    assert points.sync("ws.publish") is True
    assert str(points.spec) == "ws.publish=skip"


def test_a_bad_environment_spec_fails_at_load_env_naming_the_declared_points() -> None:
    points = Failpoints(environ={"REPLICA_FAILPOINTS": "ws.publsh=skip", "REPLICA_FAILPOINTS_DECLARED": "startup.cache,ws.publish"})
    with pytest.raises(FailpointError) as excinfo:
        points.load_env()
    assert str(excinfo.value) == (
        "ws.publsh=skip: unknown failpoint 'ws.publsh'; did you mean 'ws.publish'? (declared: startup.cache, ws.publish)"
    )
    with pytest.raises(FailpointError):  # lazily, at the first call, the same error
        points.sync("ws.publish")


def test_arm_checks_the_declared_points_given_as_an_argument() -> None:
    points = Failpoints(environ={})
    with pytest.raises(FailpointError, match=r"unknown failpoint 'b' \(declared: a\)"):
        points.arm("b=skip", declared=["a"])
    spec = points.arm("a=skip", declared=["a"])
    with pytest.raises(FailpointError, match=r"unknown failpoint 'a' \(declared: none\)"):
        points.arm(spec, declared=[])


def test_arm_replaces_disarm_clears_and_armed_restores() -> None:
    points = Failpoints(environ={"REPLICA_FAILPOINTS": "a=skip"})
    points.arm("b=skip")
    assert (points.sync("a"), points.sync("b")) == (False, True)
    with points.armed("a=skip") as spec:
        assert str(spec) == "a=skip"
        assert (points.sync("a"), points.sync("b")) == (True, False)
    assert (points.sync("a"), points.sync("b")) == (False, True)
    points.disarm()
    assert (points.sync("a"), points.sync("b")) == (False, False)
    assert not points.spec


def test_armed_restores_even_the_unread_environment() -> None:
    points = Failpoints(environ={"REPLICA_FAILPOINTS": "a=skip"})
    with points.armed("b=skip"):
        assert points.sync("a") is False
    assert points.sync("a") is True


def test_the_process_wide_failpoint_is_a_failpoints() -> None:
    assert isinstance(failpoint, Failpoints)
    with failpoint.armed("unit.test=skip"):
        assert failpoint.sync("unit.test") is True
    assert failpoint.sync("unit.test") is False
