"""The seed's six success criteria, checked on repeated runs of one handler.

The seed declared its fix successful when: no 1011 internal errors; welcome
messages within 2 seconds consistently; ``test_001_websocket_connection_real``
passes 100 % of the time (as written: HTTP 403 without a token, a welcome, a
pong); all WebSocket E2E tests pass (a ``user_message`` runs an agent from
``agent_started`` to ``agent_completed``; a ``heartbeat`` gets its ack); no
service dependency failures in the logs; and all of it on every repeat.
Pure functions over :class:`~replica.runner.RunResult`.
"""

from __future__ import annotations

import re
from typing import Callable

from pydantic import BaseModel

from replica.evidence import ServerError
from replica.runner import RunResult

WELCOME_WITHIN_MS = 2000.0
_DEPENDENCY = re.compile(r"depend|unavailable|supervisor|thread_service|redis|postgres|database", re.IGNORECASE)


class Criterion(BaseModel):
    key: str
    title: str
    passed: bool
    detail: str


def is_dependency_error(error: ServerError) -> bool:
    """An error that says a service the backend depends on failed or was missing."""
    text = f"{error.message} {error.exception_type or ''} {error.exception_message or ''}"
    return bool(_DEPENDENCY.search(text))


def no_1011(r: RunResult) -> bool:
    return r.observed.close_code != 1011


def welcome_in_time(r: RunResult) -> bool:
    return r.observation.welcome_ms is not None and r.observation.welcome_ms < WELCOME_WITHIN_MS


def passes_test_001(r: RunResult) -> bool:
    return r.evidence.no_token == "http_403" and r.observed.welcome and r.observed.pong


def e2e_flows_pass(r: RunResult) -> bool:
    flows = r.observation.flows
    return flows is not None and flows.agent_completed and flows.heartbeat_ack


def no_dependency_errors(r: RunResult) -> bool:
    return not any(is_dependency_error(e) for e in r.evidence.server_errors)


def _why_not(r: RunResult, key: str) -> str:
    """What one failing run showed for a criterion."""
    fp = r.observed
    if key == "no-1011":
        return f'1011 "{fp.close_reason}"'
    if key == "welcome-2s":
        return "no welcome" if r.observation.welcome_ms is None else f"welcome after {r.observation.welcome_ms / 1000:.2f} s"
    if key == "test-001":
        if r.evidence.no_token != "http_403":
            return f"no token → {r.evidence.no_token or 'not tried'}"
        return "no welcome" if not fp.welcome else "no pong"
    if key == "e2e-flows":
        flows = r.observation.flows
        if flows is None:
            return "not reached"
        return "agent: " + (" → ".join(flows.agent_events) or "nothing") + ("" if flows.heartbeat_ack else "; no heartbeat_ack")
    error = next(e for e in r.evidence.server_errors if is_dependency_error(e))
    return error.line()


_CHECKS: tuple[tuple[str, str, Callable[[RunResult], bool]], ...] = (
    ("no-1011", "no 1011 over the repeats", no_1011),
    ("welcome-2s", "welcome within 2 s", welcome_in_time),
    ("test-001", "test_001 as written (403 without a token, welcome, pong)", passes_test_001),
    ("e2e-flows", "other E2E flows (agent_started … agent_completed, heartbeat ack)", e2e_flows_pass),
    ("no-dependency-errors", "no dependency error in the server log", no_dependency_errors),
)
ALL_REPEATS = ("all-repeats", "100 % over the repeats")
TITLES: tuple[tuple[str, str], ...] = tuple((key, title) for key, title, _ in _CHECKS) + (ALL_REPEATS,)


def evaluate(results: list[RunResult]) -> list[Criterion]:
    """The six criteria over the repeats of one handler (``results`` non-empty)."""
    n = len(results)
    criteria = []
    for key, title, check in _CHECKS:
        failing = [r for r in results if not check(r)]
        if failing:
            detail = f"{n - len(failing)}/{n} · {_why_not(failing[0], key)}"
        elif key == "welcome-2s":
            detail = f"{n}/{n} · ≤ {max(r.observation.welcome_ms or 0 for r in results) / 1000:.2f} s"
        else:
            detail = f"{n}/{n}"
        criteria.append(Criterion(key=key, title=title, passed=not failing, detail=detail))
    clean = sum(all(check(r) for _k, _t, check in _CHECKS) for r in results)
    criteria.append(Criterion(key=ALL_REPEATS[0], title=ALL_REPEATS[1], passed=clean == n, detail=f"{clean}/{n}"))
    return criteria
