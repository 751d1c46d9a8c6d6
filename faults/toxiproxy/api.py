"""The Toxiproxy v2 control API: routes and handlers, in one file.

Handlers turn a :class:`~.http.Request` into a :class:`~.http.Response` using the
pure validation in :mod:`.model` and the synchronous operations of
:mod:`.collection`; no handler waits on proxied traffic (binding a listener is
the only await). Routing follows gorilla/mux as the original uses it: an
unknown path is 404 ``404 page not found``, a known path with another method is
405 with an empty body, and only matched routes pass the browser guard and get
an ``X-Toxiproxy-Request-Id`` (the original's middlewares run on matched routes
only).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from . import gojson, metrics
from .collection import PopulateError, ProxyCollection
from .http import Request, Response, text_error
from .proxy import Proxy
from .model import (
    TOXIC_NOT_FOUND,
    VERSION,
    ApiError,
    bad_body,
    decode,
    error_body,
    parse_populate,
    parse_proxy_create,
    parse_proxy_update,
    parse_toxic_create,
    parse_toxic_update,
)
from .requestid import new_request_id

log = logging.getLogger(__name__)

JSON = "application/json"
INLINE_DECODE = 64 * 1024  # larger bodies are decoded on a worker thread, off the event loop

Route = Callable[..., Awaitable[Response]]


def json_response(status: int, value: Any) -> Response:
    return Response(status, gojson.dumps(value), {"Content-Type": JSON})


def proxy_response(status: int, proxy: Proxy) -> Response:
    return Response(status, proxy.encoded(), {"Content-Type": JSON})


def populate_response(status: int, proxies: list[Proxy], error: ApiError | None = None) -> Response:
    """``{"error":…,"status":…,"proxies":[…]}`` (error members only on failure), from cached proxy JSON."""
    head = gojson.dumps({"error": error.message, "status": error.status})[:-1] + b"," if error else b"{"
    listed = [b"null"] if not proxies else [b"[", b",".join(p.encoded() for p in proxies), b"]"]
    return Response(status, [head, b'"proxies":', *listed, b"}"], {"Content-Type": JSON})


def api_error(exc: ApiError) -> Response:
    return text_error(exc.status, error_body(exc.message, exc.status).decode().rstrip("\n"))


class Api:
    """Dispatches requests for one :class:`ProxyCollection`."""

    def __init__(self, collection: ProxyCollection, *, enable_metrics: bool = True, token: str | None = None) -> None:
        """``token``: when given, every route but ``GET /version`` needs ``Authorization: Bearer <token>``."""
        self.collection = collection
        self.enable_metrics = enable_metrics
        self._authorization = f"Bearer {token}".encode() if token else None
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="toxiproxy-decode")
        name = r"(?P<proxy>[^/]+)"
        toxic = r"(?P<toxic>[^/]+)"
        self.routes: list[tuple[re.Pattern[str], dict[str, Route]]] = [
            (re.compile(r"/reset"), {"POST": self.reset}),
            (re.compile(r"/proxies"), {"GET": self.proxy_index, "POST": self.proxy_create}),
            (re.compile(r"/populate"), {"POST": self.populate}),
            (
                re.compile(rf"/proxies/{name}"),
                {
                    "GET": self.proxy_show,
                    "POST": self.proxy_update,
                    "PATCH": self.proxy_update,
                    "DELETE": self.proxy_delete,
                },
            ),
            (re.compile(rf"/proxies/{name}/toxics"), {"GET": self.toxic_index, "POST": self.toxic_create}),
            (
                re.compile(rf"/proxies/{name}/toxics/{toxic}"),
                {
                    "GET": self.toxic_show,
                    "POST": self.toxic_update,
                    "PATCH": self.toxic_update,
                    "DELETE": self.toxic_delete,
                },
            ),
            (re.compile(r"/version"), {"GET": self.version}),
        ]
        if enable_metrics:
            self.routes.append((re.compile(r"/metrics"), {"GET": self.metrics}))

    def close(self) -> None:
        """Stop the decoding thread (a decode under way finishes on its own)."""
        self._decoder.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, request: Request) -> Response:
        path = request.path
        for pattern, methods in self.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            handler = methods.get(request.method)
            if handler is None:
                return Response(405)
            response = await self._handle(handler, request, match.groupdict())
            response.headers["X-Toxiproxy-Request-Id"] = new_request_id()
            return response
        return text_error(404, "404 page not found")

    async def _handle(self, handler: Route, request: Request, params: dict[str, str]) -> Response:
        if request.headers.get("user-agent", "").startswith("Mozilla/"):
            return text_error(403, "User agent not allowed")
        if self._authorization is not None and handler != self.version and not self._authorized(request):
            return api_error(ApiError("missing or wrong bearer token (this server was started with TOXIPROXY_TOKEN)", 401))
        try:
            return await handler(request, **params)
        except ApiError as exc:
            return api_error(exc)
        except Exception as exc:  # pragma: no cover - every expected failure is an ApiError
            log.exception("%s %s failed", request.method, request.path)
            return api_error(ApiError(str(exc), 500))

    def _authorized(self, request: Request) -> bool:
        given = request.headers.get("authorization", "").encode("latin-1", errors="replace")
        return hmac.compare_digest(given, self._authorization or b"")

    async def decode(self, request: Request, parse: Callable[[Any], Any] = lambda value: value) -> Any:
        """``parse`` of the request's JSON body (ApiError 400 in Go's words); large ones off the event loop."""
        if request.body_error is not None:
            raise bad_body(request.body_error)
        if len(request.body) <= INLINE_DECODE:
            return parse(decode(request.body))
        return await asyncio.get_running_loop().run_in_executor(self._decoder, lambda: parse(decode(request.body)))

    # -- proxies --------------------------------------------------------------

    async def proxy_index(self, request: Request) -> Response:
        """Name → proxy, sorted; built from each proxy's cached JSON and sent piece by piece."""
        proxies = self.collection.proxies
        parts = [b"{"]
        for name in sorted(proxies):
            parts += [b"," if len(parts) > 1 else b"", proxies[name].encoded_entry()]
        parts.append(b"}")
        return Response(200, parts, {"Content-Type": JSON})

    async def proxy_create(self, request: Request) -> Response:
        item = parse_proxy_create(await self.decode(request))
        proxy = await self.collection.add(item)
        return proxy_response(201, proxy)

    async def populate(self, request: Request) -> Response:
        try:
            items = await self.decode(request, parse_populate)
            proxies = await self.collection.populate(items)
        except ApiError as exc:
            return populate_response(exc.status, [], exc)
        except PopulateError as exc:
            return populate_response(exc.error.status, exc.created, exc.error)
        return populate_response(201, proxies)

    async def proxy_show(self, request: Request, proxy: str) -> Response:
        return proxy_response(200, self.collection.get(proxy))

    async def proxy_update(self, request: Request, proxy: str) -> Response:
        target = self.collection.get(proxy)
        update = parse_proxy_update(await self.decode(request), target.listen, target.upstream, target.enabled)
        return proxy_response(200, await self.collection.update(proxy, update))

    async def proxy_delete(self, request: Request, proxy: str) -> Response:
        await self.collection.remove(proxy)
        return Response(204)

    async def reset(self, request: Request) -> Response:
        await self.collection.reset()
        return Response(204)

    # -- toxics ---------------------------------------------------------------

    async def toxic_index(self, request: Request, proxy: str) -> Response:
        target = self.collection.get(proxy)
        return json_response(200, [t.to_json() for t in target.toxic_configs()])

    async def toxic_create(self, request: Request, proxy: str) -> Response:
        target = self.collection.get(proxy)
        spec = parse_toxic_create(await self.decode(request), [t.name for t in target.toxics])
        target.add_toxic(spec)
        return json_response(200, spec.to_json())

    async def toxic_show(self, request: Request, proxy: str, toxic: str) -> Response:
        spec = self.collection.get(proxy).find_toxic(toxic)
        if spec is None:
            raise ApiError(*TOXIC_NOT_FOUND)
        return json_response(200, spec.to_json())

    async def toxic_update(self, request: Request, proxy: str, toxic: str) -> Response:
        target = self.collection.get(proxy)
        current = target.find_toxic(toxic)
        if current is None:
            raise ApiError(*TOXIC_NOT_FOUND)
        spec = parse_toxic_update(await self.decode(request), current)
        target.update_toxic(spec)
        return json_response(200, spec.to_json())

    async def toxic_delete(self, request: Request, proxy: str, toxic: str) -> Response:
        if self.collection.get(proxy).remove_toxic(toxic) is None:
            raise ApiError(*TOXIC_NOT_FOUND)
        return Response(204)

    # -- misc -----------------------------------------------------------------

    async def version(self, request: Request) -> Response:
        body = f'{{"version": "{VERSION}"}}\n'.encode()
        return Response(200, body, {"Content-Type": "application/json;charset=utf-8"})

    async def metrics(self, request: Request) -> Response:
        body = await metrics.render(list(self.collection.proxies.values()))
        return Response(200, body, {"Content-Type": metrics.CONTENT_TYPE})
