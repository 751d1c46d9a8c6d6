"""The ``replica`` command line.

Exit codes: 0 every outcome matched its expectation, 1 some did not, 2 usage or
infrastructure error, 130 interrupted (everything started is stopped first).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Iterator, Optional, TypeVar

import typer
from rich.console import Console

from replica import PROJECT_FILE
from replica.errors import ConfigError, ReplicaError
from replica.interrupts import (
    announce_interrupt, ignore_interrupts, install_interrupt_handlers, raise_if_interrupted, run_interruptible,
)

# A command imports what it uses when it runs: `replica --help` or `replica down` does not
# load the catalog's models, the probe's clients or the backend's servers.
if TYPE_CHECKING:
    from replica.diagnose import Candidate, Observed
    from replica.drivers.base import Driver
    from replica.drivers.local.process import ManagedProcess
    from replica.project import Project
    from replica.runner import Job, RunResult

app = typer.Typer(add_completion=False, no_args_is_help=True, help="A local staging replica with fault injection.")
scenarios_app = typer.Typer(no_args_is_help=True, help="The scenario catalog.")
proxy_app = typer.Typer(no_args_is_help=True, help="The Toxiproxy-compatible fault proxy.")
report_app = typer.Typer(no_args_is_help=True, help="Reports of runs.")
app.add_typer(scenarios_app, name="scenarios")
app.add_typer(proxy_app, name="proxy")
app.add_typer(report_app, name="report")

# Piped output (CI logs, files) gets room for the tables (a cause × seven fixes) instead of Rich's 80 columns.
PIPED_WIDTH = 200
# No ``:emoji:`` codes: text with colons (log lines, failpoint specs) prints as it is, and
# Rich does not load its emoji table (tens of ms) for the first line printed.
out = Console(width=None if sys.stdout.isatty() else PIPED_WIDTH, emoji=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else PIPED_WIDTH, emoji=False)

PARALLEL_HELP = "lanes computing at once (default: the driver's); runs that wait by design get lanes of their own"
CONFIG_HELP = "a project file (replica.toml; default: the one in the current directory): run its backend"
#: `reproduce --repeat`: runs of the real cause per fix, for the success criteria (the first is the fix table's).
CRITERIA_REPEATS = 3
T = TypeVar("T")


def cli_errors(func: Callable) -> Callable:
    """Turn the project's errors and Ctrl-C into a message and a distinct exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        restore = install_interrupt_handlers()
        try:
            raise_if_interrupted()  # one held while the command loaded
            return func(*args, **kwargs)
        except ReplicaError as exc:
            err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            announce_interrupt()
            restore = ignore_interrupts  # exiting: a second Ctrl-C must not change the exit code
            raise typer.Exit(130) from None
        finally:
            restore()

    return wrapper


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, where Ctrl-C cancels ``main`` and then ends as KeyboardInterrupt."""
    return run_interruptible(main)


def progress(message: str) -> None:
    err.print(f"[dim]· {message}[/]", highlight=False)


def compose_available() -> bool:
    try:
        from replica.drivers.compose import compose_ready
    except ImportError:
        return False
    return compose_ready()


def project_option(config: Path | None) -> "Project | None":
    """``--config PATH``, else ``replica.toml`` in the current directory, else None (the built-in backend)."""
    if config is None and not (Path.cwd() / PROJECT_FILE).is_file():
        return None  # the built-in backend, without loading the project file's models
    from replica.project import find_project

    return find_project(config, Path.cwd())


DRIVERS = ("local", "compose", "auto")


def check_driver(name: str) -> None:
    if name not in DRIVERS:
        raise ConfigError(f"unknown driver {name!r} (choose from {', '.join(DRIVERS)})")


@contextlib.contextmanager
def open_driver(name: str, parallel: int | None = None, project: "Project | None" = None) -> Iterator[Driver]:
    """The chosen driver, on a running stack of the same backend when there is one, else on a new one."""
    from replica.drivers.stack import read_state

    check_driver(name)
    if name == "auto":
        name = "compose" if compose_available() and (project is None or project.compose_refusal() is None) else "local"
        progress(f"driver: {name} (auto)")
    kwargs = {"max_parallel_lanes": parallel} if parallel else {}
    if name == "compose":
        from replica.drivers.compose import ComposeDriver

        driver = ComposeDriver.start(progress=progress, project=project, **kwargs)
        try:
            yield driver
        finally:
            progress("stopping the compose stack")
            driver.close()
        return
    info = read_state()
    if info is not None and info.driver == "local" and info.project == (str(project.file) if project else None):
        import replica.warm
        from replica.drivers.up.remote import RemoteDriver

        warm = "; warm command process" if replica.warm.in_warm_process else ""
        progress(f"using the running stack (replica up, pid {info.owner_pid}{warm})")
        yield RemoteDriver(info, **kwargs)
        return
    from replica.drivers.local.driver import LocalDriver
    from replica.drivers.local.group import ProcessGroup

    with ProcessGroup() as group:
        started = time.monotonic()
        driver = LocalDriver.start(group, progress, project=project, **kwargs)
        progress(f"stack ready in {time.monotonic() - started:.1f} s")
        yield driver


def run_scenarios(driver: Driver, jobs: list[Job], *, live: bool = True) -> list[RunResult]:
    from replica.runner import run_jobs

    total = len(jobs)
    done = 0

    marks = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "observed": "[cyan]seen[/]"}

    def show(result: RunResult) -> None:
        nonlocal done
        done += 1
        if live:
            mark = marks[result.verdict]
            err.print(f"[dim]{done:>4}/{total}[/] {mark} {result.name} [dim]{result.observed.summary()}[/]", highlight=False)

    return run_async(run_jobs(driver, jobs, on_result=show))


def write_run_reports(results: list[RunResult], junit_path: Path | None, html_path: Path | None, command: str) -> None:
    """The JUnit and HTML reports a command was asked for."""
    from replica import report

    if junit_path:
        from replica.junit import results_junit

        report.write_text(junit_path, results_junit(results, suite=f"replica {command}"))
    if html_path:
        from replica.html_report import html_page

        report.write_text(html_path, html_page(results, title=f"staging-replica: {command}"))


# ----------------------------------------------------------------------------- reproduce


@app.command()
@cli_errors
def reproduce(
    code: str = typer.Argument(..., help="the close code to reproduce: 1011"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the runs as JSON to this file"),
    junit_path: Optional[Path] = typer.Option(None, "--junit", help="write the runs as JUnit XML to this file (for CI)"),
    html_path: Optional[Path] = typer.Option(None, "--html", help="write a self-contained HTML page of the runs to this file"),
    driver: str = typer.Option("local", help="local | compose | auto"),
    parallel: Optional[int] = typer.Option(None, min=1, help=PARALLEL_HELP),
    repeat: int = typer.Option(CRITERIA_REPEATS, min=1, help="runs of the real cause per fix expected to cure it, for the success criteria"),
) -> None:
    """Reproduce the seed's 1011, tell its cause from the seed's hypotheses, and check each fix."""
    from rich.table import Table

    from replica import report
    from replica.reproduce import SEED_SCENARIO, criteria_by_handler, explanations, reproduce_jobs, reproduce_runs, reproduced
    from replica.scenarios import Catalog

    if code != "1011":
        raise ConfigError(f"only 1011 can be reproduced so far (got {code!r})")
    for path in (json_path, junit_path, html_path):
        report.check_writable(path)
    catalog = Catalog.load()
    runs, causes = reproduce_runs(catalog)
    jobs = reproduce_jobs(runs, repeat)
    with open_driver(driver, parallel) as chosen:
        progress(f"running {len(jobs)} scenario runs on the {chosen.name} driver")
        results = run_scenarios(chosen, jobs, live=False)
        driver_name = chosen.name
    seed = reproduced(results, catalog)
    seed_result = next(r for r in results if r.name == SEED_SCENARIO)
    out.rule("[bold]staging-replica: reproduce 1011")
    out.print(report.debug_block(seed_result.observation), highlight=False, markup=False)
    out.print()
    if seed:
        out.print(
            f"[bold green]Reproduced[/] {SEED_SCENARIO}: close {seed.observed.close_code} "
            f'"{seed.observed.close_reason}", no welcome, {seed.observed.close_after_ms:.0f} ms after accept '
            "(staging: 1011 \"Internal error\" after 63 ms)."
        )
        for line in report.evidence_lines(seed):
            out.print("  " + line, markup=False, highlight=False)
    else:
        out.print(f"[bold red]Not reproduced[/]: {SEED_SCENARIO} gave {seed_result.observed.summary()}")
    table = Table(title="Which hypothesis explains what staging saw", title_justify="left")
    for col in ("cause", "from", "fingerprint (incident handler)", "explains it?"):
        table.add_column(col)
    for e in explanations(results, catalog):
        source = "public record" if e.real_cause else "seed five-whys"
        verdict = "[green]yes[/]" if e.explains else "[red]no[/]: " + "; ".join(e.differences)
        table.add_row(e.scenario, source, e.result.observed.summary(), verdict)
    out.print(table)
    out.print(report.fix_matrix(results, causes))
    out.print("[dim]cells: what the staging test sees with that handler; ✓ the catalog expects it, ✗ it does not; - not in the catalog[/]")
    criteria = criteria_by_handler(results)
    out.print(report.criteria_matrix(criteria, repeat))
    report.print_failures(err, results)
    if json_path:
        met = {handler: [c.model_dump() for c in found] for handler, found in criteria.items()}
        report.write_json(json_path, results, command="reproduce 1011", reproduced=seed is not None, criteria=met)
    write_run_reports(results, junit_path, html_path, "reproduce 1011")
    failed = sum(r.verdict == "fail" for r in results)
    out.print(f"{len(results) - failed} passed, {failed} failed ({driver_name} driver)")
    raise typer.Exit(0 if seed and not failed else 1)


# ----------------------------------------------------------------------------- scenarios


@scenarios_app.command("list")
@cli_errors
def scenarios_list(
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
) -> None:
    """Every scenario and its fix checks."""
    from rich.table import Table

    from replica.generic_catalog import project_runs
    from replica.scenarios import Catalog

    project = project_option(config)
    runs = Catalog.load().runs() if project is None else project_runs(project)
    table = Table(title="Scenarios", title_justify="left")
    for col in ("name", "handler", "expected", "title"):
        table.add_column(col)
    for run in runs:
        expected = run.expect.describe() if run.expect is not None else "(observed)"
        table.add_row(run.name, run.handler, expected, run.scenario.title if "@" not in run.name else "")
    out.print(table)


@scenarios_app.command("run")
@cli_errors
def scenarios_run(
    names: Optional[list[str]] = typer.Argument(None, help="scenario or scenario@variant names"),
    all_: bool = typer.Option(False, "--all", help="every scenario and fix check"),
    repeat: int = typer.Option(1, min=1, help="run each this many times"),
    handler: Optional[str] = typer.Option(None, help="a variant or module:function to run instead of the scenario's"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the runs as JSON to this file"),
    junit_path: Optional[Path] = typer.Option(None, "--junit", help="write the runs as JUnit XML to this file (for CI)"),
    html_path: Optional[Path] = typer.Option(None, "--html", help="write a self-contained HTML page of the runs to this file"),
    driver: str = typer.Option("local", help="local | compose | auto"),
    parallel: Optional[int] = typer.Option(None, min=1, help=PARALLEL_HELP),
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
    expect: Optional[Path] = typer.Option(None, "--expect", help="with a project: the expectation file (default: replica-expect.yaml next to it)"),
    shard: Optional[str] = typer.Option(None, "--shard", help="K/N: run only the K-th of N stable parts of the runs (merge the reports with `replica report merge`)"),
) -> None:
    """Run scenarios and compare each fingerprint with its expectation (a project's runs without one are observed)."""
    from replica import report
    from replica.generic_catalog import project_runs, select_runs
    from replica.runner import repeated
    from replica.scenarios import Catalog
    from replica.shard import parse_shard, plan, shard_jobs

    part = parse_shard(shard) if shard is not None else None
    for path in (json_path, junit_path, html_path):
        report.check_writable(path)
    if all_ == bool(names):
        raise ConfigError("name scenarios or pass --all (not both)")
    project = project_option(config)
    if project is None:
        if expect is not None:
            raise ConfigError("--expect applies to a project (replica.toml): the built-in catalog carries its own expectations")
        catalog = Catalog.load()
        if all_:
            runs = catalog.runs()
            if handler:
                runs = [catalog.with_handler(s, handler) for s in catalog.scenarios.values()]
        else:
            runs = catalog.select(list(names or []), handler)
    else:
        if handler is not None:
            raise ConfigError("--handler applies to the built-in backend: a project runs its own code")
        runs = project_runs(project, expect)
        runs = runs if all_ else select_runs(runs, list(names or []))
    jobs = repeated(runs, repeat)
    mine = shard_jobs(jobs, part) if part else jobs
    if part:
        progress(f"shard {part}: {len(mine)} of {len(jobs)} runs")
    results: list[RunResult] = []
    if mine:  # a shard can be empty when N exceeds the runs
        with open_driver(driver, parallel, project) as chosen:
            results = run_scenarios(chosen, mine)
    summarize(results, json_path, junit_path, html_path, plan=plan(jobs, part))


def summarize(
    results: list[RunResult],
    json_path: Path | None,
    junit_path: Path | None = None,
    html_path: Path | None = None,
    **extra: object,
) -> None:
    """The runs' table, their failures, the JSON report and the counts; exits 1 if any run failed."""
    from replica import report

    out.print(report.results_table(results))
    report.print_failures(err, results)
    if json_path:
        report.write_json(json_path, results, **extra)
    write_run_reports(results, junit_path, html_path, "scenarios run")
    counts = {verdict: sum(r.verdict == verdict for r in results) for verdict in ("pass", "fail", "observed")}
    observed = f", {counts['observed']} observed (no expectation: `replica scenarios freeze` writes them)" if counts["observed"] else ""
    out.print(f"{counts['pass']} passed, {counts['fail']} failed{observed}")
    raise typer.Exit(1 if counts["fail"] else 0)


@scenarios_app.command("freeze")
@cli_errors
def scenarios_freeze(
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
    repeat: int = typer.Option(3, min=1, max=100, help="runs of each scenario; their spread widens the timing ranges"),
    out_path: Optional[Path] = typer.Option(None, "--out", help="write the expectations here (default: standard output)"),
    driver: str = typer.Option("local", help="local | compose | auto"),
    parallel: Optional[int] = typer.Option(None, min=1, help=PARALLEL_HELP),
) -> None:
    """Run a project's scenarios and print what they showed as expectations (replica-expect.yaml)."""
    from replica import report
    from replica.expectations import dump_expectations, freeze
    from replica.generic_catalog import generic_catalog
    from replica.runner import repeated

    report.check_writable(out_path)
    project = project_option(config)
    if project is None:
        raise ConfigError("no project: give --config PATH to a replica.toml (or run where one is)")
    runs = generic_catalog(project).runs()
    with open_driver(driver, parallel, project) as chosen:
        progress(f"running {len(runs)} scenarios {repeat} times each on the {chosen.name} driver")
        results = run_scenarios(chosen, repeated(runs, repeat), live=False)
    frozen = freeze({run.name: [r.observed for r in results if r.name == run.name] for run in runs})
    text = dump_expectations(frozen, source=project.file.name, runs=repeat)
    for name, fields in frozen.unstable.items():
        progress(f"{name}: {', '.join(fields)} differed between runs: not checked")
    if out_path is None:
        sys.stdout.write(text)
    else:
        report.write_text(out_path, text)
        progress(f"wrote {out_path}")


@report_app.command("merge")
@cli_errors
def report_merge(
    reports: list[Path] = typer.Argument(..., help="the JSON reports of every shard (scenarios run --shard K/N --json ...)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the merged report to this file"),
    junit_path: Optional[Path] = typer.Option(None, "--junit", help="write the runs as JUnit XML to this file (for CI)"),
    html_path: Optional[Path] = typer.Option(None, "--html", help="write a self-contained HTML page of the runs to this file"),
) -> None:
    """Merge the shards' JSON reports into one and print the summary of the whole run."""
    from replica import report
    from replica.report_merge import load_report, merge_reports, result_from_entry

    for path in (json_path, junit_path, html_path):
        report.check_writable(path)
    merged = merge_reports([(str(path), load_report(path)) for path in reports])
    results = [result_from_entry(entry) for entry in merged["scenarios"]]
    summarize(results, json_path, junit_path, html_path, plan=merged["plan"], merged_from=merged["merged_from"])


# ----------------------------------------------------------------------------- diagnose


def read_observed(path: Path) -> "Observed":
    """The observation in a file: what `replica probe --json` wrote, or a bare fingerprint."""
    from pydantic import ValidationError

    from replica.diagnose import observed_from_json

    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    try:
        return observed_from_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {first['msg']} (expected `replica probe --json` output or a fingerprint object)") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def catalog_candidates(driver: str, parallel: int | None, repeats: int, refresh: bool) -> list["Candidate"]:
    """The catalog's causes as run locally: from the cache, or run now and cached."""
    from replica import candidates
    from replica.scenarios import Catalog

    chosen_name = "compose" if driver == "auto" and compose_available() else ("local" if driver == "auto" else driver)
    key = candidates.cache_key(repeats, chosen_name)
    cached = None if refresh else candidates.load_cached(key)
    if cached is not None:
        progress(f"causes as run before (cached: {candidates.cache_path(key)})")
        return cached
    catalog = Catalog.load()
    jobs = candidates.cause_jobs(catalog, repeats)
    with open_driver(chosen_name, parallel) as chosen:
        progress(f"running the catalog's {len(catalog.scenarios)} causes {repeats} times each on the {chosen.name} driver")
        results = run_scenarios(chosen, jobs, live=False)
    found = candidates.candidates_from(results, catalog)
    for c in found:
        for run in c.left_out:
            progress(f"{c.scenario} {run}: not its expected fingerprint, left out of its samples")
    progress(f"cached for the next diagnosis: {candidates.store(key, found)}")
    return found


@app.command()
@cli_errors
def diagnose(
    observed_path: Optional[Path] = typer.Option(
        None, "--observed", help="what `replica probe --json` wrote, or a fingerprint object typed from a dashboard"
    ),
    url: Optional[str] = typer.Option(None, help="probe this URL first (and follow up when causes tie)"),
    token: Optional[str] = typer.Option(None, envvar="REPLICA_TOKEN", help="JWT for --url"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the ranking as JSON to this file"),
    junit_path: Optional[Path] = typer.Option(None, "--junit", help="write the diagnosis as JUnit XML to this file (for CI)"),
    repeat: int = typer.Option(5, min=2, help="runs per cause; their spread sets each cause's timing range"),
    refresh: bool = typer.Option(False, help="run the causes again even when cached"),
    follow_up_wait: float = typer.Option(10.0, min=0, max=600, help="with --url: seconds to wait for /health/ready before probing again"),
    driver: str = typer.Option("local", help="local | compose | auto"),
    parallel: Optional[int] = typer.Option(None, min=1, help=PARALLEL_HELP),
) -> None:
    """Which cause of the catalog explains an observed failure, best first."""
    from replica import diagnose as dx
    from replica import report
    from replica.probe import ProbeOptions, follow_up, probe

    if (observed_path is None) == (url is None):
        raise ConfigError("give --observed FILE or --url URL (exactly one)")
    check_driver(driver)
    for path in (json_path, junit_path):
        report.check_writable(path)
    if observed_path is not None:
        observed = read_observed(observed_path)
        source = str(observed_path)
    else:
        assert url is not None
        token = token_or_minted(token)
        observation = run_async(probe(url, token))
        observed, source = dx.observed_from_probe(observation), url
    found = catalog_candidates(driver, parallel, repeat, refresh)
    ranked = dx.rank(observed, found)
    if url is not None and len(dx.explaining(ranked)) > 1:
        progress(f"causes tie on the fingerprint: following up on {url} (readiness, then a second probe)")
        follow = run_async(follow_up(url, token, ProbeOptions(), follow_up_wait))
        observed = dx.with_follow_up(observed, follow)
        ranked = dx.rank(observed, found)
    out.print(f"[bold]Observed[/] ({source}): {observed.summary()}", highlight=False)
    for name, value in observed.features.items():
        out.print(f"  {dx.FEATURES[name]}: {value}", highlight=False, markup=False)
    out.print(report.diagnosis_table(ranked))
    explaining, tied = dx.explaining(ranked), dx.tied(ranked)
    apart = dx.tells_apart([c for c in found if c.scenario in {t.scenario for t in explaining}])
    if not explaining:
        best = ranked[0]
        out.print(
            "[bold red]Not explained by anything in the catalog.[/] "
            f"Nearest: {best.scenario} (score {best.score:.2f}), which differs in "
            + "; ".join(m.text for m in best.mismatches),
            highlight=False,
        )
    elif len(tied) == 1:
        out.print(f"[bold green]Explained by[/] {tied[0].scenario}: {tied[0].title}", highlight=False)
        if len(explaining) > 1:
            others = ", ".join(r.scenario for r in explaining if r is not tied[0])
            out.print(f"  (same fingerprint as {others}; it also shows the observed " + ", ".join(dx.FEATURES[f] for f in tied[0].agreeing) + ")")
    else:
        out.print(f"[bold yellow]Explained equally by[/] {', '.join(r.scenario for r in tied)}: the fingerprint cannot tell them apart.")
    if len(explaining) > 1 and apart:
        out.print("What tells them apart:")
        for feature, values in apart.items():
            out.print(f"  {dx.FEATURES[feature]}:", highlight=False)
            for scenario, value in values.items():
                out.print(f"    {scenario}: {value}", highlight=False, markup=False)
        if url is None and len(tied) > 1:
            out.print("[dim]Run `replica diagnose --url URL` against the live system to follow up (readiness, a second probe).[/]")
    if json_path:
        document = {
            "observed": observed.fingerprint,
            "observed_features": observed.features,
            "candidates": [dict(r.model_dump(exclude={"mismatches"}), mismatches=[dict(m.model_dump(), text=m.text) for m in r.mismatches]) for r in ranked],
            "explained_by": [r.scenario for r in tied],
            "tells_apart": apart,
        }
        report.write_text(json_path, json.dumps(document, indent=2) + "\n")
    if junit_path:
        from replica.junit import diagnosis_junit

        report.write_text(junit_path, diagnosis_junit(observed.summary(), ranked))
    raise typer.Exit(0 if explaining else 1)


# ----------------------------------------------------------------------------- validate


@app.command()
@cli_errors
def validate(
    handler: str = typer.Option(..., help="a variant or module:function (imported from the current directory)"),
    repeat: int = typer.Option(10, min=1, help="runs against the real cause"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the runs and the criteria as JSON to this file"),
    driver: str = typer.Option("local", help="local | compose | auto"),
    parallel: Optional[int] = typer.Option(None, min=1, help=PARALLEL_HELP),
) -> None:
    """Check a handler against the seed's six success criteria, under the real cause."""
    from replica import report
    from replica.backend.handlers.variants import BUILTIN_HANDLERS
    from replica.reproduce import criteria_by_handler, criteria_jobs
    from replica.scenarios import Catalog

    if ":" not in handler and handler not in BUILTIN_HANDLERS:
        raise ConfigError(f"unknown handler {handler!r}: use one of {', '.join(BUILTIN_HANDLERS)} or package.module:function")
    report.check_writable(json_path)
    jobs = criteria_jobs(Catalog.load(), handler, repeat)
    with open_driver(driver, parallel) as chosen:
        results = run_scenarios(chosen, jobs)
    by_handler = criteria_by_handler(results)
    out.print(report.criteria_matrix(by_handler, repeat))
    met = all(c.passed for c in by_handler[handler])
    if json_path:
        criteria = [c.model_dump() for c in by_handler[handler]]
        report.write_json(json_path, results, command=f"validate --handler {handler}", criteria=criteria, met=met)
    out.print(f"{handler}: " + ("[green]every criterion met[/]" if met else "[red]criteria not met[/]"))
    raise typer.Exit(0 if met else 1)


# ----------------------------------------------------------------------------- probe


def token_or_minted(token: str | None) -> str | None:
    """The token given, else one the running stack's auth service accepts (if a stack runs)."""
    from replica.drivers.stack import read_state

    info = read_state()
    if token is None and info is not None:
        from replica.auth.tokens import mint_token

        return mint_token(info.jwt_secret)
    return token


@app.command("probe")
@cli_errors
def probe_command(
    url: Optional[str] = typer.Option(None, help="backend base URL, e.g. https://api.staging.example.com (default: the running stack)"),
    token: Optional[str] = typer.Option(None, envvar="REPLICA_TOKEN", help="JWT to send (default: minted by the running stack)"),
    e2e_headers: bool = typer.Option(True, help="send the staging test's E2E headers"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the observation as JSON"),
    config: Optional[Path] = typer.Option(None, "--config", help="a project file (replica.toml): probe as its [probe] says"),
) -> None:
    """Connect like the staging test (or a project's \\[probe]) and print what a client sees."""
    from replica import report
    from replica.drivers.stack import read_state
    from replica.probe import ProbeOptions, probe

    report.check_writable(json_path)
    project = project_option(config)
    info = read_state()
    if url is None:
        if info is None or not info.backend_url:
            raise ConfigError("no --url given and no stack running: start one with `replica up` or pass --url")
        url = info.backend_url
    if project is None:
        token = token_or_minted(token)
        options = ProbeOptions(e2e_headers=e2e_headers)
    else:
        from replica.auth.tokens import mint_with_claims
        from replica.generic_catalog import project_probe
        from replica.runner import options_from_spec, probe_token

        spec = project_probe(project)
        options = options_from_spec(spec)
        if token is None and spec.with_token and spec.token_env is None and info is None:
            raise ConfigError('probe.token = "mint" needs the running stack\'s secret: start it with `replica up --config` or pass --token')
        token = token if token is not None else probe_token(spec, lambda claims: mint_with_claims(info.jwt_secret, claims))
    observation = run_async(probe(url, token, options))
    out.print(report.debug_block(observation), highlight=False, markup=False)
    out.print(f"\nfingerprint: {observation.fingerprint.model_dump_json()}", highlight=False)
    if json_path:
        report.write_text(json_path, observation.model_dump_json(indent=2) + "\n")
    raise typer.Exit(0 if observation.fingerprint.welcome and observation.fingerprint.pong else 1)


# ----------------------------------------------------------------------------- up / down / status


@app.command()
@cli_errors
def up(
    handler: str = typer.Option("incident", help="handler variant or module:function"),
    failpoints: str = typer.Option("", help="failpoint spec, e.g. 'startup.supervisor=skip'"),
    defects: str = typer.Option("", help="comma list of defects, e.g. auth-log-json"),
    startup_mode: str = typer.Option("blocking", help="blocking | background"),
    server: str = typer.Option("uvicorn", help="uvicorn | gunicorn"),
    max_lanes: Optional[int] = typer.Option(None, min=1, max=256, help="lanes open at once through the lanes API (default 16)"),
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
) -> None:
    """Start the replica and keep it running until Ctrl-C or `replica down`."""
    import asyncio

    from replica.drivers.base import LaneRequest
    from replica.drivers.local.driver import LocalDriver
    from replica.drivers.local.group import ProcessGroup
    from replica.drivers.stack import stack_ownership, write_state
    from replica.drivers.up.server import LanesServer
    from replica.polling import wait_until_async
    from replica.state_paths import commands_socket_path, lanes_socket_path, state_file
    from replica.warm.server import start_command_server
    from replica.generic_catalog import PROJECT_HANDLER
    from replica.scenarios import BackendSpec, builtin_backend

    project = project_option(config)
    if project is None:
        spec = builtin_backend(
            handler=handler,
            failpoints=failpoints,
            defects=tuple(d for d in defects.split(",") if d),
            startup_mode=startup_mode,
            server=server,
        )
        request = LaneRequest(backend=spec)
    else:
        given = [f"--{n}" for n, v, d in (("handler", handler, "incident"), ("defects", defects, ""), ("startup-mode", startup_mode, "blocking"), ("server", server, "uvicorn")) if v != d]
        if given:
            raise ConfigError(f"{', '.join(given)} applies to the built-in backend: a project's backend is configured in {project.file}")
        spec = BackendSpec(handler=PROJECT_HANDLER, failpoints=project.check_failpoints(failpoints))
        request = LaneRequest(backend=spec, ready_timeout_s=project.backend.startup_timeout)
        handler = f"{project.backend.app or ' '.join(project.backend.command or ())} ({project.file})"

    async def serve(driver: LocalDriver, commands: "ManagedProcess") -> None:
        async with driver.lane(request) as lane:
            if not lane.outcome.ready:
                raise ConfigError(f"the backend did not come up: {lane.outcome.detail}")
            lanes = LanesServer(driver, lanes_socket_path(), max_open_lanes=max_lanes)
            try:
                await lanes.start()
                await wait_until_async(commands_socket_path().exists, 60, process=commands, what="the warm command process")
                raise_if_interrupted()
                write_state(driver.info.model_copy(update={
                    "backend_url": lane.base_url, "lanes_url": lanes.url, "lanes_socket": str(lanes.socket_path),
                }))
                ws_path = project.probe.path if project is not None else "/ws"
                out.print(f"[bold green]replica up[/] (pid {os.getpid()}), {'backend' if project else 'handler'} {handler}", highlight=False)
                out.print(f"  backend    {lane.base_url}  (ws: {lane.base_url.replace('http', 'ws', 1)}{ws_path})")
                for hop, proxy in lane.faults.proxies.items():
                    if hop != "backend" and project is not None:
                        out.print(f"  {hop:<10} through proxy {proxy}")
                out.print(f"  toxiproxy  {driver.info.toxiproxy_url}")
                out.print(f"  auth       {driver.info.auth_url}")
                out.print(f"  state      {state_file()}")
                out.print("Ctrl-C or `replica down` stops everything.")
                await asyncio.Event().wait()
            finally:
                await lanes.stop()

    with stack_ownership(), ProcessGroup() as group:
        driver = LocalDriver.start(group, progress, project=project)
        commands = start_command_server(group, commands_socket_path())
        run_async(serve(driver, commands))


@app.command()
@cli_errors
def down(
    timeout: float = typer.Option(20.0, min=0.1, help="seconds to wait for the stack to stop"),
    config: Optional[Path] = typer.Option(None, "--config", help="a project file: stop the stack only if it runs this project"),
) -> None:
    """Stop the stack `replica up` started (that very process, checked by pid and start time)."""
    from replica.drivers.stack import read_state, stack_owner

    check_stack_project(config)
    owner = stack_owner()
    if owner is None or not owner.signal(signal.SIGTERM):
        read_state()  # sweeps what a killed `replica up` left
        out.print("no stack running")
        return
    if not owner.wait_gone(timeout):
        raise ReplicaError(f"the stack (pid {owner.pid}) did not stop within {timeout:g} s")
    out.print(f"stack stopped (pid {owner.pid})")


@app.command()
@cli_errors
def status(
    config: Optional[Path] = typer.Option(None, "--config", help="a project file: check that the stack runs this project"),
) -> None:
    """Show the running stack and whether each service answers."""
    import httpx
    from rich.table import Table

    from replica.drivers.stack import read_state, stack_owner
    from replica.state_paths import commands_socket_path

    project = check_stack_project(config)
    info = read_state()
    if info is None:
        owner = stack_owner()
        if owner is not None:
            out.print(f"replica up (pid {owner.pid}) is starting")
        else:
            out.print("no stack running (start one with `replica up`)")
        raise typer.Exit(1)
    table = Table(title=f"stack (pid {info.owner_pid}, driver {info.driver})", title_justify="left")
    table.add_column("service")
    table.add_column("url")
    table.add_column("answers")
    checks = [("auth", info.auth_url, "/health"), ("toxiproxy", info.toxiproxy_url, "/version")]
    if info.backend_url:
        health = "/health/ready" if info.project is None else (project.backend.health if project else None) or "/"
        checks.append(("backend", info.backend_url, health))
    for name, base, path in checks:
        try:
            code = httpx.get(base + path, timeout=2).status_code
            answer = f"[green]{code}[/]" if code == 200 else f"[yellow]{code}[/]"
        except httpx.HTTPError as exc:
            answer = f"[red]{type(exc).__name__}[/]"
        table.add_row(name, base, answer)
    if info.lanes_socket:
        try:
            transport = httpx.HTTPTransport(uds=info.lanes_socket)
            with httpx.Client(base_url=info.lanes_url or "", transport=transport, timeout=2) as lanes:
                answer = f"[green]{len(lanes.get('/lanes').json())} open[/]"
        except (httpx.HTTPError, ValueError) as exc:
            answer = f"[red]{type(exc).__name__}[/]"
        table.add_row("lanes", info.lanes_socket, answer)
    commands = commands_socket_path()
    table.add_row("warm commands", str(commands), warm_commands_answer(commands))
    table.add_row("postgres", info.postgres_url.split("@")[-1], "-")
    table.add_row("redis", info.redis_url.split("@")[-1], "-")
    table.add_row("project", info.project or "(the built-in backend)", "-")
    out.print(table)


def warm_commands_answer(path: Path) -> str:
    """Whether the stack's warm command process accepts connections (see ``replica.warm``)."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(path))
    except OSError as exc:
        return f"[red]{type(exc).__name__}[/] (commands run in their own process)"
    return "[green]listening[/]"


def check_stack_project(config: Path | None) -> Project | None:
    """The project given (or in the current directory); a running stack of another backend is a usage error."""
    from replica.drivers.stack import read_state

    project = project_option(config)
    info = read_state()
    if project is not None and info is not None and info.project != str(project.file):
        raise ConfigError(
            f"the running stack (pid {info.owner_pid}) runs {info.project or 'the built-in backend'}, not {project.file}"
        )
    return project


# ----------------------------------------------------------------------------- proxy


@proxy_app.command("serve")
def proxy_serve(
    host: str = typer.Option("127.0.0.1", help="API address"),
    port: int = typer.Option(8474, min=0, max=65535, help="API port (0: any free one, printed when listening)"),
    config: Optional[Path] = typer.Option(None, help="JSON file of proxies (and toxics) to create at start"),
    seed: Optional[int] = typer.Option(None, help="random seed: makes jitter and toxicity reproducible"),
) -> None:
    """Run the Toxiproxy-compatible server in the foreground."""
    from faults.toxiproxy.server import run

    run(host, port, str(config) if config else None, seed)


