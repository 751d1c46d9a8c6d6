"""Imports of third-party code this tool never runs, skipped where its processes start."""

from __future__ import annotations

import sys


def skip_unused_imports() -> None:
    """Mark httpx's command-line client (``httpx._main``) as absent.

    httpx's ``__init__`` imports it whenever click, rich and pygments are installed,
    as they are here (uvicorn needs click, Typer needs rich): click, rich's progress
    and syntax modules and pygments' lexer table, about 0.1 s of a process's start
    that nothing here uses. Marked absent, httpx binds its stub ``httpx.main``
    instead. Call it before httpx is first imported (afterwards it changes nothing).
    """
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
