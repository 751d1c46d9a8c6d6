"""Random failpoint specs and random scenario files: the parsers answer with a value
or their own error type, never anything else.

Counts: ``SPEC_EXAMPLES`` specs against each parser, ``SCENARIO_EXAMPLES`` scenario files.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from faults import FailpointError, FailpointSpec, parse_spec
from replica.backend import injection
from replica.errors import ConfigError
from replica.scenarios import Scenario, load_scenario

SPEC_EXAMPLES = 2000
SCENARIO_EXAMPLES = 1000

SPEC_TOKENS = [
    *injection.POINTS, "ws.publish", "a", "x.y-z_1", "=", "==", ";", "\n", "\r", "(", ")", ":", " ", "\t", ".", "\x00",
    "delay", "raise", "skip", "hang", "block", "block(redis)", "250ms", "2s", "1.5s", ".5s", "1m", "9999999m", "5x",
    "TypeError", "KeyboardInterrupt", "UnicodeDecodeError", "Exception", "boom", "redis", "é", "\ud800",
]
ACTION_TEXTS = [
    "skip", "hang", "raise", "raise(TypeError: boom)", "raise( ValueError )", "delay(250ms)", "delay( 1.5s )", "block(2s)",
    "block(redis)", "block( redis )", "delay", "raise(Nope)", "explode", "skip(1s)",
]
items = st.tuples(
    st.sampled_from([*injection.POINTS, "ws.publish", "ws.autth"]), st.sampled_from([" ", ""]), st.sampled_from(ACTION_TEXTS)
).map(lambda t: f"{t[0]}{t[1]}={t[1]}{t[2]}")
spec_texts = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(SPEC_TOKENS), max_size=40).map("".join),
    st.lists(items, max_size=5).map(lambda xs: " ;\n".join(xs)),
)


def check_spec(parse, text: str) -> None:
    try:
        spec = parse(text)
    except FailpointError as exc:
        assert str(exc) and len(str(exc)) < 2000
        event("refused")
        return
    event("parsed")
    assert isinstance(spec, FailpointSpec)
    assert parse(str(spec)) == spec  # what was accepted is written back exactly


@settings(max_examples=SPEC_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_texts, st.none() | st.lists(st.sampled_from(["a", "ws.auth", "ws.publish", "x.y-z_1"])))
def test_random_specs_parse_or_raise_failpoint_error(text: str, declared: list[str] | None) -> None:
    check_spec(lambda t: parse_spec(t, declared=declared), text)


@settings(max_examples=SPEC_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_texts)
def test_random_specs_against_the_builtin_backend(text: str) -> None:
    check_spec(injection.parse_failpoints, text)


VOCABULARY = [
    "name", "title", "hypothesis", "backend", "toxics", "down", "probe", "expect", "fixes", "handler", "failpoints",
    "defects", "hop", "type", "attributes", "toxicity", "when", "latency", "timeout", "handshake", "close_code",
    "welcome", "probe_after", "ready_timeout_s", "incident", "recommended", "redis", "x",
]
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=30),
    st.sampled_from([*VOCABULARY, *SPEC_TOKENS]),
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(VOCABULARY) | st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)
VALID = yaml.safe_load(Path(__file__).resolve().parents[2].joinpath("faults", "scenarios", "hung-redis-sync-client.yaml").read_text())


PLAUSIBLE = [
    "incident", "recommended", "gunicorn", "background", "ws.auth=raise(TypeError: x)", "startup.supervisor=skip",
    "ws.welcome=skip", ["auth-log-json"], ["auth-log"], [{"hop": "redis", "type": "latency", "attributes": {"latency": 5}}],
    [{"hop": "redis", "type": "latncy"}], [{"hop": "postgres"}], {"handshake": "accepted"}, {"close_code": 1011}, 0.5, -1,
]
DELETE = object()


def mutated(base: dict, path: list[str], value: object) -> dict:
    out = dict(base)
    if len(path) > 1 and isinstance(out.get(path[0]), dict):
        out[path[0]] = mutated(out[path[0]], path[1:], value)
    elif value is DELETE:
        out.pop(path[0], None)
    else:
        out[path[0]] = value
    return out


mutations = st.lists(
    st.tuples(
        st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=3),
        st.one_of(values, st.sampled_from(PLAUSIBLE), st.just(DELETE)),
    ),
    min_size=1, max_size=3,
)


def apply(base: dict, changes: list[tuple[list[str], object]]) -> dict:
    for path, value in changes:
        base = mutated(base, path, value)
    return base


scenario_documents = st.one_of(
    st.text(max_size=300),
    values.map(lambda v: yaml.safe_dump(v)),
    mutations.map(lambda changes: yaml.safe_dump(apply(VALID, changes))),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=SCENARIO_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(scenario_documents)
def test_random_scenario_files_load_or_raise_config_error(tmp_path: Path, document: str) -> None:
    path = tmp_path / "hung-redis-sync-client.yaml"
    path.write_text(document, errors="surrogatepass")
    try:
        scenario = load_scenario(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path)) and exc.exit_code == 2
        event("refused")
        return
    event("loaded")
    assert isinstance(scenario, Scenario)
