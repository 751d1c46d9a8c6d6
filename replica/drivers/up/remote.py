"""A driver that opens lanes on a stack ``replica up`` keeps running (see ``replica.drivers.up.api``).

The running stack does the whole lane lifecycle; this side sends the
:class:`~replica.drivers.base.LaneRequest` and gets the lane's address, its
outcome and its proxies back. A lane's :class:`LaneFaults` (a client of the fault
proxy) is made only when something asks for it: a run that only probes pays for
no client it does not use.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

import httpx

from replica.auth.tokens import mint_token, mint_with_claims
from replica.drivers.base import DEFAULT_PARALLEL_LANES, BackendOutcome, LaneRequest
from replica.drivers.stack import StackInfo
from replica.errors import InfrastructureError
from replica.tls import tls_for

if TYPE_CHECKING:
    from faults.toxiproxy.client import AsyncToxiproxyClient
    from replica.drivers.lanes import LaneFaults


class RemoteLane:
    """A lane the running stack opened for this process."""

    def __init__(self, http: httpx.AsyncClient, toxiproxy_url: str, info: dict) -> None:
        self._http = http
        self._toxiproxy_url = toxiproxy_url
        self._toxiproxy: AsyncToxiproxyClient | None = None
        self._faults: LaneFaults | None = None
        self.id: str = info["id"]
        self.base_url: str = info["base_url"]
        self.proxies: dict[str, str] = info["proxies"]
        self.outcome = BackendOutcome(**info["outcome"])

    @property
    def faults(self) -> "LaneFaults":
        """The lane's proxies and the faults on them, through the stack's fault proxy."""
        if self._faults is None:
            from faults.toxiproxy.client import AsyncToxiproxyClient
            from replica.drivers.lanes import LaneFaults

            self._toxiproxy = AsyncToxiproxyClient(self._toxiproxy_url, verify=tls_for(self._toxiproxy_url))
            self._faults = LaneFaults(self._toxiproxy, self.proxies)
        return self._faults

    async def backend_log(self, n_lines: int = 40) -> str:
        response = await self._http.get(f"/lanes/{self.id}/log", params={"lines": n_lines})
        return response.json().get("log", "") if response.status_code == 200 else ""

    async def aclose(self) -> None:
        """Close the fault proxy's client, if one was made; the lane itself is the stack's to close."""
        if self._toxiproxy is not None:
            await self._toxiproxy.aclose()


class RemoteDriver:
    name = "local"

    def __init__(self, info: StackInfo, *, max_parallel_lanes: int = DEFAULT_PARALLEL_LANES) -> None:
        if not info.lanes_url:
            raise InfrastructureError("the running stack does not serve lanes; restart it with `replica up`")
        self.info = info
        self.max_parallel_lanes = max_parallel_lanes

    def mint_token(self, sub: str = "staging-e2e-user-001", claims: Mapping[str, Any] | None = None) -> str:
        if claims is not None:
            return mint_with_claims(self.info.jwt_secret, claims)
        return mint_token(self.info.jwt_secret, sub=sub)

    @asynccontextmanager
    async def lane(self, request: LaneRequest) -> AsyncIterator[RemoteLane]:
        assert self.info.lanes_url is not None
        unix = tls_for(self.info.lanes_url)  # a unix socket: no TLS
        async with httpx.AsyncClient(
            base_url=self.info.lanes_url, timeout=request.ready_timeout_s + 30, verify=unix,
            transport=httpx.AsyncHTTPTransport(uds=self.info.lanes_socket, verify=unix),
        ) as http:
            try:
                response = await http.post("/lanes", json=request.model_dump(mode="json"))
            except httpx.HTTPError as exc:
                raise InfrastructureError(f"the running stack did not answer ({exc!r}); check `replica status`") from exc
            if response.status_code != 201:
                raise InfrastructureError(f"the running stack could not open a lane: {response.text}")
            lane = RemoteLane(http, self.info.toxiproxy_url, response.json())
            try:
                yield lane
            finally:
                try:
                    await http.delete(f"/lanes/{lane.id}")
                finally:
                    await lane.aclose()

    def close(self) -> None:
        """Nothing to tear down here: the stack belongs to `replica up`."""
