"""Private temp dirs of a :class:`ProcessGroup`, and the sweep of dirs left by a
SIGKILLed harness."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from replica.drivers.identity import pid_alive

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


def _make_owned_temp_dir(prefix: str, base: Path | None = None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    (path / _OWNER_FILE).write_text(str(os.getpid()))
    return path


def sweep_stale_temp_dirs(base: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove private temp dirs left by harnesses that were SIGKILLed.

    Looks in ``base`` (default: the system temp dir and :func:`ram_temp_root`).
    Only dirs carrying the owner marker of a :class:`ProcessGroup` whose owner
    process is gone are removed. Returns the removed paths.
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
            marker = path / _OWNER_FILE
            try:
                pid = int(marker.read_text().strip())
            except (OSError, ValueError):
                continue
            if pid == os.getpid() or pid_alive(pid):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed

