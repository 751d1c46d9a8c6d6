"""A driver in one file: the local stack, each backend a plain ``python -m replica.backend``
subprocess serving on the socket the lane bound (no fork server).

It says how a backend starts and stops; the lane lifecycle, the hops and the stack
are the local driver's.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from replica.drivers.lanes import BackendPlace, RunningBackend
from replica.drivers.local.driver import LocalDriver, python_env
from replica.drivers.local.process import tail_lines


class SubprocessBackend:
    def __init__(self, popen: subprocess.Popen[bytes], name: str, log_path: str) -> None:
        self.popen = popen
        self.name = name
        self.log_path = log_path

    async def exit_code(self) -> int | None:
        return self.popen.poll()

    async def log(self, n_lines: int = 40) -> str:
        return tail_lines(self.log_path, n_lines)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(3)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self.popen.wait()

    async def stop(self) -> None:
        await asyncio.to_thread(self.kill)


class SubprocessDriver(LocalDriver):
    name = "subprocess"

    async def start_backend(self, env: dict[str, str], place: BackendPlace, name: str) -> RunningBackend:
        fd = place.listener.fileno()
        log_path = self.group.path("logs", f"{name}.log")
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "replica.backend"],
                env=python_env({**env, "REPLICA_FD": str(fd)}),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(fd,), start_new_session=True,
            )
        backend = SubprocessBackend(popen, name, str(log_path))
        self.group.add_cleanup(backend.kill)
        return backend
