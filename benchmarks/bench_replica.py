"""Wall time of the replica's main jobs, with ratios against a baseline from the same run.

    .venv/bin/python benchmarks/bench_replica.py [--rounds N]

Measures, each through the ``replica`` command a user types:

* ``reproduce 1011`` cold (empty cache: Postgres runs initdb) and warm (cached);
* ``reproduce 1011`` on a running stack (``replica up``);
* one scenario (``healthy``) on a running stack;

with ``--compose`` also ``reproduce 1011 --driver compose`` (first and second run)
and the per-scenario time on its running stack; and, as the baseline, one plain backend start (``python -m replica.backend`` until
``/health`` answers) — the cost a scenario would pay per run without the fork
server. Prints medians and ratios. Loopback only; everything is torn down.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from replica.drivers.local.group import ProcessGroup  # noqa: E402
from replica.drivers.local.ports import free_port
from replica.polling import wait_for_http


def replica(args: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "replica.cli", *args], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"replica {' '.join(args)} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return elapsed


def backend_exec_start() -> float:
    """Baseline: exec a fresh backend (no dependencies needed for /health in background mode)."""
    with ProcessGroup() as group:
        port = free_port()
        env = dict(os.environ, REPLICA_PORT=str(port), REPLICA_STARTUP_MODE="background")
        started = time.monotonic()
        process = group.start([sys.executable, "-m", "replica.backend"], name="backend", env=env)
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=30, process=process)
        return time.monotonic() - started


def with_running_stack(env: dict[str, str], rounds: int) -> tuple[list[float], list[float], list[float]]:
    proc = subprocess.Popen([sys.executable, "-m", "replica.cli", "up"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = Path(env["REPLICA_STATE_DIR"]) / "stack.json"
    try:
        deadline = time.monotonic() + 120
        while not state.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("replica up did not come up")
            time.sleep(0.05)
        httpx.get(json.loads(state.read_text())["backend_url"] + "/health", timeout=5)
        one, inner = [], []
        for _ in range(rounds):
            report = Path(env["REPLICA_STATE_DIR"]) / "one.json"
            one.append(replica(["scenarios", "run", "healthy", "--json", str(report)], env))
            inner.append(json.loads(report.read_text())["scenarios"][0]["duration_ms"] / 1000)
        full = [replica(["reproduce", "1011"], env) for _ in range(rounds)]
        return one, inner, full
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def per_scenario(report: Path) -> float:
    """Median seconds one scenario took inside a reproduce run (lane up, probe, lane down)."""
    return statistics.median(r["duration_ms"] for r in json.loads(report.read_text())["scenarios"]) / 1000


def compose_rows(env: dict[str, str], tmp: str) -> list[tuple[str, float]]:
    first = replica(["reproduce", "1011", "--driver", "compose", "--json", f"{tmp}/c1.json"], env)
    second = replica(["reproduce", "1011", "--driver", "compose", "--json", f"{tmp}/c2.json"], env)
    return [
        ("compose: reproduce 1011, first run", first),
        ("compose: reproduce 1011, second run", second),
        ("compose: one scenario on the running stack", per_scenario(Path(f"{tmp}/c2.json"))),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compose", action="store_true", help="also measure the compose driver (needs `make images`)")
    args = parser.parse_args()
    rounds = args.rounds
    with tempfile.TemporaryDirectory(prefix="replica-bench-") as tmp:
        env = dict(os.environ, REPLICA_STATE_DIR=f"{tmp}/state", REPLICA_CACHE_DIR=f"{tmp}/cache")
        baseline = statistics.median(backend_exec_start() for _ in range(rounds))
        cold = replica(["reproduce", "1011"], env)
        warm = statistics.median(replica(["reproduce", "1011"], env) for _ in range(rounds))
        replica(["reproduce", "1011", "--json", f"{tmp}/l.json"], env)
        local_per_scenario = per_scenario(Path(f"{tmp}/l.json"))
        one, inner, on_stack = with_running_stack(env, rounds)
        extra = compose_rows(env, tmp) if args.compose else []
    rows = [
        ("baseline: one backend exec'd until /health", baseline),
        ("reproduce 1011, cold (initdb)", cold),
        ("reproduce 1011, warm", warm),
        ("reproduce 1011 on a running stack", statistics.median(on_stack)),
        ("one scenario on a running stack (CLI wall)", statistics.median(one)),
        ("one scenario on a running stack (the run)", statistics.median(inner)),
        ("local: one scenario inside reproduce", local_per_scenario),
        *extra,
    ]
    print(f"{'measurement':48} {'seconds':>8} {'x baseline':>10}")
    for name, seconds in rows:
        print(f"{name:48} {seconds:8.2f} {seconds / baseline:10.2f}")


if __name__ == "__main__":
    main()
