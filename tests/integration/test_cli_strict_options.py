"""``replica up`` refuses a bad failpoint spec or defect before it starts anything."""

from __future__ import annotations

import pytest

from tests.integration.cli_support import run_replica


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--failpoints", "ws.autth=raise(TypeError: x)"),
         "error: --failpoints: ws.autth=raise(TypeError: x): unknown failpoint 'ws.autth'; did you mean 'ws.auth'?"),
        (("--failpoints", "ws.auth=delay(5x)"), "error: --failpoints: ws.auth=delay(5x): bad duration '5x'"),
        (("--defects", "auth-log-jsn"), "error: --defects: unknown defect 'auth-log-jsn'"),
    ],
)
def test_up_with_a_bad_option_exits_2_before_starting_anything(tmp_path, args: tuple[str, ...], message: str) -> None:
    state_dir = tmp_path / "state"
    result = run_replica("up", *args, state_dir=state_dir, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in " ".join(result.stderr.split())
    assert "postgres" not in (result.stdout + result.stderr).lower()  # no stack was started
    assert not state_dir.exists() or not any(state_dir.iterdir())
