"""Runs scenarios on a driver and turns each observation into a verdict."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pydantic import BaseModel

from replica.drivers.base import Driver, LaneRequest
from replica.errors import ConfigError
from replica.evidence import Evidence, server_errors
from replica.fingerprint import Expectation, Fingerprint
from replica.observation import foreign_servers
from replica.probe import FollowUp, Observation, ProbeOptions, connect_time, follow_up, probe
from replica.expectations import Verdict, judge
from replica.generic_catalog import PROJECT_HANDLER
from replica.scenarios import ProbeSpec, Scenario, ScenarioRun

#: Lines of the backend's log read after a run: enough for a run's tracebacks.
LOG_LINES = 400
#: How long a follow-up waits for ``/health/ready`` before probing again.
FOLLOW_UP_WAIT_S = 5.0
#: A run that waits at least this long by design mostly idles: it does not take a computing lane.
WAITING_RUN_S = 0.5


@dataclass(frozen=True)
class Job:
    """One run to do: a scenario run, which repeat it is, and what the probe does beyond test_001."""

    run: ScenarioRun
    repeat: int = 1
    #: The other E2E flows after the pong (the success criteria need them).
    e2e_flows: bool = False
    #: ``/health/ready``, and a second probe after a failed first one (diagnosis tells causes apart by them).
    follow_up: bool = False


class RunResult(BaseModel):
    """One run of one scenario: what was expected, what was seen, and the verdict."""

    name: str
    scenario: str
    handler: str
    driver: str
    repeat: int = 1
    #: None: nothing expected; the run is observed, not judged.
    expected: Expectation | None
    expect_label: str = ""
    observed: Fingerprint
    verdict: Verdict
    mismatches: list[str] = []
    backend_ready: bool
    backend_detail: str = ""
    backend_startup_ms: float | None = None
    #: The backend's exit status when it exited before it was ready (with the last lines of its log).
    backend_exit_status: int | None = None
    backend_pid: int | None = None
    duration_ms: float
    observation: Observation
    evidence: Evidence = Evidence()
    follow_up: FollowUp | None = None
    backend_log: str = ""
    #: The faults the scenario applied: (hop, what).
    faults: list[tuple[str, str]] = []


def probe_options(run: ScenarioRun, *, e2e_flows: bool = False) -> ProbeOptions:
    return options_from_spec(run.scenario.probe, e2e_flows=e2e_flows, ready_timeout_s=run.scenario.ready_timeout_s)


def options_from_spec(p: ProbeSpec, *, e2e_flows: bool = False, ready_timeout_s: float = 30.0) -> ProbeOptions:
    return ProbeOptions(
        ws_path=p.ws_path,
        health_path=p.health_path,
        welcome=p.welcome,
        ping=p.ping,
        pong=p.pong,
        e2e_flows=e2e_flows,
        e2e_headers=p.e2e_headers,
        with_token=p.with_token,
        ping_interval_s=p.ping_interval_s,
        ping_timeout_s=p.ping_timeout_s,
        welcome_timeout_s=p.welcome_timeout_s,
        pong_timeout_s=p.pong_timeout_s,
        health_timeout_s=min(30.0, ready_timeout_s),
    )


def probe_token(spec: ProbeSpec, mint: Callable[[Mapping[str, Any] | None], str]) -> str | None:
    """The probe's token: none, from the environment, or ``mint(claims)`` (None: the stack's own)."""
    if not spec.with_token:
        return None
    if spec.token_env is not None:
        token = os.environ.get(spec.token_env)
        if not token:
            raise ConfigError(f"probe.token = \"env:{spec.token_env}\": {spec.token_env} is not set in the environment")
        return token
    return mint(spec.claims)


def has_faults(scenario: Scenario) -> bool:
    return bool(scenario.toxics or scenario.down or scenario.backend.failpoints)


def expected_wait_s(run: ScenarioRun) -> float:
    """Roughly how long a run waits by design: its expected close time, or its probe's
    keepalive timeout. Used only to schedule long runs first."""
    if run.expect is None:
        return run.scenario.ready_timeout_s if has_faults(run.scenario) else 0.0
    after = run.expect.close_after_ms
    wait = (after.min or 0) / 1000 if after is not None else 0.0
    if run.expect.closed_by == "client" and run.scenario.probe.ping_interval_s:
        wait = max(wait, run.scenario.probe.ping_interval_s + (run.scenario.probe.ping_timeout_s or 0))
    return wait


async def run_one(driver: Driver, job: Job) -> RunResult:
    started = time.monotonic()
    run = job.run
    scenario = run.scenario
    request = LaneRequest(
        backend=run.backend,
        toxics=scenario.toxics,
        down=scenario.down,
        ready_timeout_s=scenario.ready_timeout_s,
        probe_after=scenario.probe_after,
    )
    async with driver.lane(request) as lane:
        if lane.outcome.refused_settings:
            raise ConfigError(f"the backend refused its settings in scenario {run.name!r}: {lane.outcome.detail}")
        if not lane.outcome.ready and run.handler == PROJECT_HANDLER and not has_faults(scenario):
            raise ConfigError(f"the backend does not start with no fault at all (scenario {run.name!r}): {lane.outcome.detail}")
        token = probe_token(scenario.probe, lambda claims: driver.mint_token() if claims is None else driver.mint_token(claims=claims))
        options = probe_options(run, e2e_flows=job.e2e_flows)
        observation = await probe(lane.base_url, token, options)
        verdict, mismatches = judge(run.expect, observation.fingerprint)
        pid = lane.outcome.pid
        strays = foreign_servers(observation.messages, pid) if pid is not None and run.handler != PROJECT_HANDLER else []
        if strays:  # a harness fault, never the app's: the run cannot pass
            verdict = "fail"
            mismatches = [*mismatches, f"the probe reached {', '.join(strays)}, not the lane's backend (pid {pid})"]
        log = await lane.backend_log(LOG_LINES)
        evidence = Evidence(
            server_errors=server_errors(log, connect_time(observation), time.time()),
            frames=observation.messages,
            no_token=observation.no_token_handshake,
        )
        second = None
        if job.follow_up:
            passed = observation.fingerprint.welcome and observation.fingerprint.pong
            second = await follow_up(lane.base_url, token, options, FOLLOW_UP_WAIT_S, again=not passed)
        outcome = lane.outcome
    return RunResult(
        name=run.name,
        scenario=scenario.name,
        handler=run.handler,
        driver=driver.name,
        repeat=job.repeat,
        expected=run.expect,
        expect_label=run.expect_label,
        observed=observation.fingerprint,
        verdict=verdict,
        mismatches=mismatches,
        backend_ready=outcome.ready,
        backend_detail=outcome.detail,
        backend_startup_ms=outcome.startup_ms,
        backend_exit_status=outcome.exit_status,
        backend_pid=outcome.pid,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
        observation=observation,
        evidence=evidence,
        follow_up=second,
        backend_log=log if mismatches or not outcome.ready else "",
        faults=scenario.faults(),
    )


def repeated(runs: list[ScenarioRun], repeat: int = 1) -> list[Job]:
    """Each run ``repeat`` times, repeat by repeat."""
    return [Job(run, i) for i in range(1, repeat + 1) for run in runs]


async def run_many(
    driver: Driver,
    runs: list[ScenarioRun],
    *,
    repeat: int = 1,
    on_result: Callable[[RunResult], None] = lambda _r: None,
) -> list[RunResult]:
    """Every run ``repeat`` times (see :func:`run_jobs`)."""
    return await run_jobs(driver, repeated(runs, repeat), on_result=on_result)


async def run_jobs(
    driver: Driver, jobs: list[Job], *, on_result: Callable[[RunResult], None] = lambda _r: None
) -> list[RunResult]:
    """Every job, at most ``driver.max_parallel_lanes`` computing at once.

    Runs that wait on purpose (a startup wait, a hang, a keepalive timeout: at least
    :data:`WAITING_RUN_S`) mostly idle: they start first, on lanes of their own (as
    many again), so the short ones fill the computing lanes beside them. Results
    come back in input order.
    """
    lanes = max(1, driver.max_parallel_lanes)
    computing, waiting = asyncio.Semaphore(lanes), asyncio.Semaphore(lanes)
    waits = [expected_wait_s(job.run) for job in jobs]

    async def one(k: int) -> RunResult:
        async with waiting if waits[k] >= WAITING_RUN_S else computing:
            result = await run_one(driver, jobs[k])
        on_result(result)
        return result

    try:
        async with asyncio.TaskGroup() as group:
            started = {k: group.create_task(one(k)) for k in longest_first(waits)}
            tasks = [started[k] for k in range(len(jobs))]
    except BaseExceptionGroup as eg:
        # One failed run cancels the others; surface the first real error.
        raise eg.exceptions[0] from None
    return [t.result() for t in tasks]


def longest_first(waits: list[float]) -> list[int]:
    """Indices of ``waits``, longest wait first (stable among equals)."""
    return sorted(range(len(waits)), key=lambda k: -waits[k])
