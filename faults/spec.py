"""The failpoint spec language and the defect list: pure, strict parsers.

A spec is a list of ``point=action`` items separated by ``;`` or newlines;
whitespace around items, points, actions and arguments is ignored::

    startup.supervisor=skip; ws.auth=raise(TypeError: boom)
    startup.database = delay(250ms)

Actions:

``delay(<duration>)``
    ``await asyncio.sleep`` (durations: ``250ms``, ``2s``, ``1.5s``, ``1m``).
``raise(<ExceptionType>[: message])``
    raise a builtin exception type (a subclass of ``Exception``).
``skip``
    leave the service ``None`` (only ``startup.supervisor`` and
    ``startup.thread_service``).
``hang``
    never complete.
``block(<duration>)``
    a synchronous ``time.sleep`` on the event loop (starves keepalive pings).
``block(redis)``
    a synchronous redis-py ``GET`` on the event loop, through the backend's
    Redis URL: with Redis hung behind the fault proxy it blocks the whole loop.

Where the points sit: ``startup.*`` at the start of each startup phase
(``startup.dependencies`` is the auth-config phase; ``supervisor`` and
``thread_service`` inside SERVICES). In the handlers: ``ws.accept`` just before
``accept()``, ``ws.auth`` before authentication, ``ws.auth_log`` on the auth debug
log line, ``ws.startup_wait`` before the startup wait (the readiness check in
``recommended``), ``ws.dependency_check`` before the service check, ``ws.welcome``
before the welcome is sent, ``ws.message_loop`` on every client message received.
A user's own handler hits only the points it calls itself.

Every error names the bad part: ``unknown failpoint 'ws.autth' (known: ...)``.
"""

from __future__ import annotations

import builtins
import difflib
import re
from dataclasses import dataclass, field
from typing import Literal, Union

STARTUP_POINTS: tuple[str, ...] = (
    "startup.dependencies",
    "startup.database",
    "startup.cache",
    "startup.supervisor",
    "startup.thread_service",
    "startup.finalize",
)
HANDLER_POINTS: tuple[str, ...] = (
    "ws.accept",
    "ws.auth",
    "ws.auth_log",
    "ws.startup_wait",
    "ws.dependency_check",
    "ws.welcome",
    "ws.message_loop",
)
KNOWN_POINTS: tuple[str, ...] = STARTUP_POINTS + HANDLER_POINTS
SKIPPABLE_POINTS: frozenset[str] = frozenset({"startup.supervisor", "startup.thread_service"})
ACTION_NAMES: tuple[str, ...] = ("delay", "raise", "skip", "hang", "block")

KNOWN_DEFECTS: dict[str, str] = {
    "auth-log-json": (
        "the auth step's debug log line json.dumps() a raw WebSocketState: "
        "TypeError reaches the catch-all (1011 'Internal error')"
    ),
}


class SpecError(ValueError):
    """A failpoint spec or a defect list that cannot be accepted."""


@dataclass(frozen=True)
class Delay:
    seconds: float
    kind: Literal["delay"] = "delay"

    def __str__(self) -> str:
        return f"delay({_format_duration(self.seconds)})"


@dataclass(frozen=True)
class Raise:
    exception: str
    message: str = ""
    kind: Literal["raise"] = "raise"

    def build(self) -> Exception:
        exc_type = getattr(builtins, self.exception)
        return exc_type(self.message) if self.message else exc_type()

    def __str__(self) -> str:
        return f"raise({self.exception}: {self.message})" if self.message else f"raise({self.exception})"


@dataclass(frozen=True)
class Skip:
    kind: Literal["skip"] = "skip"

    def __str__(self) -> str:
        return "skip"


@dataclass(frozen=True)
class Hang:
    kind: Literal["hang"] = "hang"

    def __str__(self) -> str:
        return "hang"


@dataclass(frozen=True)
class Block:
    """Block the event loop: ``seconds`` of ``time.sleep``, or (``seconds`` None) a sync Redis call."""

    seconds: float | None = None
    target: Literal["sleep", "redis"] = "sleep"
    kind: Literal["block"] = "block"

    def __str__(self) -> str:
        return "block(redis)" if self.target == "redis" else f"block({_format_duration(self.seconds or 0)})"


Action = Union[Delay, Raise, Skip, Hang, Block]


