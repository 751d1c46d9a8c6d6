"""The ``compose`` driver: the stack as containers, backends forked in a lanes container.

Names are loaded on first use: the lanes container runs ``python -m
replica.drivers.compose.agent``, which imports this package first and needs
none of the driver's own modules (the Docker client, httpx, the lane lifecycle).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from replica.drivers.compose.docker import PROJECT_LABEL, compose_problem, compose_ready, project_resources, sweep_project
    from replica.drivers.compose.driver import ComposeDriver

_HOMES = {
    "PROJECT_LABEL": "docker",
    "compose_problem": "docker",
    "compose_ready": "docker",
    "project_resources": "docker",
    "sweep_project": "docker",
    "ComposeDriver": "driver",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
