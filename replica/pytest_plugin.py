"""pytest plugin: a project's own regression tests run scenarios on the replica.

Fixtures ``replica_stack`` (the session's stack, started on first use) and
``replica_run(scenario, handler=..., config=...)`` (one run, its RunResult), and the
marker ``@pytest.mark.replica_scenario("name", expect={...})``, which runs the
scenario and fails the test when the fingerprint differs from ``expect`` (or, with
no ``expect``, from the catalog's expectation). Options: ``--replica-driver``
(local | compose | auto) and ``--replica-config`` (a replica.toml).

The plugin is inactive until a test uses a fixture or the marker: nothing starts and
nothing beyond pytest is imported before that.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

import pytest

if TYPE_CHECKING:
    from replica.drivers.base import Driver
    from replica.fingerprint import Expectation
    from replica.runner import RunResult

MARKER = "replica_scenario"
MARKER_OPTIONS = ("handler", "config", "expect")
DRIVERS = ("local", "compose", "auto")
T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("replica", "staging-replica")
    group.addoption("--replica-driver", choices=DRIVERS, default="local", help="the replica stack's driver (default: local)")
    group.addoption("--replica-config", default=None, help="a project file (replica.toml) for runs that name none (default: the one in the current directory)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(name, handler=None, config=None, expect=None): run the scenario on the replica and "
        "fail when its fingerprint differs from expect (default: the catalog's expectation)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A marked test gets its run as the ``replica_result`` fixture, asked for or not."""
    for item in items:
        if item.get_closest_marker(MARKER) and "replica_result" not in item.fixturenames:  # type: ignore[attr-defined]
            item.fixturenames.append("replica_result")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class MarkedScenario:
    """What a ``replica_scenario`` marker asks for."""

    name: str
    handler: str | None = None
    config: str | None = None
    expect: "Expectation | None" = None


def marked_scenario(marker: pytest.Mark) -> MarkedScenario:
    """The marker's arguments, or a :class:`ConfigError` saying how to write it."""
    from pydantic import ValidationError

    from replica.errors import ConfigError
    from replica.fingerprint import Expectation

    usage = f'write @pytest.mark.{MARKER}("scenario-name", handler=..., config=..., expect={{"close_code": 1011, ...}})'
    if len(marker.args) != 1 or not isinstance(marker.args[0], str):
        raise ConfigError(f"{MARKER} takes one scenario name: {usage}")
    unknown = sorted(set(marker.kwargs) - set(MARKER_OPTIONS))
    if unknown:
        raise ConfigError(f"{MARKER}: unknown option {unknown[0]!r}: {usage}")
    expect = marker.kwargs.get("expect")
    if expect is not None:
        try:
            expect = Expectation.model_validate(expect)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            known = ", ".join(Expectation.model_fields)
            raise ConfigError(f"{MARKER} expect: {where}: {first['msg']} (fingerprint fields: {known})") from None
    config = marker.kwargs.get("config")
    return MarkedScenario(marker.args[0], marker.kwargs.get("handler"), str(config) if config is not None else None, expect)


