"""Reading the server's side of a run from the backend's log."""

from __future__ import annotations

import calendar
from datetime import datetime

from replica.evidence import errors_between, frame_summary, parse_log, server_errors, zone_offset_s

LOG = """\
2026-11-30 16:44:33,910 INFO uvicorn.error: Application startup complete.
2026-11-30 16:44:33,951 INFO uvicorn.error: 127.0.0.1:32946 - "WebSocket /ws" [accepted]
2026-11-30 16:44:33,951 ERROR replica.ws: WebSocket error: Object of type WebSocketState is not JSON serializable
Traceback (most recent call last):
  File "/x/incident.py", line 45, in route
    await steps.log_auth_attempt(conn, fixed=changes.log_line_fixed)
TypeError: Object of type WebSocketState is not JSON serializable
2026-11-30 16:44:33,954 WARNING replica.ws: WebSocket auth failed: no token
2026-11-30 16:44:33,960 ERROR replica.ws: WebSocket dependencies missing: agent_supervisor
2026-11-30 16:44:33,990 INFO replica.backend: chained
Traceback (most recent call last):
ValueError: first

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "x", line 1
redis.exceptions.TimeoutError: Timeout reading from socket
"""


def epoch(stamp: str) -> float:
    return calendar.timegm(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timetuple()) + int(stamp[-3:]) / 1000


def test_records_carry_the_exception_their_traceback_ends_in():
    records = parse_log(LOG)
    assert [r.level for r in records] == ["INFO", "INFO", "ERROR", "WARNING", "ERROR", "INFO"]
    error = records[2]
    assert (error.logger, error.exception_type) == ("replica.ws", "TypeError")
    assert error.exception_message == "Object of type WebSocketState is not JSON serializable"
    assert records[4].exception_type is None
    assert (records[5].exception_type, records[5].exception_message) == ("redis.exceptions.TimeoutError", "Timeout reading from socket")


def test_errors_are_taken_between_the_connect_and_the_read():
    records = parse_log(LOG)
    found = errors_between(records, epoch("2026-11-30 16:44:33,955"), epoch("2026-11-30 16:44:34,000"))
    assert [e.message for e in found] == ["WebSocket dependencies missing: agent_supervisor", "chained"]
    first = errors_between(records, epoch("2026-11-30 16:44:33,951"), epoch("2026-11-30 16:44:33,952"))
    assert [e.line() for e in first] == [
        "ERROR replica.ws: WebSocket error: Object of type WebSocketState is not JSON serializable (TypeError)"
    ]


def test_the_logs_time_zone_is_found_from_its_newest_line():
    records = parse_log(LOG)
    read_at = epoch("2026-11-30 16:44:34,100")
    assert zone_offset_s(records, read_at) == 0
    # The same log written by a backend two hours ahead of UTC, read at the same moment.
    shifted = LOG.replace("16:44:", "18:44:")
    assert zone_offset_s(parse_log(shifted), read_at) == -7200
    assert len(server_errors(shifted, epoch("2026-11-30 16:44:33,950"), read_at)) == 3
    assert zone_offset_s([], read_at) == 0


def test_frames_are_summarised_without_ids():
    assert frame_summary({"type": "error_message", "error_code": "SERVICE_UNAVAILABLE", "error_message": "no", "timestamp": 1}) == (
        "error_message SERVICE_UNAVAILABLE: no"
    )
    welcome = {"type": "system_message", "data": {"event": "connection_established", "startup_complete": False, "connection_id": "c1"}}
    assert frame_summary(welcome) == "system_message connection_established (startup_complete=False)"
    assert frame_summary({"type": "pong", "data": {"timestamp": 3}}) == "pong"
