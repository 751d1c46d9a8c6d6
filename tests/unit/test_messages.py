"""Message shapes of the /ws protocol (incident.md §1 "Message shapes")."""

from __future__ import annotations

import json

from replica.backend import messages

NOW = 1_757_318_400.0  # 2025-09-08T08:00:00Z
ISO = "2025-09-08T08:00:00+00:00"


def test_envelope_fields() -> None:
    msg = messages.envelope("pong", {"a": 1}, server_id="s1", correlation_id="c1", now=NOW)
    assert msg == {"type": "pong", "data": {"a": 1}, "timestamp": NOW, "server_id": "s1", "correlation_id": "c1"}


def test_envelope_makes_a_correlation_id_when_none_is_given() -> None:
    a = messages.envelope("x", {}, server_id="s", now=NOW)
    b = messages.envelope("x", {}, server_id="s", now=NOW)
    assert a["correlation_id"] and a["correlation_id"] != b["correlation_id"]


def test_welcome() -> None:
    msg = messages.welcome(
        connection_id="conn_1", user_id="staging-e2e-user-001", environment="staging", startup_complete=True,
        heartbeat_interval=25.0, server_id="s1", now=NOW,
    )
    assert msg["type"] == "system_message"
    assert set(msg) == {"type", "data", "timestamp", "server_id", "correlation_id"}
    assert "event" not in msg  # the staging test looked here; it sits under data
    assert msg["data"] == {
        "event": "connection_established",
        "connection_id": "conn_1",
        "user_id": "staging-e2e-user-001",
        "server_time": ISO,
        "connection_ready": True,
        "environment": "staging",
        "startup_complete": True,
        "config": {"heartbeat_interval": 25.0, "max_message_size": messages.MAX_MESSAGE_SIZE},
    }
    degraded = messages.welcome(
        connection_id="c", user_id="u", environment="staging", startup_complete=False, heartbeat_interval=1,
        server_id="s", degraded=True, now=NOW,
    )
    assert degraded["data"]["degraded_mode"] is True


def test_error_message_is_not_enveloped() -> None:
    msg = messages.error_message(
        "SERVICE_UNAVAILABLE", "Required services are not available", details={"missing": ["x"]},
        recovery_suggestions=("retry",), now=NOW,
    )
    assert msg == {
        "type": "error_message",
        "error_code": "SERVICE_UNAVAILABLE",
        "error_message": "Required services are not available",
        "details": {"missing": ["x"]},
        "timestamp": NOW,
        "recovery_suggestions": ["retry"],
    }


def test_pong_heartbeat_ack_and_server_ping() -> None:
    pong = messages.pong("u1", server_id="s", correlation_id="c", now=NOW)
    assert pong["type"] == "pong" and pong["data"] == {"timestamp": NOW, "user_id": "u1"}
    ack = messages.heartbeat_ack(server_id="s", now=NOW)
    assert ack["type"] == "heartbeat_ack" and ack["data"]["status"] == "healthy"
    ping = messages.server_ping(server_id="s", now=NOW)
    assert ping["type"] == "ping" and ping["data"] == {"timestamp": NOW}


def test_thread_history_keeps_role_and_content_only() -> None:
    msg = messages.thread_history(
        "t1", [{"role": "user", "content": "hi", "id": 7}, {"role": "assistant", "content": "yo"}], server_id="s", now=NOW
    )
    assert msg["type"] == "thread_history"
    assert msg["data"] == {"thread_id": "t1", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


def test_agent_events_carry_the_incident_payload_fields() -> None:
    events = [
        messages.agent_started("r", "a", context={"k": 1}, message="m", now=NOW),
        messages.agent_thinking("r", "a", reasoning="why", step_number=1, progress_percentage=25, now=NOW),
        messages.tool_executing("r", "a", tool_name="t", parameters={"p": 1}, now=NOW),
        messages.tool_completed("r", "a", tool_name="t", result={"ok": 1}, execution_time_ms=1.5, now=NOW),
        messages.agent_completed("r", "a", result="done", execution_time_ms=3.0, thread_id="t1", now=NOW),
    ]
    for event in events:
        assert set(event) == {"type", "run_id", "agent_name", "timestamp", "payload"}
        assert event["run_id"] == "r" and event["agent_name"] == "a" and event["timestamp"] == ISO
    assert [e["type"] for e in events] == list(messages.AGENT_EVENT_TYPES)
    assert [set(e["payload"]) for e in events] == [
        {"status", "context", "message"},
        {"reasoning", "step_number", "progress_percentage"},
        {"tool_name", "parameters"},
        {"tool_name", "result", "execution_time_ms"},
        {"result", "execution_time_ms", "thread_id"},
    ]
    assert events[4]["payload"]["thread_id"] == "t1"


def test_every_message_is_json_serialisable() -> None:
    for msg in (
        messages.welcome(connection_id="c", user_id="u", environment="staging", startup_complete=False,
                         heartbeat_interval=1, server_id="s"),
        messages.error_message("E", "m"),
        messages.pong("u", server_id="s"),
        messages.agent_completed("r", "a", result="x", execution_time_ms=0, thread_id=None),
    ):
        assert json.loads(json.dumps(msg)) == msg
