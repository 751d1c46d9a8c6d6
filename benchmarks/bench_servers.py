"""Cold vs warm start of the loopback PostgreSQL, and Redis for scale.

Cold: an empty template cache, so the start runs initdb. Warm: the cached
template is copied. Prints medians and the cold/warm ratio.

    python benchmarks/bench_servers.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from replica.drivers.local.group import ProcessGroup  # noqa: E402
from replica.drivers.local.postgres import start_postgres  # noqa: E402
from replica.drivers.local.redis import start_redis


def _timed_start(start: Callable[[ProcessGroup], object]) -> tuple[float, float]:
    """Seconds to start (until ready) and to tear down."""
    group = ProcessGroup()
    try:
        began = time.perf_counter()
        start(group)
        started = time.perf_counter() - began
    finally:
        began = time.perf_counter()
        group.close()
        stopped = time.perf_counter() - began
    return started, stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    cold: list[float] = []
    warm: list[float] = []
    redis: list[float] = []
    stops: list[float] = []
    previous = os.environ.get("REPLICA_CACHE_DIR")
    try:
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="replica-bench-cache-") as cache:
                os.environ["REPLICA_CACHE_DIR"] = cache
                cold.append(_timed_start(start_postgres)[0])
                started, stopped = _timed_start(start_postgres)
                warm.append(started)
                stops.append(stopped)
            redis.append(_timed_start(start_redis)[0])
    finally:
        if previous is None:
            os.environ.pop("REPLICA_CACHE_DIR", None)
        else:
            os.environ["REPLICA_CACHE_DIR"] = previous

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1000:7.1f} ms  (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"

    print(f"runs: {args.runs}")
    print(f"postgres cold start (initdb):      {ms(cold)}")
    print(f"postgres warm start (cached):      {ms(warm)}")
    print(f"postgres teardown:                 {ms(stops)}")
    print(f"redis start:                       {ms(redis)}")
    print(f"cold/warm ratio: {statistics.median(cold) / statistics.median(warm):.1f}x")


if __name__ == "__main__":
    main()
