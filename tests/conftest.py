"""Suite-wide options: Docker-marked tests run only when asked for.

``REPLICA_DOCKER_TESTS=1`` selects them; then a missing engine is a failure,
never a skip. Without it they are deselected, and the summary says so.
"""

from __future__ import annotations

import os

import pytest


def docker_tests_requested() -> bool:
    return os.environ.get("REPLICA_DOCKER_TESTS", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if docker_tests_requested():
        return
    deselected = [item for item in items if item.get_closest_marker("docker")]
    if deselected:
        items[:] = [item for item in items if not item.get_closest_marker("docker")]
        config.hook.pytest_deselected(items=deselected)
        config._replica_docker_deselected = len(deselected)  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    count = getattr(config, "_replica_docker_deselected", 0)
    if count:
        terminalreporter.write_line(
            f"{count} docker tests not run: set REPLICA_DOCKER_TESTS=1 (needs a Docker engine and `make images`)"
        )
