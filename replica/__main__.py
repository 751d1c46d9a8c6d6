"""``replica`` (and ``python -m replica``): the command's first steps, before anything
heavy is imported.

* From its first milliseconds, a Ctrl-C or SIGTERM ends the command with one
  "interrupted:" line and exit 130. While the command's modules load, it is held
  and raised once the command starts: raised inside an import it would leave that
  module half made (and print a traceback, or abort a native extension).
* A command that would use a running stack (``replica up``) is handed to that
  stack's warm command process, which has imported everything already
  (:mod:`replica.warm`); this process only waits for its exit status.
* A command line that will start a local stack starts its fork server at once:
  the fork server imports the servers on the other core while the command loads,
  so the stack is ready sooner. A wrong guess costs only that fork server, which
  is stopped at exit.
* The command ends its process without the interpreter's teardown (:func:`exit_now`).
"""

from __future__ import annotations

import gc
import sys

#: Commands that start a local stack (unless another driver is chosen or ``replica up`` runs one).
STACK_COMMANDS = (("reproduce",), ("validate",), ("up",), ("scenarios", "run"), ("scenarios", "freeze"))


def starts_local_stack(argv: list[str]) -> bool:
    """Whether ``replica ARGV`` will start a local stack, judged from the words alone."""
    if not any(tuple(argv[: len(command)]) == command for command in STACK_COMMANDS):
        return False
    if "--help" in argv or "-h" in argv:
        return False
    for k, arg in enumerate(argv):
        if arg == "--driver":
            return argv[k + 1 : k + 2] == ["local"]
        if arg.startswith("--driver="):
            return arg == "--driver=local"
    return True


def _start_fork_server_early() -> None:
    from replica.state_paths import state_file

    if not state_file().exists():  # else the command may use that running stack
        from replica.drivers.local.forkserver import start_early

        start_early()


def main() -> None:
    from replica.interrupts import hold_interrupts, interrupted

    hold_interrupts()  # until the command starts: no exception cuts into an import
    argv = sys.argv[1:]
    if starts_local_stack(argv) and argv[:1] != ["up"] and not interrupted():
        from replica.warm.client import run_warm

        status = run_warm(argv)  # forwards signals while it waits; puts the held ones back
        if status is not None:
            exit_now(SystemExit(status))
    run_command()


def run_command() -> None:
    """Run the command line in this process (also in a fork of the warm command process)."""
    # A command's imports make tens of thousands of objects that live as long as the process;
    # a young-generation collection every 700 allocations (the default) scans them over and over.
    gc.set_threshold(10_000, 10, 10)
    from replica.lean import skip_unused_imports

    skip_unused_imports()
    from replica.interrupts import announce_interrupt, hold_interrupts, interrupted

    hold_interrupts()
    if starts_local_stack(sys.argv[1:]):
        _start_fork_server_early()
    try:
        from replica.cli import app

        app(prog_name="replica")
    except KeyboardInterrupt:  # after the command, while it exits
        announce_interrupt()
        exit_now(SystemExit(130))
    except SystemExit as exc:
        if exc.code == 130 or interrupted():  # also a Ctrl-C held while no command started (--help)
            announce_interrupt()
            exc = SystemExit(130)
        exit_now(exc)


def exit_now(exc: SystemExit) -> None:
    """End the process with ``exc``'s status without the interpreter's teardown, which
    frees every object the command loaded one by one (0.1-0.2 s after a reproduce).

    The exit handlers still run and the output is flushed first. Only when nothing
    else could be lost: a thread of ours still working gets the normal exit."""
    import atexit
    import os
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.current_thread()):
        raise exc
    code = exc.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    main()
