"""The tiny interface every toxic implements.

A toxic is a *kind* (its type name, its attributes and how they are checked)
plus a ``pipe`` coroutine that moves chunks from a :class:`Stub`'s input to its
output. One pipe runs per connection, direction and toxic; it is cancelled and
started again when the chain changes, so a pipe keeps nothing it cannot lose:
the chunk it is working on stays held by the stub until ``forward``/``drop``,
and counters that must survive a restart live in ``stub.state``. A pipe starts
when its first chunk (or EOF) arrives, unless ``acts_when_idle`` says it has
something to do before that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Protocol


class Chunk:
    """A piece of the stream and the loop time it arrived at the proxy."""

    __slots__ = ("data", "ts")

    def __init__(self, data: bytes, ts: float) -> None:
        self.data = data
        self.ts = ts


class Stub(Protocol):
    """What a pipe sees of its place in the chain."""

    rng: random.Random
    state: dict[str, Any]

    def now(self) -> float:
        """The event loop's clock, in seconds."""

    async def read(self) -> Chunk | None:
        """The held chunk, else the next one (waiting for it); ``None`` at EOF."""

    def forward(self, size: int | None = None) -> None:
        """Send the first ``size`` bytes of the held chunk on (all of it when None)."""

    def drop(self) -> None:
        """Discard the held chunk."""

    def finish(self) -> None:
        """Pass EOF on to the rest of the chain (after ``read`` returned None)."""

    def close_connection(self) -> None:
        """Close both sides of the connection (FIN), flushing what was sent."""

    def reset_connection(self) -> None:
        """Close both sides with SO_LINGER=0 so the peers see a TCP RST."""


@dataclass(frozen=True)
class Attribute:
    """One integer attribute: its JSON name, its Go type and its range of valid values."""

    name: str
    go_type: str = "int64"
    minimum: int | None = 0
    maximum: int = 10**12  # ~31 years in ms, 1 TB in bytes: beyond is a typo, and timers overflow


class Toxic:
    """Base class: a toxic that passes data through unchanged."""

    type_name: ClassVar[str] = "noop"
    go_struct: ClassVar[str] = "NoopToxic"
    attributes: ClassVar[tuple[Attribute, ...]] = ()

    @classmethod
    def check(cls, values: Mapping[str, int]) -> str | None:
        """Cross-attribute validation; an error message or None."""
        return None

    def acts_when_idle(self, attrs: Mapping[str, int]) -> bool:
        """True if the pipe must run before any data arrives (e.g. a timer)."""
        return False

    async def pipe(self, stub: Stub, attrs: Mapping[str, int]) -> None:
        """Move data from input to output; return after passing EOF on."""
        while await stub.read() is not None:
            stub.forward()
        stub.finish()

    def on_remove(self, stub: Stub) -> None:
        """Called once when the toxic is removed from a live connection."""
