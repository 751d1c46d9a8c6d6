"""The compose driver: lanes of backend containers on a compose stack, the same
interface as the local driver, and nothing of the project left after close,
a failed start or Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake

from replica.drivers.base import LaneRequest
from replica.drivers.compose import PROJECT_LABEL, ComposeDriver, project_resources, sweep_project
from replica.drivers.compose.tunnel import TUNNEL_PORT, preamble
from replica.errors import InfrastructureError
from replica.polling import wait_until, wait_until_async
from replica.scenarios import BackendSpec, HopDown, ToxicSpec
from tests.docker.conftest import REPO, _run, new_project_name

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NOTHING = {"containers": [], "networks": [], "volumes": []}


@pytest.fixture(scope="module")
def driver(images: dict[str, str]):
    project = new_project_name()
    drv = ComposeDriver.start(name=project, max_parallel_lanes=2)
    try:
        yield drv
    finally:
        drv.close()
        left = project_resources(project)
        sweep_project(project)
        assert left == NOTHING, f"close() left {left}"


async def _welcome(base_url: str, token: str) -> dict:
    url = "ws://" + base_url.removeprefix("http://") + "/ws"
    async with connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10, close_timeout=2, ping_interval=None
    ) as ws:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
            if message.get("type") == "system_message":
                return message


def test_stack_publishes_only_on_loopback(driver: ComposeDriver) -> None:
    assert driver.toxiproxy_url.startswith("http://127.0.0.1:")
    out = _run(["docker", "ps", "--filter", f"label={PROJECT_LABEL}={driver.compose_project}", "--format", "{{.Ports}}"], timeout=30)
    mappings = [m.strip() for ports in out.stdout.split() for m in ports.split(",") if "->" in m]
    assert all(m.startswith("127.0.0.1:") for m in mappings), mappings
    # The two APIs and the tunnel to the lanes' proxies; neither a backend's own port nor a proxy.
    assert len(mappings) == 3, mappings


def test_the_published_tunnel_carries_nothing_without_the_token(driver: ComposeDriver) -> None:
    """Only the stack's token opens the tunnel; with it, a slot's proxy port is all it reaches."""

    async def closed_at_once(line: bytes) -> bool:
        reader, writer = await asyncio.open_connection(*driver.tunnel)
        writer.write(line)
        try:
            return await asyncio.wait_for(reader.read(), 10) == b""
        except ConnectionResetError:
            return True
        finally:
            writer.close()

    assert asyncio.run(closed_at_once(preamble("x" * 64, 0)))
    assert asyncio.run(closed_at_once(preamble(driver.lanes_token, driver.slots)))  # no such slot
    assert asyncio.run(closed_at_once(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))


def test_lane_comes_up_and_welcomes_through_its_proxy(driver: ComposeDriver) -> None:
    async def scenario() -> tuple[object, dict, int]:
        async with driver.lane(LaneRequest(backend=BackendSpec(), ready_timeout_s=60)) as lane:
            assert lane.outcome.ready, lane.outcome.detail + "\n" + await lane.backend_log()
            return lane.outcome, await _welcome(lane.base_url, driver.mint_token()), lane.backend.pid

    outcome, welcome, pid = asyncio.run(scenario())
    assert welcome["data"]["event"] == "connection_established", welcome
    assert welcome["server_id"].rpartition("-")[2] == str(pid)  # the lane's own backend answered
    assert outcome.startup_ms is not None
    # the lane's backend is gone soon after the lane is closed (it stops in the background)
    def no_backend() -> bool:
        auth = {"Authorization": f"Bearer {driver.lanes_token}"}
        return httpx.get(f"{driver.agent_url}/health", headers=auth, timeout=10).json() == {"backends": 0}

    wait_until(no_backend, 10, what="the lanes agent to have no backend left")


def test_the_lanes_agent_refuses_requests_without_its_token(driver: ComposeDriver) -> None:
    assert httpx.get(f"{driver.agent_url}/health", timeout=10).status_code == 401
    wrong = httpx.post(f"{driver.agent_url}/backends", json={}, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401


def test_the_lanes_agent_withstands_hostile_input_from_anyone_on_the_host(driver: ComposeDriver) -> None:
    """Its port is published on 127.0.0.1, so any local user can reach it: a 10 MB body is
    refused before it is read, deep JSON and huge numbers are 4xx, and 500 clients at once
    on the token-free relay get answers (502: no backend; 503: over the connection cap),
    never a hang or another 5xx; the agent serves its owner afterwards."""
    token = {"Authorization": f"Bearer {driver.lanes_token}"}
    url = driver.agent_url
    big = httpx.post(f"{url}/backends", content=b"x" * (10 * 1024 * 1024), timeout=30)
    assert big.status_code == 413
    deep = "[" * 100_000 + "]" * 100_000
    nested = httpx.post(f"{url}/backends", content=deep, headers={**token, "content-type": "application/json"}, timeout=30)
    assert nested.status_code in (400, 413, 422), nested.text
    huge = httpx.post(f"{url}/backends", json={"name": "x", "slot": 10**400, "env": {}}, headers=token, timeout=30)
    assert huge.status_code == 422, huge.text
    assert httpx.get(f"{url}/slots/{10**400}/health", timeout=30).status_code in (404, 422)

    async def crowd() -> tuple[list[int], int]:
        limits = httpx.Limits(max_connections=500)
        async with driver.slot() as slot:
            async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:

                async def one() -> int:
                    try:
                        return (await http.get(f"/slots/{slot}/health")).status_code
                    except httpx.TransportError:
                        return 0  # refused or cut at the cap: not a hang

                codes = await asyncio.gather(*(one() for _ in range(500)))
            # How many got past the cap depends on how fast the 500 connections were accepted
            # (all 503 is as right as a few 502s). Once the crowd has gone (its connections
            # closed, which the agent sees a moment later), a client alone is served again.
            answers: list[int] = []

            async def served_alone() -> bool:
                async with httpx.AsyncClient(base_url=url, timeout=30) as alone:
                    answers.append((await alone.get(f"/slots/{slot}/health")).status_code)
                return answers[-1] != 503

            await wait_until_async(served_alone, 10, what="the agent to serve a client alone", retry_on=(httpx.TransportError,))
            return codes, answers[-1]

    codes, alone = asyncio.run(crowd())
    assert set(codes) <= {0, 502, 503}, sorted(set(codes))
    assert alone == 502  # the relay itself: no backend in that slot
    assert httpx.get(f"{url}/health", headers=token, timeout=10).status_code == 200


def test_two_lanes_side_by_side(driver: ComposeDriver) -> None:
    async def one(spec: BackendSpec) -> tuple[str, str]:
        async with driver.lane(LaneRequest(backend=spec, ready_timeout_s=60)) as lane:
            assert lane.outcome.ready, lane.outcome.detail
            welcome = await _welcome(lane.base_url, driver.mint_token())
            return lane.base_url, welcome["data"]["event"]

    async def both():
        return await asyncio.gather(one(BackendSpec()), one(BackendSpec(server="gunicorn")))

    (url_a, ev_a), (url_b, ev_b) = asyncio.run(both())
    assert url_a != url_b
    assert ev_a == ev_b == "connection_established"


def test_a_lane_waits_for_a_free_slot(driver: ComposeDriver) -> None:
    """One lane more than there are slots: the last waits for a slot instead of failing."""
    open_now, most = 0, 0

    async def one(all_slots_taken: asyncio.Event) -> bool:
        nonlocal open_now, most
        async with driver.lane(LaneRequest(backend=BackendSpec(), ready_timeout_s=60)) as lane:
            open_now += 1
            most = max(most, open_now)
            if open_now == driver.slots:
                all_slots_taken.set()
            await asyncio.wait_for(all_slots_taken.wait(), 60)  # every lane stays open until all slots are
            await _welcome(lane.base_url, driver.mint_token())
            open_now -= 1
            return lane.outcome.ready

    async def one_too_many() -> list[bool]:
        all_slots_taken = asyncio.Event()
        return list(await asyncio.gather(*(one(all_slots_taken) for _ in range(driver.slots + 1))))

    assert asyncio.run(one_too_many()) == [True] * (driver.slots + 1)
    assert most == driver.slots == 4  # two slots per lane: the runner's waiting runs get lanes of their own


def test_the_agent_relays_only_a_slot_backend_health(driver: ComposeDriver) -> None:
    """No token needed, only for /health and /health/ready of a slot's backend: what its lane port serves anyway."""

    async def scenario() -> dict[str, int]:
        async with driver.lane(LaneRequest(backend=BackendSpec(), ready_timeout_s=60)) as lane:
            assert lane.outcome.ready, lane.outcome.detail
            slot = next(s for s in range(driver.slots) if s not in driver._free_slots)
            async with httpx.AsyncClient(base_url=driver.agent_url, timeout=10) as http:
                return {
                    path: (await http.get(path)).status_code
                    for path in (f"/slots/{slot}/health", f"/slots/{slot}/health/ready", f"/slots/{slot}/ws",
                                 f"/slots/{slot}/health/../backends", f"/slots/{driver.slots}/health", "/backends/x")
                }

    codes = asyncio.run(scenario())
    slot_paths = list(codes)
    assert codes[slot_paths[0]] == 200 and codes[slot_paths[1]] in (200, 503), codes
    assert [codes[p] for p in slot_paths[2:5]] == [404, 404, 404], codes
    assert codes["/backends/x"] == 401, codes


