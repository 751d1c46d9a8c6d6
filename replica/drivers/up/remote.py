"""A driver that opens lanes on a stack ``replica up`` keeps running (see ``replica.drivers.up.api``).

The running stack does the whole lane lifecycle; this side sends the
:class:`~replica.drivers.base.LaneRequest`, gets the lane's address and proxies
back, and applies after-ready faults through the same :class:`LaneFaults`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Mapping

import httpx

from faults.toxiproxy.client import AsyncToxiproxyClient
from replica.auth.tokens import mint_token, mint_with_claims
from replica.drivers.base import DEFAULT_PARALLEL_LANES, BackendOutcome, LaneRequest
from replica.drivers.lanes import LaneFaults
from replica.drivers.stack import StackInfo
from replica.errors import InfrastructureError
from replica.tls import client_ssl_context


class RemoteLane:
    """A lane the running stack opened for this process."""

    def __init__(self, http: httpx.AsyncClient, faults: LaneFaults, info: dict) -> None:
        self._http = http
        self.faults = faults
        self.id: str = info["id"]
        self.base_url: str = info["base_url"]
        self.outcome = BackendOutcome(**info["outcome"])

    async def backend_log(self, n_lines: int = 40) -> str:
        response = await self._http.get(f"/lanes/{self.id}/log", params={"lines": n_lines})
        return response.json().get("log", "") if response.status_code == 200 else ""


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
        async with httpx.AsyncClient(
            base_url=self.info.lanes_url, timeout=request.ready_timeout_s + 30,
            transport=httpx.AsyncHTTPTransport(uds=self.info.lanes_socket),
        ) as http, AsyncToxiproxyClient(self.info.toxiproxy_url, verify=client_ssl_context()) as client:
            try:
                response = await http.post("/lanes", json=request.model_dump(mode="json"))
            except httpx.HTTPError as exc:
                raise InfrastructureError(f"the running stack did not answer ({exc!r}); check `replica status`") from exc
            if response.status_code != 201:
                raise InfrastructureError(f"the running stack could not open a lane: {response.text}")
            info = response.json()
            lane = RemoteLane(http, LaneFaults(client, info["proxies"]), info)
            try:
                yield lane
            finally:
                await http.delete(f"/lanes/{lane.id}")

    def close(self) -> None:
        """Nothing to tear down here: the stack belongs to `replica up`."""
