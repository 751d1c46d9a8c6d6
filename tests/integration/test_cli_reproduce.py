"""The product's main job, end to end, through the command a user types."""

from __future__ import annotations

import json

import pytest

from tests.integration.cli_support import REPO, run_replica

pytestmark = pytest.mark.slow


def test_reproduce_1011_shows_the_seed_failure_and_tells_causes_apart(tmp_path):
    report_path = tmp_path / "reproduce.json"
    result = run_replica("reproduce", "1011", "--json", str(report_path), state_dir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Reproduced seed-1011" in result.stdout
    assert "CONNECTION CLOSED" in result.stdout and "Close reason: Internal error" in result.stdout

    report = json.loads(report_path.read_text())
    runs = {r["name"]: r for r in report["scenarios"]}
    seed = runs["seed-1011"]["observed"]
    assert seed["handshake"] == "accepted" and seed["welcome"] is False
    assert (seed["close_code"], seed["close_reason"]) == (1011, "Internal error")
    assert seed["close_after_ms"] < 200
    assert all(r["verdict"] == "pass" for r in report["scenarios"])

    # The seed's hypotheses leave other fingerprints: a different reason or a welcome.
    assert runs["supervisor-missing"]["observed"]["close_reason"] == "Service unavailable"
    assert runs["startup-never-completes"]["observed"]["close_reason"] == "Service startup incomplete"
    # The backend's 1 s wait starts at its accept; the client's clock at the accept it sees,
    # a little later under load: the catalog's floor (800 ms), not 1000, is what holds.
    assert runs["startup-never-completes"]["observed"]["close_after_ms"] >= 800
    assert runs["startup-incomplete-e2e-test"]["observed"]["welcome"] is True

    # The seed's fix does not cure the real cause; the landed and recommended ones do.
    assert runs["seed-1011@seed-fix"]["observed"]["close_reason"] == "Internal error"
    assert runs["seed-1011@landed-fix"]["observed"]["pong"] is True
    assert runs["seed-1011@recommended"]["observed"]["pong"] is True
    assert runs["supervisor-missing@recommended"]["observed"]["handshake"] == "http_503"
    assert {r["driver"] for r in report["scenarios"]} == {"local"}

    # Under the reproduced failure, the line staging logged; in the JSON, every run's evidence.
    assert "server logged: ERROR replica.ws: WebSocket error: Object of type WebSocketState is not JSON serializable" in result.stdout
    [error] = runs["seed-1011"]["evidence"]["server_errors"]
    assert (error["exception_type"], error["logger"]) == ("TypeError", "replica.ws")
    assert runs["seed-1011"]["evidence"]["no_token"] == "accepted"
    assert runs["supervisor-missing"]["evidence"]["frames"][0]["error_code"] == "SERVICE_UNAVAILABLE"
    assert all("evidence" in r for r in report["scenarios"])

    # The landed fix, one change at a time: only the log-line fix cures the real cause.
    assert runs["seed-1011@log-line-fix"]["observed"]["pong"] is True
    assert runs["seed-1011@fallback-handler"]["observed"]["close_reason"] == "Internal error"
    assert runs["seed-1011@startup-wait-5s"]["observed"]["close_reason"] == "Internal error"
    assert runs["supervisor-missing@fallback-handler"]["observed"]["pong"] is True

    # The fix table in words; the success criteria per fix, on repeated runs of the real cause.
    assert all(word in result.stdout for word in ("still fails", "cured", "refused 503"))
    assert runs["seed-1011"]["outcome"] == "fails (1011 Internal error)"
    assert runs["seed-1011@seed-fix"]["outcome"] == "still fails (1011 Internal error)"
    assert runs["seed-1011@log-line-fix"]["outcome"] == "cured"
    assert runs["supervisor-missing@recommended"]["outcome"] == "refused 503"
    assert "Success criteria against the real cause (3 runs of each fix expected to cure it" in result.stdout
    met = {handler: all(c["passed"] for c in found) for handler, found in report["criteria"].items()}
    assert met == {v: v == "recommended" for v in ("incident", "seed-fix", "landed-fix", "log-line-fix", "fallback-handler", "startup-wait-5s", "recommended")}
    # The fixes expected to cure the real cause run three times; the others fail on their first.
    seed_runs = [r for r in report["scenarios"] if r["scenario"] == "seed-1011"]
    assert sorted(r["handler"] for r in seed_runs if r["repeat"] > 1) == sorted(["landed-fix", "log-line-fix", "recommended"] * 2)
    assert all(r["flows"] is not None for r in seed_runs if r["observed"]["pong"])
    assert report["criteria"]["incident"][0]["detail"] == '0/1 · 1011 "Internal error"'


def test_scenarios_run_with_a_users_own_handler(tmp_path):
    """A developer's handler is loaded from where they stand and held to the recommended outcome."""
    result = run_replica(
        "scenarios", "run", "seed-1011", "supervisor-missing", "--handler", "my_handler:websocket_endpoint",
        "--json", str(tmp_path / "mine.json"), state_dir=tmp_path, cwd=REPO / "examples",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    runs = {r["name"]: r for r in json.loads((tmp_path / "mine.json").read_text())["scenarios"]}
    assert runs["seed-1011@my_handler:websocket_endpoint"]["observed"]["pong"] is True
    assert runs["supervisor-missing@my_handler:websocket_endpoint"]["observed"]["handshake"] == "http_503"


def test_unknown_scenario_is_a_usage_error(tmp_path):
    result = run_replica("scenarios", "run", "no-such-scenario", state_dir=tmp_path)
    assert result.returncode == 2
    assert "unknown scenario 'no-such-scenario'" in result.stderr


def test_bad_handler_is_an_error_that_names_it(tmp_path):
    result = run_replica("scenarios", "run", "healthy", "--handler", "nonexistent_mod:fn", state_dir=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the backend refused its settings" in result.stderr and "nonexistent_mod" in result.stderr


def test_every_catalog_scenario_gives_its_expected_fingerprint(tmp_path):
    result = run_replica("scenarios", "run", "--all", "--json", str(tmp_path / "all.json"), state_dir=tmp_path, timeout=600)
    report = json.loads((tmp_path / "all.json").read_text())["scenarios"]
    failed = [(r["name"], r["mismatches"]) for r in report if r["verdict"] != "pass"]
    assert result.returncode == 0 and not failed, failed or result.stderr[-3000:]
    assert len(report) >= 40