def test_the_agent_relay_says_when_no_backend_answers(driver: ComposeDriver) -> None:
    async def scenario() -> httpx.Response:
        async with driver.slot() as slot:  # held: no lane starts a backend there meanwhile
            async with httpx.AsyncClient(base_url=driver.agent_url, timeout=10) as http:
                return await http.get(f"/slots/{slot}/health")

    response = asyncio.run(scenario())
    assert response.status_code == 502
    assert "did not answer" in response.json()["detail"]


def test_the_relay_answers_for_a_starting_backend_once_it_serves_or_exits(driver: ComposeDriver) -> None:
    """Asked right after the start, the relay waits for the backend: 200 once it serves, 502
    once it has exited (its code then told), and a 502 for one still starting only after
    the whole wait: never an early "not yet" that would cost the readiness wait a try."""
    from replica.drivers.compose.agent import RELAY_SERVE_WAIT_S

    auth = {"Authorization": f"Bearer {driver.lanes_token}"}

    async def start_and_ask(http: httpx.AsyncClient, slot: int, env: dict[str, str]) -> dict:
        name = f"t-{uuid.uuid4().hex[:8]}"
        started = await http.post("/backends", json={"name": name, "slot": slot, "env": env})
        assert started.status_code == 201, started.text
        try:
            asked = time.monotonic()
            health = (await http.get(f"/slots/{slot}/health")).status_code
            answered_s = time.monotonic() - asked
            codes: list[int | None] = []

            async def told() -> bool:  # an exit is seen the moment it closes its end, a moment before it is reaped
                codes.append((await http.get(f"/backends/{name}")).json()["exit_code"])
                return health == 200 or codes[-1] is not None

            await wait_until_async(told, 10, what="the backend's exit status")
            return {"health": health, "answered_s": answered_s, "exit_code": codes[-1]}
        finally:
            await http.delete(f"/backends/{name}")

    async def scenario() -> tuple[dict, dict]:
        async with driver.slot() as slot, httpx.AsyncClient(base_url=driver.agent_url, headers=auth, timeout=10) as http:
            return (
                await start_and_ask(http, slot, {"REPLICA_STARTUP_MODE": "background"}),
                await start_and_ask(http, slot, {"REPLICA_FAILPOINTS": "no.such.point=skip"}),
            )

    serving, exited = asyncio.run(scenario())
    assert serving["exit_code"] is None, serving
    assert serving["health"] == 200 or serving["answered_s"] >= RELAY_SERVE_WAIT_S, serving
    assert (exited["health"], exited["exit_code"]) == (502, 2), exited


