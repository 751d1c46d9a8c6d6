"""`replica diagnose` and `replica validate` through the command a user types, on real lanes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.cli_support import REPO, cli_env, replica_argv, run_replica

pytestmark = pytest.mark.slow

REPEAT = "3"  # runs per cause: enough for a spread, and one cache for the whole module
STAGING = {"handshake": "accepted", "welcome": False, "close_code": 1011, "close_reason": "Internal error", "close_after_ms": 63, "pong": False}
SEED_HYPOTHESES = ("supervisor-missing", "thread-service-missing", "race-background-startup", "startup-never-completes", "startup-incomplete-e2e-test")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> dict[str, str]:
    return {"REPLICA_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}


def replica_up(state_dir: Path, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        replica_argv("up", *args), cwd=REPO, env=cli_env(state_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 90
    while not (state_dir / "stack.json").exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "replica up did not write its state in 90 s"
        time.sleep(0.05)  # polling a bounded wait on another process
    return proc


@pytest.fixture(scope="module")
def seed_stack(tmp_path_factory):
    """A stack running the seed's fault: the incident handler with the auth log-line defect."""
    state_dir = tmp_path_factory.mktemp("state")
    proc = replica_up(state_dir, "--defects", "auth-log-json")
    yield state_dir
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def diagnose(observed: Path, tmp_path: Path, state_dir: Path, cache: dict[str, str], *more: str):
    out = tmp_path / f"diagnosis-{observed.stem}.json"
    result = run_replica("diagnose", "--observed", str(observed), "--repeat", REPEAT, "--json", str(out), *more,
                         state_dir=state_dir, env=cache, timeout=400)
    return result, (json.loads(out.read_text()) if out.exists() else None)


def test_probe_then_diagnose_ranks_the_real_cause_first(seed_stack, cache, tmp_path):
    observed = tmp_path / "obs.json"
    probed = run_replica("probe", "--json", str(observed), state_dir=seed_stack)
    assert probed.returncode == 1 and observed.exists(), probed.stdout + probed.stderr

    result, report = diagnose(observed, tmp_path, seed_stack, cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Explained by seed-1011" in result.stdout
    assert report["explained_by"] == ["seed-1011"]
    first = report["candidates"][0]
    assert (first["scenario"], first["matches"], first["score"]) == ("seed-1011", True, 1.0)
    assert first["agreeing"] == ["frames", "no_token"]
    by_name = {c["scenario"]: c for c in report["candidates"]}
    for name in SEED_HYPOTHESES:
        assert not by_name[name]["matches"] and by_name[name]["mismatches"], name
    assert by_name["supervisor-missing"]["mismatches"][0]["text"] == 'close reason: "Service unavailable" here, "Internal error" observed'
    waits = [m["text"] for m in by_name["startup-never-completes"]["mismatches"]]
    assert waits[0] == 'close reason: "Service startup incomplete" here, "Internal error" observed'
    assert "scaled from 30 s in staging to 1 s" in waits[1]

    # The staging failure typed from the seed's report gives the same ranking, from the cache
    # (the probe also knows who closed, which only moves the keepalive cause further down).
    staging = tmp_path / "staging.json"
    staging.write_text(json.dumps(STAGING))
    typed, typed_report = diagnose(staging, tmp_path, seed_stack, cache)
    assert typed.returncode == 0, typed.stdout + typed.stderr
    assert "causes as run before (cached" in typed.stderr
    assert typed_report["explained_by"] == ["seed-1011"]

    def order(r: dict) -> list[str]:
        return [c["scenario"] for c in r["candidates"] if c["scenario"] != "hung-redis-sync-client"]

    assert order(typed_report) == order(report)


def test_an_observation_nothing_explains_is_said_to_be_unexplained(seed_stack, cache, tmp_path):
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(dict(STAGING, close_code=1001, close_reason="Going away")))
    result, report = diagnose(odd, tmp_path, seed_stack, cache)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Not explained by anything in the catalog" in result.stdout
    assert report["explained_by"] == [] and not any(c["matches"] for c in report["candidates"])


