"""Rendering results: the seed-style debug block, tables, and the JSON report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from replica.fingerprint import ACCEPTED, Fingerprint
from replica.probe import Observation
from replica.runner import RunResult

VARIANTS = ("incident", "seed-fix", "landed-fix", "recommended")


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


def outcome_text(fp: Fingerprint) -> Text:
    """A short, coloured cell: green when the client is served or told to retry, red on 1011/1006."""
    if fp.handshake != ACCEPTED:
        style = "yellow" if fp.handshake in ("http_503", "http_403") else "red"
        return Text(f"refused {fp.handshake.removeprefix('http_')}", style=style)
    if fp.close_code is None:
        return Text("welcome + pong" if fp.pong else ("welcome" if fp.welcome else "open, silent"), style="green" if fp.pong else "yellow")
    by = " (client)" if fp.closed_by == "client" else ""
    return Text(f"{fp.close_code} {fp.close_reason}{by}", style="red" if fp.close_code in (1011, 1006) else "yellow")


def verdict_mark(result: RunResult) -> Text:
    return Text("✓", style="green") if result.verdict == "pass" else Text("✗", style="bold red")


def results_table(results: Iterable[RunResult], title: str = "Scenario runs") -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("scenario", "handler", "observed", "ms", "verdict"):
        table.add_column(col, no_wrap=col != "observed")
    for r in results:
        ms = f"{r.observed.close_after_ms:.0f}" if r.observed.close_after_ms is not None else "-"
        table.add_row(r.name + (f" #{r.repeat}" if r.repeat > 1 else ""), r.handler, r.observed.summary(), ms, verdict_mark(r))
    return table


def fix_matrix(results: Iterable[RunResult], causes: list[str]) -> Table:
    """Cause × handler variant: what the client sees, and whether it matched the expectation."""
    cells = {(r.scenario, r.handler): r for r in results}
    table = Table(title="Which fix cures which cause (what the staging test would see)", title_justify="left")
    table.add_column("cause")
    for v in VARIANTS:
        table.add_column(v)
    for cause in causes:
        row: list[Text | str] = [cause]
        for v in VARIANTS:
            r = cells.get((cause, v))
            row.append(Text("-") if r is None else Text.assemble(outcome_text(r.observed), " ", verdict_mark(r)))
        table.add_row(*row)
    return table


def print_failures(console: Console, results: Iterable[RunResult]) -> None:
    for r in results:
        if r.verdict == "fail":
            console.print(f"[bold red]FAIL[/] {r.name} (handler {r.handler}, run {r.repeat}): " + "; ".join(r.mismatches))
            if not r.backend_ready:
                console.print(f"  backend: {r.backend_detail}")
            if r.backend_log:
                console.print("  backend log (last lines):\n    " + r.backend_log.strip().replace("\n", "\n    "), markup=False)


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
                "expected": r.expected.model_dump(mode="json", exclude_none=True),
                "observed": r.observed.model_dump(mode="json"),
                "verdict": r.verdict,
                "mismatches": r.mismatches,
                "backend": {"ready": r.backend_ready, "detail": r.backend_detail, "startup_ms": r.backend_startup_ms},
                "duration_ms": r.duration_ms,
                "timeline": [e.model_dump() for e in r.observation.timeline],
            }
        )
    return {"scenarios": entries, **extra}


def write_json(path: Path, results: Iterable[RunResult], **extra: object) -> None:
    path.write_text(json.dumps(json_report(results, **extra), indent=2) + "\n")
