"""The lane lifecycle's pure parts: the request, the backend's environment, addresses."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from replica.drivers.base import LaneRequest
from replica import http1
from replica.drivers.lanes import backend_environment, hostport, phase_finished, plain_postgres, with_hostport
from replica.scenarios import BackendSpec
from replica.settings import BackendSettings

URLS = {
    "postgres": "postgresql://replica:s3cret@127.0.0.1:40001/replica",
    "redis": "redis://127.0.0.1:40002/0",
    "auth": "http://127.0.0.1:40003",
}


def test_the_environment_says_everything_the_spec_says_and_where_the_hops_are() -> None:
    spec = BackendSpec(
        handler="seed-fix", server="gunicorn", startup_mode="background", failpoints="startup.supervisor=skip",
        defects=("auth-log-json",), startup_wait_s=1.5, ws_ping_interval_s=0.5,
    )
    env = backend_environment(LaneRequest(backend=spec), URLS)
    settings = BackendSettings.from_env(env)
    assert (settings.handler, settings.server, settings.startup_mode) == ("seed-fix", "gunicorn", "background")
    assert (settings.failpoints, settings.defects) == ("startup.supervisor=skip", "auth-log-json")
    assert (settings.startup_wait_s, settings.ws_ping_interval_s) == (1.5, 0.5)
    assert (settings.database_url, settings.redis_url, settings.auth_url) == (
        URLS["postgres"] + "?sslmode=disable", URLS["redis"], URLS["auth"]
    )
    assert env["ENVIRONMENT"] == "staging"


def test_the_backend_asks_the_stacks_postgres_for_no_tls_unless_the_url_says_otherwise() -> None:
    assert plain_postgres("postgresql://u:p@h:5/db?application_name=x") == "postgresql://u:p@h:5/db?application_name=x&sslmode=disable"
    assert plain_postgres("postgresql://u:p@h:5/db?sslmode=require") == "postgresql://u:p@h:5/db?sslmode=require"


def test_where_the_backend_listens_is_left_to_the_starter() -> None:
    env = backend_environment(LaneRequest(), URLS)
    assert not {"REPLICA_HOST", "REPLICA_PORT", "REPLICA_FD"} & set(env)
    assert "REPLICA_STARTUP_WAIT_S" not in env  # unset in the spec: the variant's own default


def test_a_dependency_url_is_repointed_with_its_credentials_kept() -> None:
    assert with_hostport(URLS["postgres"], "toxiproxy:20000") == "postgresql://replica:s3cret@toxiproxy:20000/replica"
    assert with_hostport(URLS["redis"], "127.0.0.1:5") == "redis://127.0.0.1:5/0"
    assert hostport(URLS["postgres"]) == "127.0.0.1:40001"


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"backend": {"handlr": "incident"}}, "handlr"),
        ({"ready_timeout_s": 0}, "ready_timeout_s"),
        ({"ready_timeout_s": 301}, "ready_timeout_s"),
        ({"probe_after": "SOMETIME"}, "probe_after"),
        ({"toxics": [{"hop": "No Where", "type": "latency"}]}, "hop"),
        ({"extra": 1}, "extra"),
    ],
)
def test_a_lane_request_is_strict(body: dict, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        LaneRequest.model_validate(body)


def test_the_lanes_api_takes_only_the_stacks_hops() -> None:
    from replica.drivers.up.api import lane_request_model
    from replica.scenarios import HOPS

    builtin = lane_request_model(HOPS)
    with pytest.raises(ValidationError, match="unknown hop 'nowhere'"):
        builtin.model_validate({"down": [{"hop": "nowhere"}]})
    assert builtin.model_validate({"down": [{"hop": "redis"}]}).down[0].hop == "redis"
    project = lane_request_model(("db", "backend"))
    assert project.model_validate({"down": [{"hop": "db"}]}).down[0].hop == "db"
    with pytest.raises(ValidationError, match=r"unknown hop 'redis' \(known: db, backend\)"):
        project.model_validate({"down": [{"hop": "redis"}]})


def _ready(body: object) -> http1.Response:
    return http1.Response(503, json.dumps(body).encode())


def test_a_startup_phase_counts_as_finished_when_it_ended_either_way() -> None:
    phases = {"phases": [{"name": "DATABASE", "status": "ok"}, {"name": "CACHE", "status": "failed"}, {"name": "SERVICES", "status": "running"}]}
    assert phase_finished(_ready(phases), "DATABASE") and phase_finished(_ready(phases), "CACHE")
    assert not phase_finished(_ready(phases), "SERVICES")
    assert not phase_finished(_ready(phases), "FINALIZE")
    assert not phase_finished(_ready({"no": "phases"}), "DATABASE")
    assert not phase_finished(http1.Response(503, b"not json"), "DATABASE")
