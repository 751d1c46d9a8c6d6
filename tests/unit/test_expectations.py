"""Freezing observed fingerprints, reading them back, judging runs against them."""

from __future__ import annotations

import pytest

from replica.errors import ConfigError
from replica.expectations import (
    FROZEN_LABEL,
    Snapshot,
    dump_expectations,
    freeze,
    judge,
    load_expectations,
    parse_expectations,
    widen,
    with_expectations,
)
from replica.fingerprint import Expectation, Fingerprint, Range
from replica.scenarios import Catalog, Scenario

CLOSED = Fingerprint(handshake="accepted", close_code=1011, close_reason="Internal error", closed_by="server", close_after_ms=12.0)
HEALTHY = Fingerprint(handshake="accepted", welcome=True, pong=True)
REFUSED = Fingerprint(handshake="no_server")


def test_widen_uses_three_spreads_250_ms_or_ten_percent_and_never_goes_negative():
    assert widen([12.0]) == Range(min=0, max=262)
    assert widen([1000.0, 1100.0]) == Range(min=700, max=1400)  # 3 × 100 ms spread
    assert widen([5000.0, 5010.0]) == Range(min=4499, max=5511)  # 10 % of 5010 ms
    assert widen([3000.0, 3001.5]) == Range(min=2699, max=3302)  # 10 % of 3001.5 ms


def test_freeze_keeps_every_field_that_agreed():
    frozen = freeze({"a": [CLOSED, CLOSED.model_copy(update={"close_after_ms": 20.0})], "b": [HEALTHY]})
    a = frozen.expectations["a"]
    assert (a.handshake, a.welcome, a.close_code, a.close_reason, a.closed_by, a.pong) == (
        "accepted", False, 1011, "Internal error", "server", False
    )
    assert a.close_after_ms == Range(min=0, max=270)
    b = frozen.expectations["b"]
    assert b.close_code is None and "close_code" in b.model_fields_set and "close_after_ms" not in b.model_fields_set
    assert frozen.unstable == {}


def test_freeze_leaves_out_and_reports_what_differed():
    frozen = freeze({"flaky": [CLOSED, HEALTHY]})
    assert frozen.unstable == {
        "flaky": ["welcome", "close_code", "close_reason", "closed_by", "pong", "close_after_ms"]
    }
    assert frozen.expectations["flaky"].model_fields_set == {"handshake"}
    with pytest.raises(ValueError, match="no observation of scenario 'none'"):
        freeze({"none": []})


def test_a_snapshot_checks_null_as_no_close():
    snap = freeze({"b": [HEALTHY]}).expectations["b"]
    assert snap.mismatches(HEALTHY) == []
    assert snap.describe() == "accepted, welcome, pong, no close"
    assert Snapshot(close_code=None).describe() == "no close" and Snapshot().describe() == "anything"
    broken = HEALTHY.model_copy(update={"close_code": 1011, "close_reason": "x", "closed_by": "server", "close_after_ms": 3.0})
    assert sorted(snap.mismatches(broken)) == [
        "close_code: expected None, observed 1011",
        "close_reason: expected None, observed 'x'",
        "closed_by: expected None, observed 'server'",
    ]


def test_judge_observes_passes_and_fails_field_by_field():
    snap = freeze({"a": [CLOSED]}).expectations["a"]
    assert judge(None, CLOSED) == ("observed", [])
    assert judge(snap, CLOSED) == ("pass", [])
    verdict, mismatches = judge(snap, CLOSED.model_copy(update={"close_code": 1013, "close_after_ms": 400.0}))
    assert verdict == "fail"
    assert mismatches == ["close_code: expected 1011, observed 1013", "close_after_ms: expected 0..262, observed 400.0"]
    assert judge(snap, REFUSED)[1][0] == "handshake: expected 'accepted', observed 'no_server'"


def test_dump_then_parse_round_trips_in_order_and_is_readable():
    frozen = freeze({"healthy": [HEALTHY], "redis:hung": [CLOSED, CLOSED], "startup.cache:raise": [REFUSED]})
    text = dump_expectations(frozen, source="examples/chat/replica.toml", runs=2)
    assert text.startswith("# Expected fingerprints for examples/chat/replica.toml, frozen from 2 runs of each scenario.")
    assert "close_after_ms:\n      min: 0\n      max: 262\n" in text
    back = parse_expectations(text, source="x.yaml", known=["healthy", "redis:hung", "startup.cache:raise"])
    assert list(back) == ["healthy", "redis:hung", "startup.cache:raise"]
    for name, snap in frozen.expectations.items():
        assert back[name] == snap and back[name].model_fields_set == snap.model_fields_set


def test_unstable_fields_are_named_in_the_header():
    text = dump_expectations(freeze({"flaky": [CLOSED, HEALTHY]}), source="p", runs=2)
    assert "# flaky: welcome, close_code, close_reason, closed_by, pong, close_after_ms differed between runs" in text


def test_a_hand_edited_file_checks_only_what_it_names():
    text = "scenarios:\n  redis:hung: {handshake: accepted, close_code: 1013}\n"
    [snap] = parse_expectations(text, source="e.yaml", known=["redis:hung"]).values()
    assert snap.mismatches(CLOSED) == ["close_code: expected 1013, observed 1011"]
    assert snap.mismatches(CLOSED.model_copy(update={"close_code": 1013, "close_after_ms": 9000.0})) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scenarios:\n  nope: {}\n", r"e.yaml: scenarios.nope: no such scenario \(known: healthy\)"),
        ("scenarios:\n  healthy: {close_cod: 1}\n", r"e.yaml: scenarios.healthy.close_cod: Extra inputs"),
        ("scenarios:\n  healthy: {close_after_ms: {min: x}}\n", r"scenarios.healthy.close_after_ms.min: "),
        ("other: {}\n", r"e.yaml: expected one top-level key, scenarios"),
        ("- a\n", r"expected one top-level key"),
        ("scenarios: [\n", r"e.yaml: not valid YAML"),
    ],
)
def test_a_bad_expectation_file_is_named(text, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_expectations(text, source="e.yaml", known=["healthy"])


def test_an_empty_entry_expects_anything(tmp_path):
    path = tmp_path / "replica-expect.yaml"
    path.write_text("scenarios:\n  healthy:\n")
    assert load_expectations(path, known=["healthy"])["healthy"].mismatches(REFUSED) == []
    with pytest.raises(ConfigError, match="cannot read"):
        load_expectations(tmp_path / "missing.yaml", known=[])


def test_runs_take_their_frozen_expectation_and_the_rest_stay_observed():
    scenarios = [Scenario(name=n, title=n, hypothesis=n, expect=None) for n in ("healthy", "redis:down")]
    runs = Catalog(scenarios).runs()
    snap = Snapshot(handshake="accepted")
    held = with_expectations(runs, {"healthy": snap})
    assert held[0].expect is snap and held[0].expect_label == FROZEN_LABEL
    assert held[1].expect is None and held[1] is runs[1]
    assert isinstance(held[0].expect, Expectation) and held[0].expect.mismatches(REFUSED)
