"""The ``docker`` commands the compose driver runs, and what it checks before it starts.

Every command runs in a session of its own (a Ctrl-C in the terminal reaches only
the harness, which then tears down in order) and is bounded in time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
DOCKER_TIMEOUT_S = 60.0


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def compose_file() -> Path:
    return Path(os.environ.get("REPLICA_COMPOSE_FILE") or repo_root() / "docker-compose.yml")


def images_env_file() -> Path:
    return Path(os.environ.get("REPLICA_IMAGES_ENV") or compose_file().parent / ".replica" / "images.env")


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def docker(
    args: Sequence[str],
    *,
    timeout: float = DOCKER_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS`` (``stdin``: bytes it reads, e.g. a build context), bounded; on
    timeout or interrupt the command is stopped, then the exception propagates."""
    proc = subprocess.Popen(
        ["docker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out_bytes, err_bytes = proc.communicate(stdin, timeout=timeout)
    except BaseException:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    out, err = (b.decode("utf-8", "replace") for b in (out_bytes, err_bytes))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def missing_files() -> str | None:
    """What the compose driver needs on this machine and cannot find (the docker
    client, the compose file, the images file), or None; asks no engine."""
    if shutil.which("docker") is None:
        return "the docker client is not installed (scripts/ensure-docker.sh)"
    if not compose_file().exists():
        return f"{compose_file()} is missing"
    if not images_env_file().exists():
        return f"{images_env_file()} is missing: run `make images`"
    return None


def compose_problem() -> str | None:
    """Why the compose driver cannot run here, or None when it can."""
    missing = missing_files()
    if missing:
        return missing
    try:
        if docker(["info", "--format", "{{.ServerVersion}}"], timeout=10).returncode != 0:
            return "no Docker engine answers (scripts/ensure-docker.sh starts one)"
        if docker(["compose", "version", "--short"], timeout=10).returncode != 0:
            return "'docker compose' (v2) is missing (scripts/ensure-docker.sh installs it)"
    except subprocess.TimeoutExpired:
        return "the Docker engine does not answer within 10 s"
    images = read_env_file(images_env_file())
    keys = ("REPLICA_IMAGE", "TOXIPROXY_IMAGE", "POSTGRES_IMAGE", "REDIS_IMAGE")
    unnamed = [key for key in keys if not images.get(key)]
    if unnamed:
        return f"{images_env_file()} names no {unnamed[0]}: run `make images`"
    refs = [images[key] for key in keys]
    if docker(["image", "inspect", "--format", "{{.Id}}", *refs], timeout=20).returncode != 0:
        absent = [ref for ref in refs if docker(["image", "inspect", ref], timeout=20).returncode != 0]
        return f"image {absent[0] if absent else refs[0]} is not present: run `make images`"
    return None


def compose_ready() -> bool:
    """Whether an engine, Compose v2 and the project's images are all there."""
    return compose_problem() is None


def project_resources(project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes that carry the project's label."""
    label = f"label={PROJECT_LABEL}={project}"
    listings = {
        "containers": ["ps", "--all", "--quiet", "--filter", label],
        "networks": ["network", "ls", "--quiet", "--filter", label],
        "volumes": ["volume", "ls", "--quiet", "--filter", label],
    }

    def listed(argv: list[str]) -> list[str]:
        try:
            return docker(argv, timeout=30).stdout.split()
        except subprocess.TimeoutExpired:
            return []

    with ThreadPoolExecutor(len(listings)) as pool:  # three independent questions, asked at once
        found = dict(zip(listings, pool.map(listed, listings.values())))
    return found


@dataclass(frozen=True)
class StackContainer:
    """A running container of a compose project, as the engine reports it."""

    service: str
    #: Its address on the project's network.
    ip: str
    #: Container port → host port, for the ports published on 127.0.0.1.
    published: dict[int, int] = field(default_factory=dict)


def stack_containers(inspected: list[dict[str, Any]], network: str) -> dict[str, StackContainer]:
    """Service → container, from ``docker inspect`` output (containers not on ``network`` are
    left out). A container in another's network namespace (``network_mode: service:…``) has
    that container's address and published ports."""
    found: dict[str, StackContainer] = {}
    by_id: dict[str, StackContainer] = {}
    for container in inspected:
        settings = container.get("NetworkSettings") or {}
        ip = ((settings.get("Networks") or {}).get(network) or {}).get("IPAddress")
        if not ip:
            continue
        published = {
            int(port.split("/")[0]): int(binding["HostPort"])
            for port, bindings in (settings.get("Ports") or {}).items()
            if port.endswith("/tcp")
            for binding in bindings or []
            if binding.get("HostIp") == "127.0.0.1" and binding.get("HostPort")
        }
        service = _service(container)
        found[service] = by_id[container.get("Id", "")] = StackContainer(service, ip, published)
    for container in inspected:
        mode = (container.get("HostConfig") or {}).get("NetworkMode") or ""
        owner = by_id.get(mode.removeprefix("container:")) if mode.startswith("container:") else None
        if owner is not None:
            found[_service(container)] = StackContainer(_service(container), owner.ip, owner.published)
    return found


def _service(container: dict[str, Any]) -> str:
    return (container.get("Config") or {}).get("Labels", {}).get(SERVICE_LABEL, "")


def running_containers(project: str) -> dict[str, StackContainer]:
    """The running containers of ``project`` by service (two engine questions, no compose CLI)."""
    ids = docker(["ps", "--quiet", "--filter", f"label={PROJECT_LABEL}={project}"], timeout=30).stdout.split()
    if not ids:
        return {}
    out = docker(["inspect", *ids], timeout=30)
    return stack_containers(json.loads(out.stdout or "[]"), f"{project}_default") if out.returncode == 0 else {}


def exited_services(project: str) -> list[str]:
    """The compose services of ``project`` whose container has exited."""
    out = docker(
        ["ps", "--all", "--filter", f"label={PROJECT_LABEL}={project}", "--filter", "status=exited",
         "--format", '{{.Label "' + SERVICE_LABEL + '"}}'],
        timeout=30,
    )
    return out.stdout.split() if out.returncode == 0 else []


def sweep_project(project: str) -> dict[str, list[str]]:
    """Remove whatever of the project is still there (after ``down``); returns it."""
    left = project_resources(project)
    try:
        if left["containers"]:
            docker(["rm", "--force", "--volumes", *left["containers"]], timeout=60)
        if left["networks"]:
            docker(["network", "rm", *left["networks"]], timeout=60)
        if left["volumes"]:
            docker(["volume", "rm", "--force", *left["volumes"]], timeout=60)
    except subprocess.TimeoutExpired:
        pass
    return left
