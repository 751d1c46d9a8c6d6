"""Server-side evidence of one run: what the backend logged while the probe's
connection was open, the frames the client got before the close, and what the
connection without a token got.

Pure functions over the backend's log text, whose lines read
``2025-09-08 12:00:00,123 ERROR replica.ws: WebSocket error: ...`` (a traceback's
lines follow the record they belong to).
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime
from typing import Any, Iterable

from pydantic import BaseModel

_RECORD = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+?): (.*)$")
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*)(?:: (.*))?$")
_NOT_AN_EXCEPTION = ("Traceback (most recent call last):", "During handling of", "The above exception")
#: Log timestamps carry the backend's local time; the zone is found as the multiple
#: of a quarter hour that brings the newest line next to the moment the log was read.
_ZONE_STEP_S = 900
#: asctime is truncated to the millisecond.
_TICK_S = 0.001


class ServerError(BaseModel):
    """An ERROR record or an exception the backend logged."""

    level: str
    logger: str
    message: str
    exception_type: str | None = None
    exception_message: str | None = None

    def line(self) -> str:
        """``ERROR replica.ws: WebSocket error: ... (TypeError)``."""
        kind = f" ({self.exception_type})" if self.exception_type else ""
        return f"{self.level} {self.logger}: {self.message}{kind}"


class LogRecord(ServerError):
    """One record of the backend's log (of any level); ``at`` reads its timestamp as if it were UTC."""

    at: float


class Evidence(BaseModel):
    #: ERROR records and exceptions logged between the connect and the end of the run.
    server_errors: list[ServerError] = []
    #: Frames the client received before the close (JSON objects).
    frames: list[dict[str, Any]] = []
    #: The handshake of the connection without a token (the staging test asserts ``http_403``).
    no_token: str | None = None


def _exception_of(lines: list[str]) -> tuple[str | None, str | None]:
    """Type and message of the last exception in a traceback's lines."""
    if not any(line.startswith("Traceback (most recent call last):") for line in lines):
        return None, None
    for line in reversed(lines):
        if not line or line[0].isspace() or line.startswith(_NOT_AN_EXCEPTION):
            continue
        match = _EXCEPTION.match(line)
        if match:
            return match.group(1), match.group(2) or ""
    return None, None


def parse_log(text: str) -> list[LogRecord]:
    """The records of a log, each with the exception its traceback ends in."""
    records: list[tuple[re.Match[str], list[str]]] = []
    for line in text.splitlines():
        match = _RECORD.match(line)
        if match:
            records.append((match, []))
        elif records:
            records[-1][1].append(line)
    parsed = []
    for match, rest in records:
        stamp, level, logger, message = match.groups()
        when = calendar.timegm(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timetuple())
        exc_type, exc_message = _exception_of(rest)
        parsed.append(
            LogRecord(
                at=when + int(stamp[-3:]) / 1000,
                level=level,
                logger=logger,
                message=message,
                exception_type=exc_type,
                exception_message=exc_message,
            )
        )
    return parsed


def zone_offset_s(records: list[LogRecord], read_at: float) -> int:
    """Seconds to add to ``LogRecord.at`` to get epoch time (0 when the log is empty)."""
    if not records:
        return 0
    return round((read_at - records[-1].at) / _ZONE_STEP_S) * _ZONE_STEP_S


def errors_between(records: Iterable[LogRecord], start: float, end: float, offset_s: int = 0) -> list[ServerError]:
    """ERROR/CRITICAL records and exceptions logged in ``[start, end]`` (epoch seconds)."""
    found = []
    for r in records:
        serious = r.level in ("ERROR", "CRITICAL") or r.exception_type is not None
        if serious and start - _TICK_S <= r.at + offset_s <= end + _TICK_S:
            found.append(ServerError(**r.model_dump(exclude={"at"})))
    return found


def server_errors(log_text: str, start: float, end: float) -> list[ServerError]:
    """The errors of a log in ``[start, end]``; ``end`` is when the log was read."""
    records = parse_log(log_text)
    return errors_between(records, start, end, zone_offset_s(records, end))


def frame_summary(frame: dict[str, Any]) -> str:
    """What a frame says, without ids and timestamps: ``error_message SERVICE_UNAVAILABLE: ...``."""
    kind = str(frame.get("type"))
    if kind == "error_message":
        return f"{kind} {frame.get('error_code')}: {frame.get('error_message')}"
    data = frame.get("data")
    if kind == "system_message" and isinstance(data, dict):
        return f"{kind} {data.get('event')} (startup_complete={data.get('startup_complete')})"
    return kind
