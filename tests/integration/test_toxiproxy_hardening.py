"""Regression tests for the fault proxy's hardening (issue 9): one test per bug, on a live server.

High: one client hangs the API (sizes, concurrency, SIGTERM). Medium: loops,
unaddressable names, half-done PATCH and /reset. Malformed input: nesting,
number ranges, misspelt attributes, HTTP framing, missing Host.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from faults.toxiproxy.client import ToxiproxyClient
from faults.toxiproxy.model import MAX_NAME
from tests.integration.toxiproxy_support import (  # noqa: F401 - fixtures
    ServerProcess,
    api,
    assert_error,
    connect,
    error,
    free_port,
    http,
    recv_until_eof,
    start_server,
    toxiproxy,
)

pytestmark = pytest.mark.slow

GO_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"


def exchange(server: ServerProcess, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        return recv_until_eof(sock)


def answers_version(server: ServerProcess) -> bool:
    return httpx.get(f"{server.url}/version", timeout=1.0).status_code == 200


# ------------------------------------------------------ High: one client hangs the API


def test_oversized_bodies_are_refused_without_being_read(toxiproxy: ServerProcess, api: ToxiproxyClient) -> None:
    """A 10 MB proxy name used to be stored, then serialised on every GET /proxies."""
    raw = exchange(toxiproxy, b"POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert raw.endswith(error("bad request body: http: request body too large", 400))
    chunk = b"%x\r\n%s\r\n" % (600_000, b"x" * 600_000)
    raw = exchange(toxiproxy, b"POST /proxies HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2)
    assert raw.endswith(error("bad request body: http: request body too large", 400))
    assert api.proxies() == {} and answers_version(toxiproxy)


def test_long_names_are_refused(http: httpx.Client) -> None:
    assert http.post("/proxies", json={"name": "n" * MAX_NAME, "upstream": "x:1", "enabled": False}).status_code == 201
    long = http.post("/proxies", json={"name": "n" * (MAX_NAME + 1), "upstream": "x:1", "enabled": False})
    assert_error(long, 400, f"proxy name too long: at most {MAX_NAME} characters")
    toxic = http.post(f"/proxies/{'n' * MAX_NAME}/toxics", json={"type": "noop", "name": "t" * (MAX_NAME + 1)})
    assert_error(toxic, 400, f"toxic name too long: at most {MAX_NAME} characters")
    address = http.post("/proxies", json={"name": "a", "upstream": "x" * 400 + ":1"})
    assert_error(address, 400, "upstream too long: at most 300 characters")


def test_listing_a_large_state_to_many_clients_never_blocks_the_api(toxiproxy: ServerProcess, http: httpx.Client) -> None:
    """1,000 proxies with long names and toxics, listed by 100 clients at once: /version still answers within 1 s."""
    toxics = [{"type": "latency", "name": f"{'t' * 150}{k}", "attributes": {"latency": k}} for k in range(5)]
    for batch in range(10):
        items = [
            {"name": f"{'p' * 150}{batch * 100 + k}", "upstream": "x:1", "enabled": False, "toxics": toxics}
            for k in range(100)
        ]
        assert http.post("/populate", json=items).status_code == 201
    size = len(http.get("/proxies").content)
    assert size > 1_000_000

    def list_all() -> int:
        return len(httpx.get(f"{toxiproxy.url}/proxies", timeout=30).content)

    with ThreadPoolExecutor(100) as pool:
        listings = [pool.submit(list_all) for _ in range(100)]
        for _ in range(5):
            assert answers_version(toxiproxy)
        assert {future.result() for future in listings} == {size}


def test_sigterm_ends_the_server_within_a_second_under_load() -> None:
    server = start_server()
    try:
        items = [{"name": f"{'p' * 150}{k}", "upstream": "x:1", "enabled": False} for k in range(1000)]
        assert httpx.post(f"{server.url}/populate", json=items, timeout=10).status_code == 201
        readers = []  # clients that ask for the whole state and never read it
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /proxies HTTP/1.1\r\nHost: x\r\n\r\n")
            readers.append(sock)
        slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
        for sock in slow:
            sock.sendall(b"GET /version HTTP/1.1\r\nHo")  # slowloris: a head that never ends
        assert answers_version(server)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=1.0) == 0
        assert time.monotonic() - started < 1.0
        for sock in readers + slow:
            sock.close()
    finally:
        server.stop()


# ---------------------------------------------- Medium: turned against itself, left broken


def test_upstream_that_is_this_servers_own_listener_is_refused(toxiproxy: ServerProcess, http: httpx.Client) -> None:
    """A proxy forwarding to itself used to exhaust every fd from one connection."""
    port = free_port()
    for upstream in (f"127.0.0.1:{port}", f"localhost:{port}", f":{port}", f"[::ffff:127.0.0.1]:{port}"):
        response = http.post("/proxies", json={"name": "self", "listen": f"127.0.0.1:{port}", "upstream": upstream})
        assert_error(response, 400, f"upstream {upstream} is a listen address of this server")
    api_address = f"127.0.0.1:{toxiproxy.port}"
    assert_error(
        http.post("/proxies", json={"name": "api", "upstream": api_address}),
        400,
        f"upstream {api_address} is a listen address of this server",
    )
    other = http.post("/proxies", json={"name": "other", "upstream": "x:1"}).json()["listen"]
    assert_error(
        http.post("/proxies", json={"name": "chain", "upstream": other}), 400, f"upstream {other} is a listen address of this server"
    )
    mine = http.post("/proxies", json={"name": "mine", "upstream": "x:2"}).json()
    assert_error(
        http.patch("/proxies/mine", json={"upstream": mine["listen"]}),
        400,
        f"upstream {mine['listen']} is a listen address of this server",
    )
    target = http.post("/proxies", json={"name": "to", "upstream": f"127.0.0.1:{port}"}).json()
    assert_error(
        http.patch("/proxies/mine", json={"listen": f"127.0.0.1:{port}"}),
        400,
        f"listen 127.0.0.1:{port} is the upstream of proxy to",
    )
    assert sorted(http.get("/proxies").json()) == ["mine", "other", "to"]
    assert http.get("/proxies/mine").json() == mine and target["enabled"] is True


def test_upstream_reaching_this_server_through_another_name_is_cut(toxiproxy: ServerProcess, http: httpx.Client) -> None:
    """``127.1`` is 127.0.0.1 to the resolver but not an address literal: the data plane ends the loop."""
    http.get("/version")  # the client's kept-alive connection is part of the baseline
    baseline = toxiproxy.fd_count()
    port = free_port()
    created = http.post("/proxies", json={"name": "loop", "listen": f"127.0.0.1:{port}", "upstream": f"127.1:{port}"})
    assert created.status_code == 201
    for _ in range(3):
        with connect(port) as client:
            client.sendall(b"hello")
            try:
                assert recv_until_eof(client) == b""
            except ConnectionResetError:
                pass
    http.delete("/proxies/loop")
    deadline = time.monotonic() + 5
    while toxiproxy.fd_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert toxiproxy.fd_count() <= baseline
    assert "loops back to this server" in toxiproxy.log()


def test_a_lone_surrogate_in_a_name_becomes_a_replacement_character(toxiproxy: ServerProcess, http: httpx.Client) -> None:
    """Like Go's decoder; it used to make every /metrics a 500 and the proxy undeletable."""
    response = http.post("/proxies", content=b'{"name":"x\\ud800y","upstream":"x:1"}')
    assert response.status_code == 201 and response.json()["name"] == "x\ufffdy"
    assert http.get("/metrics").status_code == 200
    assert http.delete("/proxies/x%EF%BF%BDy").status_code == 204