def test_a_slot_is_reused_at_once_after_a_gunicorn_backend(driver: ComposeDriver) -> None:
    """A gunicorn backend is a master and a worker in one process group; the agent reaps the
    master, and the worker lets go of the slot's port a moment later. A start on that slot
    right after the stop waits for the port instead of failing ("address already in use",
    seen in CI under load when slots came round again)."""
    auth = {"Authorization": f"Bearer {driver.lanes_token}"}
    env = {"REPLICA_SERVER": "gunicorn", "REPLICA_STARTUP_MODE": "background"}

    async def scenario() -> list[int]:
        codes = []
        async with driver.slot() as slot, httpx.AsyncClient(base_url=driver.agent_url, headers=auth, timeout=30) as http:
            for _ in range(10):
                name = f"g-{uuid.uuid4().hex[:8]}"
                started = await http.post("/backends", json={"name": name, "slot": slot, "env": env})
                codes.append(started.status_code)
                assert started.status_code == 201, started.text
                assert (await http.get(f"/slots/{slot}/health")).status_code == 200
                assert (await http.delete(f"/backends/{name}")).status_code == 204
        return codes

    assert asyncio.run(scenario()) == [201] * 10


def test_the_agent_says_when_the_stack_answers(driver: ComposeDriver) -> None:
    auth = {"Authorization": f"Bearer {driver.lanes_token}"}
    assert httpx.get(f"{driver.agent_url}/ready", headers=auth, timeout=10).json() == {"status": "ready", "tunnel": str(TUNNEL_PORT)}
    assert httpx.get(f"{driver.agent_url}/ready", timeout=10).status_code == 401