def inside_event_loop() -> bool:
    """Whether the caller runs inside an event loop (an async test), where ``asyncio.run`` is refused."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclass
class ReplicaStack:
    """The session's stacks, one per project (None: the built-in backend), each started on first use."""

    driver_name: str = "local"
    default_config: str | None = None
    _drivers: dict[Path | None, "Driver"] = field(default_factory=dict)
    #: A stack that failed to start fails every later test at once, not by starting again.
    _failed: dict[Path | None, Exception] = field(default_factory=dict)
    _exit: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def driver(self, config: str | Path | None = None) -> "Driver":
        """The driver of the stack that runs ``config``'s backend (the built-in one when there is no project)."""
        from replica.cli import open_driver
        from replica.errors import ReplicaError
        from replica.project import find_project

        project = find_project(Path(config) if config else self._config(), Path.cwd())
        key = project.file if project else None
        if key in self._failed:
            raise self._failed[key]
        if key not in self._drivers:
            try:
                self._drivers[key] = self._exit.enter_context(open_driver(self.driver_name, project=project))
            except ReplicaError as exc:
                self._failed[key] = exc
                raise
        return self._drivers[key]

    def run(self, scenario: str, handler: str | None = None, config: str | Path | None = None) -> "RunResult":
        """One run of ``scenario`` (``scenario@variant`` too) with ``handler``, judged against the catalog."""
        import asyncio
        import concurrent.futures

        from replica.errors import ConfigError
        from replica.generic_catalog import project_runs, select_runs
        from replica.interrupts import run_interruptible
        from replica.project import find_project
        from replica.runner import Job, run_one
        from replica.scenarios import Catalog

        project = find_project(Path(config) if config else self._config(), Path.cwd())
        if project is None:
            [run] = Catalog.load().select([scenario], handler)
        elif handler is not None:
            raise ConfigError(f"handler={handler!r} applies to the built-in backend: project {project.file} runs its own code")
        else:
            [run] = select_runs(project_runs(project), [scenario])
        job = run_one(self.driver(config), Job(run))
        if not inside_event_loop():
            return run_interruptible(job)
        # An async test: the run gets an event loop of its own on a worker thread while the test's waits.
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="replica-run") as worker:
            return worker.submit(asyncio.run, job).result()

    def close(self) -> None:
        self._exit.close()

    def _config(self) -> Path | None:
        return Path(self.default_config) if self.default_config else None


def replica_errors(call: Callable[[], T]) -> T:
    """``call()``; the replica's own errors become a test failure with their message, not a traceback."""
    from replica.errors import ReplicaError

    try:
        return call()
    except ReplicaError as exc:
        message = exc.message
    pytest.fail(f"replica: {message}", pytrace=False)  # outside the except: no chained traceback


@pytest.fixture(scope="session")
def replica_stack(pytestconfig: pytest.Config) -> Iterator[ReplicaStack]:
    """The session's replica stack: started by the first run, stopped after the last test."""
    stack = ReplicaStack(pytestconfig.getoption("replica_driver"), pytestconfig.getoption("replica_config"))
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def replica_run(replica_stack: ReplicaStack) -> Callable[..., "RunResult"]:
    """``replica_run(scenario, handler=None, config=None)``: one run on the session's stack, its RunResult."""

    def run(scenario: str, handler: str | None = None, config: str | Path | None = None) -> "RunResult":
        return replica_errors(lambda: replica_stack.run(scenario, handler=handler, config=config))

    return run


@pytest.fixture
def replica_result(request: pytest.FixtureRequest, replica_run: Callable[..., "RunResult"]) -> "RunResult":
    """The run of the scenario the test's ``replica_scenario`` marker names."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        pytest.fail(f"replica_result needs @pytest.mark.{MARKER}(...) on the test", pytrace=False)
    marked = replica_errors(lambda: marked_scenario(marker))
    return replica_run(marked.name, handler=marked.handler, config=marked.config)


def mismatches(marked: MarkedScenario, result: "RunResult") -> list[str]:
    """How the run differs from the marker's ``expect``, else from the catalog's expectation."""
    if marked.expect is not None:
        return marked.expect.mismatches(result.observed)
    if result.verdict == "observed":
        return ["nothing expected of this run: give expect={...} or freeze the project's expectations (replica scenarios freeze)"]
    return result.mismatches


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return
    from replica.report import evidence_lines

    marked = marked_scenario(marker)
    result: RunResult = item.funcargs["replica_result"]  # type: ignore[attr-defined]
    found = mismatches(marked, result)
    if found:
        lines = [f"scenario {result.name} (handler {result.handler}) showed: {result.observed.summary()}"]
        lines += [f"  {m}" for m in found] + [f"  {e}" for e in evidence_lines(result)]
        pytest.fail("\n".join(lines), pytrace=False)
