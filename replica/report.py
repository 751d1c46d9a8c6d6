"""Rendering results: the seed-style debug block, tables, and the JSON report."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from replica.backend.handlers.variants import VARIANTS
from replica.errors import ConfigError
from replica.evidence import frame_summary
from replica.fingerprint import ACCEPTED, Fingerprint

if TYPE_CHECKING:
    from replica.criteria import Criterion
    from replica.diagnose import Ranked
    from replica.observation import Observation
    from replica.runner import RunResult


def debug_block(observation: Observation, *, title: str = "WEBSOCKET DEBUG") -> str:
    """The probe's view in the style of the seed's debug script output."""
    fp = observation.fingerprint
    events = {e.event: e for e in observation.timeline}
    lines = [title, f"Backend URL: {observation.base_url}", f"WebSocket URL: {observation.url}", "", "1. BACKEND HEALTH CHECK:"]
    if observation.health_status is None:
        lines.append("   [ERROR] Backend did not answer /health")
    else:
        ok = observation.health_status == 200
        lines += [f"   Status: {observation.health_status}", "   [OK] Backend is healthy" if ok else "   [ERROR] Backend unhealthy"]
    lines += ["", "2. WEBSOCKET CONNECTION TEST:"]
    if observation.no_token_handshake is not None:
        verdict = "[OK] rejected" if observation.no_token_handshake == "http_403" else "[WARN] expected HTTP 403"
        lines.append(f"   Without token: {observation.no_token_handshake} {verdict}")
    lines += [
        f"   Auth headers: {observation.headers_sent} headers",
        f"   Has Authorization: {observation.has_authorization}",
        "   Connecting to WebSocket...",
    ]
    if fp.handshake != ACCEPTED:
        lines += [f"   [ERROR] Handshake refused: {fp.handshake}", "", "Result: FAILED"]
        return "\n".join(lines)
    lines.append(f"   [OK] Connected in {(observation.connect_ms or 0) / 1000:.3f}s")
    lines.append("   Waiting for welcome message...")
    if fp.welcome:
        lines.append("   [OK] Welcome received (connection_established)")
    if fp.close_code is not None:
        by = " (close sent by the client)" if fp.closed_by == "client" else ""
        lines += [
            f"   [ERROR] CONNECTION CLOSED after {(fp.close_after_ms or 0) / 1000:.3f}s{by}",
            f"   Close code: {fp.close_code}",
            f"   Close reason: {fp.close_reason}",
        ]
        if fp.close_code == 1011:
            lines.append("   Analysis: 1011 = Internal server error")
    elif fp.welcome:
        lines.append("   [OK] Pong received" if fp.pong else "   [ERROR] No pong within the timeout")
    elif "welcome_timeout" in events:
        lines.append("   [ERROR] No welcome within the timeout")
    lines += ["", "Result: " + ("PASSED" if fp.welcome and fp.pong else "FAILED")]
    return "\n".join(lines)


def outcome_words(fp: Fingerprint, *, baseline: bool = False) -> tuple[str, str]:
    """What a fix-table cell says, and its colour: *cured* (*passes* without a fix),
    *refused 503*, *retry later (1013 ...)*, *still fails (reason)* (*fails* without a fix)."""
    if fp.handshake == ACCEPTED and fp.welcome and fp.pong and fp.close_code is None:
        return ("passes" if baseline else "cured"), "green"
    if fp.handshake in ("http_503", "http_403"):
        return f"refused {fp.handshake.removeprefix('http_')}", "yellow"
    if fp.close_code == 1013:
        return f"retry later (1013 {fp.close_reason})", "yellow"
    if fp.handshake != ACCEPTED:
        reason = fp.handshake.replace("http_", "HTTP ")
    elif fp.close_code is not None:
        reason = f"{fp.close_code} {fp.close_reason}".strip()
        reason += " from the client" if fp.closed_by == "client" else ""
        reason += " after the welcome" if fp.welcome else ""
    else:
        reason = "no pong" if fp.welcome else "no welcome"
    return f"{'fails' if baseline else 'still fails'} ({reason})", "red"


def expectation_mark(result: RunResult) -> Text:
    """Whether a run's outcome is the one the catalog expects: a separate mark from what it means."""
    return Text("✓", style="green") if result.verdict == "pass" else Text("✗ unexpected", style="bold red")


