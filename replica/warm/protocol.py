"""What the warm command process and its clients say to each other.

A client connects to the state dir's ``commands.sock`` and sends one request: a
4-byte length, then a JSON object (:func:`parse_request` says what it holds), with
its standard input, output and error attached (``SCM_RIGHTS``). The server answers
in JSON lines: ``{"pid": N}`` once a fork runs the command, or ``{"refused": why}``
(the client then runs the command itself); later ``{"exit": status}``. Meanwhile
each byte the client sends is the number of a signal it received, for the command.

Only the standard library: the client side runs before anything else is imported.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys

#: The longest request accepted (command line and environment).
MAX_REQUEST_BYTES = 1 << 20
#: The request's length prefix.
HEADER = struct.Struct("!I")
#: The standard streams travel with the request, in this order.
STREAMS = (0, 1, 2)
#: Signals a client forwards to its command (a hang-up goes as SIGTERM: the command cleans up).
FORWARDED_SIGNALS = frozenset({int(signal.SIGINT), int(signal.SIGTERM)})
#: How long a client may take to send its whole request once connected.
REQUEST_TIMEOUT_S = 5.0
#: How long a client waits for the first answer before it runs the command itself.
REPLY_TIMEOUT_S = 10.0
#: Set to "0" in a client's environment: the command runs in the client's own process.
OPT_OUT_ENV = "REPLICA_WARM"

_STRING_LISTS = ("argv", "path")
_STRINGS = ("cwd", "executable", "prefix", "package", "code", "encoding", "errors")
_MAX_LIST_ITEMS = 10_000


#: The packages whose code a command runs from the server's memory.
PACKAGES = ("replica", "faults")


def identity() -> dict[str, str]:
    """What must be the same in a client and the server: the interpreter, its
    environment (``sys.prefix``: a virtualenv), the ``replica`` package's place and
    its code as it is on disk now (:func:`code_stamp`)."""
    import replica

    package = os.path.dirname(os.path.realpath(replica.__file__))
    return {
        "executable": os.path.realpath(sys.executable),
        "prefix": sys.prefix,
        "package": package,
        "code": code_stamp(os.path.dirname(package)),
    }


def code_stamp(root: str) -> str:
    """The number of ``.py`` files of :data:`PACKAGES` under ``root`` and their latest
    change: any edit, upgrade or removal changes it (about 200 ``stat`` calls)."""
    count, latest = 0, 0
    pending = [os.path.join(root, name) for name in PACKAGES]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        pending.append(entry.path)
                elif entry.name.endswith(".py"):
                    count += 1
                    latest = max(latest, entry.stat().st_mtime_ns)
    return f"{count}:{latest}"


def encode_request(request: dict[str, object]) -> bytes:
    payload = json.dumps(request, separators=(",", ":")).encode()
    return HEADER.pack(len(payload)) + payload


def parse_request(payload: bytes) -> dict:
    """The request in ``payload``, checked field by field; ValueError says what is wrong.

    Fields: ``argv`` (the command line after ``replica``), ``cwd`` (absolute),
    ``env`` (name → value), ``path`` (``sys.path``), ``executable``, ``prefix``,
    ``package`` and ``code`` (the client's interpreter, its ``sys.prefix``, its
    ``replica`` package directory and the stamp of its code, which must be the
    server's: see :func:`identity`), ``umask``, and
    ``encoding``/``errors`` of its output.
    """
    try:
        request = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    except RecursionError:
        raise ValueError("not JSON: nested too deep") from None
    if not isinstance(request, dict):
        raise ValueError("not a JSON object")
    missing = {*_STRING_LISTS, *_STRINGS, "env", "umask"} - request.keys()
    if missing:
        raise ValueError(f"missing {', '.join(sorted(missing))}")
    for name in _STRING_LISTS:
        value = request[name]
        if not isinstance(value, list) or len(value) > _MAX_LIST_ITEMS or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a list of strings")
    for name in _STRINGS:
        if not isinstance(request[name], str) or "\0" in request[name]:
            raise ValueError(f"{name} must be a string")
    env = request["env"]
    if not isinstance(env, dict) or not all(isinstance(v, str) and "\0" not in k + v and "=" not in k and k for k, v in env.items()):
        raise ValueError("env must map names to strings")
    umask = request["umask"]
    if not isinstance(umask, int) or isinstance(umask, bool) or not 0 <= umask <= 0o777:
        raise ValueError("umask must be 0..0o777")
    if not request["cwd"].startswith("/"):
        raise ValueError("cwd must be absolute")
    if not request["argv"] or any("\0" in a for a in request["argv"]):
        raise ValueError("argv must name a command")
    return request


def answer(**fields: object) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode() + b"\n"
