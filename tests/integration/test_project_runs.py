"""A user's project through the lanes, the runner, the probe and the CLI: real Postgres, Redis, uvicorn, programs."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from replica.drivers.base import LaneRequest
from replica.drivers.local.driver import LocalDriver
from replica.drivers.local.group import ProcessGroup
from replica.generic_catalog import PROJECT_HANDLER, generic_scenarios
from replica.project import load_project
from replica.scenarios import BackendSpec, ToxicSpec
from tests.integration.cli_support import REPO, cli_env, replica_argv, run_replica, wait_for_state

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "chat"
FIXTURES = REPO / "tests" / "fixtures" / "user_services"
CHAT_SCENARIOS = [s.name for s in generic_scenarios(load_project(EXAMPLE / "replica.toml"))]


def copy_example(tmp_path: Path, *, frozen: bool) -> Path:
    """The chat example copied to ``tmp_path/chat``, with or without its frozen expectations."""
    root = tmp_path / "chat"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", *([] if frozen else ["replica-expect.yaml"])))
    return root / "replica.toml"


def runs_of(report: Path) -> list[dict]:
    return json.loads(report.read_text())["scenarios"]


def processes_under(path: Path) -> list[str]:
    """Processes whose command line or working directory is inside ``path``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if str(path) in cmdline or cwd.startswith(str(path)):
            found.append(f"{pid}: {cmdline}")
    return found


