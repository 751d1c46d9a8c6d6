"""One self-contained HTML page of runs: the cause × fix table, and per run a
sequence diagram (inline SVG) with its fingerprint and the server's evidence.

Pure functions (results → HTML string). The page fetches nothing: inline CSS, no
script, and a Content-Security-Policy that forbids any request.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Iterable

from replica.junit import run_lines
from replica.report import fix_grid, outcome_words
from replica.runner import RunResult

LANES = ("client", "fault proxy", "backend", "dependencies")
_LANE_X = {name: 90 + 170 * i for i, name in enumerate(LANES)}
_WIDTH = _LANE_X["dependencies"] + 90
_TOP = 50
_STEP = 30

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
.green{color:#176b2c}.red{color:#b3261e}.yellow{color:#8a6100}.dim{color:#777}
section.run{border-top:1px solid #ddd;margin-top:1.5em}
pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap}
svg text{font:12px system-ui,sans-serif}
"""


@dataclass(frozen=True)
class Step:
    """One row of a sequence diagram: an arrow from one lane to another, or a note on a lane (``to`` None)."""

    source: str
    to: str | None
    label: str
    tone: str = "plain"


def steps(r: RunResult) -> list[Step]:
    """A run's timeline as diagram rows: faults applied, connect, accept, messages, server exception, close."""
    found = [Step("fault proxy", "backend" if hop == "backend" else "dependencies", f"{hop}: {what}", "fault") for hop, what in r.faults]
    for e in r.observation.timeline:
        at = f"{e.t_ms:.0f} ms"
        if e.event == "health":
            found += [Step("client", "backend", f"GET /health ({at})"), Step("backend", "client", e.detail)]
        elif e.event == "no_token_handshake":
            found.append(Step("client", "backend", f"connect without a token → {e.detail} ({at})"))
        elif e.event == "connect":
            found.append(Step("client", "backend", f"connect with a token ({at})"))
        elif e.event == "handshake":
            found.append(Step("backend", "client", "accept" if e.detail == "accepted" else e.detail, "plain" if e.detail == "accepted" else "bad"))
        elif e.event == "message":
            found.append(Step("backend", "client", f"{e.detail} ({at})"))
        elif e.event in ("ping_sent", "user_message_sent", "heartbeat_sent"):
            found.append(Step("client", "backend", f"{e.event.removesuffix('_sent')} ({at})"))
        elif e.event in ("welcome_timeout", "pong_timeout"):
            found.append(Step("client", None, f"{e.event.replace('_', ' ')} ({at})", "bad"))
        elif e.event == "closed":
            found += server_steps(r)
            by_client = e.detail.endswith("by client")
            found.append(Step("client" if by_client else "backend", "backend" if by_client else "client", f"close {e.detail} ({at})", "bad"))
    if not any(e.event == "closed" for e in r.observation.timeline):
        found += server_steps(r)
    return found


def server_steps(r: RunResult) -> list[Step]:
    """The backend's errors, as notes on its lifeline: the exception when there is one."""
    return [
        Step("backend", None, f"{e.exception_type}: {e.exception_message}" if e.exception_type else e.line(), "bad")
        for e in r.evidence.server_errors
    ]


def _svg_text(x: float, y: float, text: str, anchor: str = "middle", css: str = "") -> str:
    return f'<text x="{x:.0f}" y="{y:.0f}" text-anchor="{anchor}"{css}>{escape(text)}</text>'


_COLOURS = {"plain": "#333", "bad": "#b3261e", "fault": "#8a6100"}


def sequence_svg(r: RunResult) -> str:
    """The run as a sequence diagram: one lifeline per lane, one row per step."""
    rows = steps(r)
    height = _TOP + _STEP * (len(rows) + 1)
    # Notes run to the right of their lifeline: about 7 px a character.
    width = max([_WIDTH] + [_LANE_X[s.source] + 20 + 7 * len(s.label) for s in rows if s.to is None])
    parts = [
        f'<svg class="sequence" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="sequence diagram of {escape(r.name)}">',
        '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>',
    ]
    for lane, x in _LANE_X.items():
        parts.append(f'<line x1="{x}" y1="{_TOP - 10}" x2="{x}" y2="{height - 5}" stroke="#bbb" stroke-dasharray="4 3"/>')
        parts.append(_svg_text(x, 20, lane, css=' font-weight="bold"'))
    for i, step in enumerate(rows):
        y = _TOP + _STEP * (i + 1)
        colour = _COLOURS[step.tone]
        x1 = _LANE_X[step.source]
        if step.to is None:
            parts.append(f'<circle cx="{x1}" cy="{y - 4}" r="4" fill="{colour}"/>')
            parts.append(_svg_text(x1 + 10, y, step.label, anchor="start", css=f' fill="{colour}"'))
            continue
        x2 = _LANE_X[step.to]
        dash = ' stroke-dasharray="5 3"' if step.tone == "fault" else ""
        parts.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}"{dash} marker-end="url(#arrow)"/>')
        parts.append(_svg_text((x1 + x2) / 2, y - 5, step.label, css=f' fill="{colour}"'))
    parts.append("</svg>")
    return "\n".join(parts)


def fix_table(results: list[RunResult]) -> str:
    """Cause × handler: what the staging test sees, and whether the catalog expects it."""
    grid = fix_grid(results)
    head = "".join(f"<th>{escape(h)}</th>" for h in grid.handlers)
    rows = []
    for cause in grid.causes:
        row = [f"<th>{escape(cause)}</th>"]
        for handler in grid.handlers:
            r = grid.cells.get((cause, handler))
            if r is None:
                row.append('<td class="dim">-</td>')
                continue
            words, colour = outcome_words(r.observed, baseline=r.name == r.scenario)
            mark = {"pass": "✓", "fail": "✗ unexpected", "observed": "observed"}[r.verdict]
            row.append(f'<td><span class="{colour}">{escape(words)}</span> <span class="dim">{mark}</span></td>')
        rows.append("<tr>" + "".join(row) + "</tr>")
    return f'<table class="fixes"><tr><th>cause</th>{head}</tr>{"".join(rows)}</table>'


def run_section(r: RunResult) -> str:
    verdict = {"pass": "green", "fail": "red", "observed": "dim"}[r.verdict]
    mismatches = "".join(f"<li>{escape(m)}</li>" for m in r.mismatches)
    return (
        f'<section class="run" id="run-{escape(r.name)}-{r.repeat}"><h3>{escape(r.name)} '
        f'<span class="dim">handler {escape(r.handler)}, run {r.repeat}</span> <span class="{verdict}">{r.verdict}</span></h3>'
        + (f'<ul class="red">{mismatches}</ul>' if mismatches else "")
        + f"<pre>{escape(chr(10).join(run_lines(r)))}</pre>\n{sequence_svg(r)}</section>"
    )


def html_page(results: Iterable[RunResult], title: str = "staging-replica runs") -> str:
    """The whole page."""
    runs = list(results)
    failed = sum(r.verdict == "fail" for r in runs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{escape(title)}</title><style>{_CSS}</style></head>
<body><h1>{escape(title)}</h1>
<p>{len(runs) - failed} of {len(runs)} runs as expected, {failed} not.</p>
<h2>Which fix cures which cause (what the staging test sees)</h2>
{fix_table(runs)}
<p class="dim">cells: what the staging test sees with that handler; ✓ the catalog expects it, ✗ it does not; - not run</p>
<h2>Runs</h2>
{"".join(run_section(r) for r in runs)}
</body></html>
"""