def test_causes_that_tie_are_named_with_what_tells_them_apart(seed_stack, cache, tmp_path):
    tie = tmp_path / "tie.json"
    tie.write_text(json.dumps(dict(STAGING, close_reason="Service unavailable", close_after_ms=40)))
    result, report = diagnose(tie, tmp_path, seed_stack, cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(report["explained_by"]) == {"supervisor-missing", "thread-service-missing", "race-background-startup"}
    assert "cannot tell them apart" in result.stdout and "What tells them apart" in result.stdout
    apart = report["tells_apart"]
    assert apart["server_log"]["supervisor-missing"] == "ERROR replica.ws: WebSocket dependencies missing: agent_supervisor"
    assert apart["second_probe"]["race-background-startup"] == "accepted, welcome, pong"
    assert apart["second_probe"]["thread-service-missing"] == 'accepted, no welcome, 1011 "Service unavailable"'
    assert apart["ready"]["race-background-startup"].startswith("not ready (503)")


def test_diagnose_with_url_probes_and_follows_up(cache, tmp_path):
    """A live system whose supervisor is missing: the probe's frames single out the cause."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    proc = replica_up(state_dir, "--failpoints", "startup.supervisor=skip")
    try:
        url = json.loads((state_dir / "stack.json").read_text())["backend_url"]
        out = tmp_path / "url.json"
        result = run_replica("diagnose", "--url", url, "--repeat", REPEAT, "--json", str(out), "--follow-up-wait", "1",
                             state_dir=state_dir, env=cache, timeout=400)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["explained_by"] == ["supervisor-missing"]
    assert "following up on" in result.stderr
    assert report["observed_features"]["ready"] == "ready"
    assert report["observed_features"]["second_probe"] == 'accepted, no welcome, 1011 "Service unavailable"'


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"welcome": false}', 'needs at least "handshake"'), ('{"handshake": "accepted", "welcome": "maybe"}', "welcome")],
)
def test_a_bad_observation_is_a_usage_error(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = run_replica("diagnose", "--observed", str(bad), state_dir=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("reproduce", "1011"),
        ("scenarios", "run", "healthy"),
        ("validate", "--handler", "recommended"),
        ("diagnose", "--observed", "{observed}"),
        ("probe", "--url", "http://127.0.0.1:9"),
    ],
)
def test_report_paths_are_refused_before_anything_starts(tmp_path, command):
    observed = tmp_path / "obs.json"
    observed.write_text(json.dumps(STAGING))
    args = [a.format(observed=observed) for a in command]
    started = time.monotonic()
    result = run_replica(*args, "--json", str(tmp_path / "no-such-dir" / "r.json"), state_dir=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "directory" in result.stderr and "does not exist" in result.stderr
    assert "stack ready" not in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 30


def test_validate_checks_the_six_criteria(tmp_path):
    out = tmp_path / "validate.json"
    good = run_replica("validate", "--handler", "recommended", "--repeat", "3", "--json", str(out), state_dir=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    report = json.loads(out.read_text())
    assert report["met"] is True and len(report["criteria"]) == 6 and all(c["passed"] for c in report["criteria"])
    assert len(report["scenarios"]) == 3 and all(r["flows"]["heartbeat_ack"] for r in report["scenarios"])

    # The example handler answers pings only: the agent and heartbeat flows are what it lacks.
    users = run_replica("validate", "--handler", "my_handler:websocket_endpoint", "--repeat", "2", "--json", str(out),
                        state_dir=tmp_path, cwd=REPO / "examples")
    assert users.returncode == 1, users.stdout + users.stderr
    failed = [c["key"] for c in json.loads(out.read_text())["criteria"] if not c["passed"]]
    assert failed == ["e2e-flows", "all-repeats"]

    landed = run_replica("validate", "--handler", "landed-fix", "--repeat", "2", "--json", str(out), state_dir=tmp_path)
    assert landed.returncode == 1, landed.stdout + landed.stderr
    criteria = {c["key"]: c for c in json.loads(out.read_text())["criteria"]}
    assert criteria["no-1011"]["passed"] and criteria["e2e-flows"]["passed"]
    assert not criteria["test-001"]["passed"] and "no token → accepted" in criteria["test-001"]["detail"]


def test_validate_refuses_an_unknown_variant_before_anything_starts(tmp_path):
    result = run_replica("validate", "--handler", "landed-fxi", state_dir=tmp_path, timeout=60)
    assert result.returncode == 2 and "unknown handler 'landed-fxi'" in result.stderr
    assert "stack ready" not in result.stderr
