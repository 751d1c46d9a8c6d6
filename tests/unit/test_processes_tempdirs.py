"""Private temp dirs: the RAM-disk choice and the sweep of dirs left by dead harnesses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from replica.drivers.local.group import ProcessGroup
from replica.drivers.local.tempdirs import TEMP_PREFIX, ram_temp_root, sweep_stale_temp_dirs

OWNER_FILE = ".replica-owner-pid"


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait(timeout=10)
    return child.pid


def test_ram_dir_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICA_RAM_DIR", "")
    assert ram_temp_root() is None
    with ProcessGroup() as group:
        assert group.ram_dir.parent == group.tmp_dir
        assert group.ram_dir.is_dir()


def test_ram_dir_override_and_missing_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REPLICA_RAM_DIR", str(tmp_path / "missing"))
    assert ram_temp_root() is None
    if os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize < 512 * 1024 * 1024:
        pytest.skip("less than 512 MiB free where tmp_path lives")
    monkeypatch.setenv("REPLICA_RAM_DIR", str(tmp_path))
    assert ram_temp_root() == tmp_path
    with ProcessGroup() as group:
        ram = group.ram_dir
        assert ram.parent == tmp_path and ram.name.startswith(TEMP_PREFIX)
    assert not ram.exists() and not group.tmp_dir.exists()


def test_sweep_removes_only_marked_dirs_of_dead_owners(tmp_path: Path) -> None:
    dead = tmp_path / f"{TEMP_PREFIX}dead"
    live = tmp_path / f"{TEMP_PREFIX}live"
    unmarked = tmp_path / f"{TEMP_PREFIX}unmarked"
    other = tmp_path / "unrelated"
    for path in (dead, live, unmarked, other):
        path.mkdir()
    (dead / OWNER_FILE).write_text(str(_dead_pid()))
    (live / OWNER_FILE).write_text(str(os.getppid()))
    (other / OWNER_FILE).write_text(str(_dead_pid()))

    assert sweep_stale_temp_dirs(tmp_path) == [dead]
    assert not dead.exists()
    assert live.exists() and unmarked.exists() and other.exists()
