"""What the built-in backend declares: its points, where ``skip`` is honoured,
``block(redis)``, and its defects."""

from __future__ import annotations

import pytest

from faults import FailpointError
from replica.backend import injection
from replica.backend.injection import BlockOnRedis, parse_defects, parse_failpoints


def test_the_backend_spec_language_of_the_readme() -> None:
    spec = parse_failpoints(
        "startup.supervisor=skip; startup.thread_service=delay(2s)\nstartup.finalize=hang\n"
        "ws.auth=raise(TypeError: boom); ws.welcome=block(redis); ws.message_loop=block(500ms)"
    )
    assert list(spec.actions) == [
        "startup.supervisor", "startup.thread_service", "startup.finalize", "ws.auth", "ws.welcome", "ws.message_loop",
    ]
    assert str(spec).endswith("ws.welcome=block(redis); ws.message_loop=block(500ms)")


def test_only_declared_points() -> None:
    with pytest.raises(FailpointError) as excinfo:
        parse_failpoints("ws.autth=skip")
    assert str(excinfo.value) == (
        "ws.autth=skip: unknown failpoint 'ws.autth'; did you mean 'ws.auth'? (declared: " + ", ".join(injection.POINTS) + ")"
    )


def test_skip_only_where_the_code_leaves_its_step_out() -> None:
    with pytest.raises(FailpointError) as excinfo:
        parse_failpoints("ws.welcome=skip")
    assert str(excinfo.value) == (
        "ws.welcome=skip: 'skip' is not allowed at ws.welcome (only at startup.supervisor, startup.thread_service)"
    )


def test_block_redis_uses_the_url_given_before_parsing() -> None:
    try:
        injection.use_redis("redis://127.0.0.1:1/0")
        assert parse_failpoints("ws.welcome=block(redis)").get("ws.welcome") == BlockOnRedis("redis://127.0.0.1:1/0")
    finally:
        injection.use_redis(None)
    action = parse_failpoints("ws.welcome=block( redis )").get("ws.welcome")
    with pytest.raises(RuntimeError, match=r"block\(redis\) needs the backend's Redis URL"):
        action.run_sync()


def test_defects() -> None:
    assert parse_defects("") == frozenset()
    assert parse_defects("  ") == frozenset()
    assert parse_defects(" auth-log-json ") == frozenset({"auth-log-json"})
    with pytest.raises(ValueError) as excinfo:
        parse_defects("auth-log-json, auth-log")
    assert str(excinfo.value) == "unknown defect 'auth-log'; did you mean 'auth-log-json'? (known: auth-log-json)"
    with pytest.raises(ValueError, match="empty item in defect list"):
        parse_defects("auth-log-json,,")
