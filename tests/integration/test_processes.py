"""Supervised processes with real children: stop, readiness, teardown, signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import tempfile
import threading
import time
import weakref
from pathlib import Path

import pytest

from replica.drivers.local.forkserver import ForkServer
from replica.drivers.local.group import ProcessGroup
from replica.drivers.local.ports import bind_loopback, free_port
from replica.drivers.local.process import ManagedProcess
from replica.drivers.local.tempdirs import sweep_stale_temp_dirs
from replica.polling import port_is_open, wait_for_http, wait_for_tcp, wait_until
from replica.errors import InfrastructureError
from tests.servers_support import pid_alive, read_line

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable

SLEEPER = "import time; print('ready', flush=True); time.sleep(120)"
# Spawns a grandchild in the same process group and prints its pid.
WITH_GRANDCHILD = textwrap.dedent(
    """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    print("grandchild", child.pid, flush=True)
    time.sleep(120)
    """
)
IGNORES_SIGTERM = textwrap.dedent(
    """
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    time.sleep(120)
    """
)


def _log_has(process: ManagedProcess, text: str) -> bool:
    return text in process.log_tail(50)


def _wait_log(process: ManagedProcess, text: str, timeout: float = 10.0) -> None:
    wait_until(lambda: _log_has(process, text), timeout, process=process, what=f"{text!r} in the log")


def _grandchild_pid(process: ManagedProcess) -> int:
    _wait_log(process, "grandchild ")
    line = next(l for l in process.log_tail(50).splitlines() if l.startswith("grandchild "))
    return int(line.split()[1])


def _wait_gone(pids: set[int], timeout: float = 10.0) -> None:
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout, what=f"processes {sorted(pids)} to be gone")


def test_stop_terminates_the_whole_process_group(tmp_path: Path) -> None:
    proc = ManagedProcess([PY, "-c", WITH_GRANDCHILD], name="parent", log_path=tmp_path / "p.log")
    grandchild = _grandchild_pid(proc)
    assert pid_alive(proc.pid) and pid_alive(grandchild)
    assert os.getpgid(grandchild) == proc.pid == proc.pgid

    code = proc.stop(timeout=5.0)

    assert code == -signal.SIGTERM
    assert proc.returncode == -signal.SIGTERM
    assert not pid_alive(proc.pid)
    _wait_gone({grandchild})
    assert proc.stop() == code  # idempotent


def test_stop_escalates_to_sigkill_within_the_timeout(tmp_path: Path) -> None:
    proc = ManagedProcess([PY, "-c", IGNORES_SIGTERM], name="stubborn", log_path=tmp_path / "s.log")
    _wait_log(proc, "ready")
    started = time.monotonic()
    code = proc.stop(timeout=0.5)
    assert code == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 3.0
    assert not pid_alive(proc.pid)


def test_log_tail_returns_last_lines(tmp_path: Path) -> None:
    script = "for i in range(100): print('line', i)"
    proc = ManagedProcess([PY, "-c", script], name="chatty", log_path=tmp_path / "c.log")
    wait_until(lambda: proc.poll() is not None, 10.0, what="chatty to exit")
    assert proc.log_tail(3).splitlines() == ["line 97", "line 98", "line 99"]
    assert proc.stop() == 0


def test_missing_executable_is_an_infrastructure_error(tmp_path: Path) -> None:
    with pytest.raises(InfrastructureError, match="executable not found: /nonexistent/server"):
        ManagedProcess(["/nonexistent/server"], name="ghost", log_path=tmp_path / "g.log")


def test_wait_until_fails_fast_when_the_process_exits(tmp_path: Path) -> None:
    script = "import sys; print('FATAL: could not bind 127.0.0.1', flush=True); sys.exit(3)"
    proc = ManagedProcess([PY, "-c", script], name="early-exit", log_path=tmp_path / "e.log")
    started = time.monotonic()
    with pytest.raises(InfrastructureError) as info:
        wait_until(lambda: False, 60.0, process=proc, what="early-exit to listen")
    assert time.monotonic() - started < 10.0  # far less than the 60 s timeout
    message = str(info.value)
    assert "early-exit exited with code 3 while waiting for early-exit to listen" in message
    assert "FATAL: could not bind 127.0.0.1" in message
    proc.stop()


def test_readiness_timeout_is_bounded_and_names_what_it_awaited(tmp_path: Path) -> None:
    proc = ManagedProcess([PY, "-c", SLEEPER], name="silent", log_path=tmp_path / "q.log")
    port = free_port()
    started = time.monotonic()
    try:
        with pytest.raises(InfrastructureError) as info:
            wait_for_tcp("127.0.0.1", port, timeout=0.5, process=proc)
        assert 0.5 <= time.monotonic() - started < 3.0
        message = str(info.value)
        assert f"timed out after 0.5s waiting for TCP 127.0.0.1:{port} to accept connections" in message
        assert "silent" in message and "still running" in message
    finally:
        proc.stop()


def test_wait_for_http_and_tcp_against_a_real_server(tmp_path: Path) -> None:
    port = free_port()
    with ProcessGroup() as group:
        server = group.start(
            [PY, "-m", "http.server", "--bind", "127.0.0.1", str(port)], name="http", cwd=tmp_path
        )
        (tmp_path / "hello.txt").write_text("hi")
        wait_for_http(f"http://127.0.0.1:{port}/hello.txt", timeout=10.0, process=server)
        wait_for_http(f"http://127.0.0.1:{port}/missing", status=404, timeout=10.0, process=server)
        wait_for_tcp("127.0.0.1", port, timeout=5.0, process=server)
        assert port_is_open("127.0.0.1", port)
    assert not port_is_open("127.0.0.1", port)


class _Boom(Exception):
    pass


@pytest.mark.parametrize("ending", ["normal", "exception", "keyboard-interrupt"])
def test_group_leaves_nothing_behind(ending: str, tmp_path: Path) -> None:
    port = free_port()
    pids: set[int] = set()
    tmp_dir: Path | None = None
    expected = {"normal": None, "exception": _Boom, "keyboard-interrupt": KeyboardInterrupt}[ending]
    try:
        with ProcessGroup() as group:
            tmp_dir = group.tmp_dir
            assert tmp_dir.is_dir() and tmp_dir.name.startswith("replica-")
            parent = group.start([PY, "-c", WITH_GRANDCHILD], name="parent")
            pids |= {parent.pid, _grandchild_pid(parent)}
            http = group.start([PY, "-m", "http.server", "--bind", "127.0.0.1", str(port)], name="http", cwd=tmp_path)
            pids.add(http.pid)
            wait_for_tcp("127.0.0.1", port, timeout=10.0, process=http)
            assert all(pid_alive(p) for p in pids)
            if ending == "exception":
                raise _Boom()
            if ending == "keyboard-interrupt":
                raise KeyboardInterrupt
    except (_Boom, KeyboardInterrupt) as exc:
        assert expected is not None and isinstance(exc, expected)
    else:
        assert expected is None
    assert tmp_dir is not None and not tmp_dir.exists()
    assert not port_is_open("127.0.0.1", port)
    _wait_gone(pids)


def test_group_stops_its_processes_side_by_side(tmp_path: Path) -> None:
    """Each process is asked to stop before any is waited for: here each one, once
    signalled, exits only after all three were signalled (or says it gave up)."""
    record = tmp_path / "stopping.txt"
    script = textwrap.dedent(
        f"""
        import pathlib, signal, sys, time
        record = pathlib.Path({str(record)!r})
        def stop(signum, frame):
            with record.open("a") as fh:
                fh.write(sys.argv[1] + "\\n")
            deadline = time.monotonic() + 20
            while len(record.read_text().split()) < 3:
                if time.monotonic() > deadline:
                    with record.open("a") as fh:
                        fh.write("gave-up-" + sys.argv[1] + "\\n")
                    sys.exit(1)
                time.sleep(0.01)  # polling a file the other processes write
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(120)
        """
    )
    with ProcessGroup() as group:
        started = [group.start([PY, "-c", script, name], name=name) for name in ("first", "second", "third")]
        for process in started:
            _wait_log(process, "ready")
    assert sorted(record.read_text().split()) == ["first", "second", "third"]
    assert [process.returncode for process in started] == [0, 0, 0]


# A harness that owns a group with two children: one started from the main
# thread, one from a worker thread that has already finished.
HARNESS = textwrap.dedent(
    """
    import json, sys, threading, time
    from replica.drivers.local.group import ProcessGroup
    from replica.interrupts import install_sigterm_handler
    install_sigterm_handler()
    try:
        with ProcessGroup() as group:
            main_child = group.start([sys.executable, "-c", "import time; time.sleep(120)"], name="main")
            box = {}
            worker = threading.Thread(target=lambda: box.update(p=group.start(
                [sys.executable, "-c", "import time; time.sleep(120)"], name="worker")))
            worker.start(); worker.join()
            print(json.dumps({"pids": [main_child.pid, box["p"].pid], "tmp": str(group.tmp_dir)}), flush=True)
            time.sleep(120)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    """
)


def _start_harness() -> tuple[subprocess.Popen[str], list[int], Path]:
    harness = subprocess.Popen(
        [PY, "-c", HARNESS], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    info = json.loads(read_line(harness, 20.0))
    return harness, info["pids"], Path(info["tmp"])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_signal_to_harness_tears_everything_down(sig: int) -> None:
    harness, pids, tmp_dir = _start_harness()
    try:
        assert all(pid_alive(p) for p in pids)  # the worker thread's child outlived its thread
        harness.send_signal(sig)
        assert harness.wait(timeout=15) == 130
        assert read_line(harness, 1.0).strip() == "interrupted"
        assert not tmp_dir.exists()
        _wait_gone(set(pids))
    finally:
        harness.kill()
        harness.wait(timeout=5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_sigkilled_harness_leaves_no_orphans() -> None:
    harness, pids, tmp_dir = _start_harness()
    try:
        assert all(pid_alive(p) for p in pids)
        harness.kill()
        harness.wait(timeout=5)
        _wait_gone(set(pids))
        # The private temp dir outlives a SIGKILL; the next group sweeps it.
        assert tmp_dir.exists()
        assert tmp_dir in sweep_stale_temp_dirs(tmp_dir.parent)
        assert not tmp_dir.exists()
    finally:
        harness.kill()
        harness.wait(timeout=5)


def test_sweep_keeps_dirs_of_live_owners() -> None:
    with ProcessGroup() as group:
        assert group.tmp_dir not in sweep_stale_temp_dirs(group.tmp_dir.parent)
        assert group.tmp_dir.exists()


def test_process_started_from_a_finished_thread_stays_alive(tmp_path: Path) -> None:
    box: dict[str, ManagedProcess] = {}
    thread = threading.Thread(
        target=lambda: box.update(p=ManagedProcess([PY, "-c", SLEEPER], name="t", log_path=tmp_path / "t.log"))
    )
    thread.start()
    thread.join(timeout=10)
    proc = box["p"]
    _wait_log(proc, "ready")
    assert proc.poll() is None
    assert proc.stop() == -signal.SIGTERM


UNCLOSED = textwrap.dedent(
    """
    import json, sys
    from replica.drivers.local.group import ProcessGroup
    group = ProcessGroup()
    child = group.start([sys.executable, "-c", "import time; time.sleep(120)"], name="child")
    print(json.dumps({"pid": child.pid, "tmp": str(group.tmp_dir)}), flush=True)
    sys.stdin.readline()  # exits without closing the group
    """
)


def test_a_group_nobody_closed_is_torn_down_at_exit() -> None:
    harness = subprocess.Popen(
        [PY, "-c", UNCLOSED], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        info = json.loads(read_line(harness, 20.0))
        assert pid_alive(info["pid"])
        assert harness.stdin is not None
        harness.stdin.close()
        assert harness.wait(timeout=15) == 0
        _wait_gone({info["pid"]})
        assert not Path(info["tmp"]).exists()
    finally:
        harness.kill()
        harness.wait(timeout=5)


# The child takes a while to stop; a second signal arrives during teardown.
SLOW_STOP = textwrap.dedent(
    """
    import json, sys, textwrap
    from replica.drivers.local.group import ProcessGroup
    from replica.interrupts import install_sigterm_handler
    from replica.polling import wait_until
    record = sys.argv[1]
    child_code = textwrap.dedent('''
        import signal, sys, time
        def stop(signum, frame):
            open(sys.argv[1], "a").write("stopping\\\\n")
            time.sleep(1.5)  # a slow, orderly shutdown
            open(sys.argv[1], "a").write("stopped\\\\n")
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(120)
    ''')
    install_sigterm_handler()
    try:
        with ProcessGroup() as group:
            child = group.start([sys.executable, "-c", child_code, record], name="slow")
            wait_until(lambda: "ready" in child.log_tail(), 10.0, process=child, what="the child's handler")
            print(json.dumps({"pid": child.pid, "tmp": str(group.tmp_dir)}), flush=True)
            sys.stdin.readline()
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


