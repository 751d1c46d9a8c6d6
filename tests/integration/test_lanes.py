"""The lane lifecycle on the real local stack: no port races with a port-stealing
neighbour, nothing left behind, and a second driver written in one file."""

from __future__ import annotations

import asyncio
import errno
import os
import select
import socket
import subprocess
import sys

import httpx
import pytest

from faults.toxiproxy.client import ToxiproxyClient
from replica.drivers.base import LaneRequest
from replica.drivers.local.driver import LocalDriver
from replica.drivers.local.group import ProcessGroup
from replica.observation import foreign_servers
from replica.probe import probe
from replica.reproduce import reproduce_runs
from replica.runner import run_many
from replica.scenarios import BackendSpec, Catalog, HopDown, ToxicSpec
from tests.drivers.subprocess_driver import SubprocessDriver
from tests.servers_support import pid_alive

pytestmark = pytest.mark.slow

#: The neighbour: keeps binding (and listening on) whatever port the OS hands out,
#: holds the last 3,000, and writes one byte per 100 binds (dropped when nobody reads).
NEIGHBOUR = """
import os, socket, collections
held = collections.deque()
os.set_blocking(1, False)
n = 0
while True:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    held.append(sock)
    if len(held) > 3000:
        held.popleft().close()
    n += 1
    if n % 100 == 0:
        try:
            os.write(1, b".")
        except BlockingIOError:
            pass
"""


class PortStealer:
    def __enter__(self) -> "PortStealer":
        self.process = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.process.kill()
        self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()

    def _await_binds(self, hundreds: int) -> None:
        """Block until the neighbour has bound ``100 * hundreds`` more ports."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while select.select([fd], [], [], 0)[0]:
            os.read(fd, 65536)  # drop what was counted before this wait
        got = 0
        while got < hundreds:
            chunk = os.read(fd, hundreds - got)
            assert chunk, "the neighbour died"
            got += len(chunk)

    def steals_released_ports(self, trials: int = 100, binds_per_trial: int = 2000) -> int:
        """How often a port picked free and released (the old way) was taken before
        we bound it again ``binds_per_trial`` neighbour binds later."""
        stolen = 0
        for _ in range(trials):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            self._await_binds(binds_per_trial // 100)
            with socket.socket() as again:
                try:
                    again.bind(("127.0.0.1", port))
                except OSError as exc:
                    assert exc.errno == errno.EADDRINUSE
                    stolen += 1
        return stolen


@pytest.fixture(scope="module")
def local_driver():
    with ProcessGroup() as group:
        yield LocalDriver.start(group)


def test_no_lane_loses_its_port_to_a_port_stealing_neighbour(local_driver: LocalDriver) -> None:
    runs, _causes = reproduce_runs(Catalog.load())
    with PortStealer() as neighbour:
        # The neighbour is real: a port released before use is taken from under us.
        stolen = neighbour.steals_released_ports()
        assert stolen > 0
        results = asyncio.run(run_many(local_driver, runs, repeat=2))
    failed = [(r.name, r.mismatches, r.backend_detail) for r in results if r.verdict != "pass"]
    assert not failed, failed
    assert all(r.backend_ready for r in results)
    # Every run knew its backend's process, so a probe that reached another one would have failed it.
    assert all(r.backend_pid is not None for r in results)
    print(f"neighbour took {stolen}/100 released ports; {len(results)} lanes all passed")


def test_a_lane_leaves_no_proxy_no_process_no_port_and_no_log(local_driver: LocalDriver) -> None:
    request = LaneRequest(
        backend=BackendSpec(handler="recommended"),
        toxics=(ToxicSpec(hop="backend", type="latency", attributes={"latency": 10}, when="after_ready"),),
        down=(HopDown(hop="redis", when="after_ready"),),
    )

    async def one() -> tuple[str, int, dict[str, str]]:
        async with local_driver.lane(request) as lane:
            assert lane.outcome.ready, lane.outcome.detail
            with ToxiproxyClient(local_driver.toxiproxy_url, token=local_driver.toxiproxy_token) as api:
                assert [t.type for t in api.toxics(lane.faults.proxies["backend"])] == ["latency"]
                assert api.get_proxy(lane.faults.proxies["redis"]).enabled is False
            assert lane.backend.log_path.is_file()
            return lane.base_url, lane.backend.pid, dict(lane.faults.proxies), lane.backend.log_path

    base_url, pid, proxies, log = asyncio.run(one())  # asyncio.run waits for the backend's stop
    with ToxiproxyClient(local_driver.toxiproxy_url, token=local_driver.toxiproxy_token) as api:
        assert not set(proxies.values()) & set(api.proxies())
    assert not pid_alive(pid)
    assert not log.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url + "/health", timeout=2)


def test_a_probe_that_reaches_another_lanes_backend_is_caught(local_driver: LocalDriver) -> None:
    """Two lanes at once: each backend's messages name its own fork, and a probe of the
    other lane's address is told apart by the pid the lane recorded."""

    async def two() -> tuple[list[str], list[str], int, int]:
        request = LaneRequest(backend=BackendSpec(handler="recommended"))
        async with local_driver.lane(request) as first, local_driver.lane(request) as second:
            assert first.outcome.ready and second.outcome.ready
            seen = await probe(second.base_url, local_driver.mint_token())
            assert seen.fingerprint.welcome, seen.fingerprint
            pids = (first.outcome.pid, second.outcome.pid)
            assert pids == (first.backend.pid, second.backend.pid)
            return foreign_servers(seen.messages, pids[0]), foreign_servers(seen.messages, pids[1]), *pids

    as_first, as_second, first_pid, second_pid = asyncio.run(two())
    assert first_pid != second_pid
    assert as_second == []
    assert as_first and all(sid.endswith(f"-{second_pid}") for sid in as_first)