def test_toxics_land_on_the_lane_own_proxy(driver: ComposeDriver) -> None:
    latency = ToxicSpec(hop="backend", type="latency", attributes={"latency": 400}, when="after_ready")

    async def scenario() -> tuple[list, float]:
        async with driver.lane(LaneRequest(backend=BackendSpec(), toxics=(latency,), ready_timeout_s=60)) as lane:
            assert lane.outcome.ready, lane.outcome.detail
            async with httpx.AsyncClient(timeout=5) as http:
                path = f"{driver.toxiproxy_url}/proxies/{lane.faults.proxies['backend']}/toxics"
                assert (await http.get(path)).status_code == 401  # published on 127.0.0.1: the stack's token only
                toxics = (await http.get(path, headers={"Authorization": f"Bearer {driver.toxiproxy_token}"})).json()
                started = time.monotonic()
                assert (await http.get(f"{lane.base_url}/health")).status_code == 200
                return toxics, time.monotonic() - started

    toxics, elapsed = asyncio.run(scenario())
    assert [(t["type"], t["attributes"]["latency"]) for t in toxics] == [("latency", 400)]
    assert elapsed >= 0.4


def test_probe_after_waits_for_a_startup_phase(driver: ComposeDriver) -> None:
    async def scenario():
        request = LaneRequest(backend=BackendSpec(startup_mode="background"), ready_timeout_s=60, probe_after="SERVICES")
        async with driver.lane(request) as lane:
            async with httpx.AsyncClient(timeout=5) as http:
                ready = (await http.get(lane.base_url + "/health/ready")).json()
            return lane.outcome, ready

    outcome, ready = asyncio.run(scenario())
    assert outcome.ready, outcome.detail
    phases = {p["name"]: p["status"] for p in ready["phases"]}
    assert phases.get("SERVICES") in ("ok", "failed", "cancelled"), ready


