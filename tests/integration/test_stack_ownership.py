"""`replica up` owns its state dir: one at a time, `down` signals only it, a killed one is swept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from replica.drivers.identity import ProcessIdentity
from tests.integration.cli_support import REPO, alive, cli_env, descendants, replica_argv, run_replica
from tests.servers_support import read_line

STATE = {
    "driver": "local", "postgres_url": "postgresql://replica:secret@127.0.0.1:1/replica",
    "redis_url": "redis://:secret@127.0.0.1:2/0", "auth_url": "http://127.0.0.1:3",
    "toxiproxy_url": "http://127.0.0.1:4", "jwt_secret": "secret",
}

HOLDER = textwrap.dedent(
    """
    import sys
    from replica.drivers.stack import stack_ownership
    with stack_ownership():
        print("held", flush=True)
        sys.stdin.read()
    """
)


@pytest.fixture
def bystander():
    """An unrelated live process: the kind that reuses a dead `replica up`'s pid."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc
    proc.kill()
    proc.wait()


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)  # polling a bounded wait on another process


def _stale_state(state_dir: Path, pid: int, started: str | None) -> None:
    state_dir.mkdir(mode=0o700, exist_ok=True)
    recorded = {**STATE, "owner_pid": pid}
    if started is not None:
        recorded["owner_started"] = started
    (state_dir / "stack.json").write_text(json.dumps(recorded))
    (state_dir / "up.lock").write_text(json.dumps({"pid": pid, "started": started or ""}))


@pytest.mark.parametrize("started", ["00000000-dead:1", None], ids=["other-start-time", "pid-only-state"])
def test_down_never_signals_a_process_that_reused_the_pid(tmp_path, bystander, started):
    _stale_state(tmp_path, bystander.pid, started)
    result = run_replica("down", "--timeout", "2", state_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no stack running" in result.stdout
    assert bystander.poll() is None, "replica down signalled a process it did not start"
    assert not (tmp_path / "stack.json").exists()  # the stale state (with its secrets) is swept


def test_status_sweeps_a_dead_owners_state(tmp_path, bystander):
    _stale_state(tmp_path, bystander.pid, "00000000-dead:1")
    result = run_replica("status", state_dir=tmp_path)
    assert result.returncode == 1
    assert "no stack running" in result.stdout
    assert not (tmp_path / "stack.json").exists()


def test_identity_tells_a_process_from_its_pid():
    me = ProcessIdentity.current()
    assert me.alive()
    assert not ProcessIdentity(me.pid, me.started + "0").alive()
    assert not ProcessIdentity(me.pid, "").alive()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert ProcessIdentity.of(child.pid) is None or ProcessIdentity.of(child.pid).started != me.started


def test_a_second_up_refuses_naming_the_running_one(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER], cwd=REPO, env=cli_env(tmp_path), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert read_line(holder, 30).strip() == "held"
        started = time.monotonic()
        result = run_replica("up", state_dir=tmp_path, timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"replica up is already running (pid {holder.pid})" in result.stderr
        assert "REPLICA_STATE_DIR" in result.stderr
        assert "Traceback" not in result.stderr
        assert time.monotonic() - started < 20  # refused before starting anything
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_two_ups_at_once_one_runs_and_down_stops_exactly_it(tmp_path):
    procs = [
        subprocess.Popen(replica_argv("up"), cwd=REPO, env=cli_env(tmp_path), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        _wait_for(lambda: any(p.poll() is not None for p in procs), 90, "one replica up to give way")
        [refused] = [p for p in procs if p.poll() is not None]
        [running] = [p for p in procs if p is not refused]
        _out, err = refused.communicate(timeout=10)
        assert refused.returncode == 2, err
        assert f"already running (pid {running.pid})" in err
        _wait_for(lambda: (tmp_path / "stack.json").exists() or running.poll() is not None, 90, "the stack")
        status = run_replica("status", state_dir=tmp_path)
        assert status.returncode == 0 and f"pid {running.pid}" in status.stdout, status.stdout + status.stderr
        down = run_replica("down", state_dir=tmp_path)
        assert down.returncode == 0 and f"stack stopped (pid {running.pid})" in down.stdout, down.stdout + down.stderr
        assert running.wait(timeout=10) == 130
        assert not (tmp_path / "stack.json").exists()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_leftovers_of_a_killed_up_are_swept_by_the_next_command(tmp_path):
    proc = subprocess.Popen(replica_argv("up"), cwd=REPO, env=cli_env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (tmp_path / "stack.json").exists() or proc.poll() is not None, 90, "the stack")
        info = json.loads((tmp_path / "stack.json").read_text())
        tree = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _wait_for(lambda: not any(alive(p) for p in tree), 15, "the stack's processes to die with their owner")
        tmp_dir = Path(info["tmp_dir"])
        assert tmp_dir.exists() and (tmp_path / "stack.json").exists()  # what kill -9 leaves
        result = run_replica("status", state_dir=tmp_path)
        assert result.returncode == 1 and "no stack running" in result.stdout
        assert not (tmp_path / "stack.json").exists()  # it holds the stack's secrets
        assert not (tmp_path / "lanes.sock").exists()
        assert not tmp_dir.exists()
        assert not [p for p in Path("/dev/shm").glob("replica-*") if _owner_pid(p) == proc.pid]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _owner_pid(path: Path) -> int | None:
    try:
        return int((path / ".replica-owner-pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def test_a_state_dir_of_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to hand the dir to another user")
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)
    result = run_replica("up", state_dir=foreign, timeout=60)
    assert result.returncode == 2
    assert "is not a directory of yours" in result.stderr
