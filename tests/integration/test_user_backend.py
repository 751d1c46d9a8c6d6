"""A user's backend started from a project's [backend]: real uvicorn, gunicorn, Postgres, Redis, programs."""

from __future__ import annotations

import asyncio
import secrets
import sys
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from replica.drivers.local.group import ProcessGroup
from replica.project import Endpoint, ServiceConfig
from replica.user_backend import listen_on_loopback, start_ready, start_service, takes_socket
from tests.servers_support import descendants, pid_alive, postgres_server, redis_server, server_group  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "user_services"
STORE_ENV = {
    "DATABASE_URL": "{postgres.url}",
    "CACHE_URL": "{cache.url}",
    "GREETING": "hello {secret}",
    "MY_PORT": "{port}",
}


@pytest.fixture
def endpoints(postgres_server, redis_server):  # noqa: F811
    return {
        "postgres": Endpoint(postgres_server.host, postgres_server.port, postgres_server.url),
        "cache": Endpoint(redis_server.host, redis_server.port, redis_server.url),
    }


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_an_app_serves_on_the_handed_over_socket_with_its_env_rendered(endpoints, server):
    service = ServiceConfig(app="store_app:app", server=server, health="/health", env=STORE_ENV, workers=2)
    with ProcessGroup() as group, closing(listen_on_loopback()) as listener:
        started, outcome = run(start_ready(group, service, FIXTURES, endpoints=endpoints, secret="s3", listener=listener))
        assert outcome.ready, outcome.detail
        assert started.port == listener.getsockname()[1] and started.handed_over
        body = httpx.get(started.base_url + "/health", timeout=5).json()
        assert body["db"] == 42 and body["cached"] == "hello s3" and body["port"] == str(started.port)
        pids = {started.process.pid} | descendants(started.process.pid)
        assert len(pids) >= (3 if server == "gunicorn" else 1)  # gunicorn: the arbiter and two workers
    assert not [p for p in pids if pid_alive(p)], "left running after close"


def test_an_app_that_cannot_be_imported_is_named_with_its_exit_status(endpoints):
    service = ServiceConfig(app="broken_import:app", env=STORE_ENV)
    with ProcessGroup() as group:
        started, outcome = run(start_ready(group, service, FIXTURES, endpoints=endpoints, secret="x"))
        assert not outcome.ready and outcome.exit_status == 1
        assert outcome.detail.startswith("backend.app 'broken_import:app' cannot be imported from '.': ")
        assert "package_that_is_not_installed" in outcome.detail
    assert not pid_alive(started.process.pid)


def test_an_app_that_exits_at_startup_gives_its_status_and_last_log_lines(endpoints):
    service = ServiceConfig(app="store_app:app", env={**STORE_ENV, "FAIL_AT_STARTUP": "1"}, health="/health")
    with ProcessGroup() as group:
        started, outcome = run(start_ready(group, service, FIXTURES, endpoints=endpoints, secret="x"))
        assert not outcome.ready and outcome.exit_status == 3  # uvicorn: lifespan startup failed
        assert "backend exited with status 3 at startup; last lines of its log:" in outcome.detail
        assert "refusing to start: FAIL_AT_STARTUP is set" in outcome.log_tail
        assert "Application startup failed" in outcome.log_tail
    assert not pid_alive(started.process.pid)


def test_a_health_path_that_never_answers_2xx_times_out_with_what_was_awaited(endpoints):
    service = ServiceConfig(app="store_app:app", env=STORE_ENV, health="/missing", startup_timeout=1.5)
    with ProcessGroup() as group:
        started, outcome = run(start_ready(group, service, FIXTURES, endpoints=endpoints, secret="x"))
        assert not outcome.ready and outcome.exit_status is None
        assert outcome.detail == "backend did not serve within 1.5s (GET /missing never answered 2xx)"
        pid = started.process.pid
        assert pid_alive(pid)
    assert not pid_alive(pid)


def tiny(*args: str) -> tuple[str, ...]:
    return (sys.executable, str(FIXTURES / "tiny_server.py"), *args)


@pytest.mark.parametrize(
    ("command", "health", "handed_over"),
    [
        (tiny("--port", "{port}"), "/health", False),
        (tiny("--port", "{port}"), None, False),
        (tiny("--fd", "{fd}"), "/health", True),
        (tiny("--fd", "{fd}"), None, True),
    ],
)
def test_a_command_serves_on_its_port_or_on_a_handed_over_socket(command, health, handed_over):
    service = ServiceConfig(command=command, health=health, env={"GREETING": "{secret}"})
    assert takes_socket(service) is handed_over
    secret = secrets.token_hex(4)
    with ProcessGroup() as group:
        started, outcome = run(start_ready(group, service, FIXTURES, endpoints={}, secret=secret))
        assert outcome.ready, outcome.detail
        assert started.handed_over is handed_over
        response = httpx.get(started.base_url + "/health", timeout=5)
        assert response.status_code == 200 and response.text == f"tiny {secret}"
        pid = started.process.pid
    assert not pid_alive(pid)


def test_a_command_that_lost_its_port_is_started_again_on_another(tmp_path):
    marker = tmp_path / "was-busy"
    service = ServiceConfig(command=tiny("--port", "{port}", "--busy-once", str(marker)), health="/health")
    with ProcessGroup() as group:
        started, outcome = run(start_ready(group, service, FIXTURES, endpoints={}, secret="x"))
        assert marker.exists() and outcome.ready, outcome.detail
        assert httpx.get(started.base_url + "/health", timeout=5).status_code == 200


def test_a_command_that_is_not_there_is_an_infrastructure_error():
    from replica.errors import InfrastructureError

    service = ServiceConfig(command=("./no-such-program", "{port}"))
    with ProcessGroup() as group, pytest.raises(InfrastructureError, match="executable not found: ./no-such-program"):
        start_service(group, service, FIXTURES, endpoints={}, secret="x")
