"""The pytest plugin used as a team would: a test project outside the repo, the README's example in it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.integration.cli_support import REPO, cli_env

pytestmark = pytest.mark.slow

FAILING = '''

@pytest.mark.replica_scenario("seed-1011", expect={"welcome": True})
def test_a_regression_that_is_back():
    """The incident handler still closes before the welcome: this one fails."""


@pytest.mark.replica_scenario("seed-1011", expect={"welcome": True, "colour": "red"})
def test_a_misspelt_expectation():
    """An unknown fingerprint field is an error naming the known ones."""
'''

INSIDE_AN_EVENT_LOOP = '''

def test_replica_run_from_inside_an_event_loop(replica_run):
    """An async test may call replica_run too (here the loop is asyncio.run's)."""
    import asyncio

    async def inside():
        return replica_run("seed-1011")

    result = asyncio.run(inside())
    assert result.verdict == "pass", result.mismatches
    assert result.observed.close_code == 1011
'''



def readme_example() -> str:
    readme = (REPO / "README.md").read_text()
    [code] = re.findall(r"A complete `tests/test_ws_regressions.py`.*?```python\n(.*?)```", readme, re.S)
    return code


def test_a_project_outside_the_repo_runs_its_regression_tests_on_the_replica(tmp_path):
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "tests" / "test_ws_regressions.py").write_text(readme_example() + FAILING + INSIDE_AN_EVENT_LOOP)
    # Its own temp root, traversable by the database's unprivileged user (tmp_path is private to this user).
    scratch = Path(tempfile.mkdtemp(prefix="replica-plugin-test-"))
    scratch.chmod(0o711)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "tests/test_ws_regressions.py"],
            cwd=project, env=cli_env(tmp_path / "state", {"TMPDIR": str(scratch), "REPLICA_RAM_DIR": ""}),
            capture_output=True, text=True, timeout=240,
        )
        left = sorted(p.name for p in scratch.iterdir())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 failed, 4 passed, 1 error" in out, out
    for name in ("test_the_auth_log_line_no_longer_closes_1011", "test_a_missing_supervisor_is_refused_before_accept",
                 "test_the_incident_handler_still_shows_the_staging_fingerprint",
                 "test_replica_run_from_inside_an_event_loop"):
        assert f"PASSED tests/test_ws_regressions.py::{name}" in out
    # The mismatch in values, and the server's evidence under it.
    assert "FAILED tests/test_ws_regressions.py::test_a_regression_that_is_back" in out
    assert "welcome: expected True, observed False" in out
    assert "Object of type WebSocketState is not JSON serializable" in out
    assert "ERROR tests/test_ws_regressions.py::test_a_misspelt_expectation" in out
    assert "expect: colour: Extra inputs are not permitted (fingerprint fields: handshake" in out
    assert "Traceback" not in out and "During handling" not in out
    # The session's stack is stopped after the last test: its temp dirs are gone.
    assert left == []


def test_the_plugin_is_inactive_until_used(tmp_path):
    """Registered, yet a test that uses none of it starts nothing and imports nothing of the replica's harness."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_plain.py").write_text(
        "import sys\n\n"
        "def test_plain(pytestconfig):\n"
        "    assert pytestconfig.pluginmanager.has_plugin('replica')\n"
        "    assert not [m for m in sys.modules if m.startswith(('replica.drivers', 'replica.runner', 'replica.cli'))]\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_plain.py"],
        cwd=tmp_path, env=cli_env(tmp_path / "state"), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
