"""A lane slot's fixed port in the lanes container (``bind_when_free``): a killed backend's
process group may hold it a moment after its leader is reaped (a gunicorn worker exits
just after its master), so the next start on that slot waits for it, bounded, instead of
failing with "address already in use". Real sockets held by a real process; no engine."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest

from replica.drivers.compose.agent import bind_when_free
from replica.errors import InfrastructureError

HOLD = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 0)); s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()  # holds the port until its stdin closes
"""


def holder() -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def test_a_start_waits_for_the_port_its_last_holder_lets_go_of() -> None:
    process, port = holder()
    try:
        with pytest.raises(OSError):  # what a start without the wait met
            socket.create_server(("0.0.0.0", port), reuse_port=False).close()

        async def main() -> socket.socket:
            waiting = asyncio.ensure_future(bind_when_free(port, 10))
            await asyncio.sleep(0)  # the first try has failed: the port is still held
            assert not waiting.done()
            process.stdin.close()  # the holder exits, as a backend's last worker does
            return await waiting

        with asyncio.run(main()) as bound:
            assert bound.getsockname()[1] == port
    finally:
        process.kill()
        process.wait()


def test_a_port_that_stays_held_is_an_error_after_the_wait() -> None:
    process, port = holder()
    try:
        with pytest.raises(InfrastructureError, match=f"port {port} to be free"):
            asyncio.run(bind_when_free(port, 0.3))
    finally:
        process.kill()
        process.wait()
