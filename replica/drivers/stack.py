"""The shared part of a running replica: where its services answer, and its secret.

A stack started by ``replica up`` writes this to a state file (mode 0600; the JWT
secret is generated per run and never leaves the machine) so later commands —
``status``, ``down``, ``probe``, ``scenarios run`` — can attach to it.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from pydantic import BaseModel, ValidationError

from replica.drivers.identity import pid_alive
from replica.errors import ConfigError


class StackInfo(BaseModel):
    driver: str
    owner_pid: int
    postgres_url: str
    redis_url: str
    auth_url: str
    toxiproxy_url: str
    jwt_secret: str
    #: The default lane ``replica up`` keeps open: its backend through the proxy.
    backend_url: str | None = None
    #: Where ``replica up`` serves the lanes API (see ``replica.drivers.up.api``).
    lanes_url: str | None = None
    tmp_dir: str | None = None


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def state_dir() -> Path:
    return Path(os.environ.get("REPLICA_STATE_DIR") or Path.home() / ".cache" / "staging-replica" / "run")


def state_file() -> Path:
    return state_dir() / "stack.json"


def write_state(info: StackInfo) -> Path:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(info.model_dump_json(indent=2))
    os.replace(tmp, path)
    return path


def read_state() -> StackInfo | None:
    """The running stack, or None; a state file left by a dead owner is removed."""
    path = state_file()
    try:
        info = StackInfo.model_validate(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"{path}: unreadable stack state ({exc}); remove it and run `replica up` again") from exc
    if not pid_alive(info.owner_pid):
        path.unlink(missing_ok=True)
        return None
    return info


def clear_state(owner_pid: int) -> None:
    path = state_file()
    try:
        info = StackInfo.model_validate(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, ValidationError):
        return
    if info.owner_pid == owner_pid:
        path.unlink(missing_ok=True)
