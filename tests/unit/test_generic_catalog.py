"""The generic fault catalog derived from a project file."""

from __future__ import annotations

import pytest

from replica.errors import ConfigError
from replica.generic_catalog import PROJECT_HANDLER, generic_catalog, generic_scenarios, project_runs
from replica.project import load_project

PROJECT = """
[backend]
app = "chat.main:app"
failpoints = ["startup.cache", "ws.publish"]
startup_timeout = 7
[dependencies.postgres]
[dependencies.broker]
kind = "redis"
[probe]
token = "mint"
"""


@pytest.fixture
def project(tmp_path):
    path = tmp_path / "replica.toml"
    path.write_text(PROJECT)
    return load_project(path)


def test_names_are_exactly_those_of_the_issue(project):
    names = [s.name for s in generic_scenarios(project)]
    assert names == [
        "healthy",
        "postgres:down", "postgres:slow-startup", "postgres:hung", "postgres:reset", "postgres:latency",
        "broker:down", "broker:slow-startup", "broker:hung", "broker:reset", "broker:latency",
        "startup.cache:raise", "startup.cache:hang", "startup.cache:delay",
        "ws.publish:raise", "ws.publish:hang", "ws.publish:delay",
    ]


def test_dependency_faults_use_the_scenario_model(project):
    by_name = {s.name: s for s in generic_scenarios(project)}
    down = by_name["broker:down"]
    assert [(d.hop, d.when) for d in down.down] == [("broker", "before_start")] and down.toxics == ()
    slow = by_name["postgres:slow-startup"].toxics
    assert [(t.hop, t.type, t.when, t.attributes) for t in slow] == [("postgres", "latency", "before_start", {"latency": 1000})]
    assert slow[0].until == "ready"  # a fault of the startup only: the lane removes it once the backend is ready
    hung = by_name["postgres:hung"].toxics
    assert [(t.type, t.when, t.attributes) for t in hung] == [("timeout", "after_ready", {"timeout": 0})]
    reset = by_name["broker:reset"].toxics
    assert [(t.type, t.when) for t in reset] == [("reset_peer", "after_ready")]
    latency = by_name["broker:latency"].toxics
    assert [(t.type, t.when, t.attributes) for t in latency] == [("latency", "after_ready", {"latency": 500})]
    assert by_name["healthy"].toxics == () and by_name["healthy"].down == ()


def test_failpoint_faults_arm_one_point_each(project):
    by_name = {s.name: s for s in generic_scenarios(project)}
    assert by_name["ws.publish:raise"].backend.failpoints == "ws.publish=raise(RuntimeError: failpoint ws.publish)"
    assert by_name["startup.cache:hang"].backend.failpoints == "startup.cache=hang"
    assert by_name["ws.publish:delay"].backend.failpoints == "ws.publish=delay(1s)"
    assert by_name["postgres:down"].backend.failpoints == ""


def test_every_generic_run_is_observed_and_follows_the_project(project):
    for scenario in generic_scenarios(project):
        assert scenario.expect is None, scenario.name
        assert scenario.backend.handler == PROJECT_HANDLER
        assert scenario.ready_timeout_s == 7
        assert scenario.probe.with_token and not scenario.probe.e2e_headers


def test_catalog_selects_by_name_and_refuses_unknown_names(project):
    catalog = generic_catalog(project)
    [run] = catalog.select(["ws.publish:raise"])
    assert run.name == "ws.publish:raise" and run.expect is None
    assert len(catalog.runs()) == 17
    with pytest.raises(ConfigError, match="unknown scenario 'redis:down'.*broker:down"):
        catalog.select(["redis:down"])


def test_a_project_without_dependencies_or_points_has_healthy_only(tmp_path):
    path = tmp_path / "replica.toml"
    path.write_text('[backend]\ncommand = ["./serve", "{port}"]\n')
    [only] = generic_scenarios(load_project(path))
    assert only.name == "healthy" and not only.probe.with_token


def test_project_runs_take_the_expectation_file_next_to_the_project(project, tmp_path):
    assert all(run.expect is None for run in project_runs(project))
    (tmp_path / "replica-expect.yaml").write_text("scenarios:\n  broker:hung: {handshake: accepted, close_code: 1013}\n")
    runs = {run.name: run for run in project_runs(project)}
    assert runs["broker:hung"].expect.close_code == 1013 and runs["broker:hung"].expect_label == "frozen"
    assert runs["healthy"].expect is None
    (tmp_path / "replica-expect.yaml").write_text("scenarios:\n  redis:hung: {}\n")
    with pytest.raises(ConfigError, match=r"replica-expect.yaml: scenarios.redis:hung: no such scenario"):
        project_runs(project)


