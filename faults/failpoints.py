"""Failpoints at run time: ``failpoint``, the process's one set of armed points.

::

    from faults import failpoint

    if await failpoint("startup.cache"):   # async code; True when armed with ``skip``
        return
    if failpoint.sync("ws.publish"):        # sync code; same semantics
        return

Armed from ``REPLICA_FAILPOINTS`` (read once, at the first call; checked against
``REPLICA_FAILPOINTS_DECLARED`` when that is set), or by the program:
``failpoint.arm(spec, declared=...)``, ``failpoint.disarm()``, and
``with failpoint.armed(spec): ...`` in tests. Call ``failpoint.load_env()`` at
start-up to have a bad spec stop the program before it serves.

When nothing is armed at a point, a call is one dict lookup: the async form
returns an already-completed awaitable, so no coroutine is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Awaitable, Iterable, Iterator, Mapping

from faults.actions import Action
from faults.spec import FailpointSpec, check_point, parse_declared, parse_spec

ENV_SPEC = "REPLICA_FAILPOINTS"
ENV_DECLARED = "REPLICA_FAILPOINTS_DECLARED"

logger = logging.getLogger("faults.failpoints")


def _done_future(value: bool) -> "asyncio.Future[bool]":
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
        future.set_result(value)
        return future
    finally:
        loop.close()


class _Completed:
    """An awaitable that is already done: ``await`` returns False at once, in any event loop.

    Its ``__await__`` is the C iterator of a finished future (no loop is touched),
    and it is not a future itself, so ``asyncio.wait_for`` and ``gather`` accept it too.
    """

    __slots__ = ()
    __await__ = _done_future(False).__await__


_NOT_SKIPPED = _Completed()


class _FromEnvironment(dict):  # type: ignore[type-arg]
    """The armed points before the first call: asking arms them from the environment."""

    def __init__(self, owner: "Failpoints") -> None:
        super().__init__()
        self.owner = owner

    def get(self, point: str, default: Action | None = None) -> Action | None:  # type: ignore[override]
        self.owner.load_env()
        return self.owner._armed.get(point, default)


class Failpoints:
    """Named points in a program where an armed spec injects an action."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._environ = environ
        self._spec = FailpointSpec()
        self._armed: dict[str, Action] = _FromEnvironment(self)

    def __call__(self, point: str) -> Awaitable[bool]:
        """``await failpoint(point)``: perform the armed action; True means skip the step."""
        action = self._armed.get(point)
        if action is None:
            return _NOT_SKIPPED
        return self._run(point, action)

    async def _run(self, point: str, action: Action) -> bool:
        logger.warning("failpoint %s: %s", point, action)
        return await action.run()

    def sync(self, point: str) -> bool:
        """The synchronous form, for code that cannot await (``delay`` sleeps the thread)."""
        action = self._armed.get(point)
        if action is None:
            return False
        logger.warning("failpoint %s: %s", point, action)
        return action.run_sync()

    @property
    def spec(self) -> FailpointSpec:
        """What is armed now (the environment is not read for this)."""
        return self._spec

    def arm(self, spec: str | FailpointSpec, *, declared: Iterable[str] | None = None) -> FailpointSpec:
        """Arm ``spec`` in place of whatever was armed; ``declared``: the only points it may name
        (default: ``REPLICA_FAILPOINTS_DECLARED`` when set). Raises :class:`FailpointError`."""
        if declared is None and self._environ.get(ENV_DECLARED, "").strip():
            declared = parse_declared(self._environ[ENV_DECLARED])
        if isinstance(spec, FailpointSpec):
            parsed = spec
            for point in spec.actions:
                check_point(point, declared)
        else:
            parsed = parse_spec(spec, declared=declared)
        self._spec = parsed
        self._armed = dict(parsed.actions)
        if parsed:
            logger.warning("failpoints armed: %s", parsed)
        return parsed

    def disarm(self) -> None:
        """Nothing armed any more (the environment is not read again)."""
        self._spec = FailpointSpec()
        self._armed = {}

    def load_env(self) -> FailpointSpec:
        """Arm ``REPLICA_FAILPOINTS`` now, so that a bad spec fails here and not at the first call."""
        return self.arm(self._environ.get(ENV_SPEC, ""))

    @contextlib.contextmanager
    def armed(self, spec: str | FailpointSpec, *, declared: Iterable[str] | None = None) -> Iterator[FailpointSpec]:
        """Arm ``spec`` for the ``with`` block, then restore what was armed before."""
        previous_spec, previous_armed = self._spec, self._armed
        try:
            yield self.arm(spec, declared=declared)
        finally:
            self._spec, self._armed = previous_spec, previous_armed


failpoint = Failpoints()