def test_a_scenario_runs_on_the_cli_with_the_compose_driver(images: dict[str, str], tmp_path) -> None:
    env = {**__import__("os").environ, "REPLICA_COMPOSE_PROJECT_PREFIX": f"sr-cli-{uuid.uuid4().hex[:6]}", "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "replica", "scenarios", "run", "healthy", "--driver", "compose",
         "--json", str(tmp_path / "runs.json")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "compose" in out.stdout + out.stderr
    assert (tmp_path / "runs.json").exists()
    assert not _projects_with_prefix(env["REPLICA_COMPOSE_PROJECT_PREFIX"])


def test_refused_settings_are_reported(driver: ComposeDriver) -> None:
    async def scenario():
        async with driver.lane(LaneRequest(backend=BackendSpec(failpoints="no.such.point=skip"), ready_timeout_s=60)) as lane:
            return lane.outcome

    outcome = asyncio.run(scenario())
    assert not outcome.ready
    assert outcome.refused_settings, outcome.detail


def test_a_hop_down_before_start_is_the_lane_own(driver: ComposeDriver) -> None:
    async def scenario():
        async with driver.lane(LaneRequest(backend=BackendSpec(), down=(HopDown(hop="backend"),), ready_timeout_s=60)) as lane:
            # The backend itself is healthy (readiness never goes through a faulted proxy)...
            assert lane.outcome.ready, lane.outcome.detail
            # ...but its own backend proxy refuses clients (refused outright, or
            # accepted and closed by Docker's userland port proxy).
            with pytest.raises((OSError, InvalidHandshake)):
                await _welcome(lane.base_url, driver.mint_token())
            # The stack's shared proxies are untouched.
            async with driver.lane(LaneRequest(backend=BackendSpec(), ready_timeout_s=60)) as other:
                assert other.outcome.ready
                await _welcome(other.base_url, driver.mint_token())

    asyncio.run(scenario())


#: Run in the lanes container: SIGKILL the fork server's only child while no lane is open, the auth service.
KILL_AUTH = """
import os, signal
def ppid(pid): return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
pids = [p for p in os.listdir("/proc") if p.isdigit()]
server = next(p for p in pids if b"multiprocessing.forkserver" in open(f"/proc/{p}/cmdline", "rb").read())
(auth,) = [p for p in pids if p != server and os.path.exists(f"/proc/{p}") and ppid(p) == int(server)]
os.kill(int(auth), signal.SIGKILL)
"""


def test_the_lanes_container_stops_when_its_auth_service_does(images: dict[str, str]) -> None:
    """The agent forks the stack's auth service (no container of its own); if it dies, the
    container exits, so a readiness wait or a lane fails at once instead of timing out."""
    project = new_project_name()
    drv = ComposeDriver.start(name=project)
    try:
        services = _run(["docker", "ps", "--filter", f"label={PROJECT_LABEL}={project}",
                         "--format", '{{.Label "com.docker.compose.service"}}'], timeout=30).stdout.split()
        assert sorted(services) == ["lane-proxy", "lanes", "postgres", "redis"]
        lanes = f"{project}-lanes-1"
        assert _run(["docker", "exec", lanes, "python", "-c", KILL_AUTH], timeout=30).returncode == 0
        waited = _run(["docker", "wait", lanes], timeout=60)
        assert waited.returncode == 0, waited.stderr
        assert "the auth service exited" in _run(["docker", "logs", lanes], timeout=30).stderr
    finally:
        drv.close()
        assert project_resources(project) == NOTHING


def test_failed_start_leaves_nothing(images: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` fails part-way (an image that is not there, never pulled): the network
    and the containers created so far are removed before the error is raised."""
    project = new_project_name()
    # The shell environment wins over the images file in compose's interpolation.
    monkeypatch.setenv("POSTGRES_IMAGE", "staging-replica/does-not-exist:never")
    try:
        with pytest.raises(InfrastructureError, match="docker compose up"):
            ComposeDriver.start(name=project, timeout=120)
        assert project_resources(project) == NOTHING
    finally:
        sweep_project(project)


def test_a_stack_container_that_exits_fails_the_start_at_once(images: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault proxy's service run from the PostgreSQL image (which takes its flags for a command
    and exits): the readiness wait says so, with the logs, instead of waiting out its timeout."""
    project = new_project_name()
    monkeypatch.setenv("TOXIPROXY_IMAGE", images["POSTGRES_IMAGE"])
    started = time.monotonic()
    try:
        with pytest.raises(InfrastructureError, match="lane-proxy exited") as failed:
            ComposeDriver.start(name=project, timeout=120)
        assert time.monotonic() - started < 60, failed.value.message
        assert project_resources(project) == NOTHING
    finally:
        sweep_project(project)


def _projects_with_prefix(prefix: str) -> set[str]:
    out = _run(["docker", "ps", "-a", "--format", '{{.Label "' + PROJECT_LABEL + '"}}'], timeout=30)
    nets = _run(["docker", "network", "ls", "--format", '{{.Label "' + PROJECT_LABEL + '"}}'], timeout=30)
    return {p for p in (out.stdout + nets.stdout).split() if p.startswith(prefix)}


@pytest.mark.parametrize("when", ["mid-up", "mid-run"])
def test_ctrl_c_on_the_cli_leaves_nothing(images: dict[str, str], when: str) -> None:
    """`replica scenarios run --driver compose`, SIGINT while the stack comes up or
    while a lane's backend runs: exit 130, no container, network or volume left."""
    prefix = f"sr-cli-{uuid.uuid4().hex[:6]}"
    env = {**__import__("os").environ, "REPLICA_COMPOSE_PROJECT_PREFIX": prefix, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "replica", "scenarios", "run", "healthy", "--driver", "compose"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        if when == "mid-run":  # the stack is up: the lane opens next
            assert proc.stdout is not None
            for line in proc.stdout:
                if "compose stack healthy" in line:
                    break
            else:
                pytest.fail("the compose stack never came up")
        while when == "mid-up" and not _projects_with_prefix(prefix):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, f"nothing of {prefix} appeared within 120 s"
            time.sleep(0.05)  # polling a bounded wait on another process
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 130, output
        assert _projects_with_prefix(prefix) == set(), output
        vols = _run(["docker", "volume", "ls", "--format", '{{.Label "' + PROJECT_LABEL + '"}}'], timeout=30).stdout.split()
        assert not [v for v in vols if v.startswith(prefix)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for project in _projects_with_prefix(prefix):
            sweep_project(project)
