"""Private temp dirs of a :class:`ProcessGroup`, and the sweep of dirs left by a
SIGKILLed harness."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from replica.drivers.identity import ProcessIdentity, pid_alive

#: Prefix of every private temp dir a :class:`ProcessGroup` creates.
TEMP_PREFIX = "replica-"
_OWNER_FILE = ".replica-owner-pid"

_MIN_RAM_FREE = 512 * 1024 * 1024


def ram_temp_root() -> Path | None:
    """A RAM-backed directory for scratch data (``/dev/shm``), or None.

    ``REPLICA_RAM_DIR`` overrides it; set it empty to keep everything on disk.
    None as well when the directory is not writable or has under 512 MiB free
    (containers often mount a 64 MiB ``/dev/shm``).
    """
    configured = os.environ.get("REPLICA_RAM_DIR")
    if configured == "":
        return None
    root = Path(configured or "/dev/shm")
    try:
        stat = os.statvfs(root)
    except OSError:
        return None
    if not os.access(root, os.W_OK | os.X_OK) or stat.f_bavail * stat.f_frsize < _MIN_RAM_FREE:
        return None
    return root


def make_owned_temp_dir(prefix: str, base: Path | None = None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    owner = ProcessIdentity.current()
    (path / _OWNER_FILE).write_text(f"{owner.pid}\n{owner.started}\n")
    return path


def _owner_alive(marker: Path) -> bool | None:
    """Whether the dir's owner runs (pid and start time); None if it is not one of ours."""
    try:
        pid_text, _, started = marker.read_text().partition("\n")
        pid = int(pid_text.strip())
    except (OSError, ValueError):
        return None
    started = started.strip()
    if pid == os.getpid():
        return True
    return ProcessIdentity(pid, started).alive() if started else pid_alive(pid)


def sweep_stale_temp_dirs(base: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove private temp dirs left by harnesses that were SIGKILLed.

    Looks in ``base`` (default: the system temp dir and :func:`ram_temp_root`).
    Only real dirs of the current user carrying the owner marker of a :class:`ProcessGroup` whose owner
    process is gone (no process with that pid and start time) are removed.
    Returns the removed paths.
    """
    if base is not None:
        roots = [Path(base)]
    else:
        roots = [Path(tempfile.gettempdir())]
        ram = ram_temp_root()
        if ram is not None:
            roots.append(ram)
    removed: list[Path] = []
    for root in roots:
        for path in root.glob(TEMP_PREFIX + "*"):
            try:
                mine = path.lstat().st_uid == os.getuid() and path.is_dir() and not path.is_symlink()
            except OSError:
                continue
            if not mine or _owner_alive(path / _OWNER_FILE) is not False:
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed

