"""Commands attach to a stack `replica up` keeps running, through its lanes API."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import httpx
import pytest

from tests.integration.cli_support import REPO, cli_env, replica_argv, run_replica

pytestmark = pytest.mark.slow

MAX_LANES = 3


def lanes_client(info: dict, timeout: float = 30) -> httpx.Client:
    """The lanes API, over its unix socket."""
    return httpx.Client(base_url=info["lanes_url"], transport=httpx.HTTPTransport(uds=info["lanes_socket"]), timeout=timeout)


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("state")
    proc = subprocess.Popen(
        replica_argv("up", "--max-lanes", str(MAX_LANES)), cwd=REPO, env=cli_env(state_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    state = state_dir / "stack.json"
    deadline = time.monotonic() + 90
    while not state.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "replica up did not write its state in 90 s"
        time.sleep(0.05)  # polling a bounded wait on another process
    yield state_dir, json.loads(state.read_text())
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def test_lanes_api_refuses_bad_json_and_unknown_lanes(running_stack):
    _state_dir, info = running_stack
    with lanes_client(info, timeout=10) as http:
        bad = http.post("/lanes", content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 422
        unknown_field = http.post("/lanes", json={"backend": {"handlr": "incident"}})
        assert unknown_field.status_code == 422
        assert "handlr" in unknown_field.text
        assert http.delete("/lanes/nope").status_code == 404


def test_lane_opened_over_http_serves_and_closes(running_stack):
    _state_dir, info = running_stack
    with lanes_client(info) as http:
        opened = http.post("/lanes", json={"backend": {"handler": "recommended"}})
        assert opened.status_code == 201, opened.text
        lane = opened.json()
        assert lane["outcome"]["ready"] is True
        assert httpx.get(lane["base_url"] + "/health/ready", timeout=5).status_code == 200
        assert http.delete(f"/lanes/{lane['id']}").status_code == 204
        with pytest.raises(httpx.HTTPError):
            httpx.get(lane["base_url"] + "/health", timeout=2)


def test_scenarios_run_attaches_to_the_running_stack(running_stack, tmp_path):
    state_dir, _info = running_stack
    result = run_replica("scenarios", "run", "seed-1011", "--json", str(tmp_path / "r.json"), state_dir=state_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "using the running stack" in result.stderr
    [run] = json.loads((tmp_path / "r.json").read_text())["scenarios"]
    assert (run["observed"]["close_code"], run["observed"]["close_reason"]) == (1011, "Internal error")
