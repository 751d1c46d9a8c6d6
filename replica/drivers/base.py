"""What every driver offers the scenario runner: lanes.

A driver brings a stack up (Postgres, Redis, the auth service and the fault proxy)
and opens lanes on it. A :class:`Lane` is one backend under test, started for one
run, behind proxies of its own in front of each hop, so the faults of one run never
touch another. What a lane is asked for is a :class:`LaneRequest`; how a lane
comes and goes is the same for every driver (:mod:`replica.drivers.lanes`).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from pydantic import BaseModel, ConfigDict, Field

from replica.scenarios import BackendSpec, HopDown, ProbeAfter, ToxicSpec

if TYPE_CHECKING:
    from replica.drivers.lanes import LaneFaults


#: Lanes open at once on the process drivers: each backend is a light fork, and 4
#: on 2 cores kept every fingerprint inside its bounds over 240 runs (measured).
DEFAULT_PARALLEL_LANES = 4


class LaneRequest(BaseModel):
    """What one lane is opened with: the backend, its faults and when it counts as up.

    ``toxics`` and ``down`` whose ``when`` is ``before_start`` are applied before the
    backend starts, the others once it is up. The lane is up when the backend answers
    ``/health`` or, unless ``probe_after`` is ``listening``, when ``/health/ready``
    shows that startup phase finished.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: BackendSpec = BackendSpec()
    toxics: tuple[ToxicSpec, ...] = Field(default=(), max_length=64)
    down: tuple[HopDown, ...] = Field(default=(), max_length=8)
    ready_timeout_s: float = Field(default=20.0, gt=0, le=300)
    probe_after: ProbeAfter = "listening"


@dataclass(frozen=True)
class BackendOutcome:
    """How the backend of a lane came up: ``ready`` or why not."""

    ready: bool
    detail: str = ""
    startup_ms: float | None = None
    #: The backend refused its settings (bad handler, failpoint spec or defect, an app that cannot be imported): a usage error.
    refused_settings: bool = False
    #: Its exit status, when it exited before it was ready.
    exit_status: int | None = None
    #: Its process id, where the driver knows it (the built-in backend names it in every
    #: message's ``server_id``: a probe that reached another process is caught).
    pid: int | None = None


class Lane(Protocol):
    """One backend under test, with the proxies in front of its hops."""

    #: ``http://127.0.0.1:PORT`` of the backend, through its fault proxy.
    base_url: str
    #: How the backend came up (set when the lane opened).
    outcome: BackendOutcome
    #: The lane's proxies and the faults on them.
    faults: "LaneFaults"

    async def backend_log(self, n_lines: int = 40) -> str: ...


class Driver(Protocol):
    """Brings a stack up and opens lanes on it."""

    name: str
    #: How many lanes may be open at once without disturbing each other.
    max_parallel_lanes: int

    def mint_token(self, sub: str = "staging-e2e-user-001", claims: Mapping[str, Any] | None = None) -> str:
        """A JWT the stack's auth service accepts; with ``claims``, exactly those, signed with the stack's secret."""
        ...

    def lane(self, request: LaneRequest) -> AbstractAsyncContextManager[Lane]:
        """Open a lane (see :class:`LaneRequest`); close it all on exit."""
        ...

    def close(self) -> None:
        """Tear down everything this driver started."""
        ...
