"""Ctrl-C soak: interrupt a replica command at random moments, many times, and
check that each interrupt is clean.

    .venv/bin/python scripts/soak_interrupts.py [--count N] [--seed S] [--max-delay SECONDS] [--from-start [--min-delay SECONDS]] [-- REPLICA ARGS...]

Each round starts ``replica ARGS`` (default ``scenarios run --all``) with its own
state and temp dirs and, a delay drawn from [0, max-delay] (seeded, so a failing
round can be replayed) after the command printed its first line (``--from-start``:
after the process started, to hit it while its modules load), sends SIGINT.
It then requires: exit 130 with one ``interrupted:`` line and no traceback or
asyncio complaint (or a normal exit if the command had already finished), no
process left behind — this script is a child subreaper, so even a process that
detached from the command's tree comes back to it and is counted — and an empty
temp dir. Prints a summary and exits 1 on any bad round.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PR_SET_CHILD_SUBREAPER = 36
NOISE = ("Traceback", "ExceptionGroup", "Task exception was never retrieved", "Exception ignored")
EXIT_TIMEOUT_S = 60


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def children_of_this_process() -> list[int]:
    """Live children of this process (orphans of a round are re-parented here), zombies reaped first."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return []
        if pid == 0:
            break
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.append(int(entry))
    return found


def wait_for_no_children(timeout: float) -> list[int]:
    """Bounded wait for stragglers a round's exit is still reaping; the ones left after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := children_of_this_process()) and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded wait on processes this script does not control
    return left


def first_line(proc: subprocess.Popen[bytes]) -> bytes:
    """What the command printed up to its first line break (bounded wait; empty if it printed nothing)."""
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in seen and (left := deadline - time.monotonic()) > 0:
            if selector.select(timeout=left):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
    return seen


def one_round(args: list[str], delay: float, scratch: Path, from_start: bool = False) -> tuple[bool, str | None]:
    """Whether the command was interrupted (not finished first), and what was wrong (None: clean)."""
    env = dict(os.environ, TMPDIR=str(scratch / "tmp"), REPLICA_STATE_DIR=str(scratch / "state"), REPLICA_RAM_DIR="")
    (scratch / "tmp").mkdir(mode=0o711)
    proc = subprocess.Popen(
        [sys.executable, "-m", "replica", *args], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
    )
    # The delay counts from the command's first line, or (from_start) from the process's start,
    # to hit the command while its modules load.
    first = b"" if from_start else first_line(proc)
    try:
        proc.wait(timeout=delay)
        interrupted = False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        interrupted = True
    try:
        rest, _ = proc.communicate(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return interrupted, f"did not exit within {EXIT_TIMEOUT_S} s of SIGINT"
    output = (first + rest).decode(errors="replace")
    problems = []
    if proc.returncode == 130:
        lines = output.strip().splitlines()
        if not lines or not lines[-1].startswith("interrupted:") or sum(l.startswith("interrupted") for l in lines) != 1:
            problems.append("exit 130 without exactly one closing 'interrupted:' line")
    elif proc.returncode not in (0, 1):
        problems.append(f"exit {proc.returncode}")
    problems += [f"printed {noise!r}" for noise in NOISE if noise in output]
    left = wait_for_no_children(10)
    if left:
        cmdlines = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
                    for pid in left if Path(f"/proc/{pid}/cmdline").exists()]
        problems.append(f"processes left: {cmdlines}")
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)  # a child of this script (re-parented here): not a reused pid
            except ProcessLookupError:
                pass
        wait_for_no_children(10)
    leftover_files = sorted(p.name for p in (scratch / "tmp").iterdir())
    if leftover_files:
        problems.append(f"temp entries left: {leftover_files}")
    if problems:
        return interrupted, "; ".join(problems) + "\n" + "\n".join(output.strip().splitlines()[-12:])
    return interrupted, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1011)
    parser.add_argument("--max-delay", type=float, default=8.0, help="seconds; cover the command's whole run")
    parser.add_argument(
        "--min-delay", type=float, default=0.0,
        help="seconds; with --from-start, skip the interpreter's own start (~20-50 ms), which is Python's, not the command's",
    )
    parser.add_argument("--from-start", action="store_true", help="count the delay from the process's start, not its first line")
    parser.add_argument("command", nargs="*", default=["scenarios", "run", "--all"])
    options = parser.parse_args()
    become_subreaper()
    rng = random.Random(options.seed)
    interrupted = 0
    bad: list[tuple[int, float, str]] = []
    for index in range(options.count):
        delay = round(rng.uniform(options.min_delay, options.max_delay), 3)
        scratch = Path(tempfile.mkdtemp(prefix="replica-soak-"))
        scratch.chmod(0o711)
        try:
            was_interrupted, problem = one_round(options.command, delay, scratch, options.from_start)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        interrupted += was_interrupted
        if problem is not None:
            bad.append((index, delay, problem))
            print(f"round {index} (SIGINT after {delay} s): {problem}", flush=True)
        if (index + 1) % 25 == 0:
            print(f"{index + 1}/{options.count} rounds, {len(bad)} bad", flush=True)
    print(
        f"{options.count - len(bad)}/{options.count} rounds clean, {interrupted} of them interrupted mid-run "
        f"(seed {options.seed}, SIGINT {options.min_delay:g}–{options.max_delay:g} s after "
        f"{'the start' if options.from_start else 'the first line'})"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
