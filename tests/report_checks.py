"""Checks of the JUnit and HTML reports: the Jenkins JUnit schema, and a real headless chromium."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

JUNIT_XSD = Path(__file__).parent / "fixtures" / "junit-jenkins.xsd"
BROWSER_TIMEOUT_S = 120


def assert_valid_junit(xml: str) -> etree._Element:
    """The document, once it validates against the Jenkins JUnit schema."""
    schema = etree.XMLSchema(etree.parse(str(JUNIT_XSD)))
    document = etree.fromstring(xml.encode())
    assert schema.validate(document), "\n".join(str(e) for e in schema.error_log)
    return document


def chromium() -> str:
    """The browser's path; skips without one unless CI is set (then a missing browser fails)."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is not installed (apt-get install -y --no-install-recommends chromium)")
        pytest.skip("chromium is not installed (apt-get install -y --no-install-recommends chromium)")
    return path


@dataclass(frozen=True)
class Rendered:
    dom: str
    console: list[str]


def render(page: Path, profile: Path) -> Rendered:
    """The page's DOM after headless chromium loaded it, and the console messages it logged."""
    argv = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
        "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri(),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=BROWSER_TIMEOUT_S)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the browser's helper processes, too
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0, err[-3000:]
    console = [line for line in err.splitlines() if "CONSOLE" in line or "Content Security Policy" in line]
    return Rendered(out, console)