@pytest.mark.parametrize("name", ["a/b", "tab\there", "nul\x00", "bell\x07", "line\u2028"])
def test_unaddressable_names_are_refused(http: httpx.Client, name: str) -> None:
    assert_error(
        http.post("/proxies", json={"name": name, "upstream": "x:1"}), 400, "proxy name must be printable and must not contain '/'"
    )
    http.post("/proxies", json={"name": "p", "upstream": "x:1"})
    assert_error(
        http.post("/proxies/p/toxics", json={"name": name, "type": "noop"}),
        400,
        "toxic name must be printable and must not contain '/'",
    )


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("nonsense", "address nonsense: missing port in address"),
        ("999.1.1.1:80", "lookup 999.1.1.1: no such host"),
        ("127.0.0.1:99999", "address 99999: invalid port"),
        ("[::1", "address [::1: missing ']' in address"),
    ],
)
def test_patch_with_a_bad_listen_answers_like_go_and_keeps_the_old_address(
    http: httpx.Client, enabled: bool, listen: str, message: str
) -> None:
    before = http.post("/proxies", json={"name": "p", "upstream": "x:1", "enabled": enabled}).content
    assert_error(http.patch("/proxies/p", json={"listen": listen}), 500, message)
    assert http.get("/proxies/p").content == before
    assert http.post("/reset").status_code == 204  # used to be a 500 after a partial reset, forever
    assert http.get("/proxies/p").json()["enabled"] is True


