"""The typed clients (sync and async) against a live server, and the in-process server."""

from __future__ import annotations

import asyncio

import pytest

from faults.toxiproxy.client import (
    AsyncToxiproxyAPI,
    AsyncToxiproxyClient,
    BadRequest,
    Conflict,
    NotFound,
    ProxyInfo,
    ToxicInfo,
    ToxiproxyClient,
    ToxiproxyError,
    ToxiproxyUnavailable,
)
from faults.toxiproxy.server import ToxiproxyServer
from replica.drivers.fault_api import LaneFaultAPI
from tests.integration.toxiproxy_support import (  # noqa: F401 - fixtures
    TcpServer,
    api,
    connect,
    echo,
    free_port,
    recv_exactly,
    toxiproxy,
)

pytestmark = pytest.mark.slow


def test_sync_client_round_trip(api: ToxiproxyClient, echo: TcpServer) -> None:
    assert api.version() == "2.12.0"
    proxy = api.create_proxy("pg", echo.address)
    assert isinstance(proxy, ProxyInfo) and proxy.enabled and proxy.listen_port > 0
    assert api.get_proxy("pg") == proxy
    assert api.proxies() == {"pg": proxy}

    toxic = api.add_toxic("pg", "latency", attributes={"latency": 5})
    assert toxic == ToxicInfo("latency_downstream", "latency", "downstream", 1.0, {"latency": 5, "jitter": 0})
    updated = api.update_toxic("pg", "latency_downstream", attributes={"jitter": 1}, toxicity=0.5)
    assert updated.attributes == {"latency": 5, "jitter": 1} and updated.toxicity == 0.5
    assert api.toxics("pg") == [updated]
    api.remove_toxic("pg", "latency_downstream")
    assert api.toxics("pg") == []

    down = api.update_proxy("pg", enabled=False)
    assert down.enabled is False
    api.reset()
    assert api.get_proxy("pg").enabled is True

    new_port = free_port()
    moved = api.update_proxy("pg", listen=f"127.0.0.1:{new_port}")
    assert moved.listen_port == new_port
    sock = connect(new_port)
    sock.sendall(b"ok")
    assert recv_exactly(sock, 2) == b"ok"
    sock.close()

    populated = api.populate([{"name": "r", "upstream": echo.address}])
    assert [p.name for p in populated] == ["r"]
    api.delete_proxy("pg")
    assert set(api.proxies()) == {"r"}


def test_sync_client_errors(api: ToxiproxyClient) -> None:
    api.create_proxy("p", "127.0.0.1:1")
    with pytest.raises(Conflict) as conflict:
        api.create_proxy("p", "127.0.0.1:1")
    assert conflict.value.status == 409 and conflict.value.message == "proxy already exists"
    with pytest.raises(NotFound):
        api.get_proxy("missing")
    with pytest.raises(NotFound):
        api.remove_toxic("p", "missing")
    with pytest.raises(BadRequest) as bad:
        api.add_toxic("p", "bogus")
    assert bad.value.message == "invalid toxic type"
    with pytest.raises(ToxiproxyError) as server_error:
        api.create_proxy("q", "127.0.0.1:1", listen="no-port")
    assert server_error.value.status == 500 and "missing port" in server_error.value.message


def test_unavailable_server() -> None:
    with ToxiproxyClient(f"http://127.0.0.1:{free_port()}", timeout=1.0) as client:
        with pytest.raises(ToxiproxyUnavailable):
            client.version()


@pytest.mark.parametrize("client_type", [AsyncToxiproxyClient, LaneFaultAPI], ids=["httpx", "lanes-http1"])
def test_async_client_and_in_process_server(echo: TcpServer, client_type: type[AsyncToxiproxyAPI]) -> None:
    """The async API over either transport: httpx (the public client) or a lane's short exchanges."""

    async def scenario() -> None:
        async with ToxiproxyServer("127.0.0.1", 0, seed=3) as server:
            async with client_type(server.url, timeout=2.0) as client:
                assert await client.version() == "2.12.0"
                proxy = await client.create_proxy("redis", echo.address)
                with pytest.raises(Conflict):
                    await client.create_proxy("redis", echo.address)
                with pytest.raises(BadRequest):
                    await client.add_toxic("redis", "no-such-toxic")
                assert (await client.proxies())["redis"] == proxy
                assert await client.get_proxy("redis") == proxy
                await client.add_toxic("redis", "reset_peer", stream="upstream", name="rst")
                assert [t.name for t in await client.toxics("redis")] == ["rst"]
                toxic = await client.update_toxic("redis", "rst", attributes={"timeout": 10})
                assert toxic.attributes == {"timeout": 10}

                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listen_port)
                writer.write(b"x")
                with pytest.raises(ConnectionResetError):
                    await asyncio.wait_for(reader.read(10), 5)
                writer.close()

                await client.remove_toxic("redis", "rst")
                assert (await client.update_proxy("redis", enabled=False)).enabled is False
                await client.reset()
                assert [p.name for p in await client.populate([{"name": "b", "upstream": echo.address}])] == ["b"]
                await client.delete_proxy("redis")
                with pytest.raises(NotFound):
                    await client.get_proxy("redis")
            port = server.port
        async with client_type(f"http://127.0.0.1:{port}", timeout=1.0) as client:
            with pytest.raises(ToxiproxyUnavailable):
                await client.version()

    asyncio.run(scenario())
