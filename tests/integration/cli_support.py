"""Running the ``replica`` command as a user does, and checking what it leaves behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.servers_support import descendants, pid_alive as alive  # noqa: F401  (re-exported for the CLI tests)

REPO = Path(__file__).resolve().parents[2]


def replica_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "replica", *args]


def cli_env(state_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["REPLICA_STATE_DIR"] = str(state_dir)  # never attach to a stack the developer has running
    env["COLUMNS"] = "200"
    env.update(extra or {})
    return env


def run_replica(
    *args: str, state_dir: Path, cwd: Path = REPO, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        replica_argv(*args), cwd=cwd, env=cli_env(state_dir, env), capture_output=True, text=True, timeout=timeout
    )


def wait_for_state(proc: "subprocess.Popen[str]", state_dir: Path, timeout: float = 90) -> dict:
    """The stack state ``replica up`` (``proc``) writes once it answers; fails if it exits or times out."""
    state = state_dir / "stack.json"
    deadline = time.monotonic() + timeout
    while not state.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, f"replica up did not write its state in {timeout:g} s"
        time.sleep(0.05)  # polling a bounded wait on another process
    return json.loads(state.read_text())


def _listening_sockets() -> list[tuple[int, str]]:
    """(port, socket inode) of every TCP socket in LISTEN state (from /proc/net/tcp*)."""
    found: list[tuple[int, str]] = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":
                found.append((int(fields[1].rsplit(":", 1)[1], 16), fields[9]))
    return found


def listening_ports() -> set[int]:
    return {port for port, _inode in _listening_sockets()}


def listening_ports_of(pids: set[int]) -> set[int]:
    """TCP ports the given processes are listening on (socket inodes matched in /proc/net/tcp*)."""
    inodes = socket_inodes_of(pids)
    return {port for port, inode in _listening_sockets() if inode in inodes}


def still_listening(inodes: set[str]) -> set[int]:
    """Ports of these listening sockets that are still open (by inode: another
    process reusing the port number does not count)."""
    return {port for port, inode in _listening_sockets() if inode in inodes}


def socket_inodes_of(pids: set[int]) -> set[str]:
    """Inodes of every socket the given processes hold."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    return inodes
