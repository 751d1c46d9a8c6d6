"""``reproduce 1011``: the seed's staging failure, its candidate causes, and the fixes.

Pure selection and analysis; the CLI runs the scenarios and prints.
"""

from __future__ import annotations

from dataclasses import dataclass

from replica.backend.handlers.variants import BUILTIN_HANDLERS
from replica.candidates import scaled_wait
from replica.criteria import Criterion, evaluate
from replica.diagnose import Candidate, Observed, judge
from replica.runner import Job, RunResult
from replica.scenarios import Catalog, ScenarioRun

#: What the staging debug script saw (seed file): accepted, no welcome, 1011
#: "Internal error" 63 ms after connect. Timing is judged as diagnosis judges it.
STAGING_OBSERVATION = Observed(
    fingerprint={
        "handshake": "accepted",
        "welcome": False,
        "close_code": 1011,
        "close_reason": "Internal error",
        "close_after_ms": 63,
        "pong": False,
    }
)
SEED_SCENARIO = "seed-1011"


@dataclass(frozen=True)
class Explanation:
    scenario: str
    title: str
    real_cause: bool
    seed_hypothesis: bool
    result: RunResult
    differences: list[str]

    @property
    def explains(self) -> bool:
        return not self.differences


def reproduce_runs(catalog: Catalog) -> tuple[list[ScenarioRun], list[str]]:
    """The runs of ``reproduce 1011`` and the causes (scenario names) in table order."""
    causes = [
        s.name
        for s in sorted(catalog.scenarios.values(), key=lambda s: (not s.real_cause, s.name))
        if s.real_cause or s.seed_hypothesis
    ]
    runs = [r for r in catalog.runs() if r.scenario.name in causes]
    return runs, causes


def staging_differences(result: RunResult, catalog: Catalog) -> list[str]:
    """How a run differs from what staging saw, in values (empty: it explains it)."""
    scenario = catalog.scenarios[result.scenario]
    candidate = Candidate(
        scenario=scenario.name, handler=result.handler, title=scenario.title, samples=[result.observed], wait=scaled_wait(scenario)
    )
    return [m.text for m in judge(STAGING_OBSERVATION, candidate).mismatches]


def explanations(results: list[RunResult], catalog: Catalog) -> list[Explanation]:
    """For each cause, as run with the incident's handler: does it explain what staging saw?"""
    out = []
    for r in results:
        scenario = catalog.scenarios[r.scenario]
        if r.handler != scenario.backend.handler or r.repeat != 1:
            continue
        out.append(
            Explanation(
                scenario=scenario.name,
                title=scenario.title,
                real_cause=scenario.real_cause,
                seed_hypothesis=scenario.seed_hypothesis,
                result=r,
                differences=staging_differences(r, catalog),
            )
        )
    out.sort(key=lambda e: (not e.real_cause, e.scenario))
    return out


def reproduced(results: list[RunResult], catalog: Catalog) -> RunResult | None:
    """The seed scenario's own run when it matched the staging observation, else None."""
    for r in results:
        if r.name == SEED_SCENARIO and r.repeat == 1 and r.verdict == "pass" and not staging_differences(r, catalog):
            return r
    return None


def reproduce_jobs(runs: list[ScenarioRun], repeats: int) -> list[Job]:
    """Each run once, the real cause's with the E2E flows for the success criteria; those
    the catalog expects to be served (welcome and pong) ``repeats`` times. A fix expected
    to fail has failed the criteria on its first run and is not repeated."""
    jobs = [Job(r, 1, e2e_flows=r.scenario.name == SEED_SCENARIO) for r in runs]
    served = [r for r in runs if r.scenario.name == SEED_SCENARIO and r.expect.welcome and r.expect.pong]
    return jobs + [Job(r, i, e2e_flows=True) for i in range(2, repeats + 1) for r in served]


def criteria_jobs(catalog: Catalog, handler: str, repeats: int) -> list[Job]:
    """``repeats`` runs of ``handler`` against the real cause, with the E2E flows."""
    run = catalog.with_handler(catalog.scenarios[SEED_SCENARIO], handler)
    return [Job(run, i, e2e_flows=True) for i in range(1, repeats + 1)]


def criteria_by_handler(results: list[RunResult]) -> dict[str, list[Criterion]]:
    """The six success criteria for each handler run against the real cause, variants in table order."""
    runs: dict[str, list[RunResult]] = {}
    for r in results:
        if r.scenario == SEED_SCENARIO:
            runs.setdefault(r.handler, []).append(r)
    order = sorted(runs, key=lambda h: BUILTIN_HANDLERS.index(h) if h in BUILTIN_HANDLERS else len(BUILTIN_HANDLERS))
    return {h: evaluate(runs[h]) for h in order}
