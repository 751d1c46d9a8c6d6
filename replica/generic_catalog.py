"""The generic fault catalog: the same faults for any project's dependencies and points.

For each dependency NAME::

    NAME:down           its proxy disabled before the backend starts
    NAME:slow-startup   every round trip 1 s slower from before the start on
    NAME:hung           once ready, it stops answering (connections held open)
    NAME:reset          once ready, every connection to it is reset
    NAME:latency        once ready, every round trip 500 ms slower

plus ``healthy`` (no fault), and for each failpoint POINT the project declares::

    POINT:raise         raise RuntimeError at the point
    POINT:hang          never return from the point
    POINT:delay         1 s late at the point

A generic scenario carries no expectation: its run is *observed* until the
expectation file next to the project file (``replica-expect.yaml``, see
:mod:`replica.expectations`) says what it should show.
"""

from __future__ import annotations

from typing import Callable

from replica.expectations import EXPECT_FILE, load_expectations, with_expectations
from replica.project import Project
from replica.scenarios import BackendSpec, Catalog, HopDown, ProbeSpec, Scenario, ScenarioRun, ToxicSpec

#: The handler label of a project's runs: the project's own backend answers, not a variant.
PROJECT_HANDLER = "project"
SLOW_STARTUP_MS = 1000
LATENCY_MS = 500
DELAY = "1s"


def _toxic(hop: str, type_: str, when: str, **attributes: int) -> ToxicSpec:
    return ToxicSpec(hop=hop, type=type_, attributes=attributes, when=when)


#: suffix → (title, hypothesis, faults for hop NAME)
DEPENDENCY_FAULTS: dict[str, tuple[str, str, Callable[[str], dict]]] = {
    "down": (
        "{name} is down",
        "{name} refuses every connection from before the backend starts.",
        lambda hop: {"down": (HopDown(hop=hop, when="before_start"),)},
    ),
    "slow-startup": (
        "{name} is slow from startup on",
        f"Every round trip to {{name}} takes {SLOW_STARTUP_MS} ms longer, from before the backend starts.",
        lambda hop: {"toxics": (_toxic(hop, "latency", "before_start", latency=SLOW_STARTUP_MS),)},
    ),
    "hung": (
        "{name} hangs once the backend is ready",
        "{name} stops answering after startup: connections stay open, no reply comes back.",
        lambda hop: {"toxics": (_toxic(hop, "timeout", "after_ready", timeout=0),)},
    ),
    "reset": (
        "{name} resets connections once the backend is ready",
        "After startup, every connection to {name} is reset (TCP RST).",
        lambda hop: {"toxics": (_toxic(hop, "reset_peer", "after_ready", timeout=0),)},
    ),
    "latency": (
        "{name} is slow once the backend is ready",
        f"After startup, every round trip to {{name}} takes {LATENCY_MS} ms longer.",
        lambda hop: {"toxics": (_toxic(hop, "latency", "after_ready", latency=LATENCY_MS),)},
    ),
}

#: suffix → (failpoint action, hypothesis)
FAILPOINT_FAULTS: dict[str, tuple[str, str]] = {
    "raise": ("raise(RuntimeError: failpoint {point})", "The code at {point} raises an unexpected exception."),
    "hang": ("hang", "The code at {point} never returns."),
    "delay": (f"delay({DELAY})", f"The code at {{point}} takes {DELAY} longer."),
}


def generic_scenarios(project: Project) -> list[Scenario]:
    """``healthy``, then each dependency's faults, then each failpoint's, in declaration order."""
    common = {
        "backend": BackendSpec(handler=PROJECT_HANDLER),
        "probe": ProbeSpec(e2e_headers=False, with_token=project.probe.token != "none"),
        "ready_timeout_s": project.backend.startup_timeout,
        "expect": None,
    }
    scenarios = [Scenario(name="healthy", title="No fault", hypothesis="Everything answers.", **common)]
    for name in project.dependencies:
        for suffix, (title, hypothesis, faults) in DEPENDENCY_FAULTS.items():
            scenarios.append(
                Scenario(
                    name=f"{name}:{suffix}",
                    title=title.format(name=name),
                    hypothesis=hypothesis.format(name=name),
                    **common,
                    **faults(name),
                )
            )
    for point in project.backend.failpoints:
        for suffix, (action, hypothesis) in FAILPOINT_FAULTS.items():
            backend = BackendSpec(handler=PROJECT_HANDLER, failpoints=f"{point}={action.format(point=point)}")
            scenarios.append(
                Scenario(
                    name=f"{point}:{suffix}",
                    title=f"{point}: {suffix}",
                    hypothesis=hypothesis.format(point=point),
                    **{**common, "backend": backend},
                )
            )
    return scenarios


def generic_catalog(project: Project) -> Catalog:
    return Catalog(generic_scenarios(project))


def project_runs(project: Project) -> list[ScenarioRun]:
    """Every generic run, held to ``replica-expect.yaml`` next to the project file when there is one."""
    catalog = generic_catalog(project)
    runs = catalog.runs()
    path = project.root / EXPECT_FILE
    if path.is_file():
        runs = with_expectations(runs, load_expectations(path, known=list(catalog.scenarios)))
    return runs
