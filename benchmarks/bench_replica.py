"""Wall time of the replica's main jobs, local and compose side by side, with ratios
against a baseline from the same run and the goals they are held to.

    .venv/bin/python benchmarks/bench_replica.py [--rounds N] [--no-compose]

Measures, each through the ``replica`` command a user types:

* local: ``reproduce 1011`` cold (empty cache: Postgres runs initdb) and warm;
  ``reproduce 1011`` and one scenario (``healthy``) on a running stack (``replica
  up``), the scenario both as the run (lane up, probe, lane down) and as the whole
  ``replica scenarios run healthy`` command, through the stack's warm command
  process and in the command's own process (``REPLICA_WARM=0``); the example project's (examples/chat)
  ``healthy`` the same way, on its own ``replica up --config`` stack;
* compose (when an engine and the images are there): ``reproduce 1011 --driver
  compose`` (the whole command: stack up, 24 runs, stack down) and one scenario on
  its running stack (``healthy`` repeated, one lane at a time: the run);

and, as the baseline, one plain backend start (``python -m replica.backend`` on a
socket this process bound, until ``/health`` answers): the cost a scenario would
pay per run without the fork server. Prints medians, ratios and the goals.
Loopback only; everything is torn down. Commands run with Python's bytecode cache on
(``PYTHONDONTWRITEBYTECODE`` is dropped from their environment), as a user's do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from replica.drivers.local.ports import bind_loopback  # noqa: E402
from replica.polling import wait_for_http  # noqa: E402


#: Runs whose fingerprint missed its expectation (exit code 1): timed all the same, and counted.
MISSES: list[str] = []


def replica(args: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "replica", *args], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode == 1:
        MISSES.append(f"replica {' '.join(args)}: {result.stdout.strip().splitlines()[-1]}")
    elif result.returncode != 0:
        raise SystemExit(f"replica {' '.join(args)} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return elapsed


class _Exec:
    """Just enough of a watched process for :func:`wait_for_http`."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen, self.name, self.log_path, self.pid = popen, "backend", Path("/dev/null"), popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def poll(self) -> int | None:
        return self.popen.poll()

    def log_tail(self, n_lines: int = 40) -> str:
        return ""


