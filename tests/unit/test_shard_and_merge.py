"""``--shard K/N`` partitions the real catalog's runs; ``report merge`` joins shard reports or refuses them."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from replica.errors import ConfigError
from replica.report_merge import load_report, merge_reports, result_from_entry
from replica.runner import repeated
from replica.scenarios import Catalog
from replica.shard import Shard, job_key, parse_shard, plan, shard_jobs


@pytest.fixture(scope="module")
def jobs():
    return repeated(Catalog.load().runs(), 3)


@pytest.mark.parametrize("total", [1, 2, 3, 7, 500])
def test_shards_cover_every_run_exactly_once(jobs, total):
    parts = [shard_jobs(jobs, Shard(k, total)) for k in range(1, total + 1)]
    covered = Counter(job_key(j) for part in parts for j in part)
    assert covered == Counter(job_key(j) for j in jobs)
    assert all(v == 1 for v in covered.values())
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1  # balanced


def test_a_shard_keeps_the_run_order_and_does_not_depend_on_the_input_order(jobs):
    shard = Shard(2, 3)
    mine = shard_jobs(jobs, shard)
    assert [job_key(j) for j in mine] == [job_key(j) for j in jobs if j in mine]
    assert {job_key(j) for j in shard_jobs(list(reversed(jobs)), shard)} == {job_key(j) for j in mine}


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "3", "a/b", "-1/2", "1/3/4", ""])
def test_a_bad_shard_is_a_usage_error(text):
    with pytest.raises(ConfigError) as caught:
        parse_shard(text)
    assert caught.value.exit_code == 2 and "K" in caught.value.message


def test_parse_shard():
    assert parse_shard("2/3") == Shard(2, 3) and str(parse_shard(" 1 / 1 ")) == "1/1"


def fake_report(jobs, shard: Shard) -> dict:
    """A shard's report as `scenarios run --json` writes it, with fingerprints of the expectation's kind."""
    entries = [
        {"name": j.run.name, "scenario": j.run.scenario.name, "handler": j.run.handler, "driver": "local", "repeat": j.repeat,
         "expected": None, "observed": {"handshake": "accepted", "welcome": True, "pong": True}, "verdict": "observed",
         "mismatches": [], "backend": {"ready": True}, "duration_ms": 1.0, "evidence": {}, "timeline": []}
        for j in shard_jobs(jobs, shard)
    ]
    return {"scenarios": entries, "plan": plan(jobs, shard)}


def test_merge_puts_every_shard_back_in_run_order(jobs):
    reports = [(f"s{k}.json", fake_report(jobs, Shard(k, 3))) for k in (3, 1, 2)]
    merged = merge_reports(reports)
    assert [f"{e['name']}#{e['repeat']}" for e in merged["scenarios"]] == [job_key(j) for j in jobs]
    assert merged["plan"]["shard"] == "1/1" and merged["plan"]["digest"] == plan(jobs)["digest"]
    assert result_from_entry(merged["scenarios"][0]).observed.pong is True


def test_merge_refuses_overlap_missing_shards_and_other_run_lists(jobs):
    one, two, three = (fake_report(jobs, Shard(k, 3)) for k in (1, 2, 3))
    with pytest.raises(ConfigError, match="both shard 1/3"):
        merge_reports([("a", one), ("b", one), ("c", three)])
    with pytest.raises(ConfigError, match="shard 2/3 missing"):
        merge_reports([("a", one), ("c", three)])
    other = fake_report(repeated(Catalog.load().runs(), 2), Shard(2, 3))
    with pytest.raises(ConfigError, match="different run lists"):
        merge_reports([("a", one), ("b", other), ("c", three)])
    halves = fake_report(jobs, Shard(2, 2))
    halves["plan"] = {**one["plan"], "shard": "2/2"}
    with pytest.raises(ConfigError, match="has 3 shards"):
        merge_reports([("a", one), ("b", halves)])
    tampered = json.loads(json.dumps(two))
    tampered["scenarios"].append(one["scenarios"][0])
    with pytest.raises(ConfigError, match="overlap"):
        merge_reports([("a", one), ("b", tampered), ("c", three)])
    tampered["scenarios"] = two["scenarios"][1:]
    with pytest.raises(ConfigError, match="in no report"):
        merge_reports([("a", one), ("b", tampered), ("c", three)])


@pytest.mark.parametrize("content", ["not json", "[]", '{"scenarios": []}', '{"scenarios": [1], "plan": {"runs": []}}', "[" * 100000])
def test_load_report_refuses_what_is_not_a_report(tmp_path, content):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_report(path)
    assert str(path) in caught.value.message


def test_a_reports_entry_keeps_the_backends_pid_and_the_log_of_a_missed_run():
    from replica.fingerprint import Fingerprint
    from replica.observation import Observation
    from replica.report import json_report
    from replica.runner import RunResult

    seen = Fingerprint(handshake="accepted", welcome=True, pong=True)
    missed = RunResult(
        name="auth-service-down", scenario="auth-service-down", handler="incident", driver="local",
        expected=None, observed=seen, verdict="fail", mismatches=["welcome: expected False, saw True"],
        backend_ready=True, backend_pid=27239, duration_ms=12.0,
        observation=Observation(base_url="", url="", fingerprint=seen), backend_log="INFO uvicorn.error: Started\n",
    )
    entry = json.loads(json.dumps(json_report([missed])))["scenarios"][0]
    assert entry["backend"]["pid"] == 27239 and "Started" in entry["backend"]["log"]
    again = result_from_entry(entry)
    assert (again.backend_pid, again.backend_log) == (27239, missed.backend_log)
