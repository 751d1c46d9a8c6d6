"""A driver that opens lanes on a stack ``replica up`` keeps running (see ``replica.drivers.up.api``)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import httpx

from faults.toxiproxy.client import AsyncToxiproxyClient
from replica.auth.tokens import mint_token
from replica.drivers.base import DEFAULT_PARALLEL_LANES, BackendOutcome, ProxyFaults
from replica.drivers.stack import StackInfo
from replica.errors import InfrastructureError
from replica.scenarios import BackendSpec, HopDown, ToxicSpec
from replica.tls import client_ssl_context


class RemoteLane(ProxyFaults):
    def __init__(self, http: httpx.AsyncClient, client: AsyncToxiproxyClient, info: dict) -> None:
        self._http = http
        self._client = client
        self.id: str = info["id"]
        self.base_url: str = info["base_url"]
        self.proxies: dict[str, str] = info["proxies"]
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

    def mint_token(self, sub: str = "staging-e2e-user-001") -> str:
        return mint_token(self.info.jwt_secret, sub=sub)

    @asynccontextmanager
    async def lane(
        self,
        backend: BackendSpec,
        *,
        toxics: tuple[ToxicSpec, ...] = (),
        down: tuple[HopDown, ...] = (),
        ready_timeout_s: float = 20.0,
        probe_after: str = "listening",
    ) -> AsyncIterator[RemoteLane]:
        body = {
            "backend": backend.model_dump(mode="json"),
            "toxics": [t.model_dump(mode="json") for t in toxics],
            "down": [d.model_dump(mode="json") for d in down],
            "ready_timeout_s": ready_timeout_s,
            "probe_after": probe_after,
        }
        assert self.info.lanes_url is not None
        async with httpx.AsyncClient(
            base_url=self.info.lanes_url, timeout=ready_timeout_s + 30,
            transport=httpx.AsyncHTTPTransport(uds=self.info.lanes_socket),
        ) as http, AsyncToxiproxyClient(self.info.toxiproxy_url, verify=client_ssl_context()) as client:
            try:
                response = await http.post("/lanes", json=body)
            except httpx.HTTPError as exc:
                raise InfrastructureError(f"the running stack did not answer ({exc!r}); check `replica status`") from exc
            if response.status_code != 201:
                raise InfrastructureError(f"the running stack could not open a lane: {response.text}")
            lane = RemoteLane(http, client, response.json())
            try:
                yield lane
            finally:
                await http.delete(f"/lanes/{lane.id}")

    def close(self) -> None:
        """Nothing to tear down here: the stack belongs to `replica up`."""
