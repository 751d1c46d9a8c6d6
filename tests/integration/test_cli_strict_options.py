"""``replica up`` refuses a bad failpoint spec or defect before it starts anything, and a
command that fails at once leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.integration.cli_support import REPO, cli_env, replica_argv, run_replica
from tests.servers_support import pid_alive, proc_file


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--failpoints", "ws.autth=raise(TypeError: x)"),
         "error: --failpoints: ws.autth=raise(TypeError: x): unknown failpoint 'ws.autth'; did you mean 'ws.auth'?"),
        (("--failpoints", "ws.auth=delay(5x)"), "error: --failpoints: ws.auth=delay(5x): bad duration '5x'"),
        (("--defects", "auth-log-jsn"), "error: --defects: unknown defect 'auth-log-jsn'"),
    ],
)
def test_up_with_a_bad_option_exits_2_before_starting_anything(tmp_path, args: tuple[str, ...], message: str) -> None:
    state_dir = tmp_path / "state"
    result = run_replica("up", *args, state_dir=state_dir, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in " ".join(result.stderr.split())
    assert "postgres" not in (result.stdout + result.stderr).lower()  # no stack was started
    assert not state_dir.exists() or not any(state_dir.iterdir())


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (inherited from one command)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = proc_file(int(entry), "environ")
        except PermissionError:  # not a process of ours
            continue
        if marker.encode() in environ and pid_alive(int(entry)):
            found.append(int(entry))
    return found


@pytest.mark.parametrize(
    "args",
    [("reproduce", "1011", "--no-such-option"), ("scenarios", "run", "no-such-scenario"), ("up", "--defects", "nope")],
)
def test_a_command_that_fails_after_starting_its_fork_server_early_leaves_no_process(tmp_path, args) -> None:
    """These command lines start the fork server before the command has loaded (it imports
    the servers meanwhile); the command then fails at once, and takes it down as it exits."""
    marker = f"REPLICA_TEST_MARKER_{uuid.uuid4().hex}"
    output = tmp_path / "output"
    with output.open("w") as out:  # a file, not a pipe: reading a pipe would wait for any process left holding it
        code = subprocess.run(
            replica_argv(*args), cwd=REPO, env=cli_env(tmp_path / "state", {marker: "1"}),
            stdout=out, stderr=subprocess.STDOUT, timeout=60,
        ).returncode
    assert code == 2, output.read_text()
    assert "Traceback" not in output.read_text()
    assert processes_with(marker) == []
