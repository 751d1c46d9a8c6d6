"""The compose driver reproduces the seed failure and agrees with the local driver on every scenario."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.docker, pytest.mark.slow]

#: What a verdict rests on, without the timings (those differ between drivers, within bounds).
SHAPE = ("handshake", "welcome", "close_code", "close_reason", "pong", "closed_by")


def replica(args: list[str], tmp_path: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "REPLICA_COMPOSE_PROJECT_PREFIX": f"sr-parity-{uuid.uuid4().hex[:6]}",
        "REPLICA_STATE_DIR": str(tmp_path / "state"),  # never attach to a running local stack
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "replica", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def runs(path: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(path.read_text())["scenarios"]}


def test_reproduce_1011_with_the_compose_driver(images: dict[str, str], tmp_path: Path) -> None:
    out = replica(["reproduce", "1011", "--driver", "compose", "--json", str(tmp_path / "r.json")], tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Reproduced seed-1011" in out.stdout
    seed = runs(tmp_path / "r.json")["seed-1011"]
    assert seed["driver"] == "compose"
    assert (seed["observed"]["close_code"], seed["observed"]["close_reason"]) == (1011, "Internal error")
    assert seed["observed"]["welcome"] is False and seed["observed"]["close_after_ms"] < 200


def test_every_scenario_gets_the_same_verdict_under_both_drivers(images: dict[str, str], tmp_path: Path) -> None:
    verdicts: dict[str, dict[str, dict]] = {}
    for driver in ("local", "compose"):
        report = tmp_path / f"{driver}.json"
        out = replica(["scenarios", "run", "--all", "--driver", driver, "--json", str(report)], tmp_path)
        assert report.exists(), out.stdout[-3000:] + out.stderr[-3000:]
        verdicts[driver] = runs(report)
        assert {r["driver"] for r in verdicts[driver].values()} == {driver}
    local, compose = verdicts["local"], verdicts["compose"]
    assert set(local) == set(compose)
    differing = {
        name: {"local": local[name]["mismatches"], "compose": compose[name]["mismatches"]}
        for name in local
        if local[name]["verdict"] != compose[name]["verdict"]
    }
    assert not differing, differing
    shapes = {
        name: ({k: local[name]["observed"][k] for k in SHAPE}, {k: compose[name]["observed"][k] for k in SHAPE})
        for name in local
    }
    assert all(a == b for a, b in shapes.values()), {n: s for n, s in shapes.items() if s[0] != s[1]}
    assert all(r["verdict"] == "pass" for r in local.values())
