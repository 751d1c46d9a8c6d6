"""The generic fault catalog: the same faults for any project's dependencies and points.

For each dependency NAME::

    NAME:down           its proxy disabled before the backend starts
    NAME:slow-startup   every round trip 1 s slower while the backend starts (removed once ready)
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

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from replica.errors import ConfigError
from replica.expectations import EXPECT_FILE, load_expectations, with_expectations
from replica.scenarios import BackendSpec, Catalog, HopDown, ProbeSpec, Scenario, ScenarioRun, ToxicSpec

if TYPE_CHECKING:
    from replica.project import Project

#: The handler label of a project's runs: the project's own backend answers, not a variant.
PROJECT_HANDLER = "project"
SLOW_STARTUP_MS = 1000
LATENCY_MS = 500
DELAY = "1s"


def _toxic(hop: str, type_: str, when: str, until: str | None = None, **attributes: int) -> ToxicSpec:
    return ToxicSpec(hop=hop, type=type_, attributes=attributes, when=when, until=until)


#: suffix → (title, hypothesis, faults for hop NAME)
DEPENDENCY_FAULTS: dict[str, tuple[str, str, Callable[[str], dict]]] = {
    "down": (
        "{name} is down",
        "{name} refuses every connection from before the backend starts.",
        lambda hop: {"down": (HopDown(hop=hop, when="before_start"),)},
    ),
    "slow-startup": (
        "{name} is slow during startup",
        f"Every round trip to {{name}} takes {SLOW_STARTUP_MS} ms longer while the backend starts; "
        "the latency is removed once it is ready.",
        lambda hop: {"toxics": (_toxic(hop, "latency", "before_start", "ready", latency=SLOW_STARTUP_MS),)},
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


def project_probe(project: Project) -> ProbeSpec:
    """The probe a project's ``[probe]`` describes (its health check is the backend's ``health``)."""
    config = project.probe
    token = config.token
    return ProbeSpec(
        ws_path=config.path,
        health_path=project.backend.health,
        welcome=config.welcome,
        ping=config.ping.send if config.ping else None,
        pong=config.ping.expect if config.ping else {"type": "pong"},
        claims=dict(config.claims) if token == "mint" else None,
        token_env=token.removeprefix("env:") if token.startswith("env:") else None,
        with_token=token != "none",
        e2e_headers=False,
    )


def generic_scenarios(project: Project) -> list[Scenario]:
    """``healthy``, then each dependency's faults, then each failpoint's, in declaration order."""
    common = {
        "backend": BackendSpec(handler=PROJECT_HANDLER),
        "probe": project_probe(project),
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


def project_runs(project: Project, expect_file: Path | None = None) -> list[ScenarioRun]:
    """Every generic run, held to ``expect_file`` (default: ``replica-expect.yaml`` next to
    the project file, when there is one); a run the file does not name is observed."""
    catalog = generic_catalog(project)
    runs = catalog.runs()
    path = expect_file or project.root / EXPECT_FILE
    if expect_file is not None or path.is_file():
        runs = with_expectations(runs, load_expectations(path, known=list(catalog.scenarios)))
    return runs


def select_runs(runs: list[ScenarioRun], names: list[str]) -> list[ScenarioRun]:
    """The runs named, in the order named; an unknown name is a :class:`ConfigError` listing the known ones."""
    by_name = {run.name: run for run in runs}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ConfigError(f"unknown scenario {unknown[0]!r} (known: {', '.join(by_name)})")
    return [by_name[name] for name in names]
