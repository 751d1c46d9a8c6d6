"""Which cause of the catalog explains an observed failure: pure ranking.

A :class:`Candidate` is a cause as run locally: the fingerprints its repeats gave,
the server-side features of its first run (what it logged, the frames before the
close, the connection without a token, ``/health/ready``, a second probe), and the
wait that dominates its timing when the catalog scales one down. An
:class:`Observed` is what is known of the failure to explain: the fingerprint
fields given (a bare fingerprint typed from a dashboard may give only some) and
any features. :func:`rank` judges every candidate field by field, timing in
ranges with the candidate's own spread, and orders them best first; :func:`tied`
and :func:`tells_apart` say which causes the fingerprint cannot separate and what
can.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from replica.evidence import frame_summary
from replica.fingerprint import TIMING_SLACK_MS, Fingerprint
from replica.observation import FollowUp, Observation

#: (field, weight, label): what counts most is what a dashboard shows first.
FIELDS: tuple[tuple[str, int, str], ...] = (
    ("handshake", 4, "handshake"),
    ("welcome", 2, "welcome"),
    ("close_code", 2, "close code"),
    ("close_reason", 2, "close reason"),
    ("closed_by", 1, "closed by"),
    ("close_after_ms", 1, "close time"),
    ("pong", 1, "pong"),
)
CLOSE_FIELDS = ("close_code", "close_reason", "closed_by", "close_after_ms")
#: Features that can tell causes with the same fingerprint apart, and how to name them.
FEATURES: dict[str, str] = {
    "server_log": "what the server logged",
    "frames": "frames before the close",
    "no_token": "the connection without a token",
    "ready": "/health/ready after the probe",
    "second_probe": "a second probe once ready (or after a wait)",
}


class ScaledWait(BaseModel):
    """A wait the catalog shortens locally (e.g. a 30 s startup wait run as 1 s)."""

    what: str
    local_ms: float
    real_ms: float


class Candidate(BaseModel):
    scenario: str
    handler: str
    title: str
    samples: list[Fingerprint]
    features: dict[str, str] = {}
    wait: ScaledWait | None = None
    #: Runs that missed the cause's own expectation, not counted as its samples.
    left_out: list[str] = []


class Observed(BaseModel):
    """The failure to explain: the fingerprint fields known, and any features."""

    fingerprint: dict[str, Any]
    features: dict[str, str] = {}

    def summary(self) -> str:
        known = Fingerprint.model_validate(self.fingerprint)
        text = known.summary()
        return text if "close_after_ms" in self.fingerprint or known.close_code is None else text + " (time not given)"


class Mismatch(BaseModel):
    field: str
    expected: str
    observed: str

    @property
    def text(self) -> str:
        label = dict((f, lbl) for f, _w, lbl in FIELDS).get(self.field, self.field)
        if self.field == "close":
            return f"{self.expected} here, {self.observed} observed"
        return f"{label}: {self.expected} here, {self.observed} observed"


class Ranked(BaseModel):
    scenario: str
    handler: str
    title: str
    matches: bool
    score: float
    mismatches: list[Mismatch]
    notes: list[str] = []
    #: How many known features of the observation this cause shows too.
    agreeing: list[str] = []


# ----------------------------------------------------------------------------- observations


def observed_from_json(data: Any) -> Observed:
    """What ``replica probe --json`` wrote, or a bare fingerprint object.

    Raises ``ValueError`` with what is wrong when it is neither.
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if "fingerprint" in data:
        return observed_from_probe(Observation.model_validate(data))
    fields = {f for f, _w, _l in FIELDS}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"unknown fingerprint field {unknown[0]!r} (known: {', '.join(f for f, _w, _l in FIELDS)})")
    if "handshake" not in data:
        raise ValueError('a fingerprint needs at least "handshake" (e.g. "accepted" or "http_503")')
    Fingerprint.model_validate(data)  # types checked; unknown fields stay unknown
    return Observed(fingerprint=dict(data))


def observed_from_probe(observation: Observation) -> Observed:
    """Everything a probe saw: the whole fingerprint, the frames, the connection without a token."""
    features = {"frames": frames_feature(observation.messages)}
    if observation.no_token_handshake is not None:
        features["no_token"] = observation.no_token_handshake
    return Observed(fingerprint=observation.fingerprint.model_dump(), features=features)


def with_follow_up(observed: Observed, follow_up: FollowUp) -> Observed:
    features = dict(observed.features, ready=follow_up.ready_text())
    if follow_up.second is not None:
        features["second_probe"] = fingerprint_text(follow_up.second)
    return observed.model_copy(update={"features": features})


def frames_feature(frames: list[dict[str, Any]]) -> str:
    return "; ".join(frame_summary(f) for f in frames) or "none"


def fingerprint_text(fp: Fingerprint) -> str:
    """A fingerprint without its timing (timing is judged apart)."""
    return fp.model_copy(update={"close_after_ms": None}).summary()


# ----------------------------------------------------------------------------- judging


def _value_text(field: str, value: Any) -> str:
    if field == "welcome":
        return "welcome" if value else "no welcome"
    if field == "pong":
        return "pong" if value else "no pong"
    if field == "close_reason":
        return f'"{value}"' if value is not None else "no close"
    if field in ("close_code", "closed_by"):
        return "no close" if value is None else str(value)
    return str(value)