def test_ctrl_c_during_teardown_does_not_cut_it_short(tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    harness = subprocess.Popen(
        [PY, "-c", SLOW_STOP, str(record)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        info = json.loads(read_line(harness, 20.0))
        harness.send_signal(signal.SIGTERM)  # teardown begins
        wait_until(lambda: record.exists() and "stopping" in record.read_text(), 10.0,
                   what="the child to start stopping")
        harness.send_signal(signal.SIGINT)  # Ctrl-C while the child is still stopping
        assert harness.wait(timeout=15) == 130
        assert record.read_text().split() == ["stopping", "stopped"]
        assert not pid_alive(info["pid"])
        assert not Path(info["tmp"]).exists()
    finally:
        harness.kill()
        harness.wait(timeout=5)


def _open(kind: str) -> int:
    """How many descriptors of ``kind`` (``pipe``, ``socket``) this process holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(f"{kind}:")
        except OSError:  # the fd listdir itself used
            pass
    return count


def _pipes() -> int:
    return _open("pipe")


def test_a_stopped_fork_frees_its_pipes_and_its_place_in_the_group() -> None:
    forks = ForkServer()
    with ProcessGroup() as group:
        group.add_cleanup(forks.close)
        forked = []
        for name in ("first", "second"):
            with bind_loopback() as listener:
                url = f"http://127.0.0.1:{listener.getsockname()[1]}"
                fork = forks.start(
                    "replica.auth.__main__:main", {**os.environ, "JWT_SECRET": "s" * 32}, group.path("logs", f"{name}.log"),
                    name, listener=listener, fd_env="AUTH_FD",
                )
            group.add_cleanup(fork.kill)
            wait_for_http(f"{url}/health", timeout=30, process=fork, what=f"the {name} fork")
            forked.append(fork)
        first, second = forked
        pipes = _pipes()
        assert first.kill() is not None
        assert first.finished and first.poll() is not None and first.returncode == first.poll()
        assert _pipes() < pipes, "the stopped fork still holds its pipes"
        assert first.kill() == first.poll()  # idempotent once closed
        stopped = weakref.ref(first)
        del first, fork, forked
        group.add_cleanup(lambda: None)  # a registration drops what has finished
        gc.collect()
        assert stopped() is None, "the group still holds a stopped fork"
        assert not second.finished and second.poll() is None
    assert second.finished and second.poll() is not None  # a running fork was still stopped at teardown


def test_closing_the_fork_server_lets_a_start_in_flight_finish_and_refuses_later_ones(capfd) -> None:
    """A lane cancelled by Ctrl-C may leave a start running on a worker thread while the
    stack closes the fork server: the start finishes or is refused, the fork server never
    dies mid-request (printing a traceback) and is not launched again afterwards."""
    import multiprocessing.forkserver

    forks = ForkServer()
    env = {**os.environ, "JWT_SECRET": "s" * 32}
    with ProcessGroup() as group:
        forks.warm()
        outcomes: list[object] = []

        def start() -> None:
            try:
                with bind_loopback() as listener:
                    outcomes.append(forks.start(
                        "replica.auth.__main__:main", env, group.path("logs", "racing.log"), "racing",
                        listener=listener, fd_env="AUTH_FD",
                    ))
            except InfrastructureError as exc:
                outcomes.append(exc)

        racing = threading.Thread(target=start)
        racing.start()
        forks.close()
        racing.join(timeout=60)
        assert not racing.is_alive()
        [outcome] = outcomes
        if isinstance(outcome, InfrastructureError):
            assert "fork server is stopped" in str(outcome)
        else:
            outcome.kill()  # it started before the close: the close waited for it
        with bind_loopback() as listener, pytest.raises(InfrastructureError, match="fork server is stopped"):
            forks.start("replica.auth.__main__:main", env, group.path("logs", "late.log"), "late", listener=listener, fd_env="AUTH_FD")
    assert multiprocessing.forkserver._forkserver._forkserver_pid is None
    assert "Traceback" not in capfd.readouterr().err


def test_a_start_whose_caller_is_cancelled_and_closes_its_listener_leaves_the_fork_server_working(capfd) -> None:
    """Ctrl-C cancels a lane while its backend is being forked on a worker thread, and
    the lane's teardown closes its listener at once: the fork server must not see that."""

    forks = ForkServer()
    env = {**os.environ, "JWT_SECRET": "s" * 32}
    with ProcessGroup() as group:
        group.add_cleanup(forks.close)
        forks.warm()

        async def cancelled_starts() -> None:
            for index in range(20):
                listener = bind_loopback()
                starting = asyncio.ensure_future(forks.start_async(
                    "replica.auth.__main__:main", env, group.path("logs", f"cancelled-{index}.log"), f"cancelled-{index}",
                    listener=listener, fd_env="AUTH_FD",
                ))
                await asyncio.sleep(0)  # let it reach the worker thread, then give up on it
                starting.cancel()
                listener.close()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting

        asyncio.run(cancelled_starts())
        with bind_loopback() as listener:
            url = f"http://127.0.0.1:{listener.getsockname()[1]}"
            after = forks.start("replica.auth.__main__:main", env, group.path("logs", "after.log"), "after",
                                listener=listener, fd_env="AUTH_FD")
        group.add_cleanup(after.kill)
        wait_for_http(f"{url}/health", timeout=30, process=after, what="a fork after the cancelled ones")
    assert "Traceback" not in capfd.readouterr().err


def test_a_fork_signals_once_it_serves_and_once_it_is_gone() -> None:
    """The readiness socket: a byte when the backend serves (it answers at once, no retry),
    end of file when a fork exits without serving; a stopped fork closes its end."""
    forks = ForkServer()
    with ProcessGroup() as group, bind_loopback() as nowhere:  # dependencies that refuse (background startup ignores them)
        group.add_cleanup(forks.close)
        unreachable = f"127.0.0.1:{nowhere.getsockname()[1]}"
        env = {
            **os.environ, "REPLICA_STARTUP_MODE": "background", "REPLICA_AUTH_URL": f"http://{unreachable}",
            "REPLICA_DATABASE_URL": f"postgresql://u:p@{unreachable}/d", "REPLICA_REDIS_URL": f"redis://{unreachable}/0",
        }
        started = []
        for name, extra in (("serves", {}), ("refuses", {"REPLICA_HANDLER": "no_such_module_here:endpoint"})):
            with bind_loopback() as listener:
                port = listener.getsockname()[1]
                fork = forks.start(
                    "replica.backend.__main__:main", {**env, **extra}, group.path("logs", f"{name}.log"), name,
                    listener=listener, fd_env="REPLICA_FD",
                )
            group.add_cleanup(fork.kill)
            started.append((fork, port))
        (serves, port), (refuses, _port) = started
        asyncio.run(asyncio.wait_for(serves.signalled(), 30))
        assert port_is_open("127.0.0.1", port), "signalled before it served"
        assert serves.poll() is None
        asyncio.run(asyncio.wait_for(refuses.signalled(), 30))  # its exit ends the wait
        wait_until(lambda: refuses.poll() is not None, 10, what="the refusing fork to be reaped")
        assert refuses.poll() == 2
        sockets = _open("socket")
        assert serves.kill() is not None and refuses.kill() == 2
        assert _open("socket") == sockets - 2, "a stopped fork kept its readiness socket"


def _blocked_signals(status: str) -> int:
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), 16)


def test_the_forking_thread_leaves_ctrl_c_to_the_main_thread_and_its_children_get_signals() -> None:
    """The kernel hands a process's SIGINT to any thread that does not block it: the
    forking thread blocks it (so it reaches the main thread), its children do not."""
    harness_signals = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    with ProcessGroup() as group:
        box: dict[str, ManagedProcess] = {}
        worker = threading.Thread(target=lambda: box.update(p=group.start([PY, "-c", SLEEPER], name="from-a-thread")))
        worker.start()
        worker.join()
        from replica.drivers.local.process import _FORKING_THREAD

        forking = _FORKING_THREAD._thread
        assert forking is not None and forking.is_alive()
        assert _blocked_signals(Path(f"/proc/self/task/{forking.native_id}/status").read_text()) & harness_signals == harness_signals
        assert _blocked_signals(Path(f"/proc/self/task/{threading.main_thread().native_id}/status").read_text()) & harness_signals == 0
        assert _blocked_signals(Path(f"/proc/{box['p'].pid}/status").read_text()) & harness_signals == 0


# A harness whose fork server runs a fork; it exits at once (``exit``) or waits to be killed.
FORKING_HARNESS = textwrap.dedent(
    """
    import json, multiprocessing.util, os, sys, time
    from replica.drivers.local.forkserver import ForkServer
    from replica.drivers.local.ports import bind_loopback
    forks = ForkServer()
    forks.warm()
    with bind_loopback() as listener:
        fork = forks.start("replica.auth.__main__:main", {**os.environ, "JWT_SECRET": "s" * 32},
                           __import__("pathlib").Path(sys.argv[2]), "auth", listener=listener, fd_env="AUTH_FD")
    print(json.dumps({"mp_dir": multiprocessing.util.get_temp_dir(), "pid": fork.pid}), flush=True)
    if sys.argv[1] == "exit":
        fork.kill()
        forks.close()
    else:
        time.sleep(120)
    """
)


@pytest.mark.parametrize("ending", ["exit", "SIGKILL"])
def test_the_fork_servers_scratch_dir_is_owned_and_never_left_behind(ending: str, tmp_path: Path) -> None:
    """multiprocessing's own ``pymp-*`` dir outlives a SIGKILLed harness for good; ours is a
    ``replica-*`` dir with an owner, removed at exit or by the next sweep."""
    before = set(Path(tempfile.gettempdir()).glob("pymp-*"))
    harness = subprocess.Popen(
        [PY, "-c", FORKING_HARNESS, ending, str(tmp_path / "auth.log")], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        info = json.loads(read_line(harness, 30.0))
        mp_dir = Path(info["mp_dir"])
        assert mp_dir.name.startswith("replica-mp-") and mp_dir.is_dir()
        if ending == "exit":
            assert harness.wait(timeout=15) == 0
            assert not mp_dir.exists()
        else:
            harness.kill()
            harness.wait(timeout=5)
            _wait_gone({info["pid"]})
            assert mp_dir in sweep_stale_temp_dirs(mp_dir.parent)
            assert not mp_dir.exists()
        assert set(Path(tempfile.gettempdir()).glob("pymp-*")) <= before
    finally:
        harness.kill()
        harness.wait(timeout=5)