@dataclass(frozen=True)
class FailpointSpec:
    """A parsed spec: at most one action per point, in the order written."""

    actions: dict[str, Action] = field(default_factory=dict)

    def get(self, point: str) -> Action | None:
        return self.actions.get(point)

    def __bool__(self) -> bool:
        return bool(self.actions)

    def __str__(self) -> str:
        return "; ".join(f"{point}={action}" for point, action in self.actions.items())


_DURATION = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)(ms|s|m)$")
_ACTION = re.compile(r"^([a-z_]+)\s*(?:\((.*)\))?$", re.DOTALL)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_duration(text: str) -> float:
    """``250ms`` → 0.25, ``2s`` → 2.0, ``1.5s`` → 1.5, ``1m`` → 60.0."""
    match = _DURATION.match(text.strip())
    if not match:
        raise SpecError(f"bad duration {text.strip()!r} (use e.g. 250ms, 2s, 1.5s)")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


def _format_duration(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:g}ms" if ms < 1000 else f"{seconds:g}s"


def _known(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names)


def _did_you_mean(name: str, names: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _builtin_exception(name: str, message: str) -> str:
    if not _IDENT.match(name):
        raise SpecError(f"bad exception type {name!r}")
    candidate = getattr(builtins, name, None)
    if not (isinstance(candidate, type) and issubclass(candidate, Exception)):
        raise SpecError(f"unknown exception type {name!r} (builtin exception types only, e.g. TypeError, RuntimeError)")
    try:
        candidate(message) if message else candidate()
    except Exception:  # e.g. UnicodeDecodeError needs five arguments
        raise SpecError(f"exception type {name!r} cannot be raised with a message") from None
    return name


def parse_action(point: str, text: str) -> Action:
    """Parse the right-hand side of one ``point=action`` item."""
    item = f"{point}={text}"
    match = _ACTION.match(text)
    if not match:
        raise SpecError(f"bad action {text!r} in {item} (known actions: {_known(ACTION_NAMES)})")
    name, arg = match.group(1), match.group(2)
    arg = None if arg is None else arg.strip()
    if name not in ACTION_NAMES:
        raise SpecError(f"unknown action {name!r} in {item} (known actions: {_known(ACTION_NAMES)})")
    if name in ("skip", "hang"):
        if arg is not None:
            raise SpecError(f"{name!r} takes no argument in {item}")
        if name == "skip" and point not in SKIPPABLE_POINTS:
            raise SpecError(f"'skip' is not allowed at {point} (only at {', '.join(sorted(SKIPPABLE_POINTS))})")
        return Skip() if name == "skip" else Hang()
    if not arg:
        raise SpecError(f"{name!r} needs an argument in {item}, e.g. {name}({'TypeError: boom' if name == 'raise' else '250ms'})")
    if name == "delay":
        try:
            return Delay(parse_duration(arg))
        except SpecError:
            raise SpecError(f"bad duration {arg!r} in {item}") from None
    if name == "block":
        if arg == "redis":
            return Block(None, "redis")
        try:
            return Block(parse_duration(arg))
        except SpecError:
            raise SpecError(f"bad duration {arg!r} in {item} (block takes a duration or 'redis')") from None
    exc_name, _, message = arg.partition(":")
    return Raise(_builtin_exception(exc_name.strip(), message.strip()), message.strip())


def parse_spec(text: str) -> FailpointSpec:
    """Parse a whole spec strictly; an empty or blank spec means no failpoints."""
    actions: dict[str, Action] = {}
    for raw in re.split(r"[;\n]", text or ""):
        item = raw.strip()
        if not item:
            continue
        point, sep, action_text = item.partition("=")
        point = point.strip()
        if not sep:
            raise SpecError(f"bad item {item!r}: expected point=action")
        if point not in KNOWN_POINTS:
            raise SpecError(
                f"unknown failpoint {point!r}{_did_you_mean(point, KNOWN_POINTS)} (known: {_known(KNOWN_POINTS)})"
            )
        if point in actions:
            raise SpecError(f"failpoint {point!r} given twice")
        actions[point] = parse_action(point, action_text.strip())
    return FailpointSpec(actions)


def parse_defects(text: str) -> frozenset[str]:
    """Parse ``REPLICA_DEFECTS``: a comma list of known defect names (blank: none)."""
    if not (text or "").strip():
        return frozenset()
    names: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            raise SpecError(f"empty item in defect list {text!r}")
        if name not in KNOWN_DEFECTS:
            known = list(KNOWN_DEFECTS)
            raise SpecError(f"unknown defect {name!r}{_did_you_mean(name, known)} (known: {_known(known)})")
        names.append(name)
    return frozenset(names)
