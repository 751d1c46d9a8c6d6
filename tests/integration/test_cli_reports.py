"""`--junit` and `--html` through the command a user types: a real failing run."""

from __future__ import annotations

import pytest

from tests.integration.cli_support import run_replica
from tests.report_checks import assert_valid_junit, render

#: A handler that fails as the incident did: a TypeError right after accept.
FAILING_HANDLER = '''
async def websocket_endpoint(websocket):
    await websocket.accept()
    raise TypeError("Object of type WebSocketState is not JSON serializable")
'''


@pytest.mark.slow
def test_a_failing_run_gives_a_valid_junit_file_with_its_mismatches_and_a_page_that_renders(tmp_path):
    (tmp_path / "boom.py").write_text(FAILING_HANDLER)
    junit, page = tmp_path / "runs.xml", tmp_path / "runs.html"
    result = run_replica("scenarios", "run", "seed-1011", "healthy", "--handler", "boom:websocket_endpoint",
                         "--junit", str(junit), "--html", str(page), state_dir=tmp_path, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    suite = assert_valid_junit(junit.read_text()).find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "2")
    for case in suite.findall("testcase"):
        assert case.get("name") == "boom:websocket_endpoint #1"
        failure = case.find("failure")
        assert "welcome: expected True, observed False" in failure.get("message")
        assert "TypeError: Object of type WebSocketState is not JSON serializable" in failure.text
    rendered = render(page, tmp_path / "profile")
    assert rendered.console == []
    assert rendered.dom.count('<svg class="sequence"') == 2
    assert "TypeError: Object of type WebSocketState is not JSON serializable" in rendered.dom


@pytest.mark.parametrize("option", ["--junit", "--html"])
def test_a_report_path_that_cannot_be_written_is_refused_before_anything_starts(tmp_path, option):
    result = run_replica("scenarios", "run", "healthy", option, str(tmp_path / "missing" / "r.out"), state_dir=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert "cannot write the report to" in said and "does not exist" in said and "Traceback" not in said


def test_diagnose_refuses_a_junit_path_that_is_a_directory(tmp_path):
    observed = tmp_path / "obs.json"
    observed.write_text('{"handshake": "accepted", "welcome": false, "close_code": 1011}')
    result = run_replica("diagnose", "--observed", str(observed), "--junit", str(tmp_path), state_dir=tmp_path)
    assert result.returncode == 2 and "it is a directory" in " ".join(result.stderr.split()), result.stdout + result.stderr
