"""Where a running stack keeps its state (see :mod:`replica.drivers.stack`).

Only the standard library: a command reads these paths in its first milliseconds,
before it knows whether it will load anything else.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

LOCK = "up.lock"
STATE = "stack.json"
LANES_SOCKET = "lanes.sock"
#: The warm command process's socket (see :mod:`replica.warm`).
COMMANDS_SOCKET = "commands.sock"


def state_dir_name() -> str:
    """``REPLICA_STATE_DIR``, else ``~/.cache/staging-replica/run``."""
    return os.environ.get("REPLICA_STATE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "staging-replica", "run")


def state_dir() -> "Path":
    from pathlib import Path  # not at import: a command's first milliseconds need only the name

    return Path(state_dir_name())


def state_file() -> "Path":
    return state_dir() / STATE


def lanes_socket_path() -> "Path":
    return state_dir() / LANES_SOCKET


def commands_socket_path() -> "Path":
    return state_dir() / COMMANDS_SOCKET
