"""Cost of an unarmed failpoint against a plain function call, in the same run.

Four loops of N calls each, repeated; the median of each is printed in ns per
call (loop overhead included in all of them alike), with ratios against the
baselines: ``failpoint.sync(p)`` vs ``f(p)``, and ``await failpoint(p)`` vs
``await coroutine(p)`` (the cheapest async call there is), plus the armed cost
of a ``skip`` for scale. Nothing else is armed.

    python benchmarks/bench_failpoints.py [--calls N] [--repeats R]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faults import Failpoints  # noqa: E402

POINT = "ws.publish"


def plain(point: str) -> bool:
    return False


async def plain_async(point: str) -> bool:
    return False


def sync_loop(call: Callable[[str], bool], n: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(n):
        call(POINT)
    return (time.perf_counter_ns() - started) / n


async def async_loop(call: Callable[[str], object], n: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(n):
        await call(POINT)  # type: ignore[misc]
    return (time.perf_counter_ns() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    unarmed = Failpoints(environ={})
    unarmed.disarm()
    logging.getLogger("faults.failpoints").disabled = True  # an armed hit logs a warning; not measured here
    skipping = Failpoints(environ={})
    skipping.arm(f"{POINT}=skip")
    samples: dict[str, list[float]] = {name: [] for name in ("plain", "sync", "coroutine", "async", "skip")}

    async def async_rounds() -> None:
        samples["coroutine"].append(await async_loop(plain_async, args.calls))
        samples["async"].append(await async_loop(unarmed, args.calls))

    for _ in range(args.repeats):  # interleaved, so both sides of a ratio see the same load
        samples["plain"].append(sync_loop(plain, args.calls))
        samples["sync"].append(sync_loop(unarmed.sync, args.calls))
        asyncio.run(async_rounds())
        samples["skip"].append(sync_loop(skipping.sync, args.calls // 10))

    ns = {name: statistics.median(values) for name, values in samples.items()}
    print(f"unarmed failpoint, {args.calls:,} calls x {args.repeats} rounds, median ns per call (loop included):")
    print(f"  plain function call        {ns['plain']:7.1f} ns   (baseline)")
    print(f"  failpoint.sync(p)          {ns['sync']:7.1f} ns   {ns['sync'] / ns['plain']:.2f}x plain call")
    print(f"  await plain coroutine      {ns['coroutine']:7.1f} ns   (baseline)")
    print(f"  await failpoint(p)         {ns['async']:7.1f} ns   {ns['async'] / ns['coroutine']:.2f}x awaited coroutine,"
          f" {ns['async'] / ns['plain']:.2f}x plain call")
    print(f"  armed skip, sync (scale)   {ns['skip']:7.1f} ns   (its warning log disabled)")


if __name__ == "__main__":
    main()
