"""Bulk fast path: move bytes kernel-side with splice(2) while a connection has no toxic.

A connection whose links are both direct, that has moved more than
``SPLICE_AFTER`` bytes and just read at least ``BULK_READ`` bytes at once (a
bulk flow) hands its two sockets to a :class:`SpliceRelay` thread:
the transports stop reading, and the thread splices socket → pipe → socket in
both directions, so payload bytes never enter Python. Small, interactive
connections stay on the event loop, where round trips are cheapest and no
relay thread has to wait for the interpreter lock.

The relay ends (and the transports read again) when a toxic is added, when the
proxy closes the connection, or at the first EOF or error, which the transports
then see and handle as usual. Closing sockets is always left to the event loop
after the thread has exited, so a descriptor is never reused under the thread.
Stopping never waits: it sets a flag and wakes the thread through a pipe.
"""

from __future__ import annotations

import fcntl
import os
import select
import threading
from typing import Callable

# FAULTS_TOXIPROXY_SPLICE=0 keeps every byte on the event loop (for comparisons).
AVAILABLE = hasattr(os, "splice") and hasattr(select, "poll") and os.environ.get("FAULTS_TOXIPROXY_SPLICE") != "0"
SPLICE_AFTER = 1 << 20  # bytes a link moves on the event loop before going kernel-side
BULK_READ = 1 << 16  # ... and only when a single read is this large (a bulk flow, not chatter)
CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031
_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 2) | getattr(os, "SPLICE_F_MOVE", 1)


class _Direction:
    __slots__ = ("src", "dst", "pipe_r", "pipe_w", "pending", "moved")

    def __init__(self, src: int, dst: int) -> None:
        self.src = src
        self.dst = dst
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.pipe_w, _F_SETPIPE_SZ, CHUNK)
        except OSError:
            pass
        self.pending = 0
        self.moved = 0

    def close(self) -> None:
        os.close(self.pipe_r)
        os.close(self.pipe_w)


_running: set[SpliceRelay] = set()


def _name_thread(name: bytes) -> None:
    """Name the OS thread (visible in /proc and top) so relays can be observed."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name, 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def running() -> int:
    """How many relays are still running (shutdown waits for zero)."""
    return len(_running)


class SpliceRelay:
    """A thread splicing between two connected, non-blocking sockets until stopped."""

    def __init__(self, client_fd: int, upstream_fd: int, on_exit: Callable[[int, int], None]) -> None:
        """``on_exit(up_bytes, down_bytes)`` runs in the thread when the relay is done;
        the owner then calls :meth:`release` on its own thread."""
        self._client_fd = client_fd
        self._upstream_fd = upstream_fd
        self._on_exit = on_exit
        self._stopping = False
        self._abandon = False
        self._released = False
        self._up_moved = 0
        self._down_moved = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="toxiproxy-splice", daemon=True)

    def start(self) -> None:
        _running.add(self)
        self._thread.start()

    def moved(self) -> tuple[int, int]:
        """Bytes moved so far (upstream, downstream); read live by the metrics."""
        return self._up_moved, self._down_moved

    def stop(self, *, abandon: bool = False) -> None:
        """Ask the thread to hand the sockets back (returns at once).

        With ``abandon`` (the connection is being closed) bytes still in the
        pipes are dropped instead of flushed.
        """
        self._abandon = self._abandon or abandon
        if self._released:
            return
        if not self._stopping or abandon:
            self._stopping = True
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    def release(self) -> None:
        """Close the wake-up pipe; call on the owner's thread once ``on_exit`` was seen.

        Kept open until then so that ``stop`` never writes to a descriptor
        number the process may already have reused.
        """
        if not self._released:
            self._released = True
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _run(self) -> None:
        _name_thread(b"toxiproxy-splic")
        up = _Direction(self._client_fd, self._upstream_fd)
        down = _Direction(self._upstream_fd, self._client_fd)
        try:
            self._relay(up, down)
        finally:
            up.close()
            down.close()
            self._up_moved, self._down_moved = up.moved, down.moved
            _running.discard(self)
            self._on_exit(up.moved, down.moved)

    def _relay(self, up: _Direction, down: _Direction) -> None:
        directions = (up, down)
        finishing = False  # after EOF, an error or stop(): only flush what is in the pipes
        while True:
            for d in directions:
                if d.pending and not self._flush(d):
                    return
            self._up_moved, self._down_moved = up.moved, down.moved
            if self._abandon:
                return
            finishing = finishing or self._stopping
            if finishing and not (up.pending or down.pending):
                return
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            masks = {self._client_fd: 0, self._upstream_fd: 0}
            for d in directions:
                if d.pending:
                    masks[d.dst] |= select.POLLOUT
                elif not finishing:
                    masks[d.src] |= select.POLLIN
            for fd, mask in masks.items():
                if mask:
                    poller.register(fd, mask)
            events = poller.poll()
            if any(fd == self._wake_r for fd, _ in events):
                try:
                    os.read(self._wake_r, 64)  # drained, so a flush wait does not spin
                except OSError:
                    pass
            if any(event & (select.POLLERR | select.POLLNVAL) for fd, event in events if fd != self._wake_r):
                return  # the transports will see the error
            if finishing:
                continue
            ready = {fd for fd, event in events if event & (select.POLLIN | select.POLLHUP)}
            for d in directions:
                if d.pending or d.src not in ready:
                    continue
                try:
                    n = os.splice(d.src, d.pipe_w, CHUNK, flags=_NONBLOCK)
                except BlockingIOError:
                    continue
                except OSError:
                    finishing = True
                    continue
                if n == 0:  # EOF: flush the other way, then let the event loop read it
                    finishing = True
                    continue
                d.pending = n

    @staticmethod
    def _flush(d: _Direction) -> bool:
        """Move the pipe's bytes to the destination; False on a socket error."""
        while d.pending:
            try:
                n = os.splice(d.pipe_r, d.dst, d.pending, flags=_NONBLOCK)
            except BlockingIOError:
                return True
            except OSError:
                return False
            d.pending -= n
            d.moved += n
        return True
