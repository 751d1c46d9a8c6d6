"""How the runner schedules runs: long waits first, on lanes of their own, results in input order."""

from __future__ import annotations

import asyncio

import pytest

from replica import runner
from replica.runner import WAITING_RUN_S, Job, expected_wait_s, longest_first, run_jobs
from replica.scenarios import Catalog


class Lanes:
    """Just what the runner reads of a driver."""

    name = "schedule-test"

    def __init__(self, max_parallel_lanes: int) -> None:
        self.max_parallel_lanes = max_parallel_lanes


def jobs_of(catalog: Catalog, waiting: int, computing: int) -> list[Job]:
    runs = list(catalog.runs())
    long = [r for r in runs if expected_wait_s(r) >= WAITING_RUN_S]
    short = [r for r in runs if expected_wait_s(r) == 0]
    assert len(long) >= waiting and len(short) >= computing
    # interleaved, so input order and start order differ
    return [Job(r) for pair in zip(short[:computing], long[:waiting] + [None] * computing) for r in pair if r]


def test_longest_first_is_stable_among_equals() -> None:
    assert longest_first([0.0, 0.8, 0.0, 3.0, 0.8]) == [3, 1, 4, 0, 2]


def test_waiting_runs_do_not_hold_the_computing_lanes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two lanes, two runs that wait until every short run is done: the short runs must
    still get both computing lanes (with waiting runs on computing lanes this never ends)."""
    jobs = jobs_of(Catalog.load(), waiting=2, computing=6)
    is_waiting = {id(j): expected_wait_s(j.run) >= WAITING_RUN_S for j in jobs}
    started: list[bool] = []
    computing_now, most_computing = 0, 0
    shorts_done = asyncio.Event()
    left = sum(not w for w in is_waiting.values())

    async def run_one(_driver: object, job: Job) -> Job:
        nonlocal computing_now, most_computing, left
        started.append(is_waiting[id(job)])
        if is_waiting[id(job)]:
            await shorts_done.wait()
            return job
        computing_now += 1
        most_computing = max(most_computing, computing_now)
        await asyncio.sleep(0)  # let the others in
        computing_now -= 1
        left -= 1
        if left == 0:
            shorts_done.set()
        return job

    monkeypatch.setattr(runner, "run_one", run_one)
    results = asyncio.run(asyncio.wait_for(run_jobs(Lanes(2), jobs), timeout=10))  # type: ignore[arg-type]
    assert results == jobs  # input order
    assert started[:2] == [True, True]  # the long waits start first
    assert most_computing == 2


def test_one_lane_runs_one_computing_run_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = jobs_of(Catalog.load(), waiting=0, computing=5)
    now, most = 0, 0

    async def run_one(_driver: object, job: Job) -> Job:
        nonlocal now, most
        now += 1
        most = max(most, now)
        await asyncio.sleep(0)
        now -= 1
        return job

    monkeypatch.setattr(runner, "run_one", run_one)
    assert asyncio.run(run_jobs(Lanes(1), jobs)) == jobs  # type: ignore[arg-type]
    assert most == 1
