"""The project's exception hierarchy.

Every error the harness raises on purpose derives from :class:`ReplicaError`,
carries the process exit code the CLI should use, and says what is wrong and
what to do about it::

    ReplicaError                 base; exit_code 2
    ├── InfrastructureError      a dependency cannot be started (missing binary,
    │                            port in use, start timeout, early exit)
    └── ConfigError              a bad scenario spec or setting
"""

from __future__ import annotations

#: The exit code of a usage, configuration or infrastructure error, for the CLI and
#: for a backend that refuses its settings before it listens.
USAGE_ERROR = 2


class ReplicaError(Exception):
    """Base of every error the harness raises deliberately."""

    exit_code: int = USAGE_ERROR

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InfrastructureError(ReplicaError):
    """A dependency cannot be started or did not become ready."""


class ConfigError(ReplicaError):
    """A scenario spec or setting is invalid."""


__all__ = ["USAGE_ERROR", "ReplicaError", "InfrastructureError", "ConfigError"]