def verdict_mark(result: RunResult) -> Text:
    if result.verdict == "observed":
        return Text("observed", style="cyan")
    return Text("✓", style="green") if result.verdict == "pass" else Text("✗", style="bold red")


def results_table(results: Iterable[RunResult], title: str = "Scenario runs") -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("scenario", "handler", "observed", "ms", "verdict"):
        table.add_column(col, no_wrap=col != "observed")
    for r in results:
        ms = f"{r.observed.close_after_ms:.0f}" if r.observed.close_after_ms is not None else "-"
        table.add_row(r.name + (f" #{r.repeat}" if r.repeat > 1 else ""), r.handler, r.observed.summary(), ms, verdict_mark(r))
    return table


def fix_columns() -> list[str]:
    """The fix table's columns: every built-in variant, in the registry's order."""
    return [v.name for v in VARIANTS]


@dataclass(frozen=True)
class FixGrid:
    """The fix table's shape: causes (rows), handlers (columns), and the first run of each pair."""

    causes: list[str]
    handlers: list[str]
    cells: dict[tuple[str, str], RunResult]


def fix_grid(results: Iterable[RunResult], causes: list[str] | None = None) -> FixGrid:
    """Cause × handler: the built-in variants in the registry's order, then any other handler
    (a user's ``module:function``) in run order; only handlers that ran one of the causes."""
    first = [r for r in results if r.repeat == 1]
    rows = causes if causes is not None else list(dict.fromkeys(r.scenario for r in first))
    used = list(dict.fromkeys(r.handler for r in first if r.scenario in rows))
    known = fix_columns()
    handlers = [h for h in known if h in used] + [h for h in used if h not in known]
    return FixGrid(rows, handlers, {(r.scenario, r.handler): r for r in first})


def fix_matrix(results: Iterable[RunResult], causes: list[str]) -> Table:
    """Cause × handler variant: what the staging test sees, and (a separate mark)
    whether that is what the catalog expects."""
    grid = fix_grid(results, causes)
    table = Table(title="Which fix cures which cause (what the staging test sees)", title_justify="left")
    table.add_column("cause", no_wrap=True)
    for handler in grid.handlers:
        table.add_column(handler)
    for cause in grid.causes:
        row: list[Text | str] = [cause]
        for handler in grid.handlers:
            r = grid.cells.get((cause, handler))
            if r is None:
                row.append(Text("-"))
                continue
            words, style = outcome_words(r.observed, baseline=r.name == r.scenario)
            row.append(Text.assemble(Text(words, style=style), " ", expectation_mark(r)))
        table.add_row(*row)
    return table


def criteria_matrix(by_handler: dict[str, list[Criterion]], repeats: int) -> Table:
    """The six success criteria × handler: met or not, and what the repeats showed."""
    from replica import criteria

    title = f"Success criteria against the real cause ({repeats} runs of each fix expected to cure it, 1 of the others)"
    table = Table(title=title if repeats > 1 else "Success criteria against the real cause", title_justify="left")
    table.add_column("criterion")
    for handler in by_handler:
        table.add_column(handler)
    for index, (_key, title) in enumerate(criteria.TITLES):
        row: list[Text | str] = [title]
        for results in by_handler.values():
            c = results[index]
            row.append(Text("met " + c.detail, style="green") if c.passed else Text("NOT met " + c.detail, style="red"))
        table.add_row(*row)
    return table


