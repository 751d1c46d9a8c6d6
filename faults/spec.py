"""The failpoint spec language: a pure, strict parser.

A spec is a list of ``point=action`` items separated by ``;`` or newlines;
whitespace around items, points, actions and arguments is ignored::

    startup.cache=skip; ws.publish=raise(TypeError: boom)
    startup.database = delay(250ms)

A point is a dotted name (letters, digits, ``_`` and ``-``: ``startup.cache``,
``ws.publish``). The actions are listed in :mod:`faults.actions`. Given the
points an application declares, a spec naming any other point is refused.
Every error is a :class:`FailpointError` that names the bad part::

    ws.autth=skip: unknown failpoint 'ws.autth'; did you mean 'ws.auth'? (declared: ws.auth, ws.welcome)
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Iterable

from faults.actions import Action, FailpointError, parse_action, shorten

MAX_SPEC_CHARS = 64 * 1024

_POINT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*$")


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


def _did_you_mean(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_point(point: str, declared: Iterable[str] | None = None) -> str:
    """``point`` if it is a well-formed name (and, given ``declared``, one of them)."""
    if not _POINT.fullmatch(point):
        raise FailpointError(f"bad failpoint name {shorten(point)!r} (use a dotted name such as ws.publish)")
    if declared is not None:
        names = list(declared)
        if point not in names:
            raise FailpointError(
                f"unknown failpoint {shorten(point)!r}{_did_you_mean(point, names)} (declared: {', '.join(names) or 'none'})"
            )
    return point


def parse_declared(text: str) -> tuple[str, ...]:
    """A comma list of point names, e.g. ``REPLICA_FAILPOINTS_DECLARED="startup.cache,ws.publish"``."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        check_point(name)
    return names


def parse_spec(text: str, *, declared: Iterable[str] | None = None) -> FailpointSpec:
    """Parse a whole spec strictly; an empty or blank spec arms nothing."""
    text = text or ""
    if len(text) > MAX_SPEC_CHARS:
        raise FailpointError(f"failpoint spec of {len(text)} characters (at most {MAX_SPEC_CHARS})")
    names = None if declared is None else tuple(declared)
    actions: dict[str, Action] = {}
    for raw in re.split(r"[;\n]", text):
        item = raw.strip()
        if not item:
            continue
        point, sep, action_text = item.partition("=")
        point = point.strip()
        if not sep:
            raise FailpointError(f"bad item {shorten(item)!r}: expected point=action")
        try:
            check_point(point, names)
            if point in actions:
                raise FailpointError(f"failpoint {point!r} given twice")
            actions[point] = parse_action(action_text.strip())
        except FailpointError as exc:
            raise FailpointError(f"{shorten(item, 120)}: {exc}") from None
    return FailpointSpec(actions)
