"""The compose driver runs the example project's whole generic catalog (examples/chat,
its image built from ``[backend] build``) with the same verdicts and fingerprints
(timings aside) as the local driver, against the frozen expectations, and leaves
nothing of its stack behind."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.docker.conftest import PROJECT_LABEL
from tests.docker.test_parity import REPO, SHAPE, replica, runs

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CHAT = REPO / "examples" / "chat" / "replica.toml"


def test_the_example_project_gets_the_same_verdicts_under_both_drivers(images: dict[str, str], tmp_path: Path) -> None:
    verdicts: dict[str, dict[str, dict]] = {}
    for driver in ("local", "compose"):
        report = tmp_path / f"{driver}.json"
        out = replica(
            ["scenarios", "run", "--all", "--config", str(CHAT), "--driver", driver, "--json", str(report)], tmp_path
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        verdicts[driver] = runs(report)
        compose_output = out.stdout + out.stderr
        assert {r["driver"] for r in verdicts[driver].values()} == {driver}
    local, compose = verdicts["local"], verdicts["compose"]
    assert set(local) == set(compose) and len(compose) == 17  # the whole generic catalog of the example
    assert {name: r["verdict"] for name, r in compose.items()} == {name: "pass" for name in compose}
    assert {name: r["verdict"] for name, r in local.items()} == {name: "pass" for name in local}
    shapes = {name: ({k: local[name]["observed"][k] for k in SHAPE}, {k: compose[name]["observed"][k] for k in SHAPE}) for name in local}
    assert all(a == b for a, b in shapes.values()), shapes
    assert compose["ws.publish:raise"]["observed"]["close_code"] == 1011
    assert compose["redis:hung"]["observed"]["close_code"] == 1013
    stack = re.search(r"starting the compose stack \(project (\S+)\)", compose_output)
    assert stack is not None, compose_output[-2000:]
    left = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", f"label={PROJECT_LABEL}={stack.group(1)}"],
        capture_output=True, text=True, timeout=30,
    )
    assert left.stdout.split() == []