def test_a_backend_that_refuses_its_settings_is_an_outcome_not_a_hang(local_driver: LocalDriver) -> None:
    async def one():
        async with local_driver.lane(LaneRequest(backend=BackendSpec(handler="no_such_module:fn"))) as lane:
            return lane.outcome

    outcome = asyncio.run(one())
    assert not outcome.ready and outcome.refused_settings
    assert "exited with code 2" in outcome.detail and "no_such_module" in outcome.detail


def test_a_driver_in_one_file_passes_the_whole_catalog() -> None:
    """tests/drivers/subprocess_driver.py: plain subprocesses on the lane's socket, no fork server."""
    runs = Catalog.load().runs()
    with ProcessGroup() as group:
        driver = SubprocessDriver.start(group, max_parallel_lanes=2)  # each start imports a whole backend
        results = asyncio.run(run_many(driver, runs))
    failed = [(r.name, r.mismatches, r.backend_detail) for r in results if r.verdict != "pass"]
    assert not failed, failed
    assert {r.driver for r in results} == {"subprocess"} and len(results) == len(runs) >= 40


def test_the_stacks_fault_proxy_answers_only_with_its_token(local_driver: LocalDriver) -> None:
    """Its API listens on 127.0.0.1, where any local user could reach it: without the
    stack's token (generated per stack) it refuses, so nobody else can move a lane's faults."""
    assert len(local_driver.toxiproxy_token) >= 32
    assert httpx.get(local_driver.toxiproxy_url + "/proxies", timeout=5).status_code == 401
    wrong = {"Authorization": "Bearer " + "x" * len(local_driver.toxiproxy_token)}
    assert httpx.post(local_driver.toxiproxy_url + "/reset", headers=wrong, timeout=5).status_code == 401
    with ToxiproxyClient(local_driver.toxiproxy_url, token=local_driver.toxiproxy_token) as api:
        assert isinstance(api.proxies(), dict)
