"""The shared part of a running replica: where its services answer, its secrets, its owner.

``replica up`` keeps its state in a private state dir (mode 0700;
``REPLICA_STATE_DIR`` or ``~/.cache/staging-replica/run``):

* ``up.lock`` — held (``flock``) by ``replica up`` for its whole life, holding its
  :class:`~replica.drivers.identity.ProcessIdentity`: one stack per state dir;
* ``stack.json`` (mode 0600) — a :class:`StackInfo` once the stack answers, so
  ``status``, ``down``, ``probe`` and ``scenarios run`` can attach to it;
* ``lanes.sock`` — the lanes API (see ``replica.drivers.up.api``);
* ``commands.sock`` — the warm command process (see ``replica.warm``).

The paths themselves are in :mod:`replica.state_paths`.

A state whose owner is gone (pid and start time no longer match: ``kill -9``) is
swept, with the temp dirs of that run, by the next command that looks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Iterator

from pydantic import BaseModel, ValidationError

from replica.drivers.identity import ProcessIdentity, start_token
from replica.errors import ConfigError, InfrastructureError
from replica.polling import wait_until
from replica.state_paths import LOCK, STATE, commands_socket_path, lanes_socket_path, state_dir, state_file

#: How long ``replica up`` waits for a lock held by a command that is only sweeping.
_TRANSIENT_HOLD_S = 3.0


class StackInfo(BaseModel):
    driver: str
    owner_pid: int
    #: Start token of the owner (see :func:`~replica.drivers.identity.start_token`).
    owner_started: str = ""
    postgres_url: str
    redis_url: str
    auth_url: str
    toxiproxy_url: str
    #: The fault proxy API's bearer token (``TOXIPROXY_TOKEN``), generated per stack.
    toxiproxy_token: str = ""
    jwt_secret: str
    #: The default lane ``replica up`` keeps open: its backend through the proxy.
    backend_url: str | None = None
    #: Base URL of the lanes API (see ``replica.drivers.up.api``), served on ``lanes_socket``.
    lanes_url: str | None = None
    lanes_socket: str | None = None
    tmp_dir: str | None = None
    #: The project file (``replica.toml``) whose backend the stack's lanes run; None: the built-in backend.
    project: str | None = None

    @property
    def owner(self) -> ProcessIdentity:
        return ProcessIdentity(self.owner_pid, self.owner_started)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def private_state_dir() -> Path:
    """The state dir, created 0700; refused if another user owns it or it is a symlink."""
    path = state_dir()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise ConfigError(
            f"{path} is not a directory of yours: set REPLICA_STATE_DIR to a private directory"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(0o700)
    return path


def write_state(info: StackInfo) -> Path:
    """Write ``info`` (mode 0600), recording its owner's start time."""
    if not info.owner_started:
        info = info.model_copy(update={"owner_started": start_token(info.owner_pid) or ""})
    path = private_state_dir() / STATE
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(info.model_dump_json(indent=2))
    os.replace(tmp, path)
    return path


def _load_state() -> StackInfo | None:
    path = state_file()
    try:
        return StackInfo.model_validate(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"{path}: unreadable stack state ({exc}); remove it and run `replica up` again") from exc


def read_state() -> StackInfo | None:
    """The running stack, or None; the state of a dead owner is swept."""
    info = _load_state()
    if info is None or info.owner.alive():
        return info
    _sweep_unowned()
    return None


def stack_owner() -> ProcessIdentity | None:
    """The ``replica up`` holding this state dir (also while it starts), or None."""
    try:
        text = (state_dir() / LOCK).read_text()
        owner = ProcessIdentity(**json.loads(text))
    except (OSError, ValueError, TypeError):
        return None
    return owner if owner.alive() else None


def clear_state(owner_pid: int) -> None:
    """Remove the state of ``owner_pid``'s stack (never another's)."""
    info = _load_state_quietly()
    if info is not None and info.owner_pid == owner_pid:
        _remove_state_files()


def _remove_state_files() -> None:
    """The state file (it holds secrets) and the stack's sockets."""
    for path in (state_file(), lanes_socket_path(), commands_socket_path()):
        path.unlink(missing_ok=True)


def _load_state_quietly() -> StackInfo | None:
    try:
        return _load_state()
    except ConfigError:
        return None


def _remove_leftovers() -> None:
    """The state files and the temp dirs of a dead run."""
    from replica.drivers.local.tempdirs import sweep_stale_temp_dirs

    _remove_state_files()
    sweep_stale_temp_dirs()


def _sweep_unowned() -> None:
    """Sweep a dead owner's leftovers, under the lock so a new ``replica up`` is never hit."""
    try:
        fd = os.open(state_dir() / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # a live `replica up` holds it and sweeps for itself
        os.close(fd)
        return
    try:
        info = _load_state_quietly()
        if info is None or not info.owner.alive():
            _remove_leftovers()
    finally:
        os.close(fd)


def _take_lock(fd: int, lock: Path) -> None:
    def taken() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = stack_owner()
            if owner is not None:
                raise ConfigError(
                    f"replica up is already running (pid {owner.pid}) with state dir {lock.parent}: "
                    f"stop it with `replica down`, or set REPLICA_STATE_DIR to another directory "
                    f"to run a second stack"
                ) from None
            return False  # held by a command that is sweeping, or an up that is just starting
        return True

    try:
        wait_until(taken, _TRANSIENT_HOLD_S, what=f"the lock {lock}")
    except InfrastructureError:
        owner = stack_owner()
        raise ConfigError(
            f"another replica command holds {lock}"
            + (f" (replica up, pid {owner.pid})" if owner else "")
            + "; stop it with `replica down` or use another REPLICA_STATE_DIR"
        ) from None


@contextlib.contextmanager
def stack_ownership() -> Iterator[ProcessIdentity]:
    """Own the state dir for the life of a ``replica up``: refuse (exit 2, naming
    the running one) if another holds it; sweep a dead owner's leftovers; record
    this process's identity; clear it all on exit."""
    lock = private_state_dir() / LOCK
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{lock} is a symlink: remove it") from None
        raise ConfigError(f"cannot open {lock}: {exc.strerror}") from None
    try:
        _take_lock(fd, lock)
        me = ProcessIdentity.current()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": me.pid, "started": me.started}).encode(), 0)
        info = _load_state_quietly()
        if info is None or not info.owner.alive():
            _remove_leftovers()
        try:
            yield me
        finally:
            clear_state(me.pid)
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock
