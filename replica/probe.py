"""A client that does what the staging test ``test_001_websocket_connection_real`` did.

Health check, a connection without a token, then a connection with the test's ten
headers and a JWT; wait for the welcome, send a ping, wait for the pong. Every step
lands on a timeline (monotonic milliseconds) and the outcome becomes a
:class:`~replica.fingerprint.Fingerprint`. It can target any URL, a real staging
included.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from replica import http1
from replica.fingerprint import ACCEPTED, NO_SERVER, TIMEOUT, Fingerprint
from replica.observation import (  # noqa: F401  (the records are re-exported: the probe makes them)
    BUILTIN_WELCOME,
    PING,
    PONG,
    Flows,
    FollowUp,
    Observation,
    TimelineEvent,
    connect_time,
    contains,
)
from replica.tls import tls_for

USER_AGENT = "Netra-E2E-Tests/1.0"


def e2e_headers(token: str | None) -> dict[str, str]:
    """The ten headers the staging test sent (nine without a token)."""
    headers = {
        "X-Test-Type": "E2E",
        "X-Test-Environment": "staging",
        "X-E2E-Test": "true",
        "X-Test-Mode": "true",
        "X-Test-Session": f"e2e-staging-{uuid.uuid4().hex[:8]}",
        "User-Agent": USER_AGENT,
        "X-Staging-E2E": "true",
        "X-Test-Priority": "1",
        "X-Auth-Fast-Path": "enabled",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


class ProbeOptions(BaseModel):
    #: The WebSocket's path, and the HTTP health check's (None: no health check).
    ws_path: str = "/ws"
    health_path: str | None = "/health"
    #: What the welcome contains (a JSON subset); None: no welcome is awaited.
    welcome: dict[str, Any] | None = BUILTIN_WELCOME
    #: One exchange after the welcome: ``ping`` sent, a reply containing ``pong`` awaited; None: none.
    ping: dict[str, Any] | None = PING
    pong: dict[str, Any] = PONG
    e2e_headers: bool = True
    with_token: bool = True
    check_no_token: bool = True
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    health_timeout_s: float = 30.0
    open_timeout_s: float = 10.0
    welcome_timeout_s: float = 10.0
    pong_timeout_s: float = 5.0
    #: After the pong: a ``user_message`` (agent events until ``agent_completed``) and a ``heartbeat``.
    e2e_flows: bool = False
    flow_timeout_s: float = 5.0


def ws_url(base_url: str, path: str = "/ws") -> str:
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + path
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :] + path
    return base if base.endswith(path) else base + path


@dataclass
class _Recorder:
    start: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    events: list[TimelineEvent] = field(default_factory=list)

    def now_ms(self) -> float:
        return (time.monotonic() - self.start) * 1000

    def add(self, event: str, detail: str = "") -> float:
        t = self.now_ms()
        self.events.append(TimelineEvent(t_ms=round(t, 2), event=event, detail=detail))
        return t

    def wall(self, t_ms: float) -> float:
        """Epoch seconds of a timeline time."""
        return self.started_at + t_ms / 1000


def _handshake_failure(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"http_{exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    return NO_SERVER


def _close_of(exc: ConnectionClosed) -> tuple[int, str, str | None]:
    """Code, reason and sender of the close frame that ended the connection."""
    if exc.rcvd is not None and (exc.sent is None or exc.rcvd_then_sent):
        return exc.rcvd.code, exc.rcvd.reason, "server"
    if exc.sent is not None and exc.sent.code != 1000:
        return exc.sent.code, exc.sent.reason, "client"
    return 1006, "", None


def ws_proxy(url: str) -> None | bool:
    """No proxy for a loopback address (the replica's own stacks; reading the proxy
    settings costs ~2 ms a connection); the environment's proxy settings otherwise."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return None
    try:
        return None if ipaddress.ip_address(host).is_loopback else True
    except ValueError:
        return True


async def _check_no_token(url: str, options: ProbeOptions, rec: _Recorder) -> str:
    headers = e2e_headers(None) if options.e2e_headers else {}
    try:
        async with connect(
            url, additional_headers=headers, open_timeout=options.open_timeout_s, ping_interval=None, proxy=ws_proxy(url)
        ):
            outcome = ACCEPTED
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        outcome = _handshake_failure(exc)
    except ConnectionClosed:
        outcome = ACCEPTED
    rec.add("no_token_handshake", outcome)
    return outcome


async def _recv_json(ws: ClientConnection, timeout: float) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    try:
        message = json.loads(raw)
    except (TypeError, ValueError):
        return {"type": "<non-json>", "raw": str(raw)[:200]}
    return message if isinstance(message, dict) else {"type": "<non-object>", "raw": message}


def is_welcome(message: dict[str, Any]) -> bool:
    return contains(message, BUILTIN_WELCOME)


async def _await_type(ws: ClientConnection, timeout: float, accept, rec: _Recorder, messages: list) -> bool:
    """Receive until ``accept(message)`` holds (True) or the timeout runs out (False)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await _recv_json(ws, left)
        except TimeoutError:
            return False
        messages.append(message)
        rec.add("message", str(message.get("type")))
        if accept(message):
            return True
    return False


AGENT_END = ("agent_completed", "agent_error", "error_message")


async def _flows(ws: ClientConnection, options: ProbeOptions, rec: _Recorder, messages: list) -> Flows:
    """A ``user_message`` through an agent, then a ``heartbeat``."""
    await ws.send(json.dumps({"type": "user_message", "data": {"content": "replica end-to-end check"}}))
    rec.add("user_message_sent")
    seen = len(messages)
    await _await_type(ws, options.flow_timeout_s, lambda m: m.get("type") in AGENT_END, rec, messages)
    events = [str(m.get("type")) for m in messages[seen:] if str(m.get("type")).startswith(("agent_", "tool_"))]
    await ws.send(json.dumps({"type": "heartbeat"}))
    rec.add("heartbeat_sent")
    ack = await _await_type(ws, options.flow_timeout_s, lambda m: m.get("type") == "heartbeat_ack", rec, messages)
    return Flows(agent_events=events, heartbeat_ack=ack)


async def _status(base_url: str, path: str, timeout: float) -> int:
    """The status ``GET base_url + path`` answers; raises :class:`http1.HTTPError`."""
    response = await http1.request("GET", base_url.rstrip("/") + path, timeout=timeout, tls=tls_for(base_url))
    return response.status


async def _health(base_url: str, path: str, options: ProbeOptions, rec: _Recorder) -> int | None:
    """The health check's status (None: no answer)."""
    try:
        status = await _status(base_url, path, options.health_timeout_s)
    except http1.HTTPError as exc:
        rec.add("health", f"error: {exc.reason}")
        return None
    rec.add("health", str(status))
    return status


async def _nothing() -> None:
    return None


