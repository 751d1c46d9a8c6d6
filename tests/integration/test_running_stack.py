"""Commands attach to a stack `replica up` keeps running, through its lanes API."""

from __future__ import annotations

import json
import os
import pwd
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.cli_support import REPO, cli_env, descendants, listening_ports_of, replica_argv, run_replica, wait_for_state
from tests.servers_support import proc_file

pytestmark = pytest.mark.slow

MAX_LANES = 3


def lanes_client(info: dict, timeout: float = 30) -> httpx.Client:
    """The lanes API, over its unix socket."""
    return httpx.Client(base_url=info["lanes_url"], transport=httpx.HTTPTransport(uds=info["lanes_socket"]), timeout=timeout)


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("state")
    proc = subprocess.Popen(
        replica_argv("up", "--max-lanes", str(MAX_LANES)), cwd=REPO, env=cli_env(state_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    yield state_dir, wait_for_state(proc, state_dir)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def test_lanes_api_refuses_bad_json_and_unknown_lanes(running_stack):
    _state_dir, info = running_stack
    with lanes_client(info, timeout=10) as http:
        bad = http.post("/lanes", content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 422
        unknown_field = http.post("/lanes", json={"backend": {"handlr": "incident"}})
        assert unknown_field.status_code == 422
        assert "handlr" in unknown_field.text
        assert http.delete("/lanes/nope").status_code == 404


def test_lane_opened_over_http_serves_and_closes(running_stack):
    _state_dir, info = running_stack
    with lanes_client(info) as http:
        opened = http.post("/lanes", json={"backend": {"handler": "recommended"}})
        assert opened.status_code == 201, opened.text
        lane = opened.json()
        assert lane["outcome"]["ready"] is True
        assert httpx.get(lane["base_url"] + "/health/ready", timeout=5).status_code == 200
        assert http.delete(f"/lanes/{lane['id']}").status_code == 204
        with pytest.raises(httpx.HTTPError):
            httpx.get(lane["base_url"] + "/health", timeout=2)


def test_scenarios_run_attaches_to_the_running_stack(running_stack, tmp_path):
    state_dir, _info = running_stack
    result = run_replica("scenarios", "run", "seed-1011", "--json", str(tmp_path / "r.json"), state_dir=state_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "using the running stack" in result.stderr
    [run] = json.loads((tmp_path / "r.json").read_text())["scenarios"]
    assert (run["observed"]["close_code"], run["observed"]["close_reason"]) == (1011, "Internal error")


# ------------------------------------------------------------------ the lanes API is private and bounded


def test_lanes_api_listens_only_on_a_private_unix_socket(running_stack):
    state_dir, info = running_stack
    sock = Path(info["lanes_socket"])
    assert sock.parent == state_dir and stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "stack.json").stat().st_mode) == 0o600
    service_ports = {urlsplit(info[k]).port for k in ("postgres_url", "redis_url", "auth_url", "toxiproxy_url")}
    owner_ports = listening_ports_of({info["owner_pid"]})
    assert not owner_ports - service_ports, f"replica up itself listens on TCP {owner_ports - service_ports}"


def test_lanes_are_capped_listed_and_closed(running_stack):
    _state_dir, info = running_stack
    with lanes_client(info) as http:
        assert http.get("/lanes").json() == []
        opened = [http.post("/lanes", json={"backend": {"handler": "recommended"}}) for _ in range(MAX_LANES)]
        assert [r.status_code for r in opened] == [201] * MAX_LANES, [r.text for r in opened]
        ids = {r.json()["id"] for r in opened}
        try:
            refused = http.post("/lanes", json={"backend": {"handler": "recommended"}})
            assert refused.status_code == 429 and str(MAX_LANES) in refused.text
            assert {lane["id"] for lane in http.get("/lanes").json()} == ids
        finally:
            for lane_id in ids:
                assert http.delete(f"/lanes/{lane_id}").status_code == 204
        assert http.get("/lanes").json() == []


def test_a_lane_is_closed_once_the_process_that_opened_it_is_gone(running_stack):
    """However the owner ends (here: killed), its lanes do not stay open; one whose
    owner is gone before it opened is closed at once; a malformed owner is a 422."""
    from replica.drivers.identity import ProcessIdentity

    _state_dir, info = running_stack
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        identity = ProcessIdentity.of(owner.pid)
        assert identity is not None
        params = {"owner_pid": identity.pid, "owner_started": identity.started}
        with lanes_client(info) as http:
            opened = http.post("/lanes", params=params, json={"backend": {"handler": "recommended"}})
            assert opened.status_code == 201, opened.text
            assert [lane["id"] for lane in http.get("/lanes").json()] == [opened.json()["id"]]
            owner.kill()
            owner.wait()
            deadline = time.monotonic() + 10
            while http.get("/lanes").json():
                assert time.monotonic() < deadline, "the dead owner's lane is still open"
                time.sleep(0.02)  # polling a bounded wait on the stack
            gone = http.post("/lanes", params=params, json={"backend": {"handler": "recommended"}})
            assert gone.status_code == 201 and gone.json()["id"] == "closed"
            assert http.get("/lanes").json() == []
            for bad in ({"owner_pid": 0}, {"owner_pid": 1, "owner_started": "x" * 500}, {"owner_pid": "me"}):
                assert http.post("/lanes", params=bad, json={"backend": {"handler": "recommended"}}).status_code == 422
    finally:
        owner.kill()
        owner.wait()


def test_a_lane_whose_backend_refused_its_settings_is_not_kept(running_stack, tmp_path):
    _state_dir, info = running_stack
    with lanes_client(info) as http:
        answer = http.post("/lanes", json={"backend": {"handler": "no_such_module_here:endpoint"}})
        assert answer.status_code == 201, answer.text
        assert answer.json()["outcome"]["refused_settings"] is True
        assert answer.json()["outcome"]["ready"] is False
        assert http.get("/lanes").json() == []


@pytest.mark.parametrize("lines", ["-1", "abc", str(10**30), "1e9", "", "99999999"])
def test_bad_log_line_counts_are_refused_not_500(running_stack, lines):
    _state_dir, info = running_stack
    with lanes_client(info) as http:
        lane = http.post("/lanes", json={"backend": {"handler": "recommended"}}).json()
        try:
            answer = http.get(f"/lanes/{lane['id']}/log", params={"lines": lines})
            assert answer.status_code == 422, answer.text
            assert "lines" in answer.text
            assert http.get(f"/lanes/{lane['id']}/log", params={"lines": 5}).status_code == 200
        finally:
            http.delete(f"/lanes/{lane['id']}")


def test_oversized_bodies_are_refused(running_stack):
    _state_dir, info = running_stack
    with lanes_client(info) as http:
        huge = {"backend": {"handler": "x" * (1024 * 1024)}}
        assert http.post("/lanes", json=huge).status_code == 413

        def chunks():
            for _ in range(200):
                yield b"[" * 1024

        assert http.post("/lanes", content=chunks(), headers={"content-type": "application/json"}).status_code == 413
        assert http.get("/lanes").status_code == 200


# ------------------------------------------------------------------ an unprivileged local user

# Stdlib only: it runs under whatever Python the unprivileged account can execute.
ATTACKER = textwrap.dedent(
    r"""
    import json, socket, struct, sys

    target = json.loads(sys.argv[1])
    results = {}

    def attempt(name, action):
        try:
            results[name] = action()
        except Exception as exc:
            results[name] = f"refused: {type(exc).__name__}: {exc}"

    def lanes():
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(target["lanes_socket"])
            sock.sendall(b'POST /lanes HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}')
            return "allowed: " + sock.recv(100).decode()

    def read_state():
        return "allowed: " + open(target["state_file"]).read()[:20]

    def commands():
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(target["commands_socket"])
            return "allowed: connected"

    def redis(*commands):
        with socket.create_connection(("127.0.0.1", target["redis_port"]), timeout=5) as sock:
            replies = []
            for command in commands:
                sock.sendall(b"*%d\r\n" % len(command) + b"".join(
                    b"$%d\r\n%s\r\n" % (len(part), part.encode()) for part in command))
                replies.append(sock.recv(200).decode().strip())
            return replies

    def write_file_through_redis(password=None):
        auth = [("AUTH", password)] if password else []
        return redis(*auth, ("CONFIG", "SET", "dir", target["root_only_dir"]),
                     ("CONFIG", "SET", "dbfilename", "owned"), ("SAVE",))

    def postgres_auth_request(address):
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        with socket.socket(family) as sock:
            sock.settimeout(5)
            sock.connect(address)
            params = b"user\0replica\0database\0replica\0\0"
            sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
            kind, _length, code = struct.unpack("!cii", sock.recv(9))
            return {"kind": kind.decode(), "auth_code": code}  # R/0 would be "no password needed"

    attempt("lanes_socket", lanes)
    attempt("commands_socket", commands)
    attempt("state_file", read_state)
    attempt("redis_get", lambda: redis(("GET", "x")))
    attempt("redis_write_file", write_file_through_redis)
    attempt("redis_write_file_with_password", lambda: write_file_through_redis(target["redis_password"]))
    attempt("postgres_tcp", lambda: postgres_auth_request(("127.0.0.1", target["postgres_port"])))
    attempt("postgres_socket", lambda: postgres_auth_request(
        f"{target['postgres_socket_dir']}/.s.PGSQL.{target['postgres_port']}"))
    print(json.dumps(results))
    """
)


def _unprivileged_python(account: pwd.struct_passwd) -> str:
    """A Python interpreter ``account`` can run (the venv's may sit in root's home)."""
    for candidate in (sys.executable, "/usr/bin/python3", shutil.which("python3")):
        try:
            runs = candidate and subprocess.run(
                [candidate, "-c", "pass"], user=account.pw_uid, group=account.pw_gid, extra_groups=[], cwd="/",
                capture_output=True,
            ).returncode == 0
        except OSError:  # not executable by that account
            runs = False
        if runs:
            return candidate
    pytest.skip(f"no Python interpreter the account {account.pw_name!r} can execute")


def _postgres_socket_dir(owner_pid: int) -> str:
    for pid in descendants(owner_pid):
        for arg in proc_file(pid, "cmdline").split(b"\0"):
            if arg.startswith(b"unix_socket_directories="):
                return arg.split(b"=", 1)[1].decode()
    raise AssertionError("no postgres process found under replica up")


@pytest.mark.skipif(os.geteuid() != 0, reason="drops to nobody: needs root")
def test_an_unprivileged_user_can_neither_use_the_stack_nor_start_a_lane(running_stack, tmp_path):
    state_dir, info = running_stack
    root_only = tmp_path / "root-only"
    root_only.mkdir(mode=0o700)
    redis_url, postgres_url = urlsplit(info["redis_url"]), urlsplit(info["postgres_url"])
    target = {
        "lanes_socket": info["lanes_socket"],
        "commands_socket": str(state_dir / "commands.sock"),
        "state_file": str(state_dir / "stack.json"),
        "redis_port": redis_url.port,
        "redis_password": redis_url.password,
        "root_only_dir": str(root_only),
        "postgres_port": postgres_url.port,
        "postgres_socket_dir": _postgres_socket_dir(info["owner_pid"]),
    }
    nobody = pwd.getpwnam("nobody")
    attacker = subprocess.run(
        [_unprivileged_python(nobody), "-I", "-c", ATTACKER, json.dumps(target)], capture_output=True, text=True,
        timeout=60, user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[], cwd="/", env={},
    )
    assert attacker.returncode == 0, attacker.stderr
    results = json.loads(attacker.stdout)
    assert results["lanes_socket"].startswith("refused: PermissionError"), results
    assert results["commands_socket"].startswith("refused: PermissionError"), results
    assert results["state_file"].startswith("refused: PermissionError"), results
    assert results["redis_get"] == ["-NOAUTH Authentication required."], results
    config_dir, config_file, save = results["redis_write_file"]
    assert "unknown command `CONFIG`" in config_dir and "unknown command `CONFIG`" in config_file, results
    assert save == "-NOAUTH Authentication required.", results
    # Even with the password, no file can be written: CONFIG is gone.
    assert results["redis_write_file_with_password"][0] == "+OK"
    assert all("unknown command" in reply for reply in results["redis_write_file_with_password"][1:3]), results
    sasl = {"kind": "R", "auth_code": 10}  # AuthenticationSASL: SCRAM first, no trust
    assert results["postgres_tcp"] == sasl and results["postgres_socket"] == sasl, results
    assert list(root_only.iterdir()) == []


# ------------------------------------------------------------------ fuzz

FUZZ_REQUESTS = 2000
#: 5xx the lanes API documents: 502 the stack could not start a lane, 503 too many connections at once.
DOCUMENTED_5XX = {502, 503}


def _fds(pid: int, *, pipes: bool = False) -> list[str]:
    """What ``pid``'s fds point at: sockets and files, or only its pipes."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("pipe:") == pipes:
            targets.append(target)
    return sorted(targets)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _wait_for_fds(pid: int, baseline: list[str], *, pipes: bool = False) -> None:
    deadline = time.monotonic() + 10
    while len(_fds(pid, pipes=pipes)) > len(baseline):
        assert time.monotonic() < deadline, f"fds did not return to {baseline}: {_fds(pid, pipes=pipes)}"
        time.sleep(0.05)  # polling a bounded wait: closed lanes release their sockets in the background


def _nested(rng: random.Random) -> str:
    depth = rng.choice([10, 1000, 5000, 30000])
    return "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth


def _fuzz_body(rng: random.Random) -> bytes:
    handler = rng.choice(["no_such_module:fn", "", "x" * 300, "a:b:c", "..:x", "\ud800", "incident", 7, None])
    shapes = [
        lambda: json.dumps({"backend": {"handler": handler}}, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass"),
        lambda: json.dumps({"backend": {"handler": "recommended", "failpoints": rng.choice(["x=y", "ws.auth=raise(", 5])},
                            "ready_timeout_s": rng.choice([0, -1, 1e308, "NaN", 301, 0.001])}).encode(),
        lambda: json.dumps({"backend": {}, "toxics": [{"hop": "redis", "type": "latency"}] * rng.randint(0, 100)}).encode(),
        lambda: json.dumps({"backend": {"handler": "incident"}, "down": [{"hop": rng.choice(["redis", "nope", ""])}]}).encode(),
        lambda: _nested(rng).encode(),
        lambda: rng.randbytes(rng.randint(0, 2048)),
        lambda: b"{" + b'"k":1,' * rng.randint(0, 20000) + b"}",
        lambda: b"1" * rng.randint(1, 5000),
        lambda: json.dumps({"backend": {"handler": "incident"}, "extra": True}).encode(),
    ]
    return rng.choice(shapes)()


def _fuzz_path(rng: random.Random) -> str:
    lane = rng.choice(["x", "0" * 12, "%00", "..", "%2e%2e%2f", "é", "a" * 4000, "{id}"])
    return rng.choice(["/lanes", f"/lanes/{lane}", f"/lanes/{lane}/log", "/", "/docs", "/openapi.json", f"/{lane}"])


def _raw_request(rng: random.Random) -> bytes:
    return rng.choice([
        b"GET /lanes HTTP/1.1\r\nHost: x\r\nContent-Length: 1_0\r\n\r\n",
        b"POST /lanes HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\n{}{}",
        b"POST /lanes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0_4\r\nxxxx\r\n0\r\n\r\n",
        b"POST /lanes HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"POST /lanes HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n{}",
        b"GET /lanes HTTP/1.1\r\n" + b"X-A: " + b"a" * 70000 + b"\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + rng.randbytes(64),
        b"GET /lanes?lines=" + b"9" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        rng.randbytes(rng.randint(1, 500)),
        b"GET /lanes HTTP/1.1\r\n\r\n",
    ])


def _raw_status(socket_path: str, payload: bytes) -> int | None:
    """The status a raw request gets (None: the connection was closed without one)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(socket_path)
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            head = sock.recv(64)
        except (BrokenPipeError, ConnectionResetError):
            return None
    return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else None


def test_fuzzing_the_lanes_api_gets_no_5xx_and_leaves_no_trace(running_stack):
    _state_dir, info = running_stack
    pid, rng = info["owner_pid"], random.Random(20260611)
    statuses: Counter[int | None] = Counter()
    with lanes_client(info, timeout=30) as http:
        http.get("/lanes")
        fds_before, rss_before = _fds(pid), _rss_kib(pid)
        for i in range(FUZZ_REQUESTS):
            if rng.random() < 0.15:
                status = _raw_status(info["lanes_socket"], _raw_request(rng))
            else:
                method = rng.choice(["GET", "POST", "POST", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"])
                params = {"lines": rng.choice(["-1", "0", "40", "1e3", "abc", str(10**40), "", "\x00"])}
                headers = {"content-type": rng.choice(["application/json", "text/plain", "", "application/json; charset=latin-1"])}
                status = http.request(method, _fuzz_path(rng), params=params, content=_fuzz_body(rng), headers=headers).status_code
            statuses[status] += 1
            assert status is None or status < 500 or status in DOCUMENTED_5XX, f"request {i}: HTTP {status}"
            if i % 100 == 0:
                started = time.monotonic()
                assert http.get("/lanes").status_code == 200
                assert time.monotonic() - started < 1.0, "the lanes API took over 1 s to answer"
        for lane in http.get("/lanes").json():  # valid requests opened real lanes
            assert http.delete(f"/lanes/{lane['id']}").status_code == 204
        assert http.get("/lanes").json() == []
    _wait_for_fds(pid, fds_before)  # sockets and files; pipes: see the next test
    assert _rss_kib(pid) - rss_before < 64 * 1024, "replica up grew by over 64 MiB"
    assert not [s for s in statuses if s is not None and s >= 500 and s not in DOCUMENTED_5XX], statuses
    print(f"\nfuzz: {FUZZ_REQUESTS} requests, statuses {dict(statuses)}, RSS {rss_before} -> {_rss_kib(pid)} KiB")


def test_closed_lanes_leave_no_pipes_behind(running_stack):
    _state_dir, info = running_stack
    pid = info["owner_pid"]
    with lanes_client(info) as http:
        http.delete(f"/lanes/{http.post('/lanes', json={'backend': {'handler': 'recommended'}}).json()['id']}")
        before = _fds(pid, pipes=True)
        for _ in range(3):
            lane = http.post("/lanes", json={"backend": {"handler": "recommended"}}).json()
            assert http.delete(f"/lanes/{lane['id']}").status_code == 204
    _wait_for_fds(pid, before, pipes=True)


def test_faults_added_to_a_lane_of_the_running_stack_apply(running_stack):
    """``RemoteLane.faults``: a program's own faults on a lane the stack opened for it,
    through the stack's fault proxy (a latency on the backend hop, then the hop down)."""
    import asyncio

    from replica.drivers.base import LaneRequest
    from replica.drivers.stack import StackInfo
    from replica.drivers.up.remote import RemoteDriver
    from replica.scenarios import HopDown, ToxicSpec

    _state_dir, info = running_stack
    driver = RemoteDriver(StackInfo.model_validate(info))

    async def scenario() -> tuple[float, bool]:
        async with driver.lane(LaneRequest()) as lane:
            assert lane.outcome.ready, lane.outcome.detail
            await lane.faults.add_toxic(ToxicSpec(hop="backend", type="latency", attributes={"latency": 300}))
            started = time.monotonic()
            async with httpx.AsyncClient(timeout=10) as http:
                assert (await http.get(lane.base_url + "/health")).status_code == 200
                elapsed = time.monotonic() - started
                await lane.faults.set_down(HopDown(hop="backend"))
                try:
                    await http.get(lane.base_url + "/health")
                    refused = False
                except httpx.TransportError:
                    refused = True
            return elapsed, refused

    elapsed, refused = asyncio.run(scenario())
    assert elapsed >= 0.3
    assert refused


def test_a_lane_whose_opener_gave_up_is_closed_not_kept(running_stack):
    """A live process that cancels its lane's opening (Ctrl-C in a program, a timeout) closes
    its request; the stack, which finishes opening the lane regardless, closes it then
    instead of keeping it for an owner that never learns its id. Seen through the lane's
    proxies in the stack's fault proxy: created as the opening starts, gone once closed."""
    import asyncio

    from faults.toxiproxy.client import ToxiproxyClient
    from replica.drivers.base import LaneRequest
    from replica.drivers.stack import StackInfo
    from replica.drivers.up.remote import RemoteDriver
    from replica.polling import wait_until
    from replica.scenarios import ToxicSpec

    _state_dir, info = running_stack
    stack = StackInfo.model_validate(info)
    driver = RemoteDriver(stack)
    # Every round trip to PostgreSQL 150 ms while the backend starts: the opening takes seconds.
    slow = LaneRequest(toxics=(ToxicSpec(hop="postgres", type="latency", attributes={"latency": 150}, when="before_start"),))

    with ToxiproxyClient(stack.toxiproxy_url, token=stack.toxiproxy_token) as proxies:
        before = set(proxies.proxies())

        async def open_then_give_up() -> set[str]:
            opening = asyncio.ensure_future(driver.lane(slow).__aenter__())
            new: set[str] = set()

            def proxies_created() -> bool:
                new.update(set(proxies.proxies()) - before)
                return len(new) == 4

            await asyncio.to_thread(wait_until, proxies_created, 30, what="the lane's proxies")
            assert not opening.done()
            opening.cancel()
            with pytest.raises(asyncio.CancelledError):
                await opening
            return new

        lane_proxies = asyncio.run(open_then_give_up())
        wait_until(lambda: not lane_proxies & set(proxies.proxies()), 60, what="the abandoned lane to be closed")
    with lanes_client(info) as http:
        assert http.get("/lanes").json() == []
