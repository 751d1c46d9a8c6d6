"""``scripts/stop-docker.sh`` stops only an engine ``ensure-docker.sh`` started, and with
``REPLICA_DOCKER_OWNER`` set (CI sets one per run) only one started for that owner: an
engine another session started stays up. Run against a state directory of its own whose
marker names a live process that is not dockerd (a ``sleep``), so nothing real is signalled."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "stop-docker.sh"


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen]]:
    """A state dir as ensure-docker.sh leaves it, for a stand-in process."""
    process = subprocess.Popen(["sleep", "60"])
    (tmp_path / "started-by-us").write_text(f"{process.pid}\n")
    try:
        yield tmp_path, process
    finally:
        process.kill()
        process.wait()


def stop(state: Path, owner: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REPLICA_DOCKER_OWNER"}
    env["REPLICA_DOCKER_STATE_DIR"] = str(state)
    if owner is not None:
        env["REPLICA_DOCKER_OWNER"] = owner
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("started_for", "owner"), [("", "ci-1"), ("ci-1", "ci-2"), (None, "ci-1")])
def test_another_owners_engine_is_left_alone(engine, started_for: str | None, owner: str) -> None:
    state, process = engine
    if started_for is not None:
        (state / "started-for").write_text(started_for + "\n")
    out = stop(state, owner)
    assert out.returncode == 0, out.stderr
    assert "leaving it alone" in out.stderr and owner in out.stderr
    assert process.poll() is None
    assert (state / "started-by-us").exists()  # still its starter's to stop


@pytest.mark.parametrize(("started_for", "owner"), [("ci-1", "ci-1"), ("", None), ("ci-1", None)])
def test_the_owner_or_a_session_without_one_goes_on_to_stop_it(engine, started_for: str, owner: str | None) -> None:
    """Past the owner check, the script checks the pid is still dockerd before signalling it:
    the stand-in is not, so it is left alone and the marker dropped."""
    state, process = engine
    (state / "started-for").write_text(started_for + "\n")
    out = stop(state, owner)
    assert out.returncode == 0, out.stderr
    assert f"pid {process.pid} is not dockerd any more" in out.stderr
    assert process.poll() is None
    assert not (state / "started-by-us").exists() and not (state / "started-for").exists()
