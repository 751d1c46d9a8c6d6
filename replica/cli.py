"""The ``replica`` command line.

Exit codes: 0 every outcome matched its expectation, 1 some did not, 2 usage or
infrastructure error, 130 interrupted (everything started is stopped first).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Coroutine, Iterator, Optional, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from replica import report
from replica.drivers.base import Driver, LaneRequest
from replica.interrupts import install_interrupt_handlers, raise_if_interrupted
from replica.drivers.stack import clear_state, read_state, state_file, write_state
from replica.errors import ConfigError, ReplicaError
from replica.probe import ProbeOptions, probe
from replica.reproduce import SEED_SCENARIO, explanations, reproduce_runs, reproduced
from replica.runner import RunResult, run_many
from replica.scenarios import BackendSpec, Catalog

app = typer.Typer(add_completion=False, no_args_is_help=True, help="A local staging replica with fault injection.")
scenarios_app = typer.Typer(no_args_is_help=True, help="The scenario catalog.")
proxy_app = typer.Typer(no_args_is_help=True, help="The Toxiproxy-compatible fault proxy.")
app.add_typer(scenarios_app, name="scenarios")
app.add_typer(proxy_app, name="proxy")

# Piped output (CI logs, files) gets room for the tables instead of Rich's 80 columns.
out = Console(width=None if sys.stdout.isatty() else 130)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 130)

DRIVERS = ("local", "compose", "auto")
T = TypeVar("T")


def cli_errors(func: Callable) -> Callable:
    """Turn the project's errors and Ctrl-C into a message and a distinct exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        restore = install_interrupt_handlers()
        try:
            return func(*args, **kwargs)
        except ReplicaError as exc:
            err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted: everything this run started has been stopped")
            raise typer.Exit(130) from None
        finally:
            restore()

    return wrapper


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, with a Ctrl-C that surfaced as a cancellation reported as Ctrl-C.

    A KeyboardInterrupt raised inside a task ends the loop; asyncio then cancels the
    other tasks, and one of their CancelledErrors may be what comes out.
    """
    try:
        return asyncio.run(main)
    except asyncio.CancelledError:
        raise_if_interrupted()
        raise


def progress(message: str) -> None:
    err.print(f"[dim]· {message}[/]", highlight=False)


def compose_available() -> bool:
    try:
        from replica.drivers.compose import compose_ready
    except ImportError:
        return False
    return compose_ready()


@contextlib.contextmanager
def open_driver(name: str, parallel: int | None = None) -> Iterator[Driver]:
    """The chosen driver, on a running stack when there is one, else on a new one."""
    if name not in DRIVERS:
        raise ConfigError(f"unknown driver {name!r} (choose from {', '.join(DRIVERS)})")
    if name == "auto":
        name = "compose" if compose_available() else "local"
        progress(f"driver: {name} (auto)")
    kwargs = {"max_parallel_lanes": parallel} if parallel else {}
    if name == "compose":
        from replica.drivers.compose import ComposeDriver

        driver = ComposeDriver.start(progress=progress, **kwargs)
        try:
            yield driver
        finally:
            progress("stopping the compose stack")
            driver.close()
        return
    info = read_state()
    if info is not None and info.driver == "local":
        from replica.drivers.up.remote import RemoteDriver

        progress(f"using the running stack (replica up, pid {info.owner_pid})")
        yield RemoteDriver(info, **kwargs)
        return
    from replica.drivers.local.driver import LocalDriver
    from replica.drivers.local.group import ProcessGroup

    with ProcessGroup() as group:
        started = time.monotonic()
        driver = LocalDriver.start(group, progress, **kwargs)
        progress(f"stack ready in {time.monotonic() - started:.1f} s")
        yield driver


def run_scenarios(driver: Driver, runs, repeat: int = 1, *, live: bool = True) -> list[RunResult]:
    total = len(runs) * repeat
    done = 0

    def show(result: RunResult) -> None:
        nonlocal done
        done += 1
        if live:
            mark = "[green]pass[/]" if result.verdict == "pass" else "[bold red]FAIL[/]"
            err.print(f"[dim]{done:>4}/{total}[/] {mark} {result.name} [dim]{result.observed.summary()}[/]", highlight=False)

    return run_async(run_many(driver, runs, repeat=repeat, on_result=show))


# ----------------------------------------------------------------------------- reproduce


@app.command()
@cli_errors
def reproduce(
    code: str = typer.Argument(..., help="the close code to reproduce: 1011"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the runs as JSON to this file"),
    driver: str = typer.Option("local", help="local | compose | auto"),
    parallel: Optional[int] = typer.Option(None, min=1, help="lanes at once (default: the driver's)"),
) -> None:
    """Reproduce the seed's 1011, tell its cause from the seed's hypotheses, and check each fix."""
    if code != "1011":
        raise ConfigError(f"only 1011 can be reproduced so far (got {code!r})")
    catalog = Catalog.load()
    runs, causes = reproduce_runs(catalog)
    with open_driver(driver, parallel) as chosen:
        progress(f"running {len(runs)} scenario runs on the {chosen.name} driver")
        results = run_scenarios(chosen, runs, live=False)
        driver_name = chosen.name
    seed = reproduced(results)
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
    else:
        out.print(f"[bold red]Not reproduced[/]: {SEED_SCENARIO} gave {seed_result.observed.summary()}")
    table = Table(title="Which hypothesis explains what staging saw", title_justify="left")
    for col in ("cause", "from", "fingerprint (incident handler)", "explains it?"):
        table.add_column(col)
    for e in explanations(results, catalog):
        source = "public record" if e.real_cause else "seed five-whys"
        verdict = "[green]yes[/]" if e.explains else "[red]no[/]: " + "; ".join(d.split(":")[0] for d in e.differences)
        table.add_row(e.scenario, source, e.result.observed.summary(), verdict)
    out.print(table)
    out.print(report.fix_matrix(results, causes))
    out.print("[dim]cells: what the staging test sees with that handler; ✓ = as the scenario expects[/]")
    report.print_failures(err, results)
    if json_path:
        report.write_json(json_path, results, command="reproduce 1011", reproduced=seed is not None)
    failed = sum(r.verdict == "fail" for r in results)
    out.print(f"{len(results) - failed} passed, {failed} failed ({driver_name} driver)")
    raise typer.Exit(0 if seed and not failed else 1)


# ----------------------------------------------------------------------------- scenarios


@scenarios_app.command("list")
@cli_errors
def scenarios_list() -> None:
    """Every scenario and its fix checks."""
    catalog = Catalog.load()
    table = Table(title="Scenarios", title_justify="left")
    for col in ("name", "handler", "expected", "title"):
        table.add_column(col)
    for run in catalog.runs():
        table.add_row(run.name, run.handler, run.expect.describe(), run.scenario.title if "@" not in run.name else "")
    out.print(table)


@scenarios_app.command("run")
@cli_errors
def scenarios_run(
    names: Optional[list[str]] = typer.Argument(None, help="scenario or scenario@variant names"),
    all_: bool = typer.Option(False, "--all", help="every scenario and fix check"),
    repeat: int = typer.Option(1, min=1, help="run each this many times"),
    handler: Optional[str] = typer.Option(None, help="a variant or module:function to run instead of the scenario's"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the runs as JSON to this file"),
    driver: str = typer.Option("local", help="local | compose | auto"),
    parallel: Optional[int] = typer.Option(None, min=1, help="lanes at once (default: the driver's)"),
) -> None:
    """Run scenarios and compare each fingerprint with its expectation."""
    catalog = Catalog.load()
    if all_ == bool(names):
        raise ConfigError("name scenarios or pass --all (not both)")
    if all_:
        runs = catalog.runs()
        if handler:
            runs = [catalog.with_handler(s, handler) for s in catalog.scenarios.values()]
    else:
        runs = catalog.select(list(names or []), handler)
    with open_driver(driver, parallel) as chosen:
        results = run_scenarios(chosen, runs, repeat)
    out.print(report.results_table(results))
    report.print_failures(err, results)
    if json_path:
        report.write_json(json_path, results)
    failed = sum(r.verdict == "fail" for r in results)
    out.print(f"{len(results) - failed} passed, {failed} failed")
    raise typer.Exit(1 if failed else 0)


# ----------------------------------------------------------------------------- probe


@app.command("probe")
@cli_errors
def probe_command(
    url: Optional[str] = typer.Option(None, help="backend base URL, e.g. https://api.staging.example.com (default: the running stack)"),
    token: Optional[str] = typer.Option(None, envvar="REPLICA_TOKEN", help="JWT to send (default: minted by the running stack)"),
    e2e_headers: bool = typer.Option(True, help="send the staging test's E2E headers"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the observation as JSON"),
) -> None:
    """Connect like the staging test and print what a client sees."""
    info = read_state()
    if url is None:
        if info is None or not info.backend_url:
            raise ConfigError("no --url given and no stack running: start one with `replica up` or pass --url")
        url = info.backend_url
    if token is None and info is not None:
        from replica.auth.tokens import mint_token

        token = mint_token(info.jwt_secret)
    observation = run_async(probe(url, token, ProbeOptions(e2e_headers=e2e_headers)))
    out.print(report.debug_block(observation), highlight=False, markup=False)
    out.print(f"\nfingerprint: {observation.fingerprint.model_dump_json()}", highlight=False)
    if json_path:
        json_path.write_text(observation.model_dump_json(indent=2) + "\n")
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
) -> None:
    """Start the replica and keep it running until Ctrl-C or `replica down`."""
    from replica.drivers.local.driver import LocalDriver
    from replica.drivers.local.group import ProcessGroup
    from replica.drivers.up.server import LanesServer

    if read_state() is not None:
        raise ConfigError("a stack is already running (see `replica status`); stop it with `replica down`")
    try:
        spec = BackendSpec(
            handler=handler,
            failpoints=failpoints,
            defects=tuple(d for d in defects.split(",") if d),
            startup_mode=startup_mode,
            server=server,
        )
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0] + ": " + str(exc).splitlines()[-1].strip()) from exc

    async def serve(driver: LocalDriver) -> None:
        async with driver.lane(LaneRequest(backend=spec)) as lane:
            if not lane.outcome.ready:
                raise ConfigError(f"the backend did not come up: {lane.outcome.detail}")
            lanes = LanesServer(driver)
            await lanes.start()
            raise_if_interrupted()
            write_state(driver.info.model_copy(update={"backend_url": lane.base_url, "lanes_url": lanes.url}))
            try:
                out.print(f"[bold green]replica up[/] (pid {os.getpid()}), handler {handler}")
                out.print(f"  backend    {lane.base_url}  (ws: {lane.base_url.replace('http', 'ws', 1)}/ws)")
                out.print(f"  toxiproxy  {driver.info.toxiproxy_url}")
                out.print(f"  auth       {driver.info.auth_url}")
                out.print(f"  state      {state_file()}")
                out.print("Ctrl-C or `replica down` stops everything.")
                await asyncio.Event().wait()
            finally:
                clear_state(os.getpid())
                await lanes.stop()

    with ProcessGroup() as group:
        driver = LocalDriver.start(group, progress)
        run_async(serve(driver))


@app.command()
@cli_errors
def down(timeout: float = typer.Option(20.0, help="seconds to wait for the stack to stop")) -> None:
    """Stop the stack `replica up` started."""
    info = read_state()
    if info is None:
        out.print("no stack running")
        return
    os.kill(info.owner_pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(info.owner_pid, 0)
        except ProcessLookupError:
            out.print("stack stopped")
            return
        time.sleep(0.05)  # polling a bounded wait for the owner to exit
    raise ReplicaError(f"the stack (pid {info.owner_pid}) did not stop within {timeout:g} s")


@app.command()
@cli_errors
def status() -> None:
    """Show the running stack and whether each service answers."""
    import httpx

    info = read_state()
    if info is None:
        out.print("no stack running (start one with `replica up`)")
        raise typer.Exit(1)
    table = Table(title=f"stack (pid {info.owner_pid}, driver {info.driver})", title_justify="left")
    table.add_column("service")
    table.add_column("url")
    table.add_column("answers")
    checks = [("auth", info.auth_url, "/health"), ("toxiproxy", info.toxiproxy_url, "/version")]
    if info.backend_url:
        checks.append(("backend", info.backend_url, "/health/ready"))
    for name, base, path in checks:
        try:
            code = httpx.get(base + path, timeout=2).status_code
            answer = f"[green]{code}[/]" if code == 200 else f"[yellow]{code}[/]"
        except httpx.HTTPError as exc:
            answer = f"[red]{type(exc).__name__}[/]"
        table.add_row(name, base, answer)
    table.add_row("postgres", info.postgres_url.split("@")[-1], "-")
    table.add_row("redis", info.redis_url, "-")
    out.print(table)


# ----------------------------------------------------------------------------- proxy


@proxy_app.command("serve")
def proxy_serve(
    host: str = typer.Option("127.0.0.1", help="API address"),
    port: int = typer.Option(8474, help="API port"),
    config: Optional[Path] = typer.Option(None, help="JSON file of proxies (and toxics) to create at start"),
    seed: Optional[int] = typer.Option(None, help="random seed: makes jitter and toxicity reproducible"),
) -> None:
    """Run the Toxiproxy-compatible server in the foreground."""
    from faults.toxiproxy.server import run

    run(host, port, str(config) if config else None, seed)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
