"""toxiproxy-python (the PyPI client named by the product card), used as its users do."""

from __future__ import annotations

from typing import Iterator

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from tests.integration.toxiproxy_support import (  # noqa: F401 - fixtures
    ServerProcess,
    TcpServer,
    connect,
    echo,
    recv_exactly,
    toxiproxy,
)

pytestmark = pytest.mark.slow


@pytest.fixture()
def tp(toxiproxy: ServerProcess) -> Iterator[Toxiproxy]:
    saved = (APIConsumer.host, APIConsumer.port)
    server = Toxiproxy()
    server.update_api_consumer("127.0.0.1", toxiproxy.port)
    server.destroy_all()
    yield server
    server.destroy_all()
    APIConsumer.host, APIConsumer.port = saved


def test_server_queries(tp: Toxiproxy) -> None:
    assert tp.running() is True
    assert tp.version() == b'{"version": "2.12.0"}\n'
    assert tp.proxies() == {}


def test_proxy_lifecycle(tp: Toxiproxy, echo: TcpServer) -> None:
    proxy = tp.create(upstream=echo.address, name="echo")
    assert proxy.name == "echo" and proxy.enabled is True
    assert proxy.listen.startswith("127.0.0.1:") and not proxy.listen.endswith(":0")
    with pytest.raises(ProxyExists):
        tp.create(upstream=echo.address, name="echo")
    assert set(tp.proxies()) == {"echo"}
    assert tp.get_proxy("echo").upstream == echo.address

    port = int(proxy.listen.rsplit(":", 1)[1])
    sock = connect(port)
    sock.sendall(b"hi")
    assert recv_exactly(sock, 2) == b"hi"
    sock.close()

    with proxy.down():
        assert tp.get_proxy("echo").enabled is False
        with pytest.raises(ConnectionRefusedError):
            connect(port)
    assert tp.get_proxy("echo").enabled is True

    assert tp.destroy(proxy) is True
    assert tp.get_proxy("echo") is None


def test_toxics(tp: Toxiproxy, echo: TcpServer) -> None:
    proxy = tp.create(upstream=echo.address, name="redis", listen="127.0.0.1:0")
    proxy.add_toxic(type="latency", attributes={"latency": 100, "jitter": 10})
    proxy.add_toxic(type="timeout", stream="upstream", name="hang", toxicity=0.5, attributes={"timeout": 0})
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream", "hang"}
    assert toxics["latency_downstream"].attributes == {"latency": 100, "jitter": 10}
    assert toxics["hang"].stream == "upstream" and toxics["hang"].toxicity == 0.5
    assert proxy.get_toxic("nope") is None

    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="bogus")
    with pytest.raises(ProxyExists):  # 409 from the server: name taken
        proxy.add_toxic(type="noop", name="hang")

    assert proxy.destroy_toxic("hang") is True
    with pytest.raises(NotFound):
        proxy.destroy_toxic("hang")
    assert set(proxy.toxics()) == {"latency_downstream"}

    assert tp.reset() is True
    assert proxy.toxics() == {}


def test_client_side_populate(tp: Toxiproxy, echo: TcpServer) -> None:
    created = tp.populate(
        [
            {"name": "a", "upstream": echo.address, "listen": "127.0.0.1:0"},
            {"name": "b", "upstream": echo.address, "listen": "127.0.0.1:0"},
        ]
    )
    assert [p.name for p in created] == ["a", "b"]
    assert set(tp.proxies()) == {"a", "b"}