def test_a_command_backend_gets_the_same_catalog_as_an_app(tmp_path):
    path = tmp_path / "replica.toml"
    path.write_text(
        '[backend]\ncommand = ["node", "server.js", "--port", "{port}"]\nfailpoints = ["ws.publish"]\n'
        '[backend.env]\nREDIS = "{redis.url}"\n[dependencies.redis]\n'
    )
    as_command = [s.name for s in generic_scenarios(load_project(path))]
    path.write_text('[backend]\napp = "chat.main:app"\nfailpoints = ["ws.publish"]\n[dependencies.redis]\n')
    assert as_command == [s.name for s in generic_scenarios(load_project(path))]
    assert as_command == ["healthy", "redis:down", "redis:slow-startup", "redis:hung", "redis:reset", "redis:latency",
                          "ws.publish:raise", "ws.publish:hang", "ws.publish:delay"]


def test_a_projects_probe_is_its_probe_section(tmp_path):
    from replica.generic_catalog import project_probe

    path = tmp_path / "replica.toml"
    path.write_text(
        '[backend]\napp = "a.b:app"\nhealth = "/up"\n[probe]\npath = "/chat"\ntoken = "env:CHAT_TOKEN"\n'
        'welcome = { type = "hello" }\nping = { send = { op = "ping" }, expect = { op = "pong" } }\n'
    )
    spec = project_probe(load_project(path))
    assert (spec.ws_path, spec.health_path, spec.welcome) == ("/chat", "/up", {"type": "hello"})
    assert (spec.ping, spec.pong, spec.token_env, spec.claims, spec.with_token) == ({"op": "ping"}, {"op": "pong"}, "CHAT_TOKEN", None, True)
    path.write_text('[backend]\napp = "a.b:app"\n[probe]\ntoken = "mint"\nclaims = { sub = "me", role = "admin" }\n')
    spec = project_probe(load_project(path))
    assert spec.claims == {"sub": "me", "role": "admin"} and spec.welcome is None and spec.ping is None and spec.health_path is None


def test_runs_are_selected_by_name_and_an_unknown_one_is_named(project):
    from replica.generic_catalog import select_runs

    runs = project_runs(project)
    assert [r.name for r in select_runs(runs, ["broker:hung", "healthy"])] == ["broker:hung", "healthy"]
    with pytest.raises(ConfigError, match=r"unknown scenario 'broker:gone' \(known: healthy, postgres:down, "):
        select_runs(runs, ["broker:gone"])


def test_the_probe_token_is_none_from_the_environment_or_minted(monkeypatch):
    from replica.runner import probe_token
    from replica.scenarios import ProbeSpec

    def mint(claims):
        return f"minted {claims}"

    assert probe_token(ProbeSpec(with_token=False), mint) is None
    assert probe_token(ProbeSpec(claims={"sub": "x"}), mint) == "minted {'sub': 'x'}"
    assert probe_token(ProbeSpec(), mint) == "minted None"  # the stack's own token
    monkeypatch.setenv("CHAT_TOKEN", "t0k")
    assert probe_token(ProbeSpec(token_env="CHAT_TOKEN"), mint) == "t0k"
    monkeypatch.delenv("CHAT_TOKEN")
    with pytest.raises(ConfigError, match="CHAT_TOKEN is not set"):
        probe_token(ProbeSpec(token_env="CHAT_TOKEN"), mint)


@pytest.mark.parametrize(
    ("message", "subset", "holds"),
    [
        ({"type": "welcome", "room": "r"}, {"type": "welcome"}, True),
        ({"type": "system_message", "data": {"event": "connection_established", "x": 1}}, {"data": {"event": "connection_established"}}, True),
        ({"type": "system_message", "data": "connection_established"}, {"data": {"event": "connection_established"}}, False),
        ({"type": "pong"}, {"type": "ping"}, False),
        ({}, {}, True),
    ],
)
def test_a_message_holds_a_subset_recursively(message, subset, holds):
    from replica.probe import contains

    assert contains(message, subset) is holds
