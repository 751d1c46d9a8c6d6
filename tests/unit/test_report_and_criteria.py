"""The fix table's words, the success criteria, the diagnosis cache and report paths: pure parts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from replica import candidates
from replica.criteria import evaluate, is_dependency_error
from replica.diagnose import Candidate, ScaledWait
from replica.errors import ConfigError
from replica.evidence import Evidence, ServerError
from replica.fingerprint import Expectation, Fingerprint
from replica.probe import Flows, Observation
from replica.report import check_writable, outcome_words
from replica.runner import RunResult
from replica.scenarios import Catalog

SERVED = Fingerprint(handshake="accepted", welcome=True, pong=True)


@pytest.mark.parametrize(
    ("fp", "baseline", "words", "style"),
    [
        (SERVED, False, "cured", "green"),
        (SERVED, True, "passes", "green"),
        (Fingerprint(handshake="http_503"), False, "refused 503", "yellow"),
        (Fingerprint(handshake="accepted", close_code=1013, close_reason="redis unavailable"), False, "retry later (1013 redis unavailable)", "yellow"),
        (Fingerprint(handshake="accepted", close_code=1011, close_reason="Internal error"), False, "still fails (1011 Internal error)", "red"),
        (Fingerprint(handshake="accepted", close_code=1011, close_reason="Service unavailable"), True, "fails (1011 Service unavailable)", "red"),
        (Fingerprint(handshake="accepted", welcome=True, close_code=1011, close_reason="Internal error"), False, "still fails (1011 Internal error after the welcome)", "red"),
        (Fingerprint(handshake="accepted", close_code=1011, close_reason="keepalive ping timeout", closed_by="client"), False, "still fails (1011 keepalive ping timeout from the client)", "red"),
        (Fingerprint(handshake="http_500"), False, "still fails (HTTP 500)", "red"),
        (Fingerprint(handshake="accepted"), False, "still fails (no welcome)", "red"),
    ],
)
def test_fix_table_cells_say_what_they_mean(fp, baseline, words, style):
    assert outcome_words(fp, baseline=baseline) == (words, style)


def result(fp: Fingerprint, *, no_token="http_403", welcome_ms=40.0, flows=True, errors=()) -> RunResult:
    observation = Observation(
        base_url="http://x", url="ws://x/ws", fingerprint=fp, welcome_ms=welcome_ms if fp.welcome else None,
        flows=Flows(agent_events=["agent_started", "agent_thinking", "agent_completed"], heartbeat_ack=True) if flows else None,
    )
    return RunResult(
        name="seed-1011", scenario="seed-1011", handler="h", driver="local", expected=Expectation(), observed=fp,
        verdict="pass", backend_ready=True, duration_ms=1, observation=observation,
        evidence=Evidence(no_token=no_token, server_errors=list(errors)),
    )


def test_the_six_criteria_all_met():
    found = evaluate([result(SERVED), result(SERVED, welcome_ms=900)])
    assert [c.key for c in found] == ["no-1011", "welcome-2s", "test-001", "e2e-flows", "no-dependency-errors", "all-repeats"]
    assert all(c.passed for c in found)
    assert found[1].detail == "2/2 · ≤ 0.90 s"


def test_each_criterion_says_what_the_failing_run_showed():
    broken = Fingerprint(handshake="accepted", close_code=1011, close_reason="Internal error", closed_by="server")
    dependency = ServerError(level="ERROR", logger="replica.ws", message="WebSocket dependencies missing: thread_service")
    found = {c.key: c for c in evaluate([result(SERVED, no_token="accepted", welcome_ms=2500), result(broken, flows=False, errors=[dependency])])}
    assert found["no-1011"].detail == '1/2 · 1011 "Internal error"'
    assert found["welcome-2s"].detail == "0/2 · welcome after 2.50 s"
    assert found["test-001"].detail == "0/2 · no token → accepted"
    assert found["e2e-flows"].detail == "1/2 · not reached"
    assert found["no-dependency-errors"].detail == "1/2 · ERROR replica.ws: WebSocket dependencies missing: thread_service"
    assert found["all-repeats"].detail == "0/2" and not any(c.passed for c in found.values())


def test_dependency_errors_are_told_from_other_errors():
    assert is_dependency_error(ServerError(level="ERROR", logger="x", message="boom", exception_type="redis.exceptions.TimeoutError"))
    assert not is_dependency_error(
        ServerError(level="ERROR", logger="replica.ws", message="WebSocket error: Object of type WebSocketState is not JSON serializable", exception_type="TypeError")
    )


def test_report_paths_are_checked_before_anything_starts(tmp_path: Path):
    check_writable(tmp_path / "report.json")
    check_writable(None)
    with pytest.raises(ConfigError, match="does not exist"):
        check_writable(tmp_path / "missing" / "report.json")
    with pytest.raises(ConfigError, match="it is a directory"):
        check_writable(tmp_path)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="permission denied"):
            check_writable(locked / "report.json")


def test_the_catalog_scales_its_shortened_waits():
    catalog = Catalog.load()
    assert candidates.scaled_wait(catalog.scenarios["startup-never-completes"]) == ScaledWait(what="startup wait", local_ms=1000, real_ms=30000)
    assert candidates.scaled_wait(catalog.scenarios["hung-redis-sync-client"]) == ScaledWait(what="client keepalive", local_ms=1000, real_ms=40000)
    assert candidates.scaled_wait(catalog.scenarios["seed-1011"]) is None


def test_the_cache_is_keyed_by_catalog_and_code_and_survives_a_round_trip(tmp_path: Path, monkeypatch):
    catalog_dir, package = tmp_path / "catalog", tmp_path / "pkg"
    catalog_dir.mkdir(), package.mkdir()
    (catalog_dir / "a.yaml").write_text("name: a\n")
    (package / "m.py").write_text("x = 1\n")
    key = candidates.cache_key(5, "local", catalog_dir, (package,))
    assert key == candidates.cache_key(5, "local", catalog_dir, (package,))
    assert key != candidates.cache_key(3, "local", catalog_dir, (package,))
    assert key != candidates.cache_key(5, "compose", catalog_dir, (package,))
    (package / "m.py").write_text("x = 2\n")
    assert key != candidates.cache_key(5, "local", catalog_dir, (package,))
    (package / "m.py").write_text("x = 1\n")
    (catalog_dir / "a.yaml").write_text("name: a\ntitle: changed\n")
    assert key != candidates.cache_key(5, "local", catalog_dir, (package,))

    monkeypatch.setenv("REPLICA_CACHE_DIR", str(tmp_path / "cache"))
    assert candidates.load_cached(key) is None
    stored = [Candidate(scenario="s", handler="incident", title="t", samples=[SERVED], features={"ready": "ready"})]
    path = candidates.store(key, stored)
    assert candidates.load_cached(key) == stored
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("{garbage")
    assert candidates.load_cached(key) is None


def test_reproduce_repeats_the_real_cause_for_the_fixes_expected_to_cure_it():
    from collections import Counter

    from replica.reproduce import reproduce_jobs, reproduce_runs

    runs, causes = reproduce_runs(Catalog.load())
    jobs = reproduce_jobs(runs, 3)
    seed = Counter(j.run.handler for j in jobs if j.run.scenario.name == "seed-1011")
    assert seed == {"incident": 1, "seed-fix": 1, "fallback-handler": 1, "startup-wait-5s": 1,
                    "landed-fix": 3, "log-line-fix": 3, "recommended": 3}
    assert all(j.e2e_flows == (j.run.scenario.name == "seed-1011") for j in jobs)
    assert causes[0] == "seed-1011" and len(jobs) == len(runs) + 6
