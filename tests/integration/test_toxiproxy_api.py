"""Every row of the Toxiproxy v2 API table, on a live server, checked byte for byte."""

from __future__ import annotations

import json
import re
import socket

import httpx
import pytest

from faults.toxiproxy.client import ToxiproxyClient
from tests.integration.toxiproxy_support import (  # noqa: F401 - fixtures
    ServerProcess,
    TcpServer,
    api,
    assert_error,
    connect,
    echo,
    error,
    free_port,
    http,
    recv_exactly,
    toxiproxy,
)

pytestmark = pytest.mark.slow

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


def proxy_bytes(name: str, listen: str, upstream: str, enabled: bool = True, toxics: str = "[]") -> bytes:
    return (
        f'{{"name":"{name}","listen":"{listen}","upstream":"{upstream}",'
        f'"enabled":{str(enabled).lower()},"Logger":{{}},"toxics":{toxics}}}'
    ).encode()


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------- common rules


def test_matched_routes_have_a_request_id_router_answers_do_not(http: httpx.Client) -> None:
    ids = set()
    for method, path in [("GET", "/proxies"), ("GET", "/proxies/none"), ("GET", "/version")]:
        response = http.request(method, path)
        request_id = response.headers["x-toxiproxy-request-id"]
        assert re.fullmatch(r"[0-9a-v]{20}", request_id)
        ids.add(request_id)
    assert len(ids) == 3
    browser = http.get("/proxies", headers={"User-Agent": "Mozilla/5.0"})  # the guard runs after the id
    assert browser.status_code == 403 and "x-toxiproxy-request-id" in browser.headers
    for method, path in [("GET", "/nope"), ("PUT", "/proxies"), ("GET", "/proxies/")]:
        response = http.request(method, path)
        assert response.status_code in (404, 405)
        assert "x-toxiproxy-request-id" not in response.headers  # gorilla/mux answers before any middleware


