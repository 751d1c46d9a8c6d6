"""``--shard K/N``: a stable partition of a run list over N parallel CI jobs.

The runs are sorted by (name, handler, repeat) and dealt out round-robin, so the
shards differ in size by at most one run and every machine computes the same
partition. A plan (digest of the whole run list, its keys in run order) goes into
each shard's report so ``replica report merge`` can tell the shards of one run
list apart from reports of another.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from replica.errors import ConfigError
from replica.runner import Job

SHARD_FORMAT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``total`` (1-based)."""

    index: int
    total: int

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` with 1 ≤ K ≤ N, else a :class:`ConfigError` saying what to give."""
    match = SHARD_FORMAT.match(text)
    if not match:
        raise ConfigError(f"--shard {text!r}: give K/N, e.g. --shard 2/4 for the second of four shards")
    index, total = int(match[1]), int(match[2])
    if total < 1 or not 1 <= index <= total:
        raise ConfigError(f"--shard {text}: K must be between 1 and N (N ≥ 1), e.g. 1/{max(total, 1)} … {max(total, 1)}/{max(total, 1)}")
    return Shard(index, total)


def job_key(job: Job) -> str:
    """A run's key in reports: ``name#repeat`` (the name carries a non-default handler)."""
    return f"{job.run.name}#{job.repeat}"


def sort_key(job: Job) -> tuple[str, str, int]:
    return (job.run.name, job.run.handler, job.repeat)


def shard_jobs(jobs: list[Job], shard: Shard) -> list[Job]:
    """This shard's jobs, in the order of ``jobs``."""
    ranked = sorted(range(len(jobs)), key=lambda k: sort_key(jobs[k]))
    mine = {k for position, k in enumerate(ranked) if position % shard.total == shard.index - 1}
    return [job for k, job in enumerate(jobs) if k in mine]


def plan(jobs: list[Job], shard: Shard | None = None) -> dict:
    """What a report records of the whole run list: its digest, its keys in run order, and the shard."""
    described = [[job_key(j), j.run.handler, j.run.model_dump(mode="json")] for j in jobs]
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
    return {"digest": digest, "runs": [job_key(j) for j in jobs], "shard": str(shard or Shard(1, 1))}
