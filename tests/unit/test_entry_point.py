"""The command's entry point: which command lines start the fork server before the
command has even loaded, and how the command ends its process."""

import subprocess
import sys
import textwrap

import pytest

from replica.__main__ import starts_local_stack


@pytest.mark.parametrize(
    "argv",
    [
        ["reproduce", "1011"],
        ["reproduce", "1011", "--json", "out.json"],
        ["scenarios", "run", "healthy"],
        ["scenarios", "run", "--all", "--driver", "local"],
        ["scenarios", "freeze", "--driver=local"],
        ["validate", "--handler", "recommended"],
        ["up"],
    ],
)
def test_commands_that_start_a_local_stack(argv: list[str]) -> None:
    assert starts_local_stack(argv)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["reproduce", "1011", "--help"],
        ["scenarios", "run", "-h"],
        ["scenarios", "list"],
        ["status"],
        ["down"],
        ["probe"],
        ["diagnose", "--observed", "x.json"],  # a cached diagnosis starts nothing
        ["reproduce", "1011", "--driver", "compose"],
        ["reproduce", "1011", "--driver=auto"],
        ["scenarios", "run", "--driver"],
        ["report", "merge", "a.json"],
        ["run", "scenarios"],
    ],
)
def test_other_command_lines_start_nothing_early(argv: list[str]) -> None:
    assert not starts_local_stack(argv)


def end_with(body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` then ``exit_now(SystemExit(CODE))`` in a fresh interpreter."""
    code = "import atexit, sys, threading\nfrom replica.__main__ import exit_now\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("status", "expected"), [(0, 0), (None, 0), (2, 2), (130, 130)])
def test_exit_now_keeps_the_status_runs_exit_handlers_and_flushes_the_output(status, expected) -> None:
    result = end_with(
        f"""
        atexit.register(lambda: print("exit handler ran", file=sys.stderr))
        sys.stdout.write("unflushed output")
        exit_now(SystemExit({status!r}))
        print("not reached")
        """
    )
    assert result.returncode == expected
    assert result.stdout == "unflushed output"
    assert result.stderr == "exit handler ran\n"


def test_exit_now_prints_a_message_status_and_exits_1() -> None:
    result = end_with('exit_now(SystemExit("error: something"))')
    assert (result.returncode, result.stderr) == (1, "error: something\n")


def test_exit_now_leaves_a_working_thread_to_the_normal_exit() -> None:
    """A non-daemon thread still running is waited for, as a normal exit does."""
    result = end_with(
        """
        release = threading.Event()
        def work():
            release.wait(30)
            print("thread finished its work", flush=True)
        threading.Thread(target=work).start()
        try:
            exit_now(SystemExit(3))
        except SystemExit as exc:
            print(f"normal exit {exc.code}", flush=True)
            release.set()
            raise
        """
    )
    assert result.returncode == 3
    assert result.stdout.split("\n")[:2] == ["normal exit 3", "thread finished its work"]


@pytest.mark.parametrize("argv", [["scenarios", "list"], ["--help"], ["reproduce", "1011", "--no-such-option"]])
def test_an_interrupt_while_the_command_loads_is_held_and_ends_it_with_130(argv: list[str]) -> None:
    """SIGINT lands after the entry point's first step, while the CLI is still to be
    imported: no traceback, nothing of the command runs (Typer may still print the
    help or a usage error it was asked for), one closing line, exit 130."""
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        import replica.__main__ as entry
        def interrupt_now(argv):
            os.kill(os.getpid(), signal.SIGINT)
            return False
        entry.starts_local_stack = interrupt_now
        sys.argv = ["replica", *{argv!r}]
        entry.main()
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == "interrupted: everything this run started has been stopped"
    assert result.stderr.count("interrupted") == 1
    if argv[0] == "scenarios":
        assert result.stdout == ""  # the command did not run
