"""A driver that opens lanes on a stack ``replica up`` keeps running (see ``replica.drivers.up.api``).

The running stack does the whole lane lifecycle; this side sends the
:class:`~replica.drivers.base.LaneRequest` over the stack's unix socket
(:mod:`replica.http1`) and gets the lane's address, its outcome and its proxies
back. A lane's :class:`LaneFaults` (a client of the fault proxy) is made only when
something asks for it: a run that only probes pays for no client it does not use.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

from replica import http1
from replica.auth.tokens import mint_token, mint_with_claims
from replica.drivers.base import DEFAULT_PARALLEL_LANES, BackendOutcome, LaneRequest
from replica.drivers.identity import ProcessIdentity
from replica.drivers.stack import StackInfo
from replica.errors import InfrastructureError

if TYPE_CHECKING:
    from replica.drivers.fault_api import LaneFaultAPI
    from replica.drivers.lanes import LaneFaults

#: How long the stack may take to answer a request other than opening a lane.
API_TIMEOUT_S = 30.0


class LanesAPI:
    """The running stack's lanes API, over its unix socket."""

    def __init__(self, url: str, socket: str) -> None:
        self.url = url
        self.socket = socket

    async def call(self, method: str, path: str, *, timeout: float = API_TIMEOUT_S, **kwargs: Any) -> http1.Response:
        try:
            return await http1.request(method, self.url + path, timeout=timeout, unix_socket=self.socket, **kwargs)
        except http1.HTTPError as exc:
            raise InfrastructureError(f"the running stack did not answer ({exc}); check `replica status`") from exc


class RemoteLane:
    """A lane the running stack opened for this process."""

    def __init__(self, api: LanesAPI, toxiproxy_url: str, info: dict, toxiproxy_token: str = "") -> None:
        self._api = api
        self._toxiproxy_url = toxiproxy_url
        self._toxiproxy_token = toxiproxy_token
        self._toxiproxy: LaneFaultAPI | None = None
        self._faults: LaneFaults | None = None
        self.id: str = info["id"]
        self.base_url: str = info["base_url"]
        self.proxies: dict[str, str] = info["proxies"]
        self.outcome = BackendOutcome(**info["outcome"])

    @property
    def faults(self) -> "LaneFaults":
        """The lane's proxies and the faults on them, through the stack's fault proxy."""
        if self._faults is None:
            from replica.drivers.fault_api import LaneFaultAPI
            from replica.drivers.lanes import LaneFaults

            self._toxiproxy = LaneFaultAPI(self._toxiproxy_url, token=self._toxiproxy_token)
            self._faults = LaneFaults(self._toxiproxy, self.proxies)
        return self._faults

    async def backend_log(self, n_lines: int = 40) -> str:
        response = await self._api.call("GET", f"/lanes/{self.id}/log", params={"lines": n_lines})
        return response.json().get("log", "") if response.status == 200 else ""

    async def aclose(self) -> None:
        """Close the fault proxy's client, if one was made; the lane itself is the stack's to close."""
        if self._toxiproxy is not None:
            await self._toxiproxy.aclose()


class RemoteDriver:
    name = "local"

    def __init__(self, info: StackInfo, *, max_parallel_lanes: int = DEFAULT_PARALLEL_LANES) -> None:
        if not info.lanes_url or not info.lanes_socket:
            raise InfrastructureError("the running stack does not serve lanes; restart it with `replica up`")
        self.info = info
        self.api = LanesAPI(info.lanes_url, info.lanes_socket)
        self.max_parallel_lanes = max_parallel_lanes
        me = ProcessIdentity.current()
        #: The stack closes this process's lanes once it is gone, however it ends.
        self.owner = {"owner_pid": me.pid, "owner_started": me.started}

    def mint_token(self, sub: str = "staging-e2e-user-001", claims: Mapping[str, Any] | None = None) -> str:
        if claims is not None:
            return mint_with_claims(self.info.jwt_secret, claims)
        return mint_token(self.info.jwt_secret, sub=sub)

    @asynccontextmanager
    async def lane(self, request: LaneRequest) -> AsyncIterator[RemoteLane]:
        response = await self.api.call(
            "POST", "/lanes", json=request.model_dump(mode="json"), params=self.owner, timeout=request.ready_timeout_s + 30
        )
        if response.status != 201:
            raise InfrastructureError(f"the running stack could not open a lane: {response.body.decode(errors='replace')}")
        lane = RemoteLane(self.api, self.info.toxiproxy_url, response.json(), self.info.toxiproxy_token)
        try:
            yield lane
        finally:
            try:
                await self.api.call("DELETE", f"/lanes/{lane.id}")
            finally:
                await lane.aclose()

    def close(self) -> None:
        """Nothing to tear down here: the stack belongs to `replica up`."""
