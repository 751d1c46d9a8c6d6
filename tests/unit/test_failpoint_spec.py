"""The failpoint spec language and the defect list: strict parsing, exact messages."""

from __future__ import annotations

import asyncio
import time

import pytest

from faults.failpoints import Failpoints
from faults.spec import (
    KNOWN_POINTS,
    Block,
    Delay,
    Hang,
    Raise,
    Skip,
    SpecError,
    parse_defects,
    parse_duration,
    parse_spec,
)


def test_empty_and_blank_specs_have_no_failpoints() -> None:
    assert parse_spec("").actions == {}
    assert parse_spec("  ;\n ; ").actions == {}
    assert not parse_spec("")


def test_every_action_kind_parses() -> None:
    spec = parse_spec(
        "startup.supervisor=skip; startup.database=delay(250ms)\n"
        "ws.auth=raise(TypeError: Object of type WebSocketState is not JSON serializable)\n"
        "startup.finalize=hang; ws.welcome=block(2s); ws.message_loop=block(redis)"
    )
    assert spec.actions == {
        "startup.supervisor": Skip(),
        "startup.database": Delay(0.25),
        "ws.auth": Raise("TypeError", "Object of type WebSocketState is not JSON serializable"),
        "startup.finalize": Hang(),
        "ws.welcome": Block(2.0),
        "ws.message_loop": Block(None, "redis"),
    }
    assert list(spec.actions) == [
        "startup.supervisor", "startup.database", "ws.auth", "startup.finalize", "ws.welcome", "ws.message_loop",
    ]


def test_whitespace_is_ignored_around_every_part() -> None:
    spec = parse_spec("  startup.cache =  delay( 1.5s )  ;ws.auth = raise( RuntimeError :  boom  ) ")
    assert spec.actions == {"startup.cache": Delay(1.5), "ws.auth": Raise("RuntimeError", "boom")}


def test_raise_without_message() -> None:
    assert parse_spec("ws.accept=raise(ValueError)").get("ws.accept") == Raise("ValueError", "")


def test_spec_round_trips_through_str() -> None:
    text = "startup.supervisor=skip; startup.database=delay(250ms); ws.auth=raise(TypeError: boom); ws.welcome=block(redis)"
    assert str(parse_spec(text)) == text
    assert parse_spec(str(parse_spec(text))) == parse_spec(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("1.5s", 1.5), ("0s", 0.0), ("1m", 60.0), (".5s", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ws.autth=skip", "unknown failpoint 'ws.autth'; did you mean 'ws.auth'? (known: " + ", ".join(KNOWN_POINTS) + ")"),
        ("ws.welcome=skip", "'skip' is not allowed at ws.welcome (only at startup.supervisor, startup.thread_service)"),
        ("startup.database=delay(5x)", "bad duration '5x' in startup.database=delay(5x)"),
        ("startup.database=delay(5)", "bad duration '5' in startup.database=delay(5)"),
        ("ws.auth=raise(Foo: bar)", "unknown exception type 'Foo' (builtin exception types only, e.g. TypeError, RuntimeError)"),
        ("ws.auth=raise(KeyboardInterrupt)", "unknown exception type 'KeyboardInterrupt' (builtin exception types only, e.g. TypeError, RuntimeError)"),
        ("ws.auth=raise(UnicodeDecodeError: x)", "exception type 'UnicodeDecodeError' cannot be raised with a message"),
        ("ws.auth=explode", "unknown action 'explode' in ws.auth=explode (known actions: delay, raise, skip, hang, block)"),
        ("ws.auth=delay", "'delay' needs an argument in ws.auth=delay, e.g. delay(250ms)"),
        ("ws.auth=raise()", "'raise' needs an argument in ws.auth=raise(), e.g. raise(TypeError: boom)"),
        ("startup.finalize=hang(2s)", "'hang' takes no argument in startup.finalize=hang(2s)"),
        ("ws.auth=block(forever)", "bad duration 'forever' in ws.auth=block(forever) (block takes a duration or 'redis')"),
        ("ws.auth", "bad item 'ws.auth': expected point=action"),
        ("ws.auth=skip(", "bad action 'skip(' in ws.auth=skip( (known actions: delay, raise, skip, hang, block)"),
        ("ws.auth=delay(1s); ws.auth=hang", "failpoint 'ws.auth' given twice"),
    ],
)
def test_errors_name_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(SpecError) as excinfo:
        parse_spec(text)
    assert str(excinfo.value) == message


def test_an_error_in_a_later_item_is_not_hidden_by_good_ones() -> None:
    with pytest.raises(SpecError, match="unknown failpoint 'startup.db'"):
        parse_spec("startup.supervisor=skip\nstartup.db=delay(1s)")


def test_defects() -> None:
    assert parse_defects("") == frozenset()
    assert parse_defects("  ") == frozenset()
    assert parse_defects(" auth-log-json ") == frozenset({"auth-log-json"})
    with pytest.raises(SpecError) as excinfo:
        parse_defects("auth-log-json, auth-log")
    assert str(excinfo.value) == "unknown defect 'auth-log'; did you mean 'auth-log-json'? (known: auth-log-json)"
    with pytest.raises(SpecError, match="empty item in defect list"):
        parse_defects("auth-log-json,,")


# --- the runtime ------------------------------------------------------------------------------


def test_hit_raises_the_named_builtin_exception() -> None:
    failpoints = Failpoints.parse("ws.auth=raise(TypeError: Object of type WebSocketState is not JSON serializable)")
    with pytest.raises(TypeError, match="^Object of type WebSocketState is not JSON serializable$"):
        asyncio.run(failpoints.hit("ws.auth"))
    with pytest.raises(TypeError):
        failpoints.hit_sync("ws.auth")
    asyncio.run(failpoints.hit("ws.welcome"))  # not named: nothing happens


def test_skip_is_asked_for_not_performed() -> None:
    failpoints = Failpoints.parse("startup.supervisor=skip")
    assert failpoints.skips("startup.supervisor")
    assert not failpoints.skips("startup.thread_service")
    asyncio.run(failpoints.hit("startup.supervisor"))


def test_delay_yields_to_the_loop_but_block_does_not() -> None:
    async def ticks_during(point: str, spec: str) -> int:
        failpoints = Failpoints.parse(spec)
        count = 0

        async def ticker() -> None:
            nonlocal count
            while True:
                count += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = count
        await failpoints.hit(point)
        during = count - before
        task.cancel()
        return during

    assert asyncio.run(ticks_during("ws.welcome", "ws.welcome=delay(200ms)")) >= 5
    started = time.monotonic()
    assert asyncio.run(ticks_during("ws.welcome", "ws.welcome=block(200ms)")) == 0
    assert time.monotonic() - started >= 0.2


def test_hang_never_completes() -> None:
    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(Failpoints.parse("startup.finalize=hang").hit("startup.finalize"), 0.05)

    asyncio.run(main())


def test_unknown_point_at_run_time_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        asyncio.run(Failpoints().hit("ws.nope"))
