"""The ``compose`` driver: the stack as containers, backends forked in a lanes container."""

from replica.drivers.compose.docker import PROJECT_LABEL, compose_problem, compose_ready, project_resources, sweep_project
from replica.drivers.compose.driver import ComposeDriver

__all__ = ["PROJECT_LABEL", "ComposeDriver", "compose_problem", "compose_ready", "project_resources", "sweep_project"]
