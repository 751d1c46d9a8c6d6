"""Typed clients for the Toxiproxy v2 API (ours or Shopify's), sync and async.

::

    with ToxiproxyClient("http://127.0.0.1:8474", timeout=5.0) as tp:
        pg = tp.create_proxy("postgres", upstream="127.0.0.1:5432")
        tp.add_toxic("postgres", "latency", attributes={"latency": 200})
        tp.update_proxy("postgres", enabled=False)   # "down"

Every call has an explicit timeout. Errors: :class:`ToxiproxyError` (``status``,
``message``) with :class:`BadRequest` (400), :class:`NotFound` (404),
:class:`Conflict` (409); :class:`ToxiproxyUnavailable` when the server cannot be
reached.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from typing import Any, Mapping

from urllib.parse import quote

import httpx

__all__ = [
    "AsyncToxiproxyAPI",
    "AsyncToxiproxyClient",
    "BadRequest",
    "Conflict",
    "NotFound",
    "ProxyInfo",
    "ToxicInfo",
    "ToxiproxyClient",
    "ToxiproxyError",
    "ToxiproxyUnavailable",
]

DEFAULT_URL = "http://127.0.0.1:8474"


class ToxiproxyError(Exception):
    """An error answered by the server (``status`` 0 when there was no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


class BadRequest(ToxiproxyError):
    pass


class NotFound(ToxiproxyError):
    pass


class Conflict(ToxiproxyError):
    pass


class ToxiproxyUnavailable(ToxiproxyError):
    """The server could not be reached (refused, timed out, connection dropped)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


@dataclass(frozen=True)
class ToxicInfo:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToxicInfo:
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            stream=str(data.get("stream", "downstream")),
            toxicity=float(data.get("toxicity", 1.0)),
            attributes=dict(data.get("attributes") or {}),
        )


@dataclass(frozen=True)
class ProxyInfo:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[ToxicInfo, ...] = ()

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProxyInfo:
        return cls(
            name=str(data["name"]),
            listen=str(data["listen"]),
            upstream=str(data["upstream"]),
            enabled=bool(data["enabled"]),
            toxics=tuple(ToxicInfo.from_json(t) for t in data.get("toxics") or ()),
        )


def _q(name: str) -> str:
    return quote(name, safe="")


_ERRORS: dict[int, type[ToxiproxyError]] = {400: BadRequest, 404: NotFound, 409: Conflict}


def raise_for_status(status: int, text: str) -> None:
    """The :class:`ToxiproxyError` for an answer with ``status`` and body ``text``, if it is an error."""
    if status < 400:
        return
    message = text.strip()
    try:
        body = json.loads(message)
        if isinstance(body, dict) and "error" in body:
            message = str(body["error"])
    except ValueError:
        pass
    raise _ERRORS.get(status, ToxiproxyError)(status, message)


def _raise_for(response: httpx.Response) -> None:
    raise_for_status(response.status_code, response.text)


def _toxic_body(
    type: str, stream: str, name: str | None, toxicity: float, attributes: Mapping[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type, "stream": stream, "toxicity": toxicity, "attributes": dict(attributes or {})}
    if name is not None:
        body["name"] = name
    return body


def _toxic_update_body(attributes: Mapping[str, Any] | None, toxicity: float | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if attributes is not None:
        body["attributes"] = dict(attributes)
    if toxicity is not None:
        body["toxicity"] = toxicity
    return body


def _proxy_update_body(enabled: bool | None, listen: str | None, upstream: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if enabled is not None:
        body["enabled"] = enabled
    if listen is not None:
        body["listen"] = listen
    if upstream is not None:
        body["upstream"] = upstream
    return body


def request_headers(token: str | None) -> dict[str, str]:
    """The headers every request of these clients carries (the bearer token when there is one)."""
    headers = {"User-Agent": "replica-toxiproxy"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def unavailable(exc: BaseException, base_url: str) -> ToxiproxyUnavailable:
    """The error for a server that could not be reached (``exc``: the transport's own)."""
    return ToxiproxyUnavailable(f"toxiproxy at {base_url} is unavailable: {exc!r}")


class ToxiproxyClient:
    """Synchronous client (httpx); use as a context manager or call :meth:`close`."""

    def __init__(self, base_url: str = DEFAULT_URL, timeout: float = 5.0, token: str | None = None) -> None:
        """``token``: sent as a bearer token (a server started with ``TOXIPROXY_TOKEN`` needs it)."""
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=request_headers(token))

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            if body is not None:
                response = self._http.request(method, path, json=body)
            else:
                response = self._http.request(method, path)
        except httpx.TransportError as exc:
            raise unavailable(exc, self.base_url) from exc
        _raise_for(response)
        return response

    def version(self) -> str:
        return str(self._request("GET", "/version").json()["version"])

    def proxies(self) -> dict[str, ProxyInfo]:
        return {name: ProxyInfo.from_json(p) for name, p in self._request("GET", "/proxies").json().items()}

    def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True) -> ProxyInfo:
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled}
        return ProxyInfo.from_json(self._request("POST", "/proxies", body).json())

    def get_proxy(self, name: str) -> ProxyInfo:
        return ProxyInfo.from_json(self._request("GET", f"/proxies/{_q(name)}").json())

    def update_proxy(
        self, name: str, *, enabled: bool | None = None, listen: str | None = None, upstream: str | None = None
    ) -> ProxyInfo:
        body = _proxy_update_body(enabled, listen, upstream)
        return ProxyInfo.from_json(self._request("POST", f"/proxies/{_q(name)}", body).json())

    def delete_proxy(self, name: str) -> None:
        self._request("DELETE", f"/proxies/{_q(name)}")

    def populate(self, proxies: list[dict[str, Any]]) -> list[ProxyInfo]:
        data = self._request("POST", "/populate", proxies).json()
        return [ProxyInfo.from_json(p) for p in data.get("proxies") or []]

    def toxics(self, proxy: str) -> list[ToxicInfo]:
        return [ToxicInfo.from_json(t) for t in self._request("GET", f"/proxies/{_q(proxy)}/toxics").json()]

    def add_toxic(
        self,
        proxy: str,
        type: str,
        *,
        stream: str = "downstream",
        name: str | None = None,
        toxicity: float = 1.0,
        attributes: Mapping[str, Any] | None = None,
    ) -> ToxicInfo:
        body = _toxic_body(type, stream, name, toxicity, attributes)
        return ToxicInfo.from_json(self._request("POST", f"/proxies/{_q(proxy)}/toxics", body).json())

    def update_toxic(
        self, proxy: str, name: str, *, attributes: Mapping[str, Any] | None = None, toxicity: float | None = None
    ) -> ToxicInfo:
        body = _toxic_update_body(attributes, toxicity)
        return ToxicInfo.from_json(self._request("POST", f"/proxies/{_q(proxy)}/toxics/{_q(name)}", body).json())

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._request("DELETE", f"/proxies/{_q(proxy)}/toxics/{_q(name)}")

    def reset(self) -> None:
        self._request("POST", "/reset")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ToxiproxyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncToxiproxyAPI:
    """The API's methods, async, over :meth:`_request` (the transport: a subclass's).

    ``_request(method, path, body)`` returns the answer (anything with ``.json()``) or
    raises :class:`ToxiproxyError` / :class:`ToxiproxyUnavailable`."""

    base_url: str

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        raise NotImplementedError

    async def version(self) -> str:
        return str((await self._request("GET", "/version")).json()["version"])

    async def proxies(self) -> dict[str, ProxyInfo]:
        data = (await self._request("GET", "/proxies")).json()
        return {name: ProxyInfo.from_json(p) for name, p in data.items()}

    async def create_proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True) -> ProxyInfo:
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled}
        return ProxyInfo.from_json((await self._request("POST", "/proxies", body)).json())

    async def get_proxy(self, name: str) -> ProxyInfo:
        return ProxyInfo.from_json((await self._request("GET", f"/proxies/{_q(name)}")).json())

    async def update_proxy(
        self, name: str, *, enabled: bool | None = None, listen: str | None = None, upstream: str | None = None
    ) -> ProxyInfo:
        body = _proxy_update_body(enabled, listen, upstream)
        return ProxyInfo.from_json((await self._request("POST", f"/proxies/{_q(name)}", body)).json())

    async def delete_proxy(self, name: str) -> None:
        await self._request("DELETE", f"/proxies/{_q(name)}")

    async def populate(self, proxies: list[dict[str, Any]]) -> list[ProxyInfo]:
        data = (await self._request("POST", "/populate", proxies)).json()
        return [ProxyInfo.from_json(p) for p in data.get("proxies") or []]

    async def toxics(self, proxy: str) -> list[ToxicInfo]:
        return [ToxicInfo.from_json(t) for t in (await self._request("GET", f"/proxies/{_q(proxy)}/toxics")).json()]

    async def add_toxic(
        self,
        proxy: str,
        type: str,
        *,
        stream: str = "downstream",
        name: str | None = None,
        toxicity: float = 1.0,
        attributes: Mapping[str, Any] | None = None,
    ) -> ToxicInfo:
        body = _toxic_body(type, stream, name, toxicity, attributes)
        return ToxicInfo.from_json((await self._request("POST", f"/proxies/{_q(proxy)}/toxics", body)).json())

    async def update_toxic(
        self, proxy: str, name: str, *, attributes: Mapping[str, Any] | None = None, toxicity: float | None = None
    ) -> ToxicInfo:
        body = _toxic_update_body(attributes, toxicity)
        return ToxicInfo.from_json((await self._request("POST", f"/proxies/{_q(proxy)}/toxics/{_q(name)}", body)).json())

    async def remove_toxic(self, proxy: str, name: str) -> None:
        await self._request("DELETE", f"/proxies/{_q(proxy)}/toxics/{_q(name)}")

    async def reset(self) -> None:
        await self._request("POST", "/reset")

    async def aclose(self) -> None:
        """Release the transport's resources (none by default)."""

    async def close(self) -> None:
        await self.aclose()

    async def __aenter__(self) -> "AsyncToxiproxyAPI":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncToxiproxyClient(AsyncToxiproxyAPI):
    """Asynchronous client (httpx) with the same methods as :class:`ToxiproxyClient`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        timeout: float = 5.0,
        verify: ssl.SSLContext | bool = True,
        trust_env: bool = True,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # ``verify`` takes a ready TLS context: building one per client costs ~100 ms.
        # ``trust_env=False``: no proxy settings from the environment (reading them costs ~1 ms a client).
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, headers=request_headers(token), verify=verify, trust_env=trust_env,
        )

    async def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            if body is not None:
                response = await self._http.request(method, path, json=body)
            else:
                response = await self._http.request(method, path)
        except httpx.TransportError as exc:
            raise unavailable(exc, self.base_url) from exc
        _raise_for(response)
        return response

    async def aclose(self) -> None:
        await self._http.aclose()
