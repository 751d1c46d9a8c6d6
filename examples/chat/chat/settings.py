"""Settings from the environment, read once at startup."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping


class SettingsError(SystemExit):
    """A missing or bad setting: the process stops before it serves, saying which."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    broadcast_url: str
    jwt_secret: str
    environment: str = "development"
    room: str = "lobby"
    history_limit: int = 20
    #: Bound on every call to Postgres or Redis, so a hung dependency cannot hang a client.
    dependency_timeout_s: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        missing = [name for name in ("DATABASE_URL", "BROADCAST_URL", "JWT_SECRET") if not env.get(name)]
        if missing:
            raise SettingsError(f"chat: set {', '.join(missing)} (see replica.toml for what they point at)")
        try:
            return cls(
                database_url=env["DATABASE_URL"],
                broadcast_url=env["BROADCAST_URL"],
                jwt_secret=env["JWT_SECRET"],
                environment=env.get("ENVIRONMENT", "development"),
                room=env.get("CHAT_ROOM", "lobby"),
                history_limit=int(env.get("CHAT_HISTORY_LIMIT", "20")),
                dependency_timeout_s=float(env.get("CHAT_DEPENDENCY_TIMEOUT_S", "2")),
            )
        except ValueError as exc:
            raise SettingsError(f"chat: a numeric setting is not a number: {exc}") from None
