"""The warm command process's request: what is accepted, and the stamp that tells
a client's code from the server's."""

from __future__ import annotations

import os

import pytest

from replica.warm.protocol import HEADER, code_stamp, encode_request, parse_request
from replica.warm.server import exit_status

GOOD = {
    "argv": ["scenarios", "run", "healthy"], "cwd": "/tmp", "env": {"HOME": "/root"}, "path": ["/x"],
    "executable": "/usr/bin/python3", "prefix": "/usr", "package": "/x/replica", "code": "1:2",
    "umask": 0o022, "encoding": "utf-8", "errors": "strict",
}


def test_a_request_round_trips():
    data = encode_request(GOOD)
    (length,) = HEADER.unpack_from(data)
    assert length == len(data) - HEADER.size
    assert parse_request(data[HEADER.size:]) == GOOD


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"argv": []}, "argv must name a command"),
        ({"argv": "scenarios"}, "argv must be a list of strings"),
        ({"argv": ["a\0b"]}, "argv must name a command"),
        ({"path": [1]}, "path must be a list of strings"),
        ({"cwd": "tmp"}, "cwd must be absolute"),
        ({"cwd": None}, "cwd must be a string"),
        ({"env": {"": "x"}}, "env"),
        ({"env": {"A": 1}}, "env"),
        ({"env": ["A"]}, "env"),
        ({"umask": True}, "umask"),
        ({"umask": 0o1000}, "umask"),
        ({"code": 12}, "code must be a string"),
    ],
)
def test_a_bad_field_is_named(change, message):
    with pytest.raises(ValueError, match=message):
        parse_request(encode_request({**GOOD, **change})[HEADER.size:])


def test_a_missing_field_is_named():
    with pytest.raises(ValueError, match="missing encoding, umask"):
        parse_request(encode_request({k: v for k, v in GOOD.items() if k not in ("umask", "encoding")})[HEADER.size:])


@pytest.mark.parametrize("payload", [b"", b"\xff", b"[1]", b"null", b"{", b"[" * 100_000])
def test_what_is_not_a_json_object_is_refused(payload):
    with pytest.raises(ValueError):
        parse_request(payload)


def test_the_code_stamp_changes_with_an_edit_a_new_file_or_a_removal(tmp_path):
    package = tmp_path / "replica"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 1\n")
    (package / "__pycache__").mkdir()
    first = code_stamp(str(tmp_path))
    assert first.startswith("2:")
    (package / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"")  # compiled files do not count
    assert code_stamp(str(tmp_path)) == first
    later = os.stat(package / "a.py").st_mtime_ns + 1_000_000
    os.utime(package / "sub" / "b.py", ns=(later, later))
    edited = code_stamp(str(tmp_path))
    assert edited != first
    (package / "c.py").write_text("")
    os.utime(package / "c.py", ns=(0, 0))
    assert code_stamp(str(tmp_path)) != edited
    (package / "c.py").unlink()
    assert code_stamp(str(tmp_path)) == edited


def test_a_command_killed_by_a_signal_exits_as_a_shell_says():
    assert exit_status(0) == 0
    assert exit_status(2 << 8) == 2
    assert exit_status(signal_status := 9) == 128 + signal_status
