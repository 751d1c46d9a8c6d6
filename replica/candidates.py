"""The catalog's causes as run locally, for diagnosis; cached per catalog + code version.

Each cause (a scenario with its own handler) runs ``repeats`` times, the first
with a follow-up (``/health/ready`` and a second probe), and becomes a
:class:`~replica.diagnose.Candidate`. The candidates are stored under the user's
cache directory, keyed by a hash of the catalog files, the package source, the
repeat count and the driver, so a second diagnosis runs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from replica.backend.handlers.variants import variant
from replica.diagnose import Candidate, ScaledWait, fingerprint_text, frames_feature
from replica.runner import Job, RunResult
from replica.scenarios import CATALOG_DIR, Catalog, ProbeSpec, Scenario

PACKAGE_DIRS = (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "faults")
DEFAULT_REPEATS = 5
_CANDIDATES = TypeAdapter(list[Candidate])


def cause_jobs(catalog: Catalog, repeats: int) -> list[Job]:
    """Every scenario as written (its own handler), ``repeats`` times; the first with a follow-up."""
    causes = [r for r in catalog.runs() if r.name == r.scenario.name]
    return [Job(run, i, follow_up=i == 1) for i in range(1, repeats + 1) for run in causes]


def scaled_wait(scenario: Scenario) -> ScaledWait | None:
    """The wait that sets a cause's timing when the catalog runs it shorter than staging would."""
    own = variant(scenario.backend.handler)
    local = scenario.backend.startup_wait_s
    if local is not None and own is not None and own.startup_wait_s is not None and own.startup_wait_s != local:
        return ScaledWait(what="startup wait", local_ms=local * 1000, real_ms=own.startup_wait_s * 1000)
    probe, staging = scenario.probe, ProbeSpec()
    if probe.ping_interval_s is not None and (probe.ping_interval_s, probe.ping_timeout_s) != (staging.ping_interval_s, staging.ping_timeout_s):
        return ScaledWait(
            what="client keepalive",
            local_ms=(probe.ping_interval_s + (probe.ping_timeout_s or 0)) * 1000,
            real_ms=((staging.ping_interval_s or 0) + (staging.ping_timeout_s or 0)) * 1000,
        )
    return None


def features_of(result: RunResult) -> dict[str, str]:
    """What can tell this run's cause from others with the same fingerprint."""
    features = {
        "server_log": "; ".join(e.line() for e in result.evidence.server_errors) or "no error",
        "frames": frames_feature(result.evidence.frames),
        "no_token": result.evidence.no_token or "not tried",
    }
    if result.follow_up is not None:
        features["ready"] = result.follow_up.ready_text()
        if result.follow_up.second is not None:
            features["second_probe"] = fingerprint_text(result.follow_up.second)
    return features


def candidates_from(results: list[RunResult], catalog: Catalog) -> list[Candidate]:
    """One candidate per cause, in the catalog's order."""
    by_scenario: dict[str, list[RunResult]] = {}
    for r in results:
        by_scenario.setdefault(r.scenario, []).append(r)
    out = []
    for name, runs in by_scenario.items():
        scenario = catalog.scenarios[name]
        runs.sort(key=lambda r: r.repeat)
        # A run that missed the cause's own expectation (e.g. a backend that never
        # answered) says nothing about the cause: left out, and said so.
        kept = [r for r in runs if r.verdict == "pass"] or runs
        first = kept[0]
        out.append(
            Candidate(
                scenario=name,
                handler=first.handler,
                title=scenario.title,
                samples=[r.observed for r in kept],
                features=features_of(first),
                wait=scaled_wait(scenario),
                left_out=[f"run {r.repeat}: {r.observed.summary()}" for r in runs if r not in kept],
            )
        )
    return out


# ----------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """``$REPLICA_CACHE_DIR``, else ``$XDG_CACHE_HOME/staging-replica``, else ``~/.cache/staging-replica``."""
    if os.environ.get("REPLICA_CACHE_DIR"):
        return Path(os.environ["REPLICA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "staging-replica"


def cache_key(repeats: int, driver: str, catalog_dir: Path = CATALOG_DIR, package_dirs: tuple[Path, ...] = PACKAGE_DIRS) -> str:
    """A hash of the catalog files, the package source, the repeat count and the driver."""
    digest = hashlib.sha256(f"{repeats}:{driver}".encode())
    files = sorted(catalog_dir.glob("*.yaml")) + sorted(p for d in package_dirs for p in d.rglob("*.py"))
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def cache_path(key: str) -> Path:
    return cache_dir() / f"diagnose-{key}.json"


def load_cached(key: str) -> list[Candidate] | None:
    """The candidates stored under ``key``, or None (missing or unreadable: run again)."""
    try:
        return _CANDIDATES.validate_json(cache_path(key).read_bytes())
    except (OSError, ValidationError, ValueError):
        return None


def store(key: str, candidates: list[Candidate]) -> Path:
    """Write atomically, readable by the user only."""
    path = cache_path(key)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_CANDIDATES.dump_python(candidates, mode="json"), indent=1))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path
