"""Ctrl-C during `replica up` leaves no process, listening port or temp dir behind."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.integration.cli_support import (
    REPO, alive, cli_env, descendants, listening_ports_of, replica_argv, socket_inodes_of, still_listening,
)

pytestmark = pytest.mark.slow


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)  # polling a bounded wait on another process


def _start_up(state_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        replica_argv("up"), cwd=REPO, env=cli_env(state_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def assert_one_line_interrupt(output: str) -> None:
    """Exit 130 says so in one line: no traceback, no asyncio complaint after it."""
    for noise in ("Traceback", "ExceptionGroup", "Task exception was never retrieved", "Exception ignored"):
        assert noise not in output, output
    lines = output.strip().splitlines()
    assert lines and lines[-1].startswith("interrupted:"), output
    assert sum(line.startswith("interrupted") for line in lines) == 1, output


def _interrupt_and_check(proc: subprocess.Popen[str], tree: set[int]) -> str:
    sockets = socket_inodes_of(tree | {proc.pid})
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, output
    assert_one_line_interrupt(output)
    leftovers = {pid for pid in tree if alive(pid)}
    assert not leftovers, f"processes left behind: {leftovers}\n{output}"
    assert not still_listening(sockets), f"ports still listening: {still_listening(sockets)}"
    return output


def test_ctrl_c_once_up_stops_everything(tmp_path):
    proc = _start_up(tmp_path)
    state = tmp_path / "stack.json"
    try:
        _wait_for(state.exists, 90, "the stack state file")
        info = json.loads(state.read_text())
        ports = {urlsplit(info[k]).port for k in ("postgres_url", "redis_url", "auth_url", "toxiproxy_url", "backend_url")}
        tree = descendants(proc.pid)
        assert len(tree) >= 5  # postgres, redis, auth, proxy, backend (and the fork server)
        assert ports <= listening_ports_of(tree)
        tmp_dir = Path(info["tmp_dir"])
        assert tmp_dir.exists()
        output = _interrupt_and_check(proc, tree)
        assert "stopped" in output
        assert not tmp_dir.exists()
        assert not state.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("started", [2, 3, 4, 5, 6])
def test_ctrl_c_while_starting_stops_everything(tmp_path, started):
    """Interrupt at successive points of the start (by how many children exist):
    also while a child is being forked, where CPython drops a handler's exception."""
    proc = _start_up(tmp_path)
    try:

        def some_children_started() -> bool:
            return len(descendants(proc.pid)) >= started or proc.poll() is not None

        _wait_for(some_children_started, 60, f"{started} children to start")
        _interrupt_and_check(proc, descendants(proc.pid))
        assert not (tmp_path / "stack.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_mid_run_stops_everything(tmp_path):
    """SIGINT while a scenario's backend is blocked on hung Redis: exit 130, nothing left."""
    state = tmp_path / "state"
    proc = subprocess.Popen(
        replica_argv("scenarios", "run", "hung-redis-sync-client"),
        cwd=REPO, env=cli_env(state), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # the stack (4 servers), the fork server, its tracker, and a forked backend
        _wait_for(lambda: len(descendants(proc.pid)) >= 7 or proc.poll() is not None, 60, "a backend to run")
        _interrupt_and_check(proc, descendants(proc.pid))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
