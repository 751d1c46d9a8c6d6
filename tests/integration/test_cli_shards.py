"""Three sharded runs, merged, read as one unsharded run."""

from __future__ import annotations

import json
from xml.etree import ElementTree

import pytest

from tests.integration.cli_support import run_replica

pytestmark = pytest.mark.slow

RUNS = ["healthy", "seed-1011", "supervisor-missing", "seed-1011@recommended"]


def verdicts(report: dict) -> dict[tuple[str, int], tuple[str, str]]:
    return {(r["name"], r["repeat"]): (r["verdict"], r["fingerprint"].split(" after ")[0]) for r in report["scenarios"]}


def test_merged_shards_equal_the_unsharded_run(tmp_path):
    whole = run_replica("scenarios", "run", *RUNS, "--json", str(tmp_path / "whole.json"), state_dir=tmp_path)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    shards = []
    for k in (1, 2, 3):
        path = tmp_path / f"shard{k}.json"
        done = run_replica("scenarios", "run", *RUNS, "--shard", f"{k}/3", "--json", str(path), state_dir=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"shard {k}/3" in done.stderr
        shards.append(str(path))
    merged = run_replica(
        "report", "merge", *shards, "--json", str(tmp_path / "merged.json"), "--junit", str(tmp_path / "merged.xml"),
        state_dir=tmp_path,
    )
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert "4 passed, 0 failed" in merged.stdout and "4 passed, 0 failed" in whole.stdout
    unsharded = json.loads((tmp_path / "whole.json").read_text())
    combined = json.loads((tmp_path / "merged.json").read_text())
    assert verdicts(combined) == verdicts(unsharded)
    assert [r["name"] for r in combined["scenarios"]] == [r["name"] for r in unsharded["scenarios"]]
    suite = ElementTree.parse(tmp_path / "merged.xml").getroot()
    cases = suite.iter("testcase")
    assert sorted(c.get("classname") for c in cases) == sorted(r["scenario"] for r in unsharded["scenarios"])
    assert not list(suite.iter("failure"))

    # The same shard twice overlaps; a missing one leaves runs out: both refused with exit 2.
    twice = run_replica("report", "merge", shards[0], shards[0], shards[2], state_dir=tmp_path)
    assert twice.returncode == 2 and "both shard 1/3" in twice.stderr and "Traceback" not in twice.stderr
    short = run_replica("report", "merge", shards[0], shards[1], state_dir=tmp_path)
    assert short.returncode == 2 and "shard 3/3 missing" in short.stderr


@pytest.mark.parametrize("shard", ["0/3", "4/3", "two/3"])
def test_a_bad_shard_exits_2_before_anything_starts(tmp_path, shard):
    done = run_replica("scenarios", "run", "healthy", "--shard", shard, state_dir=tmp_path)
    assert done.returncode == 2 and "--shard" in done.stderr and "Traceback" not in done.stderr
