"""The failpoint spec language: strict parsing, exact messages (pure)."""

from __future__ import annotations

import pytest

from faults import FailpointError, parse_spec, register_action
from faults import actions
from faults.actions import Block, Delay, Hang, Raise, Skip, action_names, parse_duration
from faults.spec import check_point, parse_declared

DECLARED = ("startup.cache", "startup.database", "ws.auth", "ws.publish")


def test_empty_and_blank_specs_arm_nothing() -> None:
    assert parse_spec("").actions == {}
    assert parse_spec("  ;\n ; ").actions == {}
    assert not parse_spec("")


def test_every_action_parses_in_the_order_written() -> None:
    spec = parse_spec(
        "startup.cache=skip; startup.database=delay(250ms)\n"
        "ws.auth=raise(TypeError: Object of type WebSocketState is not JSON serializable)\n"
        "ws.publish=hang; ws.welcome=block(2s); ws.bare=raise"
    )
    assert spec.actions == {
        "startup.cache": Skip(),
        "startup.database": Delay(0.25),
        "ws.auth": Raise("TypeError", "Object of type WebSocketState is not JSON serializable"),
        "ws.publish": Hang(),
        "ws.welcome": Block(2.0),
        "ws.bare": Raise("RuntimeError", "failpoint"),
    }
    assert list(spec.actions) == ["startup.cache", "startup.database", "ws.auth", "ws.publish", "ws.welcome", "ws.bare"]


def test_whitespace_is_ignored_around_every_part() -> None:
    spec = parse_spec("  startup.cache =  delay( 1.5s )  ;ws.auth = raise( RuntimeError :  boom  ) ")
    assert spec.actions == {"startup.cache": Delay(1.5), "ws.auth": Raise("RuntimeError", "boom")}


def test_raise_without_message() -> None:
    assert parse_spec("ws.accept=raise(ValueError)").get("ws.accept") == Raise("ValueError", "")


def test_spec_round_trips_through_str() -> None:
    text = "startup.cache=skip; startup.database=delay(250ms); ws.auth=raise(TypeError: boom); ws.welcome=block(1.5s)"
    assert str(parse_spec(text)) == text
    assert parse_spec(str(parse_spec(text))) == parse_spec(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("1.5s", 1.5), ("0s", 0.0), ("1m", 60.0), (".5s", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


ALL_DECLARED = ", ".join(DECLARED)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ws.autth=skip", f"ws.autth=skip: unknown failpoint 'ws.autth'; did you mean 'ws.auth'? (declared: {ALL_DECLARED})"),
        ("nothing.like.it=skip", f"nothing.like.it=skip: unknown failpoint 'nothing.like.it' (declared: {ALL_DECLARED})"),
        ("ws auth=skip", "ws auth=skip: bad failpoint name 'ws auth' (use a dotted name such as ws.publish)"),
        ("=skip", "=skip: bad failpoint name '' (use a dotted name such as ws.publish)"),
        ("startup.database=delay(5x)", "startup.database=delay(5x): bad duration '5x' (use e.g. 250ms, 2s, 1.5s)"),
        ("startup.database=delay(5)", "startup.database=delay(5): bad duration '5' (use e.g. 250ms, 2s, 1.5s)"),
        ("startup.database=delay(2000m)", "startup.database=delay(2000m): duration '2000m' is longer than a day"),
        ("ws.auth=raise(Foo: bar)",
         "ws.auth=raise(Foo: bar): unknown exception type 'Foo' (builtin exception types only, e.g. TypeError, RuntimeError)"),
        ("ws.auth=raise(KeyboardInterrupt)",
         "ws.auth=raise(KeyboardInterrupt): unknown exception type 'KeyboardInterrupt' "
         "(builtin exception types only, e.g. TypeError, RuntimeError)"),
        ("ws.auth=raise(UnicodeDecodeError: x)",
         "ws.auth=raise(UnicodeDecodeError: x): exception type 'UnicodeDecodeError' cannot be raised with a message"),
        ("ws.auth=explode", "ws.auth=explode: unknown action 'explode' (known actions: {KNOWN_ACTIONS})"),
        ("ws.auth=delay", "ws.auth=delay: 'delay' needs an argument, e.g. delay(250ms)"),
        ("ws.auth=raise()", "ws.auth=raise(): 'raise' needs an argument, e.g. raise(TypeError: boom)"),
        ("ws.auth=hang(2s)", "ws.auth=hang(2s): 'hang' takes no argument"),
        ("ws.auth=block(forever)", "ws.auth=block(forever): bad duration 'forever' (use e.g. 250ms, 2s, 1.5s)"),
        ("ws.auth", "bad item 'ws.auth': expected point=action"),
        ("ws.auth=skip(", "ws.auth=skip(: bad action 'skip(' (known actions: {KNOWN_ACTIONS})"),
        ("ws.auth=delay(1s); ws.auth=hang", "ws.auth=hang: failpoint 'ws.auth' given twice"),
    ],
)
def test_errors_name_the_item_and_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(FailpointError) as excinfo:
        parse_spec(text, declared=DECLARED)
    assert str(excinfo.value) == message.replace("{KNOWN_ACTIONS}", ", ".join(action_names()))


def test_without_a_declared_list_any_well_formed_point_is_accepted() -> None:
    assert list(parse_spec("my-app.cache.v2=skip; x=hang").actions) == ["my-app.cache.v2", "x"]


def test_an_error_in_a_later_item_is_not_hidden_by_good_ones() -> None:
    with pytest.raises(FailpointError, match="unknown failpoint 'startup.db'"):
        parse_spec("startup.cache=skip\nstartup.db=delay(1s)", declared=DECLARED)


def test_errors_about_huge_input_stay_short() -> None:
    with pytest.raises(FailpointError) as excinfo:
        parse_spec("x=" + "y" * 50_000)
    assert len(str(excinfo.value)) < 300
    with pytest.raises(FailpointError, match="at most 65536"):
        parse_spec("x=skip;" * 20_000)


def test_declared_lists() -> None:
    assert parse_declared(" startup.cache, ws.publish ,") == ("startup.cache", "ws.publish")
    with pytest.raises(FailpointError, match="bad failpoint name 'a b'"):
        parse_declared("a b")
    assert check_point("ws.publish", DECLARED) == "ws.publish"


def test_registered_fixed_actions_join_the_language(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "_EXTRA", dict(actions._EXTRA))
    crash = Raise("SystemError", "crash")
    register_action("crash(now)", lambda: crash)
    assert parse_spec("ws.auth = crash( now )").get("ws.auth") is crash
    with pytest.raises(FailpointError, match=r"known actions: delay, raise, skip, hang, block, .*crash\(now\)"):
        parse_spec("ws.auth=crash(later)")
    with pytest.raises(ValueError, match="write the action as 'crash'"):
        register_action("crash ", lambda: crash)
