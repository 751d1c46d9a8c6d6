"""The fault proxy's API with a bearer token (``TOXIPROXY_TOKEN``): what the harness starts
it with, since its API listens on loopback where any local user could reach it. A real
server process, real HTTP."""

from __future__ import annotations

import secrets
from typing import Iterator

import httpx
import pytest

from faults.toxiproxy.client import ToxiproxyClient, ToxiproxyError
from tests.integration.toxiproxy_support import ServerProcess, start_server

TOKEN = secrets.token_hex(32)


@pytest.fixture(scope="module")
def guarded() -> Iterator[ServerProcess]:
    server = start_server(env={"TOXIPROXY_TOKEN": TOKEN})
    yield server
    log = server.log()
    assert server.stop() == 0
    assert "Traceback" not in log, log


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/proxies", None),
        ("POST", "/proxies", {"name": "x", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"}),
        ("POST", "/populate", []),
        ("POST", "/reset", None),
        ("GET", "/metrics", None),
        ("GET", "/proxies/x/toxics", None),
        ("DELETE", "/proxies/x", None),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Bearer {TOKEN[:-1]}", TOKEN, f"bearer {TOKEN}x"])
def test_every_route_but_version_needs_the_token(
    guarded: ServerProcess, method: str, path: str, body: object, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = httpx.request(method, guarded.url + path, json=body, headers=headers, timeout=5)
    assert response.status_code == 401, response.text
    assert response.json() == {"error": response.json()["error"], "status": 401}
    assert "token" in response.json()["error"]


def test_the_token_opens_every_route_and_nothing_was_done_without_it(guarded: ServerProcess) -> None:
    with ToxiproxyClient(guarded.url, token=TOKEN) as client:
        assert client.proxies() == {}  # the refused requests above created nothing
        proxy = client.create_proxy("guarded", upstream="127.0.0.1:1")
        client.add_toxic("guarded", "latency", attributes={"latency": 5})
        assert [t.type for t in client.toxics("guarded")] == ["latency"]
        client.delete_proxy(proxy.name)
    with ToxiproxyClient(guarded.url) as anonymous, pytest.raises(ToxiproxyError) as refused:
        anonymous.proxies()
    assert refused.value.status == 401


def test_version_stays_open_as_a_readiness_check(guarded: ServerProcess) -> None:
    assert httpx.get(guarded.url + "/version", timeout=5).status_code == 200


def test_without_the_variable_the_api_is_open_as_toxiproxys() -> None:
    server = start_server(env={"TOXIPROXY_TOKEN": ""})
    try:
        with ToxiproxyClient(server.url) as client:
            assert client.proxies() == {}
    finally:
        assert server.stop() == 0
