"""Failpoints at run time: perform the action a parsed spec names for a point.

``await failpoints.hit("ws.auth")`` does nothing unless the spec names that
point. ``skip`` is not performed by ``hit``: the code that owns the point asks
``failpoints.skips(point)`` and leaves its service ``None``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from faults.spec import Block, Delay, FailpointSpec, Hang, KNOWN_POINTS, Raise, Skip, parse_spec

logger = logging.getLogger("replica.failpoints")


class Failpoints:
    def __init__(self, spec: FailpointSpec | None = None, *, redis_url: str | None = None) -> None:
        self.spec = spec or FailpointSpec()
        self.redis_url = redis_url

    @classmethod
    def parse(cls, text: str, *, redis_url: str | None = None) -> "Failpoints":
        return cls(parse_spec(text), redis_url=redis_url)

    def _action(self, point: str):
        if point not in KNOWN_POINTS:
            raise KeyError(f"unknown failpoint {point!r}")
        return self.spec.get(point)

    def skips(self, point: str) -> bool:
        skip = isinstance(self._action(point), Skip)
        if skip:
            logger.warning("failpoint %s: skip", point)
        return skip

    async def hit(self, point: str) -> None:
        action = self._action(point)
        if action is None or isinstance(action, Skip):
            return
        logger.warning("failpoint %s: %s", point, action)
        if isinstance(action, Delay):
            await asyncio.sleep(action.seconds)
        elif isinstance(action, Hang):
            await asyncio.Event().wait()
        else:
            self._perform_sync(action)

    def hit_sync(self, point: str) -> None:
        """The synchronous form, for code that cannot await (a ``delay`` sleeps synchronously here)."""
        action = self._action(point)
        if action is None or isinstance(action, Skip):
            return
        logger.warning("failpoint %s: %s", point, action)
        if isinstance(action, Delay):
            time.sleep(action.seconds)
        elif isinstance(action, Hang):
            threading.Event().wait()
        else:
            self._perform_sync(action)

    def _perform_sync(self, action: Raise | Block) -> None:
        if isinstance(action, Raise):
            raise action.build()
        if action.target == "sleep":
            time.sleep(action.seconds or 0)
            return
        self._block_on_redis()

    def _block_on_redis(self) -> None:
        """A synchronous redis-py call on the event loop, as careless code would make it."""
        import redis

        if not self.redis_url:
            raise RuntimeError("block(redis) needs the backend's Redis URL")
        client = redis.Redis.from_url(self.redis_url, socket_timeout=60, socket_connect_timeout=60)
        try:
            client.get("replica:failpoint:block")
        finally:
            client.close()
