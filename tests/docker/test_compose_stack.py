"""The compose stack: every service healthy, every hop through the fault proxy,
only 127.0.0.1 published, a real WebSocket welcome through the backend proxy,
and Ctrl-C during ``up`` leaves nothing of the project behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from websockets.asyncio.client import connect

from tests.docker.conftest import (
    IMAGES_ENV,
    REPO,
    SERVICES,
    Stack,
    _run,
    force_remove,
    new_project_name,
    project_resources,
    stack_env,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

EXPECTED_PROXIES = {
    "postgres": ("0.0.0.0:15432", "postgres:5432"),
    "redis": ("0.0.0.0:16379", "redis:6379"),
    "auth": ("0.0.0.0:18081", "auth:8081"),
    "backend": ("0.0.0.0:18000", "backend:8000"),
}


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read()


def _compose_json(stack: Stack, *args: str) -> list[dict]:
    out = _run(["docker", "compose", "--env-file", str(IMAGES_ENV), *args, "--format", "json"], timeout=30, env=stack.env)
    assert out.returncode == 0, out.stderr
    text = out.stdout.strip()
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_service_is_healthy(compose_stack: Stack) -> None:
    rows = _compose_json(compose_stack, "ps", "--all")
    health = {row["Service"]: (row.get("State"), row.get("Health")) for row in rows}
    assert set(health) == set(SERVICES), health
    unhealthy = {svc: state for svc, state in health.items() if state != ("running", "healthy")}
    assert not unhealthy, unhealthy
    print(f"stack up and healthy in {compose_stack.up_seconds:.1f} s")


def test_only_the_proxy_is_published_and_only_on_loopback(compose_stack: Stack) -> None:
    rows = _compose_json(compose_stack, "ps", "--all")
    published = {}
    for row in rows:
        for pub in row.get("Publishers") or []:
            if pub.get("PublishedPort"):
                published[(row["Service"], pub["TargetPort"])] = pub["URL"]
    assert set(published) == {("toxiproxy", 8474), ("toxiproxy", 18000)}, published
    assert set(published.values()) == {"127.0.0.1"}, published


def test_toxiproxy_api_lists_the_four_proxies(compose_stack: Stack) -> None:
    api = compose_stack.host_port("toxiproxy", 8474)
    status, body = _get(f"http://127.0.0.1:{api}/proxies")
    assert status == 200
    proxies = json.loads(body)
    assert set(proxies) == set(EXPECTED_PROXIES)
    for name, (listen, upstream) in EXPECTED_PROXIES.items():
        assert proxies[name]["listen"] == listen
        assert proxies[name]["upstream"] == upstream
        assert proxies[name]["enabled"] is True
    status, body = _get(f"http://127.0.0.1:{api}/version")
    assert status == 200 and b"version" in body


def test_backend_answers_health_through_its_proxy(compose_stack: Stack) -> None:
    port = compose_stack.host_port("toxiproxy", 18000)
    status, body = _get(f"http://127.0.0.1:{port}/health")
    assert status == 200
    assert json.loads(body)["status"] == "healthy"


def test_backend_reaches_its_dependencies_through_the_proxy(compose_stack: Stack) -> None:
    inspect = _run(
        ["docker", "compose", "--env-file", str(IMAGES_ENV), "exec", "-T", "backend", "env"], timeout=30, env=compose_stack.env
    )
    assert inspect.returncode == 0, inspect.stderr
    env = dict(line.split("=", 1) for line in inspect.stdout.splitlines() if "=" in line)
    assert env["ENVIRONMENT"] == "staging"
    assert "@toxiproxy:15432/" in env["REPLICA_DATABASE_URL"]
    assert env["REPLICA_REDIS_URL"] == f"redis://:{compose_stack.env['REDIS_PASSWORD']}@toxiproxy:16379/0"
    assert env["REPLICA_AUTH_URL"] == "http://toxiproxy:18081"


def test_websocket_welcome_through_the_backend_proxy(compose_stack: Stack) -> None:
    from replica.auth.tokens import mint_token

    port = compose_stack.host_port("toxiproxy", 18000)
    token = mint_token(compose_stack.env["JWT_SECRET"])

    async def first_system_message() -> dict:
        async with connect(
            f"ws://127.0.0.1:{port}/ws",
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=10,
            close_timeout=2,
            ping_interval=None,
        ) as ws:
            deadline = time.monotonic() + 30
            while True:
                remaining = deadline - time.monotonic()
                assert remaining > 0, "no welcome within 30 s"
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=remaining))
                if message.get("type") == "system_message":
                    return message

    welcome = asyncio.run(first_system_message())
    assert welcome["data"]["event"] == "connection_established", welcome


def _read_line_until(proc: subprocess.Popen[str], wanted: str, timeout: float) -> list[str]:
    """Lines of the harness output up to ``wanted`` (bounded)."""
    import selectors

    seen: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"harness did not print {wanted!r} within {timeout} s: {seen}")
            if not sel.select(timeout=remaining):
                continue
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"harness exited ({proc.wait(5)}) before {wanted!r}: {seen}")
            seen.append(line.rstrip("\n"))
            if line.strip() == wanted:
                return seen
    finally:
        sel.close()


def _wait_for_containers(project: str, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        count = len(project_resources(project)["containers"])
        if count >= at_least:
            return count
        if time.monotonic() > deadline:
            raise AssertionError(f"no {at_least} containers of {project} within {timeout} s (saw {count})")
        time.sleep(0.1)  # polling a bounded wait on the engine


@pytest.mark.parametrize("whole_group", [False, True], ids=["sigint-to-harness", "ctrl-c-to-process-group"])
def test_sigint_mid_up_leaves_nothing_behind(images: dict[str, str], whole_group: bool) -> None:
    """SIGINT while `docker compose up` is creating and starting containers: the
    harness tears the stack down, and no container, network or volume with the
    project's label is left."""
    project = new_project_name()
    env = stack_env(project, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.docker.compose_harness"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        _read_line_until(proc, "up-started", timeout=30)
        # Mid-up: containers exist, the backend is not healthy yet (it waits on
        # the others' healthchecks).
        _wait_for_containers(project, at_least=1, timeout=60)
        assert project_resources(project)["networks"], "the project network should exist mid-up"
        if whole_group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 130, output
        assert "torn-down" in output, output
        leftovers = project_resources(project)
        assert leftovers == {"containers": [], "networks": [], "volumes": []}, (leftovers, output)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        force_remove(project)
