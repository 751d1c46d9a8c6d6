"""The account a stack server runs as, and the private dirs it may use.

When the harness is root, PostgreSQL and Redis run as an unprivileged account
(``nobody``, or ``REPLICA_SERVER_USER``); their dirs are 0700 and owned by that
account. ``nobody`` is shared with whatever else runs as it: for servers no
other process can touch, name a dedicated account there.
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from replica.drivers.local.group import ProcessGroup
from replica.errors import InfrastructureError


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A small, predictable environment for server processes."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class RunAs:
    """The account a server runs as (None: the current one)."""

    user: str | None = None
    uid: int = -1
    gid: int = -1

    def own(self, path: Path) -> None:
        """Give ``path`` and everything below it to this account."""
        if self.user is None:
            return
        os.chown(path, self.uid, self.gid)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), self.uid, self.gid)



    @property
    def popen_args(self) -> dict[str, object]:
        """``user``/``group`` arguments for :meth:`ProcessGroup.start`."""
        return {} if self.user is None else {"user": self.uid, "group": self.gid}


def server_account(what: str, binary: Path) -> RunAs:
    """The unprivileged account a server runs as: the current one unless that is
    root, else ``REPLICA_SERVER_USER`` (default ``nobody``), checked to be able to
    execute ``binary``."""
    if os.geteuid() != 0:
        return RunAs()
    name = os.environ.get("REPLICA_SERVER_USER") or "nobody"
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise InfrastructureError(
            f"{what} must not run as root and the unprivileged account {name!r} does not "
            f"exist. Create it (`useradd --system {name}`) or set REPLICA_SERVER_USER to "
            f"an existing unprivileged account."
        ) from exc
    if entry.pw_uid == 0:
        raise InfrastructureError(f"REPLICA_SERVER_USER={name!r} is root: name an unprivileged account")
    account = RunAs(name, entry.pw_uid, entry.pw_gid)
    try:
        subprocess.run(
            [str(binary), "--version"], capture_output=True, timeout=10, check=True,
            user=account.uid, group=account.gid, extra_groups=[], cwd="/",
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise InfrastructureError(
            f"{what} must not run as root, so it runs as {name!r}, but that account cannot "
            f"execute {binary} ({exc}). Make its parent directories searchable by others "
            f"(chmod o+x), install the binaries outside a private home directory, or set "
            f"REPLICA_SERVER_USER to another account."
        ) from exc
    return account


def scratch_dir(group: ProcessGroup, name: str, account: RunAs) -> Path:
    """A private dir for ``account`` in the group's RAM dir."""
    ram = group.ram_dir
    within = group.tmp_dir if group.tmp_dir in ram.parents else ram
    return private_dir(ram / f"{name}-{secrets.token_hex(3)}", account, within=within)


def unsearchable_ancestor(path: Path, account: RunAs) -> Path | None:
    """The first directory above ``path`` that ``account`` may not pass through (no
    search permission for it as owner, group or other), or None."""
    if account.user is None:
        return None
    for parent in path.resolve().parents:
        mode = parent.stat()
        if mode.st_uid == account.uid:
            allowed = mode.st_mode & 0o100
        elif mode.st_gid == account.gid:
            allowed = mode.st_mode & 0o010
        else:
            allowed = mode.st_mode & 0o001
        if not allowed:
            return parent
    return None


def private_dir(path: Path, account: RunAs, *, within: Path) -> Path:
    """Create ``path`` (mode 0700) owned by ``account``.

    Directories between ``within`` (the group's root-only temp dir) and ``path``
    are made traversable (``o+x``, not listable) so the account can reach it;
    ``within`` itself must already be reachable by the account.
    """
    blocked = unsearchable_ancestor(within, account)
    if blocked is not None:
        raise InfrastructureError(
            f"the stack's servers run as {account.user!r}, which cannot reach {within}: {blocked} is not searchable "
            f"by it (mode {blocked.stat().st_mode & 0o777:04o}). Point TMPDIR (and REPLICA_RAM_DIR) at a directory "
            f"others can pass through, such as /tmp, or `chmod o+x {blocked}`."
        )
    path.mkdir(parents=True, exist_ok=False, mode=0o700)
    if account.user is not None:
        os.chown(path, account.uid, account.gid)
        parent = path.parent
        while True:
            parent.chmod((parent.stat().st_mode & 0o777) | 0o111)
            if parent == within or parent == parent.parent:
                break
            parent = parent.parent
    return path
