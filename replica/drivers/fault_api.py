"""The fault proxy's API as a lane uses it: one short HTTP/1.1 exchange per request.

A lane makes about six requests (``populate``, a toxic or two, four deletes). Over
httpx they were about a third of the command's CPU per run (its client, connection
pool and async backend per request); over :mod:`replica.http1` (h11 on asyncio, one
connection per request) the same requests cost a fraction of that. The methods are
:class:`~faults.toxiproxy.client.AsyncToxiproxyAPI`'s; only the transport differs.
"""

from __future__ import annotations

from typing import Any

from faults.toxiproxy.client import AsyncToxiproxyAPI, raise_for_status, request_headers, unavailable
from replica import http1
from replica.tls import tls_for


class LaneFaultAPI(AsyncToxiproxyAPI):
    def __init__(self, base_url: str, timeout: float = 5.0, token: str = "") -> None:
        """``token``: the stack's fault proxy's bearer token (``TOXIPROXY_TOKEN``)."""
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._tls = tls_for(self.base_url)
        self._headers = request_headers(token)

    async def _request(self, method: str, path: str, body: Any = None) -> http1.Response:
        try:
            response = await http1.request(
                method, self.base_url + path, timeout=self._timeout, json=body, tls=self._tls, headers=self._headers
            )
        except http1.HTTPError as exc:
            raise unavailable(exc, self.base_url) from exc
        raise_for_status(response.status, response.body.decode(errors="replace"))
        return response
