"""Prometheus text exposition of the proxies' byte counters (live, not only on close)."""

from __future__ import annotations

from typing import Iterable

from .model import Direction
from .proxy import Proxy

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(proxies: Iterable[Proxy]) -> bytes:
    items = sorted(proxies, key=lambda p: p.name)
    counts = {p.name: p.byte_counts() for p in items}
    out: list[str] = []
    for index, metric in enumerate(("received", "sent")):
        name = f"toxiproxy_proxy_{metric}_bytes_total"
        out.append(f"# HELP {name} The number of bytes {metric} by the proxy")
        out.append(f"# TYPE {name} counter")
        for proxy in items:
            for direction in Direction:
                labels = (
                    f'direction="{direction.value}",listener="{_label(proxy.listen)}",'
                    f'proxy="{_label(proxy.name)}",upstream="{_label(proxy.upstream)}"'
                )
                out.append(f"{name}{{{labels}}} {counts[proxy.name][direction][index]}")
    return ("\n".join(out) + "\n").encode()
