"""The JSON messages of the ``/ws`` protocol, as the incident-era backend sent them (pure).

- envelope: ``{"type", "data", "timestamp" (epoch s), "server_id", "correlation_id"}``
  (welcome ``system_message``, ``pong``, ``heartbeat_ack``, server ``ping``,
  ``thread_history``);
- error: ``{"type": "error_message", "error_code", "error_message", "details",
  "timestamp", "recovery_suggestions"}``;
- agent events: ``{"type", "run_id", "agent_name", "timestamp" (ISO), "payload"}``.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

Message = dict[str, Any]

AGENT_EVENT_TYPES: tuple[str, ...] = (
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
)
MAX_MESSAGE_SIZE = 65536


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _iso(now: float | None) -> str:
    return datetime.fromtimestamp(_now(now), tz=timezone.utc).isoformat()


def envelope(
    type_: str,
    data: Mapping[str, Any],
    *,
    server_id: str,
    correlation_id: str | None = None,
    now: float | None = None,
) -> Message:
    return {
        "type": type_,
        "data": dict(data),
        "timestamp": _now(now),
        "server_id": server_id,
        "correlation_id": correlation_id or str(uuid.uuid4()),
    }


def welcome(
    *,
    connection_id: str,
    user_id: str,
    environment: str,
    startup_complete: bool,
    heartbeat_interval: float,
    server_id: str,
    max_message_size: int = MAX_MESSAGE_SIZE,
    degraded: bool = False,
    now: float | None = None,
) -> Message:
    data: dict[str, Any] = {
        "event": "connection_established",
        "connection_id": connection_id,
        "user_id": user_id,
        "server_time": _iso(now),
        "connection_ready": True,
        "environment": environment,
        "startup_complete": startup_complete,
        "config": {"heartbeat_interval": heartbeat_interval, "max_message_size": max_message_size},
    }
    if degraded:
        data["degraded_mode"] = True
    return envelope("system_message", data, server_id=server_id, now=now)


def error_message(
    error_code: str,
    message: str,
    *,
    details: Mapping[str, Any] | None = None,
    recovery_suggestions: Iterable[str] = (),
    now: float | None = None,
) -> Message:
    return {
        "type": "error_message",
        "error_code": error_code,
        "error_message": message,
        "details": dict(details or {}),
        "timestamp": _now(now),
        "recovery_suggestions": list(recovery_suggestions),
    }


def pong(user_id: str, *, server_id: str, correlation_id: str | None = None, now: float | None = None) -> Message:
    return envelope(
        "pong", {"timestamp": _now(now), "user_id": user_id}, server_id=server_id, correlation_id=correlation_id, now=now
    )


def heartbeat_ack(*, server_id: str, correlation_id: str | None = None, now: float | None = None) -> Message:
    return envelope(
        "heartbeat_ack",
        {"status": "healthy", "timestamp": _now(now)},
        server_id=server_id,
        correlation_id=correlation_id,
        now=now,
    )


def server_ping(*, server_id: str, now: float | None = None) -> Message:
    """The server heartbeat: a JSON ``ping`` every heartbeat interval."""
    return envelope("ping", {"timestamp": _now(now)}, server_id=server_id, now=now)


def thread_history(
    thread_id: str, messages: Sequence[Mapping[str, Any]], *, server_id: str, correlation_id: str | None = None,
    now: float | None = None,
) -> Message:
    rows = [{"role": m["role"], "content": m["content"]} for m in messages]
    return envelope(
        "thread_history",
        {"thread_id": thread_id, "messages": rows},
        server_id=server_id,
        correlation_id=correlation_id,
        now=now,
    )


def agent_event(
    type_: str, *, run_id: str, agent_name: str, payload: Mapping[str, Any], now: float | None = None
) -> Message:
    return {"type": type_, "run_id": run_id, "agent_name": agent_name, "timestamp": _iso(now), "payload": dict(payload)}


def agent_started(run_id: str, agent_name: str, *, context: Mapping[str, Any], message: str, now: float | None = None) -> Message:
    payload = {"status": "started", "context": dict(context), "message": message}
    return agent_event("agent_started", run_id=run_id, agent_name=agent_name, payload=payload, now=now)


def agent_thinking(
    run_id: str, agent_name: str, *, reasoning: str, step_number: int, progress_percentage: float, now: float | None = None
) -> Message:
    payload = {"reasoning": reasoning, "step_number": step_number, "progress_percentage": progress_percentage}
    return agent_event("agent_thinking", run_id=run_id, agent_name=agent_name, payload=payload, now=now)


def tool_executing(
    run_id: str, agent_name: str, *, tool_name: str, parameters: Mapping[str, Any], now: float | None = None
) -> Message:
    payload = {"tool_name": tool_name, "parameters": dict(parameters)}
    return agent_event("tool_executing", run_id=run_id, agent_name=agent_name, payload=payload, now=now)


def tool_completed(
    run_id: str, agent_name: str, *, tool_name: str, result: Any, execution_time_ms: float, now: float | None = None
) -> Message:
    payload = {"tool_name": tool_name, "result": result, "execution_time_ms": execution_time_ms}
    return agent_event("tool_completed", run_id=run_id, agent_name=agent_name, payload=payload, now=now)


def agent_completed(
    run_id: str, agent_name: str, *, result: Any, execution_time_ms: float, thread_id: str | None,
    now: float | None = None,
) -> Message:
    payload = {"result": result, "execution_time_ms": execution_time_ms, "thread_id": thread_id}
    return agent_event("agent_completed", run_id=run_id, agent_name=agent_name, payload=payload, now=now)
