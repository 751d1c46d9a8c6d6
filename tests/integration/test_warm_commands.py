"""Commands on a running stack run in its warm command process, exactly as they would
in their own: same streams, directory, environment, umask and exit status; Ctrl-C
and a killed client stop them; only the stack's user reaches it, and a bad request
or a crowd of idle clients changes nothing."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from replica.warm.protocol import HEADER, MAX_REQUEST_BYTES, encode_request, identity
from replica.warm.server import MAX_CLIENTS
from tests.integration.cli_support import REPO, alive, cli_env, descendants, replica_argv, run_replica, wait_for_state

pytestmark = pytest.mark.slow

WARM = "warm command process"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """``replica up`` with its state dir; afterwards, checks it left no command server behind."""
    state_dir = tmp_path_factory.mktemp("state")
    proc = subprocess.Popen(replica_argv("up"), cwd=REPO, env=cli_env(state_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    info = wait_for_state(proc, state_dir)
    server = command_server(info["owner_pid"])
    yield state_dir, info, server
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.returncode == 130
    assert not alive(server), "the command server outlived replica up"
    assert not (state_dir / "commands.sock").exists()


def command_server(owner: int) -> int:
    [server] = [pid for pid in descendants(owner) if b"replica.warm.server" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    return server


def forks_of(server: int) -> set[int]:
    return {pid for pid in descendants(server) if alive(pid)}


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)  # polling a bounded wait on other processes


def open_lanes(info: dict) -> list:
    transport = httpx.HTTPTransport(uds=info["lanes_socket"])
    with httpx.Client(base_url=info["lanes_url"], transport=transport, timeout=10) as http:
        return http.get("/lanes").json()


def test_a_command_runs_warm_in_the_clients_directory_with_its_umask(stack, tmp_path):
    state_dir, _info, _server = stack
    warm = subprocess.run(
        replica_argv("scenarios", "run", "healthy", "--json", "rel.json"), cwd=tmp_path, env=cli_env(state_dir),
        capture_output=True, text=True, timeout=60, umask=0o077,
    )
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert WARM in warm.stderr
    assert "1 passed, 0 failed" in warm.stdout  # the table reached the client's own stdout
    report = tmp_path / "rel.json"
    assert json.loads(report.read_text())["scenarios"][0]["name"] == "healthy"
    assert report.stat().st_mode & 0o777 == 0o600
    cold = subprocess.run(
        replica_argv("scenarios", "run", "healthy"), cwd=tmp_path, env=cli_env(state_dir, {"REPLICA_WARM": "0"}),
        capture_output=True, text=True, timeout=60,
    )
    assert cold.returncode == 0 and WARM not in cold.stderr and "using the running stack" in cold.stderr
    assert cold.stdout.splitlines()[-1] == warm.stdout.splitlines()[-1]


def test_the_exit_status_and_the_error_reach_the_client(stack):
    state_dir, _info, _server = stack
    result = run_replica("scenarios", "run", "no-such-scenario", state_dir=state_dir, timeout=60)
    assert result.returncode == 2
    assert "unknown scenario 'no-such-scenario'" in result.stderr


def _warm(argv: list[str], state_dir: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The warm client itself, with any command line (the entry point hands it only stack commands)."""
    code = f"import sys\nfrom replica.warm.client import run_warm\nsys.exit(run_warm({argv!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(state_dir, extra_env), capture_output=True, text=True, timeout=60)


def test_the_command_sees_the_clients_environment(stack):
    state_dir, _info, _server = stack
    narrow = _warm(["scenarios", "run", "--help"], state_dir, {"COLUMNS": "60"})
    wide = _warm(["scenarios", "run", "--help"], state_dir, {"COLUMNS": "150"})
    assert narrow.returncode == wide.returncode == 0, narrow.stderr + wide.stderr
    assert max(map(len, narrow.stdout.splitlines())) <= 60 < max(map(len, wide.stdout.splitlines()))


