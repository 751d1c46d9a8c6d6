"""``reproduce 1011``: the seed's staging failure, its candidate causes, and the fixes.

Pure selection and analysis; the CLI runs the scenarios and prints.
"""

from __future__ import annotations

from dataclasses import dataclass

from replica.fingerprint import Expectation, Range
from replica.runner import RunResult
from replica.scenarios import Catalog, ScenarioRun

#: What the staging debug script saw (seed file): accepted, no welcome, 1011
#: "Internal error" 63 ms after connect. Any run within 200 ms counts as the same.
STAGING_OBSERVATION = Expectation(
    handshake="accepted",
    welcome=False,
    close_code=1011,
    close_reason="Internal error",
    close_after_ms=Range(max=200),
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
                differences=STAGING_OBSERVATION.mismatches(r.observed),
            )
        )
    out.sort(key=lambda e: (not e.real_cause, e.scenario))
    return out


def reproduced(results: list[RunResult]) -> RunResult | None:
    """The seed scenario's own run when it matched the staging observation, else None."""
    for r in results:
        if r.name == SEED_SCENARIO and r.verdict == "pass" and not STAGING_OBSERVATION.mismatches(r.observed):
            return r
    return None