def _span(lo: str, hi: str) -> str:
    return lo if lo == hi else f"{lo}–{hi}"


def timing_text(lo: float, hi: float, wait: ScaledWait | None = None) -> str:
    if hi <= TIMING_SLACK_MS:
        return f"immediately after accept ({_span(f'{lo:.0f}', f'{hi:.0f}')} ms)"
    text = f"{_span(f'{lo / 1000:.2f}', f'{hi / 1000:.2f}')} s after accept"
    if wait is not None:
        text += f", its {wait.what} scaled from {wait.real_ms / 1000:g} s in staging to {wait.local_ms / 1000:g} s"
    return text


def judge_timing(observed_ms: float, samples_ms: list[float], wait: ScaledWait | None) -> tuple[bool, str]:
    """Whether a close after ``observed_ms`` is this cause's timing, and a note saying why.

    In range when within the local samples' range widened by twice their spread
    or :data:`TIMING_SLACK_MS`, whichever is more; or in that range shifted by
    a scaled wait's difference (30 s in staging for 1 s here is scaled, not another kind).
    """
    lo, hi = min(samples_ms), max(samples_ms)
    tolerance = max(TIMING_SLACK_MS, 2 * (hi - lo))
    if lo - tolerance <= observed_ms <= hi + tolerance:
        return True, f"close after {observed_ms:.0f} ms ≈ {timing_text(lo, hi)} here"
    if wait is not None:
        shift = wait.real_ms - wait.local_ms
        if lo + shift - tolerance <= observed_ms <= hi + shift + tolerance:
            return True, f"scaled: its {wait.what} is {wait.local_ms / 1000:g} s here, {wait.real_ms / 1000:g} s in staging"
    return False, timing_text(lo, hi, wait)


def judge(observed: Observed, candidate: Candidate) -> Ranked:
    """One candidate against the observation, field by field."""
    total = got = 0
    mismatches: list[Mismatch] = []
    notes: list[str] = []
    closes_here = {s.close_code is not None for s in candidate.samples}
    close_known = "close_code" in observed.fingerprint
    closed = observed.fingerprint.get("close_code") is not None
    if close_known and closed not in closes_here:
        # No close on one side: one difference, not one per close field.
        here = candidate.samples[0]
        mismatches.append(
            Mismatch(
                field="close",
                expected=f'close {here.close_code} "{here.close_reason}"' if here.close_code is not None else "no close",
                observed=f'close {observed.fingerprint["close_code"]} "{observed.fingerprint.get("close_reason") or ""}"' if closed else "no close",
            )
        )
    for field, weight, _label in FIELDS:
        if field not in observed.fingerprint:
            continue
        value = observed.fingerprint[field]
        total += weight
        seen = [getattr(s, field) for s in candidate.samples]
        if close_known and closed not in closes_here and field in CLOSE_FIELDS:
            continue  # counted as not matching, said once above
        if field == "close_after_ms":
            times = [t for t in seen if t is not None]
            if value is None or not times:
                ok = value is None and not times
                expected = "no close" if not times else timing_text(min(times), max(times), candidate.wait)
            else:
                ok, expected = judge_timing(float(value), times, candidate.wait)
                if ok:
                    notes.append(expected)
            observed_text = "no close" if value is None else f"{float(value):.0f} ms"
        else:
            ok = value in seen
            expected = " or ".join(dict.fromkeys(_value_text(field, v) for v in seen))
            observed_text = _value_text(field, value)
        if ok:
            got += weight
        else:
            mismatches.append(Mismatch(field=field, expected=expected, observed=observed_text))
    agreeing = [k for k, v in observed.features.items() if candidate.features.get(k) == v]
    return Ranked(
        scenario=candidate.scenario,
        handler=candidate.handler,
        title=candidate.title,
        matches=not mismatches,
        score=round(got / total, 3) if total else 0.0,
        mismatches=mismatches,
        notes=notes,
        agreeing=agreeing,
    )


def rank(observed: Observed, candidates: list[Candidate]) -> list[Ranked]:
    """Every candidate, best first: those that match, then by score, then by the
    observation's features they share; ties keep the catalog's order."""
    judged = [judge(observed, c) for c in candidates]
    order = sorted(range(len(judged)), key=lambda i: (not judged[i].matches, -judged[i].score, -len(judged[i].agreeing), i))
    return [judged[i] for i in order]


def explaining(ranked: list[Ranked]) -> list[Ranked]:
    """The candidates that explain the observation (empty: nothing in the catalog does)."""
    return [r for r in ranked if r.matches]


def tied(ranked: list[Ranked]) -> list[Ranked]:
    """The explaining candidates the observation cannot separate: all of them, unless
    its features single out some (those that share the most)."""
    found = explaining(ranked)
    if len(found) < 2:
        return found
    best = max(len(r.agreeing) for r in found)
    return [r for r in found if len(r.agreeing) == best]


def tells_apart(candidates: list[Candidate]) -> dict[str, dict[str, str]]:
    """For causes with the same fingerprint: each feature on which they differ, with each one's value."""
    out: dict[str, dict[str, str]] = {}
    for feature in FEATURES:
        values = {c.scenario: c.features[feature] for c in candidates if feature in c.features}
        if len(values) == len(candidates) and len(set(values.values())) > 1:
            out[feature] = values
    return out