def test_browser_user_agent_is_refused(http: httpx.Client) -> None:
    response = http.get("/proxies", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert response.status_code == 403
    assert response.headers["content-type"] == TEXT
    assert response.content == b"User agent not allowed\n"


def test_unknown_path_trailing_slash_and_wrong_method(http: httpx.Client) -> None:
    for path in ("/nope", "/proxies/", "/version/"):
        response = http.get(path)
        assert response.status_code == 404
        assert response.content == b"404 page not found\n"
        assert response.headers["content-type"] == TEXT
    for method, path in [("PUT", "/proxies"), ("GET", "/reset"), ("DELETE", "/version"), ("GET", "/populate")]:
        response = http.request(method, path)
        assert response.status_code == 405
        assert response.content == b""


# -------------------------------------------------------------------- proxies


def test_get_proxies_empty_then_sorted(http: httpx.Client, echo: TcpServer) -> None:
    response = http.get("/proxies")
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    assert response.content == b"{}"
    for name in ("b", "a"):
        http.post("/proxies", json={"name": name, "upstream": echo.address, "listen": "127.0.0.1:0"})
    body = http.get("/proxies").content
    assert list(json.loads(body)) == ["a", "b"]
    assert body.startswith(b'{"a":{"name":"a","listen":"127.0.0.1:')


def test_create_proxy_echoes_bound_address(http: httpx.Client) -> None:
    port = free_port()
    response = http.post(
        "/proxies", json={"name": "pg", "listen": f"localhost:{port}", "upstream": "127.0.0.1:1", "extra": 1}
    )
    assert response.status_code == 201
    assert response.headers["content-type"] == JSON
    assert response.content == proxy_bytes("pg", f"127.0.0.1:{port}", "127.0.0.1:1")
    assert listening(port)  # upstream 127.0.0.1:1 was not dialled: creation succeeded anyway


def test_create_proxy_port_zero_and_empty_listen_bind_loopback(http: httpx.Client) -> None:
    body = http.post("/proxies", json={"name": "z", "listen": "127.0.0.1:0", "upstream": "x:1"}).json()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", body["listen"]) and not body["listen"].endswith(":0")
    body = http.post("/proxies", json={"name": "e", "upstream": "x:1"}).json()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", body["listen"])  # the original binds [::]


def test_create_proxy_disabled_does_not_bind(http: httpx.Client) -> None:
    port = free_port()
    response = http.post("/proxies", json={"name": "d", "listen": f"127.0.0.1:{port}", "upstream": "x:1", "enabled": False})
    assert response.status_code == 201
    assert response.content == proxy_bytes("d", f"127.0.0.1:{port}", "x:1", enabled=False)
    assert not listening(port)


def test_create_proxy_errors(http: httpx.Client) -> None:
    assert_error(http.post("/proxies", content=b""), 400, "bad request body: EOF")
    assert_error(http.post("/proxies", json={"upstream": "x:1"}), 400, "missing required field: name")
    assert_error(http.post("/proxies", json={"name": "n"}), 400, "missing required field: upstream")
    assert_error(
        http.post("/proxies", json={"name": "n", "upstream": "x:1", "listen": "badaddr"}),
        500,
        "listen tcp: address badaddr: missing port in address",
    )
    taken = http.post("/proxies", json={"name": "n", "upstream": "x:1", "listen": "127.0.0.1:0"}).json()["listen"]
    # 409 is decided before binding, even on a busy address
    assert_error(http.post("/proxies", json={"name": "n", "upstream": "x:1", "listen": taken}), 409, "proxy already exists")
    assert_error(
        http.post("/proxies", json={"name": "m", "upstream": "x:1", "listen": taken}),
        500,
        f"listen tcp {taken}: bind: address already in use",
    )
    assert "m" not in http.get("/proxies").json()


def test_get_proxy(http: httpx.Client) -> None:
    created = http.post("/proxies", json={"name": "g", "upstream": "x:1", "listen": "127.0.0.1:0"}).content
    response = http.get("/proxies/g")
    assert response.status_code == 200 and response.content == created
    assert_error(http.get("/proxies/missing"), 404, "proxy not found")


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_update_proxy(http: httpx.Client, echo: TcpServer, method: str) -> None:
    listen = http.post("/proxies", json={"name": "u", "upstream": echo.address, "listen": "127.0.0.1:0"}).json()["listen"]
    port = int(listen.rsplit(":", 1)[1])
    client = connect(port)
    client.sendall(b"ping")
    assert recv_exactly(client, 4) == b"ping"

    response = http.request(method, "/proxies/u", json={"enabled": False, "name": "ignored"})
    assert response.status_code == 200
    assert response.content == proxy_bytes("u", listen, echo.address, enabled=False)
    assert client.recv(10) == b""  # open connection closed
    assert not listening(port)

    response = http.request(method, "/proxies/u", json={"enabled": True})
    assert response.json()["enabled"] is True and response.json()["listen"] == listen
    assert listening(port)

    new_port = free_port()
    response = http.request(method, "/proxies/u", json={"listen": f"127.0.0.1:{new_port}"})
    assert response.json()["listen"] == f"127.0.0.1:{new_port}" and response.json()["upstream"] == echo.address
    assert listening(new_port) and not listening(port)

    assert_error(http.request(method, "/proxies/nope", json={}), 404, "proxy not found")
    assert_error(http.request(method, "/proxies/u", content=b""), 400, "bad request body: EOF")
    client.close()


def test_update_proxy_bind_error_leaves_it_as_it_was(http: httpx.Client) -> None:
    """The original stops the proxy first and leaves it disabled; here the new listener is bound first."""
    busy = socket.create_server(("127.0.0.1", 0))
    busy_port = busy.getsockname()[1]
    try:
        before = http.post("/proxies", json={"name": "b", "upstream": "x:1", "listen": "127.0.0.1:0"}).content
        response = http.post("/proxies/b", json={"listen": f"127.0.0.1:{busy_port}"})
        assert_error(response, 500, f"listen tcp 127.0.0.1:{busy_port}: bind: address already in use")
        assert http.get("/proxies/b").content == before
        assert listening(int(json.loads(before)["listen"].rsplit(":", 1)[1]))
    finally:
        busy.close()


def test_delete_proxy(http: httpx.Client, echo: TcpServer) -> None:
    listen = http.post("/proxies", json={"name": "x", "upstream": echo.address, "listen": "127.0.0.1:0"}).json()["listen"]
    client = connect(int(listen.rsplit(":", 1)[1]))
    client.sendall(b"a")
    assert recv_exactly(client, 1) == b"a"
    response = http.delete("/proxies/x")
    assert response.status_code == 204 and response.content == b""
    assert client.recv(1) == b""
    assert not listening(int(listen.rsplit(":", 1)[1]))
    assert_error(http.delete("/proxies/x"), 404, "proxy not found")
    client.close()


# ------------------------------------------------------------------- populate


def test_populate_creates_in_order(http: httpx.Client) -> None:
    body = [{"name": "p1", "upstream": "x:1", "listen": "127.0.0.1:0"}, {"name": "p2", "upstream": "x:2", "enabled": False}]
    response = http.post("/populate", json=body)
    assert response.status_code == 201
    assert response.headers["content-type"] == JSON
    proxies = response.json()["proxies"]
    assert [p["name"] for p in proxies] == ["p1", "p2"]
    assert response.content.startswith(b'{"proxies":[{"name":"p1",')
    assert proxies[1]["enabled"] is False

    empty = http.post("/populate", json=[])
    assert empty.status_code == 201 and empty.content == b'{"proxies":null}'


def test_populate_validates_everything_first(http: httpx.Client) -> None:
    response = http.post("/populate", json=[{"name": "ok", "upstream": "x:1"}, {"upstream": "x:2"}])
    assert response.status_code == 400
    assert response.headers["content-type"] == JSON
    assert response.content == b'{"error":"missing required field: name at proxy 2","status":400,"proxies":null}'
    assert http.get("/proxies").json() == {}
    not_array = http.post("/populate", json={"name": "a"})
    assert not_array.status_code == 400 and not_array.json()["error"].startswith("bad request body: ")


def test_populate_keeps_identical_and_replaces_changed(http: httpx.Client, echo: TcpServer) -> None:
    port = free_port()
    http.post("/proxies", json={"name": "same", "upstream": echo.address, "listen": f"localhost:{port}"})
    http.post("/proxies/same/toxics", json={"type": "latency", "attributes": {"latency": 1}})
    http.post("/proxies", json={"name": "changed", "upstream": "x:1", "listen": "127.0.0.1:0"})
    http.post("/proxies/changed/toxics", json={"type": "noop"})
    client = connect(port)
    client.sendall(b"k")
    assert recv_exactly(client, 1) == b"k"

    response = http.post(
        "/populate",
        json=[
            {"name": "same", "upstream": echo.address, "listen": f"localhost:{port}"},
            {"name": "changed", "upstream": "x:2", "listen": "127.0.0.1:0"},
        ],
    )
    assert response.status_code == 201
    assert [t["name"] for t in http.get("/proxies/same").json()["toxics"]] == ["latency_downstream"]
    assert http.get("/proxies/changed").json()["toxics"] == []
    assert http.get("/proxies/changed").json()["upstream"] == "x:2"
    client.sendall(b"z")  # the kept proxy's connection is still open
    assert recv_exactly(client, 1) == b"z"
    client.close()


def test_populate_bind_failure_keeps_earlier_proxies(http: httpx.Client) -> None:
    busy = socket.create_server(("127.0.0.1", 0))
    busy_port = busy.getsockname()[1]
    try:
        response = http.post(
            "/populate",
            json=[
                {"name": "first", "upstream": "x:1", "listen": "127.0.0.1:0"},
                {"name": "second", "upstream": "x:1", "listen": f"127.0.0.1:{busy_port}"},
                {"name": "third", "upstream": "x:1", "listen": "127.0.0.1:0"},
            ],
        )
    finally:
        busy.close()
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == f"listen tcp 127.0.0.1:{busy_port}: bind: address already in use"
    assert body["status"] == 500
    assert [p["name"] for p in body["proxies"]] == ["first"]
    assert sorted(http.get("/proxies").json()) == ["first"]


def test_populate_accepts_toxics(http: httpx.Client) -> None:
    response = http.post(
        "/populate",
        json=[{"name": "t", "upstream": "x:1", "toxics": [{"type": "latency", "attributes": {"latency": 50}}]}],
    )
    assert response.status_code == 201
    assert http.get("/proxies/t/toxics").content == (
        b'[{"attributes":{"latency":50,"jitter":0},"name":"latency_downstream",'
        b'"type":"latency","stream":"downstream","toxicity":1}]'
    )
    bad = http.post("/populate", json=[{"name": "u", "upstream": "x:1", "toxics": [{"type": "nope"}]}])
    assert bad.status_code == 400 and bad.json()["error"] == "invalid toxic type at proxy 1 toxic 1"
    assert "u" not in http.get("/proxies").json()


# --------------------------------------------------------------------- toxics


def test_toxic_create_and_index_order(http: httpx.Client) -> None:
    http.post("/proxies", json={"name": "p", "upstream": "x:1"})
    response = http.post("/proxies/p/toxics", json={"type": "latency", "attributes": {"latency": 10}})
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    assert response.content == (
        b'{"attributes":{"latency":10,"jitter":0},"name":"latency_downstream","type":"latency",'
        b'"stream":"downstream","toxicity":1}'
    )
    http.post("/proxies/p/toxics", json={"type": "timeout", "stream": "UpStream", "toxicity": 0.25})
    http.post("/proxies/p/toxics", json={"type": "noop", "name": "n"})
    index = http.get("/proxies/p/toxics")
    assert index.status_code == 200
    assert [t["name"] for t in index.json()] == ["timeout_UpStream", "latency_downstream", "n"]
    assert index.json()[0]["stream"] == "UpStream" and index.json()[0]["toxicity"] == 0.25
    assert_error(http.get("/proxies/zz/toxics"), 404, "proxy not found")


def test_toxic_create_errors_in_order(http: httpx.Client) -> None:
    http.post("/proxies", json={"name": "p", "upstream": "x:1"})
    assert_error(http.post("/proxies/zz/toxics", content=b"garbage"), 404, "proxy not found")
    assert_error(http.post("/proxies/p/toxics", content=b""), 400, "bad request body: EOF")
    assert_error(
        http.post("/proxies/p/toxics", json={"type": "nope", "stream": "sideways"}),
        400,
        "stream was invalid, can be either upstream or downstream",
    )
    assert_error(http.post("/proxies/p/toxics", json={"type": "nope"}), 400, "invalid toxic type")
    assert_error(http.post("/proxies/p/toxics", json={}), 400, "invalid toxic type")
    http.post("/proxies/p/toxics", json={"type": "latency", "name": "dup", "stream": "upstream"})
    assert_error(
        http.post("/proxies/p/toxics", json={"type": "noop", "name": "dup", "stream": "downstream"}),
        409,
        "toxic already exists",
    )
    response = http.post("/proxies/p/toxics", json={"type": "latency", "attributes": {"latency": "slow"}})
    assert response.status_code == 400
    assert json.loads(response.content)["error"].startswith("bad request body: json: cannot unmarshal string")


def test_toxic_validation_is_stricter_than_the_original(http: httpx.Client) -> None:
    http.post("/proxies", json={"name": "p", "upstream": "x:1"})
    assert_error(
        http.post("/proxies/p/toxics", json={"type": "slicer", "attributes": {"average_size": 0}}),
        400,
        "invalid attribute average_size: must be at least 1",
    )
    assert_error(http.post("/proxies/p/toxics", json={"type": "noop", "toxicity": 1.5}), 400, "toxicity must be between 0 and 1")
    assert_error(http.post("/proxies/p/toxics", json={"type": "noop", "toxicity": -0.1}), 400, "toxicity must be between 0 and 1")
    assert http.get("/proxies/p/toxics").json() == []


def test_toxic_show_update_delete(http: httpx.Client) -> None:
    http.post("/proxies", json={"name": "p", "upstream": "x:1"})
    created = http.post(
        "/proxies/p/toxics", json={"type": "latency", "name": "l", "toxicity": 0.5, "attributes": {"latency": 10, "jitter": 2}}
    ).content
    shown = http.get("/proxies/p/toxics/l")
    assert shown.status_code == 200 and shown.content == created
    assert_error(http.get("/proxies/zz/toxics/l"), 404, "proxy not found")
    assert_error(http.get("/proxies/p/toxics/zz"), 404, "toxic not found")

    updated = http.post("/proxies/p/toxics/l", json={"attributes": {"latency": 99}, "name": "ignored", "type": "noop"})
    assert updated.status_code == 200
    assert updated.content == (
        b'{"attributes":{"latency":99,"jitter":2},"name":"l","type":"latency","stream":"downstream","toxicity":0.5}'
    )
    patched = http.patch("/proxies/p/toxics/l", json={"toxicity": 0.1})
    assert patched.json()["toxicity"] == 0.1 and patched.json()["attributes"] == {"latency": 99, "jitter": 2}
    assert_error(http.patch("/proxies/p/toxics/zz", json={}), 404, "toxic not found")
    assert_error(http.patch("/proxies/p/toxics/l", json={"toxicity": 2}), 400, "toxicity must be between 0 and 1")

    deleted = http.delete("/proxies/p/toxics/l")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(http.delete("/proxies/p/toxics/l"), 404, "toxic not found")


# ---------------------------------------------------------- reset, version, metrics


def test_reset(http: httpx.Client, echo: TcpServer) -> None:
    listen = http.post("/proxies", json={"name": "r", "upstream": echo.address}).json()["listen"]
    port = int(listen.rsplit(":", 1)[1])
    client = connect(port)
    client.sendall(b"1")
    assert recv_exactly(client, 1) == b"1"
    http.post("/proxies/r/toxics", json={"type": "latency", "attributes": {"latency": 5}})
    http.post("/proxies", json={"name": "off", "upstream": echo.address, "enabled": False})

    response = http.post("/reset")
    assert response.status_code == 204 and response.content == b""
    proxies = http.get("/proxies").json()
    assert proxies["r"]["toxics"] == [] and proxies["off"]["enabled"] is True
    client.sendall(b"2")  # connection not dropped
    assert recv_exactly(client, 1) == b"2"
    client.close()


def test_version(http: httpx.Client) -> None:
    response = http.get("/version")
    assert response.status_code == 200
    assert response.content == b'{"version": "2.12.0"}\n'
    assert response.headers["content-type"] == "application/json;charset=utf-8"


def test_metrics_count_bytes_live(http: httpx.Client, echo: TcpServer) -> None:
    listen = http.post("/proxies", json={"name": "m", "upstream": echo.address}).json()["listen"]
    client = connect(int(listen.rsplit(":", 1)[1]))
    client.sendall(b"x" * 1000)
    assert recv_exactly(client, 1000) == b"x" * 1000
    response = http.get("/metrics")  # the connection is still open
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    labels = f'listener="{listen}",proxy="m",upstream="{echo.address}"'
    text = response.text
    assert f'toxiproxy_proxy_received_bytes_total{{direction="upstream",{labels}}} 1000' in text
    assert f'toxiproxy_proxy_sent_bytes_total{{direction="downstream",{labels}}} 1000' in text
    client.close()


def test_raw_response_bytes_follow_go(toxiproxy: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", toxiproxy.port), timeout=5) as sock:
        sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\nDELETE /proxies/none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while data := sock.recv(65536):
            raw += data
    first, second = raw.split(b"HTTP/1.1 404", 1)
    head, body = first.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert [line.split(b":")[0] for line in lines[1:]] == [
        b"Content-Type",
        b"X-Toxiproxy-Request-Id",
        b"Date",
        b"Content-Length",
    ]
    assert body == b'{"version": "2.12.0"}\n'
    head, body = second.split(b"\r\n\r\n", 1)
    assert [line.split(b":")[0] for line in head.split(b"\r\n")[1:]] == [
        b"Content-Type",
        b"X-Content-Type-Options",
        b"X-Toxiproxy-Request-Id",
        b"Connection",
        b"Date",
        b"Content-Length",
    ]
    assert body == b'{"error":"proxy not found","status":404}\n'


def test_chunked_body_and_expect_continue(toxiproxy: ServerProcess, api: ToxiproxyClient) -> None:
    body = b'{"name":"c","upstream":"x:1"}'
    with socket.create_connection(("127.0.0.1", toxiproxy.port), timeout=5) as sock:
        sock.sendall(
            b"POST /proxies HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        raw = b""
        while data := sock.recv(65536):
            raw += data
    assert raw.startswith(b"HTTP/1.1 201 Created\r\n")
    assert b'"name":"c"' in raw
