"""Ranking the catalog's causes against an observation: pure, on hand-built candidates."""

from __future__ import annotations

import pytest

from replica.diagnose import (
    Candidate,
    Observed,
    ScaledWait,
    explaining,
    judge_timing,
    observed_from_json,
    rank,
    tells_apart,
    tied,
)
from replica.fingerprint import Fingerprint

STAGING = {"handshake": "accepted", "welcome": False, "close_code": 1011, "close_reason": "Internal error", "close_after_ms": 63, "pong": False}


def closed(reason: str, *times: float, code: int = 1011, by: str = "server", welcome: bool = False) -> list[Fingerprint]:
    return [
        Fingerprint(handshake="accepted", welcome=welcome, close_code=code, close_reason=reason, close_after_ms=t, closed_by=by)
        for t in times
    ]


SERVED = [Fingerprint(handshake="accepted", welcome=True, pong=True)] * 3
STARTUP_WAIT = ScaledWait(what="startup wait", local_ms=1000, real_ms=30000)


def catalog() -> list[Candidate]:
    def c(name: str, samples: list[Fingerprint], **kw) -> Candidate:
        return Candidate(scenario=name, handler="incident", title=name, samples=samples, **kw)

    return [
        c("healthy", SERVED, features={"ready": "ready"}),
        c("startup-incomplete-e2e-test", SERVED, features={"ready": "not ready (503)"}),
        c("seed-1011", closed("Internal error", 2, 5, 9), features={"frames": "none", "no_token": "accepted"}),
        c("supervisor-missing", closed("Service unavailable", 4, 8, 20), features={"frames": "SERVICE_UNAVAILABLE: agent_supervisor", "second_probe": "1011"}),
        c("race-background-startup", closed("Service unavailable", 5, 6, 25), features={"frames": "SERVICE_UNAVAILABLE: both", "second_probe": "welcome, pong"}),
        c("startup-never-completes", closed("Service startup incomplete", 1005, 1010, 1030), wait=STARTUP_WAIT),
        c("exception-before-accept", [Fingerprint(handshake="http_500")] * 3),
    ]


def test_the_staging_observation_is_explained_by_the_real_cause_alone():
    ranked = rank(Observed(fingerprint=STAGING), catalog())
    assert ranked[0].scenario == "seed-1011" and ranked[0].matches and ranked[0].score == 1.0
    assert [r.scenario for r in explaining(ranked)] == ["seed-1011"]
    assert "immediately after accept" in ranked[0].notes[0]
    supervisor = next(r for r in ranked if r.scenario == "supervisor-missing")
    assert [m.text for m in supervisor.mismatches] == ['close reason: "Service unavailable" here, "Internal error" observed']
    # Ranked best first: one differing field before several.
    assert [r.scenario for r in ranked][:4] == ["seed-1011", "supervisor-missing", "race-background-startup", "startup-never-completes"]


def test_a_close_with_no_counterpart_is_one_difference_with_values():
    ranked = rank(Observed(fingerprint=STAGING), catalog())
    healthy = next(r for r in ranked if r.scenario == "healthy")
    assert healthy.mismatches[0].text == 'no close here, close 1011 "Internal error" observed'
    assert {m.field for m in healthy.mismatches} == {"close", "welcome", "pong"}


def test_nothing_explains_an_unknown_reason():
    observed = Observed(fingerprint=dict(STAGING, close_reason="Database exploded"))
    ranked = rank(observed, catalog())
    assert explaining(ranked) == [] and tied(ranked) == []
    assert ranked[0].score < 1


def test_timing_is_judged_in_ranges_with_the_causes_own_spread():
    assert judge_timing(63, [2, 5, 9], None)[0]  # 63 ms in staging, 5 ms here: both "at once"
    assert not judge_timing(900, [2, 5, 9], None)[0]
    assert judge_timing(1040, [1005, 1010, 1030], STARTUP_WAIT)[0]
    ok, note = judge_timing(30_020, [1005, 1010, 1030], STARTUP_WAIT)
    assert ok and note.startswith("scaled: its startup wait is 1 s here, 30 s in staging")
    ok, expected = judge_timing(63, [1005, 1010, 1030], STARTUP_WAIT)
    assert not ok and "scaled from 30 s in staging to 1 s" in expected
    # A wide spread widens the range: 2 × (600 - 100) either side.
    assert judge_timing(1500, [100, 600], None)[0] and not judge_timing(1700, [100, 600], None)[0]


def test_a_startup_wait_of_thirty_seconds_in_staging_matches_the_scaled_cause():
    observed = Observed(fingerprint=dict(STAGING, close_reason="Service startup incomplete", close_after_ms=30_050))
    [best] = explaining(rank(observed, catalog()))
    assert best.scenario == "startup-never-completes" and best.notes[0].startswith("scaled")


def test_causes_that_tie_are_named_with_what_tells_them_apart():
    observed = Observed(fingerprint=dict(STAGING, close_reason="Service unavailable", close_after_ms=40))
    ranked = rank(observed, catalog())
    assert {r.scenario for r in tied(ranked)} == {"supervisor-missing", "race-background-startup"}
    apart = tells_apart([c for c in catalog() if c.scenario in ("supervisor-missing", "race-background-startup")])
    assert apart == {
        "frames": {"supervisor-missing": "SERVICE_UNAVAILABLE: agent_supervisor", "race-background-startup": "SERVICE_UNAVAILABLE: both"},
        "second_probe": {"supervisor-missing": "1011", "race-background-startup": "welcome, pong"},
    }


def test_observed_features_break_a_tie():
    observed = Observed(
        fingerprint=dict(STAGING, close_reason="Service unavailable", close_after_ms=40), features={"second_probe": "welcome, pong"}
    )
    ranked = rank(observed, catalog())
    assert [r.scenario for r in tied(ranked)] == ["race-background-startup"]
    assert ranked[0].scenario == "race-background-startup" and ranked[0].agreeing == ["second_probe"]
    assert len(explaining(ranked)) == 2


def test_a_bare_fingerprint_judges_only_the_fields_it_gives():
    observed = observed_from_json({"handshake": "accepted", "welcome": True, "pong": True})
    assert set(observed.fingerprint) == {"handshake", "welcome", "pong"}
    assert {r.scenario for r in tied(rank(observed, catalog()))} == {"healthy", "startup-incomplete-e2e-test"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "expected a JSON object, got list"),
        ({"handshake": "accepted", "close_cod": 1011}, "unknown fingerprint field 'close_cod'"),
        ({"welcome": False}, 'a fingerprint needs at least "handshake"'),
    ],
)
def test_bad_observations_say_what_is_wrong(data, message):
    with pytest.raises(ValueError, match=message):
        observed_from_json(data)


def test_a_probe_observation_brings_its_frames_and_no_token_outcome():
    observed = observed_from_json(
        {
            "base_url": "https://staging.example",
            "url": "wss://staging.example/ws",
            "fingerprint": STAGING | {"closed_by": "server"},
            "no_token_handshake": "accepted",
            "messages": [],
        }
    )
    assert observed.features == {"frames": "none", "no_token": "accepted"}
    assert observed.fingerprint["closed_by"] == "server"
    best = rank(observed, catalog())[0]
    assert best.scenario == "seed-1011" and best.agreeing == ["frames", "no_token"]