async def probe(base_url: str, token: str | None, options: ProbeOptions | None = None) -> Observation:
    """Run the staging test's steps against ``base_url`` (``http(s)://host:port``).

    The health check and the connection without a token go side by side (neither
    sees the other: one is a plain GET); the connection with the token starts once
    both are over, so the server's log from its connect on is its own."""
    options = options or ProbeOptions()
    rec = _Recorder()
    url = ws_url(base_url, options.ws_path)
    health_status, no_token = await asyncio.gather(
        _health(base_url, options.health_path, options, rec) if options.health_path is not None else _nothing(),
        _check_no_token(url, options, rec) if options.check_no_token else _nothing(),
    )

    headers = e2e_headers(token if options.with_token else None) if options.e2e_headers else {}
    if options.with_token and token and not options.e2e_headers:
        headers["Authorization"] = f"Bearer {token}"
    messages: list[dict[str, Any]] = []
    welcome = pong = False
    close: tuple[int, str, str | None] | None = None
    t_connect = rec.add("connect")
    t_accept: float | None = None
    t_close: float | None = None
    try:
        ws = await connect(
            url,
            additional_headers=headers,
            open_timeout=options.open_timeout_s,
            ping_interval=options.ping_interval_s,
            ping_timeout=options.ping_timeout_s,
            close_timeout=0.5,
            proxy=ws_proxy(url),
        )
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        outcome = _handshake_failure(exc)
        rec.add("handshake", outcome)
        return Observation(
            base_url=base_url,
            url=url,
            fingerprint=Fingerprint(handshake=outcome),
            started_at=rec.started_at,
            health_status=health_status,
            no_token_handshake=no_token,
            headers_sent=len(headers),
            has_authorization="Authorization" in headers,
            timeline=rec.events,
        )
    t_accept = rec.add("handshake", ACCEPTED)
    t_welcome: float | None = None
    flows: Flows | None = None
    try:
        if options.welcome is not None:
            wanted = options.welcome
            welcome = await _await_type(ws, options.welcome_timeout_s, lambda m: contains(m, wanted), rec, messages)
            t_welcome = rec.add("welcome" if welcome else "welcome_timeout")
        if options.ping is not None and (welcome or options.welcome is None):
            await ws.send(json.dumps(options.ping))
            rec.add("ping_sent")
            pong = await _await_type(ws, options.pong_timeout_s, lambda m: contains(m, options.pong), rec, messages)
            rec.add("pong" if pong else "pong_timeout")
            if pong and options.e2e_flows:
                flows = await _flows(ws, options, rec, messages)
    except ConnectionClosed as exc:
        t_close = rec.now_ms()
        close = _close_of(exc)
        rec.add("closed", f"{close[0]} {close[1]!r} by {close[2] or 'nobody'}")
    finally:
        await ws.close()
    fingerprint = Fingerprint(
        handshake=ACCEPTED,
        welcome=welcome,
        pong=pong,
        close_code=close[0] if close else None,
        close_reason=close[1] if close else None,
        closed_by=close[2] if close else None,
        close_after_ms=round(t_close - t_accept, 1) if close and t_close is not None else None,
    )
    return Observation(
        base_url=base_url,
        url=url,
        fingerprint=fingerprint,
        started_at=rec.started_at,
        welcome_ms=round(t_welcome - t_connect, 1) if welcome and t_welcome is not None else None,
        flows=flows,
        health_status=health_status,
        no_token_handshake=no_token,
        headers_sent=len(headers),
        has_authorization="Authorization" in headers,
        timeline=rec.events,
        messages=messages,
        connect_ms=round(t_accept - t_connect, 1),
    )


# ----------------------------------------------------------------------------- follow-up


async def _ready_status(base_url: str) -> int | None:
    try:
        return await _status(base_url, "/health/ready", READY_TIMEOUT_S)
    except http1.HTTPError:
        return None


READY_POLL_S = 0.1
#: A readiness endpoint answers at once or not at all.
READY_TIMEOUT_S = 1.0


async def follow_up(
    base_url: str, token: str | None, options: ProbeOptions, wait_s: float, *, again: bool = True
) -> FollowUp:
    """``/health/ready`` now; with ``again``, once it answers 200 or ``wait_s`` has passed,
    the same probe again (not when the server never answered: it would show nothing new)."""
    first = later = await _ready_status(base_url)
    if not again:
        return FollowUp(ready_status=first, ready_status_later=first)
    deadline = time.monotonic() + wait_s
    while later != 200 and time.monotonic() < deadline:
        await asyncio.sleep(READY_POLL_S)  # a bounded poll of the backend's readiness
        later = await _ready_status(base_url)
    if first is None and later is None:
        return FollowUp()
    second = await probe(base_url, token, options.model_copy(update={"check_no_token": False, "e2e_flows": False}))
    return FollowUp(ready_status=first, ready_status_later=later, second=second.fingerprint)
