"""A command's side of the warm command process (see :mod:`replica.warm`).

Runs before anything but the standard library is imported: when the running
stack's command server takes the command, this process only waits for its exit
status, forwarding Ctrl-C and SIGTERM meanwhile.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

from replica.state_paths import COMMANDS_SOCKET, state_dir_name
from replica.warm.protocol import (
    FORWARDED_SIGNALS,
    OPT_OUT_ENV,
    REPLY_TIMEOUT_S,
    STREAMS,
    encode_request,
    identity,
)

#: The exit status of a command interrupted before anything ran it.
INTERRUPTED = 130
#: The exit status when the command server went away before the command ended.
LOST = 2


def _request(argv: list[str]) -> dict[str, object]:
    mask = os.umask(0o077)
    os.umask(mask)
    return {
        "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "path": list(sys.path),
        **identity(), "umask": mask,
        "encoding": sys.stdout.encoding or "utf-8", "errors": sys.stdout.errors or "strict",
    }


def _terminal_stops_writers() -> bool:
    """Whether the terminal stops a background process that writes to it (``stty tostop``):
    the fork is not in the terminal's foreground process group, this process is."""
    import termios

    for fd in STREAMS[1:]:
        try:
            if os.isatty(fd) and termios.tcgetattr(fd)[3] & termios.TOSTOP:
                return True
        except termios.error:  # not a terminal after all
            continue
    return False


def _read_answer(sock: socket.socket, buffered: bytearray) -> dict | None:
    """The server's next JSON line, or None once it closed the connection."""
    while b"\n" not in buffered:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buffered += chunk
    line, _, rest = bytes(buffered).partition(b"\n")
    buffered[:] = rest
    answer = json.loads(line)
    return answer if isinstance(answer, dict) else None


def run_warm(argv: list[str]) -> int | None:
    """Run ``replica ARGV`` in the running stack's warm command process and return its
    exit status; None when it cannot take it (none running, refused, opted out with
    ``REPLICA_WARM=0``): the caller then runs the command itself."""
    if os.environ.get(OPT_OUT_ENV) == "0":
        return None
    try:
        for fd in STREAMS:
            os.fstat(fd)
        if _terminal_stops_writers():
            return None
        request = encode_request(_request(argv))
    except OSError:  # a closed standard stream, a working directory that is gone
        return None
    received: list[int] = []
    running: list[socket.socket] = []  # the connection, once a fork runs the command

    def forward(signum: int, frame: object) -> None:
        signum = signal.SIGTERM if signum == signal.SIGHUP else signum
        if running:
            try:
                running[0].send(bytes([signum]))
            except OSError:  # the server is gone: the wait below sees it
                pass
        else:
            received.append(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (*FORWARDED_SIGNALS, signal.SIGHUP)}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(REPLY_TIMEOUT_S)
        buffered = bytearray()
        try:
            sock.connect(os.path.join(state_dir_name(), COMMANDS_SOCKET))
            sent = socket.send_fds(sock, [request], list(STREAMS))
            sock.sendall(request[sent:])
            started = _read_answer(sock, buffered)
        except (OSError, ValueError):  # no server (or a stale socket), or it did not answer
            started = None
        if started is None or not isinstance(started.get("pid"), int):
            if received:  # interrupted before anything ran: nothing to stop
                print("interrupted: nothing was started", file=sys.stderr, flush=True)
                return INTERRUPTED
            return None
        sock.settimeout(None)  # the command takes as long as it takes; signals still reach it
        running.append(sock)
        for signum in received:
            forward(signum, None)
        try:
            ended = _read_answer(sock, buffered)
        except (OSError, ValueError):
            ended = None
        if ended is None or not isinstance(ended.get("exit"), int):
            print(
                "error: the warm command process of the running stack stopped before the command ended "
                f"(check `replica status`; {OPT_OUT_ENV}=0 runs commands in their own process)",
                file=sys.stderr, flush=True,
            )
            return LOST
        return ended["exit"]
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
