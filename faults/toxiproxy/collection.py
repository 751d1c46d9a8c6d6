"""All proxies of a server, and the operations the API performs on them.

Operations that wait (binding, name lookups) hold ``lock``, so two of them
never interleave; each is all-or-nothing: a failed update keeps the old
address and listener, a failed ``reset`` changes nothing.
"""

from __future__ import annotations

import asyncio
import socket

from .address import AddressError, ListenError, open_listener, parse_port, resolved, same_endpoint, split_host_port
from .model import MAX_PROXIES, PROXY_EXISTS, PROXY_NOT_FOUND, ApiError, ProxyInput, ProxyUpdate
from .proxy import Proxy


class PopulateError(Exception):
    """A failure part-way through ``populate``; ``created`` lists what stays."""

    def __init__(self, error: ApiError, created: list[Proxy]) -> None:
        super().__init__(error.message)
        self.error = error
        self.created = created


def _server_error(exc: Exception) -> ApiError:
    return ApiError(str(exc), 500)  # the original answers bind and address errors with 500


def _endpoint(address: str) -> tuple[str, int] | None:
    try:
        host, port = split_host_port(address)
        return host, parse_port(port)
    except AddressError:
        return None


class ProxyCollection:
    """Name → :class:`Proxy`, with the add/replace/reset rules of the original."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()
        self.api_addresses: list[str] = []  # the control API's own listeners
        self.dialled: set[tuple[int, int]] = set()  # local ports of upstream connections (loop detection)

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError(*PROXY_NOT_FOUND)
        return proxy

    def check_upstream(self, upstream: str, listen: str, name: str) -> None:
        """Refuse an upstream that is one of this server's own listeners (a loop).

        Compared by address literal (``localhost`` included); an upstream that
        reaches the server through another host name is cut by the data plane.
        """
        target = _endpoint(upstream)
        if target is None:
            return
        listeners = [listen, *self.api_addresses, *(p.listen for p in self.proxies.values() if p.name != name)]
        for address in listeners:
            bound = _endpoint(address)
            if bound is not None and same_endpoint(target, bound):
                raise ApiError(f"upstream {upstream} is a listen address of this server", 400)

    def reserved_ports(self) -> frozenset[int]:
        """The ports of the disabled proxies: each keeps its address (enabling it binds it
        again), so a new proxy on port 0 must not get it. Handing it out would also
        connect whoever still dials a disabled proxy (a backend told its auth service
        is down) to the new proxy's upstream."""
        ports = (_endpoint(p.listen) for p in self.proxies.values() if not p.enabled)
        return frozenset(endpoint[1] for endpoint in ports if endpoint is not None and endpoint[1])

    def _check_listen(self, listen: str, name: str) -> None:
        """A new listen address must not be what another proxy forwards to."""
        bound = _endpoint(listen)
        for proxy in self.proxies.values():
            target = _endpoint(proxy.upstream)
            if proxy.name != name and bound is not None and target is not None and same_endpoint(target, bound):
                raise ApiError(f"listen {listen} is the upstream of proxy {proxy.name}", 400)

    async def add(self, item: ProxyInput) -> Proxy:
        """Create a proxy (409 before binding when the name is taken)."""
        async with self.lock:
            return await self._add(item)

    async def _add(self, item: ProxyInput) -> Proxy:
        if item.name in self.proxies:
            raise ApiError(*PROXY_EXISTS)
        if len(self.proxies) >= MAX_PROXIES:
            raise ApiError(f"too many proxies: at most {MAX_PROXIES}", 400)
        try:  # a disabled proxy's address is checked too (the original takes anything)
            address = await resolved(item.listen)
        except AddressError as exc:
            raise _server_error(ListenError(f"listen tcp: {exc}")) from None
        self.check_upstream(item.upstream, address, item.name)
        self._check_listen(address, item.name)
        proxy = Proxy(item.name, item.listen, item.upstream, self.seed, self.dialled)
        if item.enabled:
            try:
                sock, bound = await open_listener(address, self.reserved_ports())
            except ListenError as exc:
                raise _server_error(exc) from None
            await proxy.serve(sock, bound)
        for spec in item.toxics or []:
            proxy.add_toxic(spec)
        self.proxies[item.name] = proxy
        return proxy

    async def update(self, name: str, update: ProxyUpdate) -> Proxy:
        """``POST/PATCH /proxies/{name}``: the new listen address is resolved first, like the original.

        An address the original cannot resolve is its 500 (``address nonsense:
        missing port in address``); a new listener is bound before the old one
        closes, so any failure leaves the proxy as it was.
        """
        async with self.lock:
            proxy = self.get(name)
            try:
                listen = await resolved(update.listen)
            except AddressError as exc:
                raise _server_error(exc) from None
            self.check_upstream(update.upstream, listen, name)
            moved = listen != proxy.listen
            if moved:
                self._check_listen(listen, name)
            if moved or update.upstream != proxy.upstream:
                await self._retarget(proxy, update.listen, update.upstream, update.enabled)
            elif update.enabled and not proxy.enabled:
                await self._start(proxy)
            elif not update.enabled and proxy.enabled:
                proxy.stop(hold=True)
            return proxy

    async def _retarget(self, proxy: Proxy, listen: str, upstream: str, enabled: bool) -> None:
        if not enabled:
            proxy.stop()
            proxy.retarget(listen, upstream)
            return
        was_enabled = proxy.enabled
        try:
            sock, bound = await open_listener(listen, self.reserved_ports())
        except ListenError as exc:
            if not was_enabled:
                raise _server_error(exc) from None
            proxy.stop()  # the new address may be the old one on another interface: free it and retry
            try:
                sock, bound = await open_listener(listen)
            except ListenError:
                await proxy.start()  # put the old listener back
                raise _server_error(exc) from None
        proxy.stop()
        proxy.retarget(bound, upstream)
        await proxy.serve(sock, bound)

    async def _start(self, proxy: Proxy) -> None:
        try:
            await proxy.start()
        except ListenError as exc:
            raise _server_error(exc) from None

    async def remove(self, name: str) -> None:
        """Delete a proxy (after any operation under way, so none revives it)."""
        async with self.lock:
            proxy = self.get(name)
            del self.proxies[name]
            proxy.stop()

    async def populate(self, items: list[ProxyInput]) -> list[Proxy]:
        """Create or replace ``items`` in order (already validated).

        An existing proxy with the same resolved listen address and upstream is
        kept with its connections and toxics (its toxics are replaced only when
        the item lists toxics that differ); any other existing one is replaced.
        """
        async with self.lock:
            names = set(self.proxies) | {item.name for item in items}
            if len(names) > MAX_PROXIES:
                raise PopulateError(ApiError(f"too many proxies: at most {MAX_PROXIES}", 400), [])
            done: list[Proxy] = []
            for item in items:
                await asyncio.sleep(0)  # a thousand items must not hold the event loop
                existing = self.proxies.get(item.name)
                if existing is not None:
                    if await self._same(existing, item):
                        if item.toxics is not None and [t.to_json() for t in item.toxics] != [
                            t.to_json() for t in existing.toxics
                        ]:
                            existing.remove_all_toxics()
                            for spec in item.toxics:
                                existing.add_toxic(spec)
                        done.append(existing)
                        continue
                    del self.proxies[item.name]
                    existing.stop()
                try:
                    done.append(await self._add(item))
                except ApiError as exc:
                    raise PopulateError(exc, done) from None
            return done

    @staticmethod
    async def _same(existing: Proxy, item: ProxyInput) -> bool:
        try:
            listen = await resolved(item.listen)
        except AddressError:
            return False
        return listen == existing.listen and item.upstream == existing.upstream

    async def reset(self) -> None:
        """Re-enable every proxy and remove all toxics; connections stay.

        Every disabled proxy's listener is bound first; if one cannot be, the
        others are released and nothing changes (500, like the original's error).
        """
        async with self.lock:
            bound: list[tuple[Proxy, socket.socket, str]] = []
            try:
                for proxy in [p for p in self.proxies.values() if not p.enabled]:
                    bound.append((proxy, *await proxy.bind()))
                    await asyncio.sleep(0)
            except ListenError as exc:
                for _, sock, _ in bound:
                    sock.close()
                raise _server_error(exc) from None
            for proxy, sock, address in bound:
                await proxy.serve(sock, address)
            for proxy in self.proxies.values():
                proxy.remove_all_toxics()

    def close(self) -> None:
        for proxy in list(self.proxies.values()):
            proxy.stop()
        self.proxies.clear()
