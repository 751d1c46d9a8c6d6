"""What a client can see of one WebSocket attempt, and how it is matched.

Causes that all look like "1011" on a dashboard differ here: the handshake
outcome, whether the welcome arrived, the close code and reason, who sent the
close frame, how long after accept it came, and whether a ping got its pong.
Pure data and pure functions; the probe fills a :class:`Fingerprint`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: The values of ``Fingerprint.handshake`` that are not ``http_<status>``.
ACCEPTED = "accepted"
NO_SERVER = "no_server"  # nothing answered (connection refused or dropped before a response)
TIMEOUT = "timeout"  # the handshake did not finish within the probe's open timeout


class Fingerprint(BaseModel):
    model_config = ConfigDict(frozen=True)

    handshake: str = Field(description='"accepted", "http_<status>", "no_server" or "timeout"')
    welcome: bool = False
    close_code: int | None = Field(default=None, description="1006 when the connection dropped without a close frame")
    close_reason: str | None = None
    close_after_ms: float | None = Field(default=None, description="from accept to close")
    pong: bool = False
    closed_by: Literal["server", "client"] | None = Field(
        default=None, description="who sent the close frame: the client does on a keepalive ping timeout"
    )

    def summary(self) -> str:
        """One line, e.g. ``accepted, no welcome, 1011 "Internal error" after 7 ms``."""
        if self.handshake != ACCEPTED:
            return f"handshake {self.handshake}"
        parts = [ACCEPTED, "welcome" if self.welcome else "no welcome"]
        if self.close_code is not None:
            by = " (sent by client)" if self.closed_by == "client" else ""
            after = f" after {self.close_after_ms:.0f} ms" if self.close_after_ms is not None else ""
            parts.append(f'{self.close_code} "{self.close_reason or ""}"{by}{after}')
        if self.pong:
            parts.append("pong")
        return ", ".join(parts)


#: The least slack a close time is judged with (frozen expectations, diagnosis): what a
#: loaded machine's scheduling, or a remote staging's round trips, add (63 ms there, 5 ms here).
TIMING_SLACK_MS = 250.0


class Range(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min: float | None = None
    max: float | None = None

    def contains(self, value: float | None) -> bool:
        if value is None:
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{self.min:g}..{self.max:g}"
        return f">= {self.min:g}" if self.min is not None else f"<= {self.max:g}"


class Expectation(BaseModel):
    """The fingerprint a hypothesis predicts; a field left out is not checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    handshake: str | None = None
    welcome: bool | None = None
    close_code: int | None = None
    close_reason: str | None = None
    close_after_ms: Range | None = None
    pong: bool | None = None
    closed_by: Literal["server", "client"] | None = None

    def mismatches(self, observed: Fingerprint) -> list[str]:
        """Each checked field that differs, as ``field: expected X, observed Y``."""
        found: list[str] = []
        for field in ("handshake", "welcome", "close_code", "close_reason", "pong", "closed_by"):
            want = getattr(self, field)
            got = getattr(observed, field)
            if want is not None and want != got:
                found.append(f"{field}: expected {want!r}, observed {got!r}")
        if self.close_after_ms is not None and not self.close_after_ms.contains(observed.close_after_ms):
            found.append(f"close_after_ms: expected {self.close_after_ms}, observed {observed.close_after_ms!r}")
        return found

    def describe(self) -> str:
        """Compact, e.g. ``accepted, no welcome, 1011 "Internal error" <= 400 ms``."""
        parts: list[str] = []
        if self.handshake is not None:
            parts.append(self.handshake)
        if self.welcome is not None:
            parts.append("welcome" if self.welcome else "no welcome")
        if self.close_code is not None or self.close_reason is not None:
            code = "" if self.close_code is None else str(self.close_code)
            reason = "" if self.close_reason is None else f' "{self.close_reason}"'
            parts.append((code + reason).strip())
        if self.closed_by is not None:
            parts.append(f"closed by {self.closed_by}")
        if self.close_after_ms is not None:
            parts.append(f"{self.close_after_ms} ms")
        if self.pong is not None:
            parts.append("pong" if self.pong else "no pong")
        return ", ".join(parts) or "anything"
