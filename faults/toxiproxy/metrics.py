"""Prometheus text exposition of the proxies' byte counters (live, not only on close)."""

from __future__ import annotations

import asyncio
from typing import Iterable

from .model import Direction
from .proxy import Proxy

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


async def render(proxies: Iterable[Proxy], batch: int = 50) -> list[bytes]:
    """The exposition text in pieces; the event loop runs other work every ``batch`` proxies."""
    items = sorted(proxies, key=lambda p: p.name)
    lines: dict[str, list[str]] = {"received": [], "sent": []}
    for start in range(0, len(items), batch):
        for proxy in items[start : start + batch]:
            counts = proxy.byte_counts()
            for direction in Direction:
                labels = (
                    f'direction="{direction.value}",listener="{_label(proxy.listen)}",'
                    f'proxy="{_label(proxy.name)}",upstream="{_label(proxy.upstream)}"'
                )
                for index, metric in enumerate(lines):
                    lines[metric].append(f"toxiproxy_proxy_{metric}_bytes_total{{{labels}}} {counts[direction][index]}\n")
        await asyncio.sleep(0)
    out: list[bytes] = []
    for metric, samples in lines.items():
        name = f"toxiproxy_proxy_{metric}_bytes_total"
        out.append(f"# HELP {name} The number of bytes {metric} by the proxy\n# TYPE {name} counter\n".encode())
        out.append("".join(samples).encode())
    return out
