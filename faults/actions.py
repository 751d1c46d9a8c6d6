"""What an armed failpoint does: one small class per action, each parsing its own
argument and performing itself, plus the registry the spec parser looks names up in.

====================  =====================================================
``delay(250ms)``      ``await asyncio.sleep`` (``time.sleep`` in sync code)
``raise``             raise ``RuntimeError("failpoint")``
``raise(T[: msg])``   raise the builtin exception type ``T`` (a subclass of ``Exception``)
``skip``              nothing; the call returns True so the caller leaves its step out
``hang``              never return
``block(500ms)``      ``time.sleep`` even in async code: the event loop stalls
====================  =====================================================

An application adds fixed actions of its own with :func:`register_action`
(e.g. the built-in backend's ``block(redis)``). Durations: ``250ms``, ``2s``,
``1.5s``, ``1m``.
"""

from __future__ import annotations

import asyncio
import builtins
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

MAX_DURATION_S = 24 * 3600.0

_DURATION = re.compile(r"^(\d{1,9}(?:\.\d{1,9})?|\.\d{1,9})(ms|s|m)$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FailpointError(ValueError):
    """A failpoint spec that cannot be accepted; the message names the bad part."""


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for an error message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_duration(text: str) -> float:
    """``250ms`` → 0.25, ``2s`` → 2.0, ``1.5s`` → 1.5, ``1m`` → 60.0 (at most a day)."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise FailpointError(f"bad duration {shorten(text.strip())!r} (use e.g. 250ms, 2s, 1.5s)")
    value, unit = float(match.group(1)), match.group(2)
    seconds = value / 1000 if unit == "ms" else value * 60 if unit == "m" else value
    if seconds > MAX_DURATION_S:
        raise FailpointError(f"duration {text.strip()!r} is longer than a day")
    return seconds


def format_duration(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:g}ms" if ms < 1000 else f"{seconds:g}s"


class Action:
    """An action: ``run()`` in async code, ``run_sync()`` in sync code; both return
    True when the caller should skip its step. The default ``run`` performs the
    synchronous form on the event loop."""

    name: ClassVar[str]
    example: ClassVar[str] = ""  # shown when a required argument is missing

    @classmethod
    def parse(cls, arg: str | None) -> "Action":
        """Build the action from the text between its parentheses (None: no parentheses)."""
        if arg is not None:
            raise FailpointError(f"{cls.name!r} takes no argument")
        return cls()

    async def run(self) -> bool:
        return self.run_sync()

    def run_sync(self) -> bool:
        raise NotImplementedError


def _required(cls: type[Action], arg: str | None) -> str:
    if not arg:
        raise FailpointError(f"{cls.name!r} needs an argument, e.g. {cls.example}")
    return arg


@dataclass(frozen=True)
class Delay(Action):
    seconds: float
    text: str = field(default="", compare=False)  # as written, so that str() gives it back exactly
    name: ClassVar[str] = "delay"
    example: ClassVar[str] = "delay(250ms)"

    @classmethod
    def parse(cls, arg: str | None) -> "Delay":
        return cls(parse_duration(_required(cls, arg)), arg)

    async def run(self) -> bool:
        await asyncio.sleep(self.seconds)
        return False

    def run_sync(self) -> bool:
        time.sleep(self.seconds)
        return False

    def __str__(self) -> str:
        return f"delay({self.text or format_duration(self.seconds)})"


@dataclass(frozen=True)
class Raise(Action):
    """Raise a builtin exception; bare ``raise`` raises ``RuntimeError("failpoint")``."""

    exception: str = "RuntimeError"
    message: str = "failpoint"
    name: ClassVar[str] = "raise"
    example: ClassVar[str] = "raise(TypeError: boom)"

    @classmethod
    def parse(cls, arg: str | None) -> "Raise":
        if arg is None:
            return cls()
        type_name, _, message = _required(cls, arg).partition(":")
        type_name, message = type_name.strip(), message.strip()
        if not _IDENT.fullmatch(type_name):
            raise FailpointError(f"bad exception type {shorten(type_name)!r}")
        candidate = getattr(builtins, type_name, None)
        if not (isinstance(candidate, type) and issubclass(candidate, Exception)):
            raise FailpointError(
                f"unknown exception type {shorten(type_name)!r} (builtin exception types only, e.g. TypeError, RuntimeError)"
            )
        try:
            candidate(message) if message else candidate()
        except Exception:  # e.g. UnicodeDecodeError needs five arguments
            raise FailpointError(f"exception type {type_name!r} cannot be raised with a message") from None
        return cls(type_name, message)

    def build(self) -> Exception:
        exc_type = getattr(builtins, self.exception)
        return exc_type(self.message) if self.message else exc_type()

    def run_sync(self) -> bool:
        raise self.build()

    def __str__(self) -> str:
        return f"raise({self.exception}: {self.message})" if self.message else f"raise({self.exception})"


@dataclass(frozen=True)
class Skip(Action):
    name: ClassVar[str] = "skip"

    def run_sync(self) -> bool:
        return True

    def __str__(self) -> str:
        return "skip"


@dataclass(frozen=True)
class Hang(Action):
    name: ClassVar[str] = "hang"

    async def run(self) -> bool:
        await asyncio.Event().wait()
        return False  # pragma: no cover - never reached

    def run_sync(self) -> bool:
        threading.Event().wait()
        return False  # pragma: no cover - never reached

    def __str__(self) -> str:
        return "hang"


@dataclass(frozen=True)
class Block(Action):
    """``time.sleep`` in async code too: nothing else on the event loop runs meanwhile."""

    seconds: float
    text: str = field(default="", compare=False)
    name: ClassVar[str] = "block"
    example: ClassVar[str] = "block(500ms)"

    @classmethod
    def parse(cls, arg: str | None) -> "Block":
        return cls(parse_duration(_required(cls, arg)), arg)

    def run_sync(self) -> bool:
        time.sleep(self.seconds)
        return False

    def __str__(self) -> str:
        return f"block({self.text or format_duration(self.seconds)})"


ACTIONS: dict[str, type[Action]] = {cls.name: cls for cls in (Delay, Raise, Skip, Hang, Block)}
_EXTRA: dict[str, Callable[[], Action]] = {}


def register_action(form: str, make: Callable[[], Action]) -> None:
    """Add a fixed action such as ``block(redis)`` or ``crash``; ``make()`` builds it when a spec names it.

    Registering the same form again replaces it.
    """
    if _normal(form) != form:
        raise ValueError(f"write the action as {_normal(form)!r}")
    _EXTRA[form] = make


def action_names() -> list[str]:
    return [*ACTIONS, *_EXTRA]


_ACTION = re.compile(r"^([a-z_]+)\s*(?:\((.*)\))?$", re.DOTALL)


def _normal(text: str) -> str:
    """``block( redis )`` → ``block(redis)``; text that is not ``name[(arg)]`` is returned as is."""
    match = _ACTION.fullmatch(text.strip())
    if not match:
        return text
    name, arg = match.group(1), match.group(2)
    return name if arg is None else f"{name}({arg.strip()})"


def parse_action(text: str) -> Action:
    """Parse the right-hand side of one ``point=action`` item."""
    match = _ACTION.fullmatch(text)
    if not match:
        raise FailpointError(f"bad action {shorten(text)!r} (known actions: {', '.join(action_names())})")
    extra = _EXTRA.get(_normal(text))
    if extra is not None:
        return extra()
    name, arg = match.group(1), match.group(2)
    if name not in ACTIONS:
        raise FailpointError(f"unknown action {shorten(name)!r} (known actions: {', '.join(action_names())})")
    return ACTIONS[name].parse(None if arg is None else arg.strip())