def test_reset_is_all_or_nothing(http: httpx.Client) -> None:
    busy = socket.create_server(("127.0.0.1", 0))
    busy_port = busy.getsockname()[1]
    try:
        http.post("/proxies", json={"name": "a", "upstream": "x:1", "enabled": False})
        http.post("/proxies/a/toxics", json={"type": "noop"})
        http.post("/proxies", json={"name": "b", "upstream": "x:1", "listen": f"127.0.0.1:{busy_port}", "enabled": False})
        before = http.get("/proxies").content
        assert_error(http.post("/reset"), 500, f"listen tcp 127.0.0.1:{busy_port}: bind: address already in use")
        assert http.get("/proxies").content == before
    finally:
        busy.close()
    assert http.post("/reset").status_code == 204
    proxies = http.get("/proxies").json()
    assert proxies["a"]["enabled"] and proxies["b"]["enabled"] and proxies["a"]["toxics"] == []


# ------------------------------------------------------------- malformed input


def test_deep_nesting_is_400(http: httpx.Client) -> None:
    for body in (b"[" * 100_000, b'{"name":' + b"[" * 40 + b"]" * 40 + b"}"):
        assert_error(http.post("/proxies", content=body), 400, "bad request body: invalid character '[' exceeded max depth")


def test_out_of_range_numbers_are_400(http: httpx.Client) -> None:
    http.post("/proxies", json={"name": "p", "upstream": "x:1"})
    assert_error(
        http.post("/proxies/p/toxics", content=b'{"type":"noop","toxicity":1e300}'),
        400,
        "bad request body: json: cannot unmarshal number 1e300 into Go struct field ToxicWrapper.toxicity of type float32",
    )
    digits = "9" * 5000
    assert_error(
        http.post("/proxies/p/toxics", content=f'{{"type":"latency","attributes":{{"latency":{digits}}}}}'.encode()),
        400,
        f"bad request body: json: cannot unmarshal number {digits} into Go struct field LatencyToxic.attributes.latency of type int64",
    )
    assert_error(
        http.post("/proxies/p/toxics", json={"type": "latency", "attributes": {"latency": 2**62}}),
        400,
        "invalid attribute latency: must be at most 1000000000000",
    )
    assert http.get("/proxies/p/toxics").json() == []


def test_a_misspelt_attribute_is_400_naming_it(http: httpx.Client) -> None:
    http.post("/proxies", json={"name": "p", "upstream": "x:1"})
    assert_error(
        http.post("/proxies/p/toxics", json={"type": "latency", "attributes": {"latncy": 100}}),
        400,
        'bad request body: json: unknown field "latncy"',
    )
    http.post("/proxies/p/toxics", json={"type": "latency", "name": "l", "attributes": {"Latency": 5}})  # case as Go
    assert_error(http.patch("/proxies/p/toxics/l", json={"attributes": {"jiter": 1}}), 400, 'bad request body: json: unknown field "jiter"')
    assert http.get("/proxies/p/toxics/l").json()["attributes"] == {"latency": 5, "jitter": 0}


@pytest.mark.parametrize(
    "head",
    [
        b"POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: 1_0\r\n\r\n",
        b"POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\n",
        b"POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
)
def test_smuggling_shapes_of_content_length_are_refused(toxiproxy: ServerProcess, api: ToxiproxyClient, head: bytes) -> None:
    assert exchange(toxiproxy, head + b"0\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\n\r\n") == GO_400
    assert api.proxies() == {}


def test_unknown_transfer_encoding_is_501_like_go(toxiproxy: ServerProcess) -> None:
    raw = exchange(toxiproxy, b"POST /proxies HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunkedx\r\n\r\n0\r\n\r\n")
    assert raw == (
        b"HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Connection: close\r\n\r\nUnsupported transfer encoding"
    )


def test_a_chunk_size_that_is_not_hex_is_a_bad_body(toxiproxy: ServerProcess, api: ToxiproxyClient) -> None:
    body = b'{"name":"c","upstream":"x:1"}'
    raw = exchange(
        toxiproxy,
        b"POST /proxies HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0_4\r\n" + body + b"\r\n0\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close\r\n" in raw
    assert raw.endswith(error("bad request body: invalid byte in chunk length", 400))
    assert api.proxies() == {}


def test_missing_host_is_400_like_go(toxiproxy: ServerProcess) -> None:
    status = b"400 Bad Request: missing required Host header"
    assert exchange(toxiproxy, b"GET /version HTTP/1.1\r\n\r\n") == (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" + status
    )
    assert exchange(toxiproxy, b"GET /version HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 OK\r\n")


def test_the_server_keeps_answering_after_every_refusal(toxiproxy: ServerProcess) -> None:
    stop = threading.Event()
    failures: list[str] = []

    def watch() -> None:
        while not stop.is_set():
            if not answers_version(toxiproxy):
                failures.append("no answer")

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for head in (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", b"X" * 70_000):
            assert exchange(toxiproxy, head).startswith(b"HTTP/1.1 ")
    finally:
        stop.set()
        watcher.join()
    assert failures == []