def test_run_all_observes_every_generic_scenario_of_the_example(tmp_path):
    config = copy_example(tmp_path, frozen=False)
    report = tmp_path / "runs.json"
    done = run_replica("scenarios", "run", "--all", "--config", str(config), "--json", str(report), state_dir=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = {r["name"]: r for r in runs_of(report)}
    assert list(runs) == CHAT_SCENARIOS
    assert {r["verdict"] for r in runs.values()} == {"observed"} and all(r["expected"] is None for r in runs.values())
    assert runs["healthy"]["fingerprint"] == "accepted, welcome, pong"
    down = runs["postgres:down"]
    assert down["observed"]["handshake"] == "no_server" and down["backend"]["exit_status"] == 3
    assert "Application startup failed" in down["backend"]["log"]
    assert runs["ws.publish:raise"]["observed"]["close_code"] == 1011
    assert f"{len(CHAT_SCENARIOS)} observed" in done.stdout
    assert not processes_under(config.parent)


def test_freeze_then_run_passes_ten_of_ten_repeats(tmp_path):
    config = copy_example(tmp_path, frozen=False)
    expect = config.parent / "replica-expect.yaml"
    frozen = run_replica("scenarios", "freeze", "--config", str(config), "--out", str(expect), state_dir=tmp_path, timeout=600)
    assert frozen.returncode == 0, frozen.stderr
    assert "redis:hung:" in expect.read_text() and "close_code: 1013" in expect.read_text()
    report = tmp_path / "runs.json"
    done = run_replica(
        "scenarios", "run", "--all", "--repeat", "10", "--config", str(config), "--json", str(report),
        state_dir=tmp_path, timeout=1500,
    )
    runs = runs_of(report)
    failed = [f"{r['name']} #{r['repeat']}: {r['mismatches']}" for r in runs if r["verdict"] != "pass"]
    assert not failed and done.returncode == 0, failed
    assert len(runs) == 10 * len(CHAT_SCENARIOS)


def test_a_change_to_the_examples_code_flips_exactly_the_affected_scenarios(tmp_path):
    config = copy_example(tmp_path, frozen=True)
    main = config.parent / "chat" / "main.py"
    code = main.read_text()
    changed = code.replace('close(code=1013, reason="try again later")', 'close(code=1011, reason="internal error")')
    assert changed != code
    main.write_text(changed)  # a failing dependency now closes 1011, not 1013
    report = tmp_path / "runs.json"
    done = run_replica("scenarios", "run", "--all", "--config", str(config), "--json", str(report), state_dir=tmp_path, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    failed = {r["name"]: r["mismatches"] for r in runs_of(report) if r["verdict"] == "fail"}
    assert set(failed) == {"redis:hung", "redis:reset"}
    assert "close_code: expected 1013, observed 1011" in failed["redis:reset"]
    assert "FAIL redis:reset" in done.stderr


def test_a_startup_latency_is_removed_once_the_backend_is_ready():
    project = load_project(EXAMPLE / "replica.toml")
    during_startup = ToxicSpec(hop="redis", type="latency", attributes={"latency": 300}, until="ready")
    throughout = ToxicSpec(hop="postgres", type="latency", attributes={"latency": 1})
    request = LaneRequest(backend=BackendSpec(handler=PROJECT_HANDLER), toxics=(during_startup, throughout), ready_timeout_s=20)

    async def scenario(driver: LocalDriver):
        async with driver.lane(request) as lane:
            client, proxies = lane.faults.client, lane.faults.proxies
            return lane.outcome, await client.toxics(proxies["redis"]), await client.toxics(proxies["postgres"])

    with ProcessGroup() as group:
        outcome, on_redis, on_postgres = asyncio.run(scenario(LocalDriver.start(group, project=project)))
    assert outcome.ready, outcome.detail
    assert outcome.startup_ms >= 300  # the startup's round trips to Redis were slowed
    assert on_redis == [] and [t.type for t in on_postgres] == ["latency"]


def command_project(tmp_path: Path, listen: str) -> Path:
    config = tmp_path / "replica.toml"
    config.write_text(
        f"""
[backend]
command = [{json.dumps(sys.executable)}, {json.dumps(str(FIXTURES / "tiny_server.py"))}, "--{listen}", "{{{listen}}}"]
health = "/health"
failpoints = ["boot"]
[backend.env]
GREETING = "{{redis.host}}:{{redis.port}}"
[dependencies.redis]
[probe]
token = "none"
"""
    )
    return config


@pytest.mark.parametrize("listen", ["fd", "port"])
def test_a_command_backend_goes_through_the_same_catalog(tmp_path, listen):
    config = command_project(tmp_path, listen)
    report = tmp_path / "runs.json"
    done = run_replica("scenarios", "run", "--all", "--config", str(config), "--json", str(report), state_dir=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = {r["name"]: r for r in runs_of(report)}
    assert list(runs) == [s.name for s in generic_scenarios(load_project(config))]
    assert len(runs) == 1 + 5 + 3
    # Not a WebSocket server (an HTTP/1.0 404 to the upgrade), and one that ignores its
    # dependency and its failpoint: every run comes up and sees the same, faults or not.
    assert {r["observed"]["handshake"] for r in runs.values()} == {"no_server"}
    assert all(r["backend"]["ready"] for r in runs.values())
    assert runs["healthy"]["verdict"] == "observed" and runs["redis:down"]["backend"]["exit_status"] is None


def bad_project(tmp_path: Path, backend: str, extra: str = "") -> Path:
    root = tmp_path / "bad"
    shutil.copytree(FIXTURES, root, ignore=shutil.ignore_patterns("__pycache__"))
    config = root / "replica.toml"
    config.write_text(f"[backend]\n{backend}\nhealth = \"/health\"\n{extra}\n[dependencies.postgres]\n")
    return config


STORE_ENV = '[backend.env]\nDATABASE_URL = "{postgres.url}"\nCACHE_URL = "redis://127.0.0.1:1/0"\n'


@pytest.mark.parametrize(
    ("backend", "extra", "args", "message"),
    [
        ('app = "store_app:app"\ncolour = "blue"', "", (), "backend.colour: unknown key (allowed here: app, command,"),
        ('app = "store_app:app"', '[backend.env]\nDB = "{postgress.url}"', (), "{postgress.url} names no declared dependency 'postgress'"),
        (
            'app = "store_app:app"\nfailpoints = ["boot"]', STORE_ENV, ("up", "--failpoints", "nope=raise"),
            "--failpoints: ",
        ),
        ('app = "broken_import:app"', "", (), "backend.app 'broken_import:app' cannot be imported from '.'"),
        (
            'app = "store_app:app"', STORE_ENV.replace("[backend.env]\n", '[backend.env]\nFAIL_AT_STARTUP = "1"\n'), (),
            "the backend does not start with no fault at all",
        ),
    ],
    ids=["unknown-key", "unknown-dependency", "undeclared-failpoint", "cannot-import", "exits-at-startup"],
)
def test_a_bad_project_exits_2_naming_the_problem_and_leaves_nothing_running(tmp_path, backend, extra, args, message):
    config = bad_project(tmp_path, backend, extra)
    command = args or ("scenarios", "run", "healthy")
    done = run_replica(*command, "--config", str(config), state_dir=tmp_path / "state", timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr.split("last lines of its log")[0]  # the app's own log may hold one
    assert message in " ".join(done.stderr.split())
    assert not processes_under(config.parent)


def test_up_status_probe_run_and_down_with_a_project(tmp_path):
    config = str(EXAMPLE / "replica.toml")
    proc = subprocess.Popen(replica_argv("up", "--config", config), cwd=REPO, env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for_state(proc, tmp_path)["project"] == config
        status = run_replica("status", "--config", config, state_dir=tmp_path, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        [project_row] = [line for line in status.stdout.splitlines() if line.startswith("│ project ")]
        assert project_row.split("│")[2].strip() == config
        probed = run_replica("probe", "--config", config, state_dir=tmp_path, timeout=60)
        assert probed.returncode == 0 and '"welcome":true' in probed.stdout and '"pong":true' in probed.stdout
        ran = run_replica("scenarios", "run", "redis:reset", "--config", config, state_dir=tmp_path, timeout=120)
        assert ran.returncode == 0 and "using the running stack" in ran.stderr and "1 passed, 0 failed" in ran.stdout
        builtin = run_replica("status", "--config", str(FIXTURES / "nowhere.toml"), state_dir=tmp_path, timeout=60)
        assert builtin.returncode == 2 and "no such file" in builtin.stderr
        assert run_replica("down", "--config", config, state_dir=tmp_path, timeout=60).returncode == 0
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    assert not processes_under(EXAMPLE)
