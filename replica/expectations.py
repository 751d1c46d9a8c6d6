"""Expectations frozen from observation: snapshot testing of failure behaviour.

``replica scenarios freeze`` runs a project's scenarios a few times and writes what
it saw to ``replica-expect.yaml``; later runs are checked against it. The file is
meant to be edited: a key present is checked (``null`` too: ``close_code: null``
means "no close"), a key left out is not. So "with redis hung: 1013, not 1011" is
one changed line, and the run fails until the fix lands::

    scenarios:
      redis:hung:
        handshake: accepted
        welcome: false
        close_code: 1013
        close_after_ms: {min: 0, max: 250}

Timings are frozen as ranges around what was seen: ``max(3 × spread, 250 ms,
10 % of the slowest)`` on each side, never below 0 (250 ms: what a loaded machine's
scheduling adds, the slack ``replica diagnose`` allows too). A field that differed between
the runs being frozen is left out and reported. Pure: text in, text out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Sequence

import yaml
from pydantic import ValidationError

from replica.errors import ConfigError
from replica.fingerprint import TIMING_SLACK_MS, Expectation, Fingerprint, Range
from replica.scenarios import ScenarioRun

EXPECT_FILE = "replica-expect.yaml"
#: Fields compared for equality (``close_after_ms`` is a range).
EXACT_FIELDS = ("handshake", "welcome", "close_code", "close_reason", "closed_by", "pong")
SPREAD_FACTOR = 3.0
RELATIVE_MARGIN = 0.1
FROZEN_LABEL = "frozen"

Verdict = Literal["pass", "fail", "observed"]


class Snapshot(Expectation):
    """An expectation where every key given is checked, ``None`` included."""

    def mismatches(self, observed: Fingerprint) -> list[str]:
        found = super().mismatches(observed)
        for name in self.model_fields_set:
            got = getattr(observed, name)
            if getattr(self, name) is None and got is not None:
                found.append(f"{name}: expected None, observed {got!r}")
        return found

    def describe(self) -> str:
        """As :meth:`Expectation.describe`, plus ``no close`` when that is checked."""
        text = super().describe()
        if "close_code" in self.model_fields_set and self.close_code is None:
            return "no close" if text == "anything" else f"{text}, no close"
        return text


def judge(expect: Expectation | None, observed: Fingerprint) -> tuple[Verdict, list[str]]:
    """``observed`` when nothing is expected, else ``pass`` or ``fail`` with each mismatch."""
    if expect is None:
        return "observed", []
    mismatches = expect.mismatches(observed)
    return ("fail" if mismatches else "pass"), mismatches


# ----------------------------------------------------------------- freezing


def widen(values: Sequence[float]) -> Range:
    """A range around observed timings, wide enough for the next runs on a loaded machine."""
    low, high = min(values), max(values)
    margin = max(SPREAD_FACTOR * (high - low), TIMING_SLACK_MS, RELATIVE_MARGIN * high)
    return Range(min=max(0, math.floor(low - margin)), max=math.ceil(high + margin))


@dataclass(frozen=True)
class Frozen:
    """Expectations per scenario, and the fields left out because the runs disagreed."""

    expectations: dict[str, Snapshot]
    unstable: dict[str, list[str]] = field(default_factory=dict)


def freeze(observations: Mapping[str, Sequence[Fingerprint]]) -> Frozen:
    """One :class:`Snapshot` per scenario from its observed fingerprints (at least one each)."""
    expectations: dict[str, Snapshot] = {}
    unstable: dict[str, list[str]] = {}
    for name, seen in observations.items():
        if not seen:
            raise ValueError(f"no observation of scenario {name!r} to freeze")
        values: dict[str, object] = {}
        differing: list[str] = []
        for key in EXACT_FIELDS:
            distinct = {getattr(fp, key) for fp in seen}
            if len(distinct) == 1:
                values[key] = distinct.pop()
            else:
                differing.append(key)
        timings = [fp.close_after_ms for fp in seen]
        if all(t is not None for t in timings):
            values["close_after_ms"] = widen(timings)  # type: ignore[arg-type]
        elif any(t is not None for t in timings):
            differing.append("close_after_ms")
        expectations[name] = Snapshot(**values)
        if differing:
            unstable[name] = differing
    return Frozen(expectations, unstable)


# ------------------------------------------------------------------ the file


def dump_expectations(frozen: Frozen, *, source: str, runs: int) -> str:
    """The expectation file's text, scenarios in the order given."""
    body = {"scenarios": {name: _plain(snap.model_dump(exclude_unset=True)) for name, snap in frozen.expectations.items()}}
    header = [
        f"# Expected fingerprints for {source}, frozen from {runs} run{'s' if runs != 1 else ''} of each scenario.",
        "# A key present is checked (null too: close_code: null means no close); a key left out is not.",
    ]
    for name, fields in frozen.unstable.items():
        header.append(f"# {name}: {', '.join(fields)} differed between runs and is not checked")
    return "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


def _plain(value: object) -> object:
    """Whole floats as ints (``50`` not ``50.0``), nested."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def parse_expectations(text: str, *, source: str, known: Sequence[str]) -> dict[str, Snapshot]:
    """Read an expectation file strictly: every scenario named must be one of ``known``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or set(data) != {"scenarios"} or not isinstance(data["scenarios"], dict):
        raise ConfigError(f"{source}: expected one top-level key, scenarios: a mapping of scenario name to fingerprint")
    expectations: dict[str, Snapshot] = {}
    for name, entry in data["scenarios"].items():
        if name not in known:
            raise ConfigError(f"{source}: scenarios.{name}: no such scenario (known: {', '.join(known)})")
        try:
            expectations[name] = Snapshot.model_validate(entry if entry is not None else {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{source}: scenarios.{name}.{where}: {first['msg']}") from None
    return expectations


def load_expectations(path: Path, *, known: Sequence[str]) -> dict[str, Snapshot]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_expectations(text, source=str(path), known=known)


def with_expectations(runs: Sequence[ScenarioRun], expectations: Mapping[str, Snapshot]) -> list[ScenarioRun]:
    """The runs, each held to its frozen expectation where the file has one (else observed)."""
    return [
        run.model_copy(update={"expect": expectations[run.name], "expect_label": FROZEN_LABEL})
        if run.name in expectations
        else run
        for run in runs
    ]