def _start_slow_command(state_dir: Path) -> subprocess.Popen[str]:
    """A command that runs over a second on the stack, once it said it uses the stack."""
    proc = subprocess.Popen(
        replica_argv("scenarios", "run", "startup-never-completes"), cwd=REPO, env=cli_env(state_dir),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert WARM in line, line
    return proc


def test_ctrl_c_on_the_client_stops_its_command_and_its_lane(stack):
    state_dir, info, server = stack
    proc = _start_slow_command(state_dir)
    [fork] = forks_of(server)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted:"), stderr
    assert "Traceback" not in stderr
    assert not alive(fork)
    wait_for(lambda: open_lanes(info) == [], 10, "the command's lane to close")


def test_a_killed_client_takes_its_command_with_it(stack):
    state_dir, info, server = stack
    descriptors = len(os.listdir(f"/proc/{server}/fd"))
    for _ in range(3):
        proc = _start_slow_command(state_dir)
        [fork] = forks_of(server)
        proc.kill()
        proc.wait(timeout=10)
        wait_for(lambda: not alive(fork), 30, "the orphaned command to stop")
        wait_for(lambda: open_lanes(info) == [], 10, "the command's lane to close")
    wait_for(lambda: len(os.listdir(f"/proc/{server}/fd")) == descriptors, 10, "the server to close what it held for them")


def _raw_request(state_dir: Path, payload: bytes, *, fds: tuple[int, ...] = (0, 1, 2)) -> bytes:
    """Send ``payload`` (and ``fds``) to the command server; everything it answers until it closes."""
    import array

    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(20)
        sock.connect(str(state_dir / "commands.sock"))
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        sock.sendmsg([payload[:65536]], ancillary)
        try:
            sock.sendall(payload[65536:])
        except OSError:  # it already refused and closed
            pass
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


def _request(**changes) -> dict:
    request = {
        "argv": ["scenarios", "list"], "cwd": str(REPO), "env": {}, "path": list(sys.path), **identity(),
        "umask": 0o022, "encoding": "utf-8", "errors": "strict",
    }
    request.update(changes)
    return request


@pytest.mark.parametrize(
    ("payload", "fds", "refusal"),
    [
        (HEADER.pack(4) + b"nope", (0, 1, 2), "not JSON"),
        (HEADER.pack(2) + b"[]", (0, 1, 2), "not a JSON object"),
        (HEADER.pack(200_000) + b"[" * 200_000, (0, 1, 2), "nested too deep"),
        (encode_request({"argv": ["x"]}), (0, 1, 2), "missing"),
        (encode_request(_request(umask=-1)), (0, 1, 2), "umask"),
        (encode_request(_request(cwd="relative")), (0, 1, 2), "cwd must be absolute"),
        (encode_request(_request(env={"A=B": "c"})), (0, 1, 2), "env"),
        (encode_request(_request()), (), "standard streams did not come"),
        (encode_request(_request()), (0, 1, 2, 0), "nothing else"),
        (encode_request(_request(code="0:0")), (0, 1, 2), "another Python or replica package"),
        (encode_request(_request(executable="/usr/bin/false")), (0, 1, 2), "another Python or replica package"),
        (HEADER.pack(MAX_REQUEST_BYTES + 1), (0, 1, 2), "at most"),
    ],
    ids=["not-json", "array", "deep", "missing-fields", "bad-umask", "relative-cwd", "bad-env", "no-streams", "extra-fd", "changed-code", "other-python", "too-big"],
)
def test_bad_requests_are_refused_and_run_nothing(stack, payload, fds, refusal):
    state_dir, _info, server = stack
    answer = _raw_request(state_dir, payload, fds=fds)
    assert refusal in json.loads(answer)["refused"]
    assert not forks_of(server)


def test_the_server_keeps_no_descriptor_of_a_refused_or_finished_request(stack):
    state_dir, _info, server = stack
    before = len(os.listdir(f"/proc/{server}/fd"))
    for _ in range(20):
        _raw_request(state_dir, encode_request(_request(code="0:0")))
        assert b'"exit":0' in _raw_request(state_dir, encode_request(_request()))
    assert len(os.listdir(f"/proc/{server}/fd")) == before


def test_idle_clients_neither_block_a_command_nor_outlast_their_time(stack):
    state_dir, _info, _server = stack
    idle = []
    try:
        for _ in range(MAX_CLIENTS + 10):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(state_dir / "commands.sock"))
            idle.append(sock)
        crowded = run_replica("scenarios", "run", "healthy", state_dir=state_dir, timeout=60)
        assert crowded.returncode == 0, crowded.stdout + crowded.stderr  # ran in its own process
        for sock in idle[:MAX_CLIENTS]:
            sock.settimeout(20)
            answer = sock.recv(4096)  # each is dropped once its request is late
            assert b"no whole request" in answer
    finally:
        for sock in idle:
            sock.close()
    after = run_replica("scenarios", "run", "healthy", state_dir=state_dir, timeout=60)
    assert after.returncode == 0 and WARM in after.stderr, after.stdout + after.stderr


def test_a_client_served_warm_imports_none_of_the_commands_libraries(stack):
    state_dir, _info, _server = stack
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "replica", "scenarios", "run", "healthy"], cwd=REPO,
        env=cli_env(state_dir), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and WARM in result.stderr, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "replica.warm.client" in imported
    assert not {"typer", "rich", "pydantic", "yaml", "asyncio", "websockets", "replica.cli"} & imported


@pytest.mark.parametrize("tostop", [False, True], ids=["terminal", "terminal-with-tostop"])
def test_a_terminal_gets_the_output_unless_it_would_stop_a_background_writer(stack, tostop):
    """The fork is outside the terminal's foreground group: with ``stty tostop`` it
    would be stopped at its first write, so the command then runs in its own process."""
    import pty
    import termios

    state_dir, _info, _server = stack
    master, slave = pty.openpty()
    try:
        attrs = termios.tcgetattr(slave)
        attrs[3] = attrs[3] | termios.TOSTOP if tostop else attrs[3] & ~termios.TOSTOP
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        result = subprocess.run(
            replica_argv("scenarios", "run", "healthy"), cwd=REPO, env=cli_env(state_dir), stdout=slave,
            stderr=subprocess.PIPE, text=True, timeout=60,
        )
        output = b""
        while select.select([master], [], [], 0)[0]:  # the command has ended: all it wrote is buffered
            output += os.read(master, 65536)
    finally:
        os.close(master)
        os.close(slave)
    assert result.returncode == 0, result.stderr
    assert (WARM in result.stderr) is not tostop
    assert re.sub(rb"\x1b\[[0-9;]*m", b"", output).rstrip().endswith(b"1 passed, 0 failed")
    assert b"\x1b[" in output  # in colour: Rich saw a terminal


def test_status_says_whether_the_warm_process_listens(stack):
    state_dir, _info, _server = stack
    status = run_replica("status", state_dir=state_dir, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    [row] = [line for line in status.stdout.splitlines() if "warm commands" in line]
    assert "listening" in row and str(state_dir / "commands.sock") in row