def diagnosis_table(ranked: list[Ranked]) -> Table:
    """Candidates best first: score, whether each explains the observation, and how it differs."""
    table = Table(title="Causes of the catalog, best explanation first", title_justify="left")
    for col in ("#", "cause", "score", "explains it?", "differs from the observation (this cause vs observed)"):
        table.add_column(col, no_wrap=col in ("#", "cause", "score"))
    for index, r in enumerate(ranked, 1):
        if r.matches:
            verdict, detail = Text("yes", style="bold green"), Text("; ".join(r.notes), style="dim")
        else:
            verdict, detail = Text("no", style="red"), Text("; ".join(m.text for m in r.mismatches))
        table.add_row(str(index), r.scenario, f"{r.score:.2f}", verdict, detail)
    return table


def evidence_lines(result: RunResult) -> list[str]:
    """The server's side of a run: its errors, the frames before the close, the no-token outcome."""
    lines = [f"server logged: {e.line()}" for e in result.evidence.server_errors]
    for e in result.evidence.server_errors:
        if e.exception_type:
            lines.append(f"  exception: {e.exception_type}: {e.exception_message}")
    lines += [f"client received: {frame_summary(f)}" for f in result.evidence.frames if f.get("type") == "error_message"]
    if result.evidence.no_token is not None:
        lines.append(f"connection without a token: {result.evidence.no_token}")
    return lines


def print_failures(console: Console, results: Iterable[RunResult]) -> None:
    for r in results:
        if r.verdict == "fail":
            console.print(f"[bold red]FAIL[/] {r.name} (handler {r.handler}, run {r.repeat}): " + "; ".join(r.mismatches))
            if not r.backend_ready:
                console.print(f"  backend: {r.backend_detail}")
            for line in evidence_lines(r):
                console.print("  " + line, markup=False, highlight=False)
            if r.backend_log:
                console.print("  backend log (last lines):\n    " + "\n    ".join(r.backend_log.strip().splitlines()[-40:]), markup=False)


def json_report(results: Iterable[RunResult], **extra: object) -> dict:
    entries = []
    for r in results:
        entries.append(
            {
                "name": r.name,
                "scenario": r.scenario,
                "handler": r.handler,
                "driver": r.driver,
                "repeat": r.repeat,
                "expected": r.expected.model_dump(mode="json", exclude_none=True) if r.expected is not None else None,
                "observed": r.observed.model_dump(mode="json"),
                "fingerprint": r.observed.summary(),
                "outcome": outcome_words(r.observed, baseline=r.name == r.scenario)[0],
                "verdict": r.verdict,
                "mismatches": r.mismatches,
                "backend": {
                    "ready": r.backend_ready, "detail": r.backend_detail, "startup_ms": r.backend_startup_ms,
                    "exit_status": r.backend_exit_status, "pid": r.backend_pid,
                    # kept for a run that missed its expectation or whose backend did not come up
                    "log": r.backend_log,
                },
                "duration_ms": r.duration_ms,
                "welcome_ms": r.observation.welcome_ms,
                "flows": r.observation.flows.model_dump() if r.observation.flows else None,
                "evidence": r.evidence.model_dump(mode="json"),
                "follow_up": r.follow_up.model_dump(mode="json") if r.follow_up else None,
                "faults": r.faults,
                "timeline": [e.model_dump() for e in r.observation.timeline],
            }
        )
    return {"scenarios": entries, **extra}


def check_writable(path: Path | None) -> None:
    """Refuse, before anything starts, a report path that cannot be written."""
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"cannot write the report to {path}: it is a directory (give a file name)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"cannot write the report to {path}: directory {parent} does not exist")
    if not os.access(path if path.exists() else parent, os.W_OK):
        raise ConfigError(f"cannot write the report to {path}: permission denied (choose another path)")


def write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {path}: {exc.strerror}") from exc


def write_json(path: Path, results: Iterable[RunResult], **extra: object) -> None:
    write_text(path, json.dumps(json_report(results, **extra), indent=2) + "\n")