def backend_exec_start(env: dict[str, str]) -> float:
    """Baseline: exec a fresh backend (no dependencies needed for /health in background mode)."""
    with bind_loopback() as listener:
        fd, port = listener.fileno(), listener.getsockname()[1]
        env = dict(env, REPLICA_FD=str(fd), REPLICA_STARTUP_MODE="background")
        started = time.monotonic()
        popen = subprocess.Popen(
            [sys.executable, "-m", "replica.backend"], env=env, pass_fds=(fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=30, process=_Exec(popen))
        return time.monotonic() - started
    finally:
        popen.terminate()
        popen.wait(10)


def durations(report: Path) -> list[float]:
    """Seconds each run of a ``--json`` report took (lane up, probe, lane down)."""
    return [r["duration_ms"] / 1000 for r in json.loads(report.read_text())["scenarios"]]


#: The example project: one of its scenarios is timed on its own running stack.
EXAMPLE = ["--config", str(REPO / "examples" / "chat" / "replica.toml")]


@contextlib.contextmanager
def running_stack(env: dict[str, str], *up_args: str) -> Iterator[None]:
    """``replica up`` (with ``up_args``) until the block ends."""
    proc = subprocess.Popen([sys.executable, "-m", "replica", "up", *up_args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = Path(env["REPLICA_STATE_DIR"]) / "stack.json"
    try:
        deadline = time.monotonic() + 120
        while not state.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"replica up {' '.join(up_args)} did not come up")
            time.sleep(0.05)  # polling a bounded wait on another process
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def one_scenario(env: dict[str, str], rounds: int, tmp: str, *args: str) -> tuple[list[float], list[float]]:
    """CLI wall time and the run's own time of ``scenarios run ARGS``, ``rounds`` times after one warm-up."""
    one, inner = [], []
    for i in range(rounds + 1):  # the first warms the page cache for the CLI's own start
        report = Path(tmp) / f"one-{i}.json"
        wall = replica(["scenarios", "run", *args, "--json", str(report)], env)
        if i:
            one.append(wall)
            inner += durations(report)
    return one, inner


def with_running_stack(env: dict[str, str], rounds: int, tmp: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """On one running stack: one scenario through the warm command process and in the
    command's own process (``REPLICA_WARM=0``), and ``reproduce 1011``."""
    with running_stack(env):
        one, inner = one_scenario(env, rounds, tmp, "healthy")
        own, _ = one_scenario({**env, "REPLICA_WARM": "0"}, rounds, tmp, "healthy")
        full = [replica(["reproduce", "1011"], env) for _ in range(rounds)]
    return one, own, inner, full


def example_on_running_stack(env: dict[str, str], rounds: int, tmp: str) -> tuple[list[float], list[float]]:
    """The example project's ``healthy`` on its own ``replica up --config`` stack."""
    with running_stack(env, *EXAMPLE):
        return one_scenario(env, rounds, tmp, "healthy", *EXAMPLE)


def compose_rows(env: dict[str, str], tmp: str, rounds: int) -> list[tuple[str, float, str]]:
    reproduce = statistics.median(replica(["reproduce", "1011", "--driver", "compose"], env) for _ in range(rounds))
    report = Path(tmp) / "compose-one.json"
    replica(["scenarios", "run", "healthy", "--driver", "compose", "--parallel", "1", "--repeat", "6", "--json", str(report)], env)
    return [
        ("compose: reproduce 1011", reproduce, "<= 2x local warm"),
        ("compose: one scenario on a running stack (the run)", statistics.median(durations(report)[1:]), "<= 0.5"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compose", action="store_true", help="measure the local driver only")
    args = parser.parse_args()
    rounds = args.rounds
    from replica.drivers.compose import compose_problem

    compose = None if args.no_compose else compose_problem()
    with tempfile.TemporaryDirectory(prefix="replica-bench-") as tmp:
        env = dict(os.environ, REPLICA_STATE_DIR=f"{tmp}/state", REPLICA_CACHE_DIR=f"{tmp}/cache")
        # Timed as a user's shell runs them: with Python's bytecode cache (an environment
        # that turns it off has every command compile the project's modules again).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        baseline = statistics.median(backend_exec_start(env) for _ in range(rounds))
        cold = replica(["reproduce", "1011"], env)
        warm = statistics.median(replica(["reproduce", "1011"], env) for _ in range(rounds))
        one, own, inner, on_stack = with_running_stack(env, rounds, tmp)
        example_one, example_inner = example_on_running_stack(env, rounds, tmp)
        rows = [
            ("baseline: one backend exec'd until /health", baseline, ""),
            ("local: reproduce 1011, cold (initdb)", cold, ""),
            ("local: reproduce 1011, warm", warm, "<= 3"),
            ("local: reproduce 1011 on a running stack", statistics.median(on_stack), ""),
            ("local: one scenario on a running stack (the run)", statistics.median(inner), "<= 0.15"),
            ("local: one scenario on a running stack (CLI wall)", statistics.median(one), "<= 0.35"),
            ("  the same in the command's own process (REPLICA_WARM=0)", statistics.median(own), ""),
            ("example project: healthy on its running stack (the run)", statistics.median(example_inner), ""),
            ("example project: healthy on its running stack (CLI wall)", statistics.median(example_one), ""),
        ]
        if args.no_compose:
            pass
        elif compose is None:
            rows += compose_rows(env, tmp, rounds)
        else:
            print(f"compose not measured: {compose}")
    print(f"{'measurement':52} {'seconds':>8} {'x baseline':>10}  goal (s)")
    for name, seconds, goal in rows:
        goal = goal.replace("2x local warm", f"{2 * warm:.2f}")
        print(f"{name:52} {seconds:8.2f} {seconds / baseline:10.2f}  {goal}")
    for miss in MISSES:
        print(f"(a fingerprint missed its expectation in `{miss}`)")


if __name__ == "__main__":
    main()
