"""``replica report merge``: the JSON reports of a run list's shards read as one report.

Pure functions over parsed reports, plus :func:`load_report` for the files. A merge
refuses reports of different run lists, overlapping shards and missing shards:
a merged report that silently lacks runs would read as a pass.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pydantic import ValidationError

from replica.errors import ConfigError
from replica.evidence import Evidence
from replica.observation import Observation
from replica.runner import RunResult
from replica.shard import Shard, parse_shard

#: Larger than any report of a real run list; a bigger file is not a report.
MAX_REPORT_BYTES = 64 * 1024 * 1024


def load_report(path: Path) -> dict:
    """A report written by ``scenarios run --json``, or a :class:`ConfigError` saying why not."""
    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_REPORT_BYTES} bytes: not a replica report")
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{path}: not a JSON report: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list) or not isinstance(data.get("plan"), dict):
        raise ConfigError(f"{path}: not a report of `replica scenarios run --json` (no scenarios and plan)")
    runs = data["plan"].get("runs")
    if not isinstance(runs, list) or not all(isinstance(k, str) for k in runs):
        raise ConfigError(f"{path}: its plan lists no runs: not a report of `replica scenarios run --json`")
    for entry in data["scenarios"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("repeat"), int):
            raise ConfigError(f"{path}: a run without a name and repeat: not a report of `replica scenarios run --json`")
    return data


def entry_key(entry: dict) -> str:
    return f"{entry['name']}#{entry['repeat']}"


def merge_reports(named: list[tuple[str, dict]]) -> dict:
    """One report of every shard's runs, in the order of the unsharded run list."""
    if not named:
        raise ConfigError("give the JSON reports of the shards to merge")
    first_name, first = named[0]
    digest, order = first["plan"].get("digest"), first["plan"].get("runs")
    shards: dict[int, str] = {}
    total = None
    for name, report in named:
        if report["plan"].get("digest") != digest:
            raise ConfigError(f"{name} and {first_name} are reports of different run lists (catalog, handler or --repeat differ): merge the shards of one run")
        shard = shard_of(name, report)
        if total is not None and shard.total != total:
            raise ConfigError(f"{name} is shard {shard} but {first_name} has {total} shards: merge the shards of one run")
        total = shard.total
        if shard.index in shards:
            raise ConfigError(f"{name} and {shards[shard.index]} are both shard {shard}: each shard once")
        shards[shard.index] = name
    missing = [f"{k}/{total}" for k in range(1, (total or 0) + 1) if k not in shards]
    if missing:
        raise ConfigError(f"shard {', '.join(missing)} missing: a merged report must hold every run")
    entries = [(name, e) for name, report in named for e in report["scenarios"]]
    planned = Counter(order)
    seen = Counter(entry_key(e) for _name, e in entries)
    extra = seen - planned
    if extra:
        key = next(iter(extra))
        where = [n for n, e in entries if entry_key(e) == key]
        raise ConfigError(f"run {key} is in more reports than the plan has it ({', '.join(where)}): the shards overlap")
    lacking = planned - seen
    if lacking:
        raise ConfigError(f"run {next(iter(lacking))} is in no report: a shard's report is incomplete")
    position = {key: k for k, key in enumerate(order)}
    merged = sorted((e for _n, e in entries), key=lambda e: position[entry_key(e)])
    return {"scenarios": merged, "plan": {**first["plan"], "shard": "1/1"}, "merged_from": [n for n, _r in named]}


def shard_of(name: str, report: dict) -> Shard:
    try:
        return parse_shard(str(report["plan"].get("shard", "")))
    except ConfigError:
        raise ConfigError(f"{name}: its plan names no valid shard (K/N)") from None


def result_from_entry(entry: dict) -> RunResult:
    """A report entry as a :class:`RunResult`, for the tables (the probe's URLs are not in reports)."""
    backend = entry.get("backend") or {}
    try:
        evidence = Evidence.model_validate(entry.get("evidence") or {})
        observation = Observation(
            base_url="", url="", fingerprint=entry["observed"], welcome_ms=entry.get("welcome_ms"),
            flows=entry.get("flows"), timeline=entry.get("timeline") or [], messages=evidence.frames,
            no_token_handshake=evidence.no_token,
        )
        return RunResult(
            name=entry["name"], scenario=entry["scenario"], handler=entry["handler"], driver=entry["driver"],
            repeat=entry["repeat"], expected=entry.get("expected"), observed=entry["observed"],
            verdict=entry["verdict"], mismatches=entry.get("mismatches") or [],
            backend_ready=backend.get("ready", True), backend_detail=backend.get("detail", ""),
            backend_startup_ms=backend.get("startup_ms"), backend_exit_status=backend.get("exit_status"),
            backend_pid=backend.get("pid"), duration_ms=entry.get("duration_ms", 0.0), observation=observation, evidence=evidence,
            follow_up=entry.get("follow_up"), backend_log=backend.get("log", ""),
            faults=[tuple(f) for f in entry.get("faults") or []],
        )
    except (KeyError, TypeError, ValidationError) as exc:
        raise ConfigError(f"run {entry.get('name', '?')!r} in the report is malformed: {exc}") from None
