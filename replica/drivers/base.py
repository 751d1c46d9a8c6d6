"""What every driver offers the scenario runner.

A driver brings a :class:`Stack` up (Postgres, Redis, the auth service and the
fault proxy) and, per run, opens a :class:`Lane`: one backend configured for the
scenario, reached through the fault proxy, with its own proxies in front of each
hop so the faults of one run never touch another. ``local`` runs processes on
loopback; ``compose`` runs containers. Same interface, same verdicts.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from replica.scenarios import BackendSpec, HopDown, ToxicSpec

if TYPE_CHECKING:
    import httpx

    from faults.toxiproxy.client import AsyncToxiproxyClient


#: Lanes open at once on the process drivers: each backend is a light fork, and 4
#: on 2 cores kept every fingerprint inside its bounds over 240 runs (measured).
DEFAULT_PARALLEL_LANES = 4


@dataclass(frozen=True)
class BackendOutcome:
    """How the backend of a lane came up: ``ready`` or why not."""

    ready: bool
    detail: str = ""
    startup_ms: float | None = None
    #: The backend refused its settings (bad handler, failpoint spec or defect): a usage error.
    refused_settings: bool = False


class Lane(Protocol):
    """One backend under test, with the proxies in front of its hops."""

    #: ``http://127.0.0.1:PORT`` of the backend, through its fault proxy.
    base_url: str
    #: How the backend came up (set when the lane opened).
    outcome: BackendOutcome

    async def add_toxic(self, toxic: ToxicSpec) -> None: ...

    async def set_down(self, down: HopDown) -> None: ...

    async def backend_log(self, n_lines: int = 40) -> str: ...


class Driver(Protocol):
    """Brings a stack up and opens lanes on it."""

    name: str
    #: How many lanes may be open at once without disturbing each other.
    max_parallel_lanes: int

    def mint_token(self, sub: str = "staging-e2e-user-001") -> str:
        """A JWT the stack's auth service accepts."""
        ...

    def lane(
        self,
        backend: BackendSpec,
        *,
        toxics: tuple[ToxicSpec, ...] = (),
        down: tuple[HopDown, ...] = (),
        ready_timeout_s: float = 20.0,
        probe_after: str = "listening",
    ) -> AbstractAsyncContextManager[Lane]:
        """Open a lane: apply ``before_start`` faults, start the backend, wait until it
        answers ``/health`` (or exits) and, unless ``probe_after`` is ``listening``, until
        ``/health/ready`` shows that startup phase finished; apply ``after_ready`` faults;
        close it all on exit."""
        ...

    def close(self) -> None:
        """Tear down everything this driver started."""
        ...


class ProxyFaults:
    """A lane's faults, through the fault proxy's API: mixed into every driver's lane,
    which provides ``_client`` (an AsyncToxiproxyClient) and ``proxies`` (hop → proxy)."""

    _client: "AsyncToxiproxyClient"
    proxies: dict[str, str]

    async def add_toxic(self, toxic: ToxicSpec) -> None:
        await self._client.add_toxic(
            self.proxies[toxic.hop],
            toxic.type,
            stream=toxic.stream,
            toxicity=toxic.toxicity,
            attributes=dict(toxic.attributes),
        )

    async def set_down(self, down: HopDown) -> None:
        await self._client.update_proxy(self.proxies[down.hop], enabled=False)


async def delete_proxies(client: "AsyncToxiproxyClient", names: list[str]) -> None:
    """Delete a lane's proxies, newest first, ignoring ones already gone. Deleting a
    proxy closes its connections, which frees a backend blocked on a hung dependency."""
    from faults.toxiproxy.client import ToxiproxyError

    for name in reversed(names):
        try:
            await client.delete_proxy(name)
        except ToxiproxyError:  # NotFound included: already gone
            pass


async def apply_faults(lane: Lane, toxics: tuple[ToxicSpec, ...], down: tuple[HopDown, ...], when: str) -> None:
    """Add the toxics and take down the hops whose ``when`` is ``when``, in order."""
    for toxic in toxics:
        if toxic.when == when:
            await lane.add_toxic(toxic)
    for hop in down:
        if hop.when == when:
            await lane.set_down(hop)


def phase_finished(ready: "httpx.Response", phase: str) -> bool:
    """Whether ``/health/ready`` reports ``phase`` as done (ok, failed or cancelled)."""
    try:
        phases = {p["name"]: p["status"] for p in ready.json()["phases"]}
    except (ValueError, KeyError, TypeError):
        return False
    return phases.get(phase) in ("ok", "failed", "cancelled")
