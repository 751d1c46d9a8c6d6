"""What can be injected into the built-in backend: its failpoints, its ``block(redis)``
action and its defects (code bugs of the incident, switched on by name).

Where the points sit: ``startup.*`` at the start of each startup phase
(``startup.dependencies`` is the auth-config phase; ``supervisor`` and
``thread_service`` inside SERVICES, where ``skip`` leaves the service ``None``).
In the handlers: ``ws.accept`` just before ``accept()``, ``ws.auth`` before
authentication, ``ws.auth_log`` on the auth debug log line, ``ws.startup_wait``
before the startup wait (the readiness check in ``recommended``),
``ws.dependency_check`` before the service check, ``ws.welcome`` before the
welcome is sent, ``ws.message_loop`` on every client message received. A user's
own handler hits the points it calls itself.

Light on purpose (no FastAPI): the catalog and the CLI check specs with it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import ClassVar

from faults import Action, FailpointError, FailpointSpec, parse_spec, register_action
from faults.actions import Skip

STARTUP_POINTS: tuple[str, ...] = (
    "startup.dependencies",
    "startup.database",
    "startup.cache",
    "startup.supervisor",
    "startup.thread_service",
    "startup.finalize",
)
HANDLER_POINTS: tuple[str, ...] = (
    "ws.accept",
    "ws.auth",
    "ws.auth_log",
    "ws.startup_wait",
    "ws.dependency_check",
    "ws.welcome",
    "ws.message_loop",
)
POINTS: tuple[str, ...] = STARTUP_POINTS + HANDLER_POINTS
#: The only points whose code leaves its step out when armed with ``skip``.
SKIPPABLE_POINTS: tuple[str, ...] = ("startup.supervisor", "startup.thread_service")

DEFECTS: dict[str, str] = {
    "auth-log-json": (
        "the auth step's debug log line json.dumps() a raw WebSocketState: "
        "TypeError reaches the catch-all (1011 'Internal error')"
    ),
}


@dataclass(frozen=True)
class BlockOnRedis(Action):
    """A synchronous redis-py ``GET`` on the event loop, as careless code would make it:
    with Redis hung behind the fault proxy, the whole loop stops."""

    url: str | None = None
    name: ClassVar[str] = "block(redis)"

    def run_sync(self) -> bool:
        import redis

        if not self.url:
            raise RuntimeError("block(redis) needs the backend's Redis URL")
        client = redis.Redis.from_url(self.url, socket_timeout=60, socket_connect_timeout=60)
        try:
            client.get("replica:failpoint:block")
        finally:
            client.close()
        return False

    def __str__(self) -> str:
        return "block(redis)"


def use_redis(url: str | None) -> None:
    """``block(redis)`` in specs parsed from now on blocks on the Redis at ``url``."""
    register_action("block(redis)", lambda: BlockOnRedis(url))


use_redis(None)


def parse_failpoints(text: str) -> FailpointSpec:
    """A spec for the built-in backend: its declared points, ``skip`` only where it is honoured."""
    spec = parse_spec(text, declared=POINTS)
    for point, action in spec.actions.items():
        if isinstance(action, Skip) and point not in SKIPPABLE_POINTS:
            raise FailpointError(f"{point}=skip: 'skip' is not allowed at {point} (only at {', '.join(SKIPPABLE_POINTS)})")
    return spec


def parse_defects(text: str) -> frozenset[str]:
    """``REPLICA_DEFECTS``: a comma list of known defect names (blank: none); else ValueError."""
    if not (text or "").strip():
        return frozenset()
    chosen: set[str] = set()
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            raise ValueError(f"empty item in defect list {text!r}")
        if name not in DEFECTS:
            close = difflib.get_close_matches(name, list(DEFECTS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown defect {name!r}{hint} (known: {', '.join(DEFECTS)})")
        chosen.add(name)
    return frozenset(chosen)
