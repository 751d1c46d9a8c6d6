"""What a probe saw: the fingerprint, the timeline of the steps, the frames, the E2E
flows and a follow-up; and the built-in backend's messages a probe looks for.

Pure data (no client here: that is :mod:`replica.probe`), so a command that reads or
reports observations does not load a WebSocket or HTTP client.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from replica.fingerprint import Fingerprint

#: The built-in backend's welcome, as a subset the first messages are matched against.
BUILTIN_WELCOME: dict[str, Any] = {"type": "system_message", "data": {"event": "connection_established"}}
PING: dict[str, Any] = {"type": "ping"}
PONG: dict[str, Any] = {"type": "pong"}


def contains(message: Any, subset: Any) -> bool:
    """Whether ``message`` holds ``subset``: every key of a mapping, recursively; other values equal."""
    if isinstance(subset, dict):
        return isinstance(message, dict) and all(k in message and contains(message[k], v) for k, v in subset.items())
    return message == subset


def foreign_servers(messages: list[dict[str, Any]], pid: int) -> list[str]:
    """The built-in backend's ``server_id`` values (``backend-HOST-PID``) among ``messages`` that
    name a process other than ``pid``: the probe reached a backend that is not its lane's."""
    found = {str(m["server_id"]) for m in messages if isinstance(m, dict) and "server_id" in m}
    return sorted(sid for sid in found if sid.rpartition("-")[2] != str(pid))


class TimelineEvent(BaseModel):
    t_ms: float
    event: str
    detail: str = ""


class Flows(BaseModel):
    """The staging suite's other WebSocket flows, run after the pong."""

    #: Types of the agent events a ``user_message`` got, up to ``agent_completed`` or an error.
    agent_events: list[str] = []
    heartbeat_ack: bool = False

    @property
    def agent_completed(self) -> bool:
        return bool(self.agent_events) and self.agent_events[0] == "agent_started" and self.agent_events[-1] == "agent_completed"


class Observation(BaseModel):
    """Everything the probe saw: the fingerprint and how it got there."""

    base_url: str
    url: str
    fingerprint: Fingerprint
    #: Wall clock (epoch seconds) at the timeline's 0.
    started_at: float = 0.0
    #: From the connect to the welcome.
    welcome_ms: float | None = None
    flows: Flows | None = None
    health_status: int | None = None
    no_token_handshake: str | None = None
    headers_sent: int = 0
    has_authorization: bool = False
    timeline: list[TimelineEvent] = []
    messages: list[dict[str, Any]] = []
    connect_ms: float | None = None


def connect_time(observation: Observation) -> float:
    """Epoch seconds when the probe's connection with a token began."""
    t = next((e.t_ms for e in observation.timeline if e.event == "connect"), 0.0)
    return observation.started_at + t / 1000


class FollowUp(BaseModel):
    """A second look after the first probe: readiness, then the same probe again."""

    #: ``/health/ready`` right after the first probe (None: no answer).
    ready_status: int | None = None
    #: ``/health/ready`` when the second probe started.
    ready_status_later: int | None = None
    second: Fingerprint | None = None

    def ready_text(self) -> str:
        def word(code: int | None) -> str:
            return {None: "no answer", 200: "ready", 404: "absent"}.get(code, f"not ready ({code})")

        return word(self.ready_status) + ("" if self.ready_status_later == self.ready_status else f" → {word(self.ready_status_later)}")
