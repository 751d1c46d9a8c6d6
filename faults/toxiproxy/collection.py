"""All proxies of a server, and the operations the API performs on them."""

from __future__ import annotations

from .address import resolve_listen
from .model import PROXY_EXISTS, PROXY_NOT_FOUND, ApiError, ProxyInput
from .proxy import Proxy


class PopulateError(Exception):
    """A failure part-way through ``populate``; ``created`` lists what stays."""

    def __init__(self, error: ApiError, created: list[Proxy]) -> None:
        super().__init__(error.message)
        self.error = error
        self.created = created


class ProxyCollection:
    """Name → :class:`Proxy`, with the add/replace/reset rules of the original."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.proxies: dict[str, Proxy] = {}

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError(*PROXY_NOT_FOUND)
        return proxy

    async def add(self, item: ProxyInput) -> Proxy:
        """Create a proxy (409 before binding when the name is taken)."""
        if item.name in self.proxies:
            raise ApiError(*PROXY_EXISTS)
        proxy = Proxy(item.name, item.listen, item.upstream, self.seed)
        if item.enabled:
            await proxy.start()
        if item.name in self.proxies:  # raced with another request while binding
            proxy.stop()
            raise ApiError(*PROXY_EXISTS)
        for spec in item.toxics or []:
            proxy.add_toxic(spec)
        self.proxies[item.name] = proxy
        return proxy

    def remove(self, name: str) -> None:
        proxy = self.get(name)
        del self.proxies[name]
        proxy.stop()

    async def populate(self, items: list[ProxyInput]) -> list[Proxy]:
        """Create or replace ``items`` in order (already validated).

        An existing proxy with the same resolved listen address and upstream is
        kept with its connections and toxics (its toxics are replaced only when
        the item lists toxics that differ); any other existing one is replaced.
        """
        done: list[Proxy] = []
        for item in items:
            existing = self.proxies.get(item.name)
            if existing is not None:
                same = resolve_listen(item.listen) == existing.listen and item.upstream == existing.upstream
                if same:
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
                done.append(await self.add(item))
            except ApiError as exc:
                raise PopulateError(exc, done) from None
            except Exception as exc:
                raise PopulateError(ApiError(str(exc), 500), done) from None
        return done

    async def reset(self) -> None:
        """Re-enable every proxy and remove all toxics; connections stay."""
        for proxy in list(self.proxies.values()):
            if not proxy.enabled:
                try:
                    await proxy.start()
                except Exception as exc:
                    raise ApiError(str(exc), 500) from None
            proxy.remove_all_toxics()

    def close(self) -> None:
        for proxy in list(self.proxies.values()):
            proxy.stop()
        self.proxies.clear()
