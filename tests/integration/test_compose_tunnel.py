"""The compose driver's tunnel, on real loopback sockets: a host relay, the agent's
side, and a target standing in for a slot's backend proxy (no engine needed)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Awaitable, Callable

import pytest

from replica.drivers.compose import tunnel as tunnel_module
from replica.drivers.compose.tunnel import Tunnel, host_relay, preamble

TOKEN = secrets.token_hex(32)
SLOTS = 4
LIMIT_S = 5.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Stack:
    """A target on 127.0.0.1 (as slot 1's proxy) and the agent's tunnel in front of it."""

    def __init__(self) -> None:
        self.accepted = 0
        self.handler: Handler = self.answer_pong

    async def answer_pong(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Reads to end of file (the client's half-close), then answers and closes."""
        received = await reader.read()
        writer.write(b"pong:" + received)
        await writer.drain()
        writer.close()

    async def _target(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await self.handler(reader, writer)

    async def __aenter__(self) -> "Stack":
        self.target = await asyncio.start_server(self._target, "127.0.0.1", 0, backlog=1024)  # as the fault proxy's listeners
        target_port = self.target.sockets[0].getsockname()[1]
        self.agent = Tunnel(TOKEN, SLOTS, "127.0.0.1", port_base=target_port - 1)  # slot 1 is the target
        self.tunnel = await asyncio.start_server(self.agent.serve, "127.0.0.1", 0, backlog=tunnel_module.MAX_TUNNELS)  # as the agent's
        self.tunnel_address = ("127.0.0.1", self.tunnel.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for server in (self.tunnel, self.target):
            server.close()


def in_stack(body: Callable[[Stack], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Stack() as stack:
            await asyncio.wait_for(body(stack), 4 * LIMIT_S)

    asyncio.run(main())


async def closed_without_data(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), LIMIT_S) == b""
    except ConnectionResetError:
        return True


def test_bytes_and_a_half_close_cross_the_relay_and_the_tunnel_both_ways() -> None:
    async def body(stack: Stack) -> None:
        async with host_relay(stack.tunnel_address, TOKEN, 1) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            writer.write_eof()  # the target answers only once it sees end of file: the half-close got through
            assert await asyncio.wait_for(reader.read(), LIMIT_S) == b"pong:ping"
            writer.close()
        assert stack.accepted == 1

    in_stack(body)


def test_the_target_closing_first_reaches_the_client_as_end_of_file() -> None:
    async def body(stack: Stack) -> None:
        async def greet_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"bye")
            writer.close()

        stack.handler = greet_and_close
        async with host_relay(stack.tunnel_address, TOKEN, 1) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), LIMIT_S) == b"bye"
            writer.close()

    in_stack(body)


@pytest.mark.parametrize(
    "line",
    [
        preamble("not-the-token", 1),
        preamble(TOKEN, SLOTS),  # out of range
        preamble(TOKEN, 10**150),  # a huge number, within the line's limit
        preamble(TOKEN, 1).replace(b"1\n", b"-1\n"),
        f"{TOKEN} one\n".encode(),
        f"{TOKEN}\n".encode(),
        TOKEN.encode() + b" 1" + b" " * 300 + b"\n",  # over the line's limit
        b"x" * 100_000,  # no line at all
    ],
    ids=["token", "slot-range", "huge-slot", "negative", "not-a-number", "no-slot", "too-long", "no-newline"],
)
def test_a_refused_line_closes_the_connection_and_reaches_nothing(line: bytes) -> None:
    async def body(stack: Stack) -> None:
        reader, writer = await asyncio.open_connection(*stack.tunnel_address)
        writer.write(line)
        assert await closed_without_data(reader)
        writer.close()
        assert stack.accepted == 0
        assert stack.agent.carried == 0

    in_stack(body)


def test_a_silent_connection_is_dropped_after_the_preamble_time(monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(stack: Stack) -> None:
        monkeypatch.setattr(tunnel_module, "PREAMBLE_TIMEOUT_S", 0.2)
        reader, writer = await asyncio.open_connection(*stack.tunnel_address)
        assert await closed_without_data(reader)
        writer.close()

    in_stack(body)


def test_a_slot_whose_proxy_is_down_closes_the_connection() -> None:
    async def body(stack: Stack) -> None:
        async with host_relay(stack.tunnel_address, TOKEN, 2) as port:  # slot 2: nothing listens there
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await closed_without_data(reader)
            writer.close()

    in_stack(body)


def test_the_tunnel_carries_a_bounded_number_of_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(stack: Stack) -> None:
        monkeypatch.setattr(tunnel_module, "MAX_TUNNELS", 2)
        held = asyncio.Event()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.set()
            await reader.read()
            writer.close()

        stack.handler = hold
        open_ones = []
        for _ in range(2):
            held.clear()
            reader, writer = await asyncio.open_connection(*stack.tunnel_address)
            writer.write(preamble(TOKEN, 1))
            await asyncio.wait_for(held.wait(), LIMIT_S)
            open_ones.append(writer)
        assert stack.agent.carried == 2
        reader, writer = await asyncio.open_connection(*stack.tunnel_address)
        writer.write(preamble(TOKEN, 1))
        assert await closed_without_data(reader)
        assert stack.accepted == 2
        for w in [*open_ones, writer]:
            w.close()

    in_stack(body)


def test_closing_the_host_relay_cuts_its_connections_and_its_port() -> None:
    async def body(stack: Stack) -> None:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        stack.handler = hold
        async with host_relay(stack.tunnel_address, TOKEN, 1) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hello")
            await writer.drain()
        assert await closed_without_data(reader)
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)

    in_stack(body)


def test_five_hundred_clients_at_once_are_each_carried_and_answered() -> None:
    """500 connections at once through a lane's relay and the tunnel (under its cap of
    1,024): every one reaches the target and gets its own answer, none hangs."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))  # six descriptors a client here

    async def body(stack: Stack) -> None:
        async def one(k: int) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"%d" % k)
            writer.write_eof()
            try:
                return await asyncio.wait_for(reader.read(), LIMIT_S)
            finally:
                writer.close()

        async with host_relay(stack.tunnel_address, TOKEN, 1) as port:
            answers = await asyncio.gather(*(one(k) for k in range(500)))
        assert answers == [b"pong:%d" % k for k in range(500)]
        assert stack.accepted == 500
        assert stack.agent.carried == 0

    in_stack(body)
