"""Fixtures of the Docker-marked tests: an engine that answers, the images, and
compose stacks that are always torn down.

These tests run only when asked for (``REPLICA_DOCKER_TESTS=1``, see
tests/conftest.py). Once asked for, a missing engine, Compose v2 or image is a
**failure** with the command that fixes it, never a skip.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES_ENV = REPO / ".replica" / "images.env"
COMPOSE_FILE = "docker-compose.yml"
SERVICES = ("toxiproxy", "postgres", "redis", "auth", "backend")
PROJECT_LABEL = "com.docker.compose.project"
PROJECT_PREFIX = "sr-test-"


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """The engine answers and ``docker compose`` is v2; else the test fails, with the fix."""
    if shutil.which("docker") is None:
        pytest.fail("docker tests were requested but the docker client is not installed: run scripts/ensure-docker.sh")
    try:
        info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("docker tests were requested but 'docker info' did not answer within 20 s")
    if info.returncode != 0 or not info.stdout.strip():
        pytest.fail(
            "docker tests were requested but no Docker engine answers "
            f"({(info.stderr or info.stdout).strip().splitlines()[-1:]}): run scripts/ensure-docker.sh as root, "
            "or deselect them (unset REPLICA_DOCKER_TESTS)"
        )
    compose = _run(["docker", "compose", "version", "--short"], timeout=20)
    if compose.returncode != 0:
        pytest.fail("docker tests were requested but 'docker compose' (v2) is missing: run scripts/ensure-docker.sh")


def read_images_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in IMAGES_ENV.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


@pytest.fixture(scope="session")
def images(docker_engine: None) -> dict[str, str]:
    """The image choices written by ``make images``; every image must exist."""
    if not IMAGES_ENV.exists():
        pytest.fail(f"{IMAGES_ENV.relative_to(REPO)} is missing: run `make images` (scripts/make-images.sh) first")
    chosen = read_images_env()
    for key in ("REPLICA_IMAGE", "TOXIPROXY_IMAGE", "POSTGRES_IMAGE", "REDIS_IMAGE"):
        ref = chosen.get(key)
        if not ref:
            pytest.fail(f"{IMAGES_ENV.relative_to(REPO)} has no {key}: run `make images` again")
        if _run(["docker", "image", "inspect", ref], timeout=20).returncode != 0:
            pytest.fail(f"image {ref} ({key}) is not present: run `make images`")
    return chosen


def new_project_name() -> str:
    return PROJECT_PREFIX + uuid.uuid4().hex[:10]


def stack_env(project: str, **extra: str) -> dict[str, str]:
    """Environment of one stack: generated secrets, its own project name, no Ryuk."""
    env = dict(os.environ)
    env.update(
        REPLICA_COMPOSE_PROJECT=project,
        COMPOSE_PROJECT_NAME=project,
        JWT_SECRET=secrets.token_hex(32),
        POSTGRES_PASSWORD=secrets.token_hex(16),
        REDIS_PASSWORD=secrets.token_hex(16),
        TESTCONTAINERS_RYUK_DISABLED="true",
    )
    env.update(extra)
    return env


@contextmanager
def patched_environ(env: dict[str, str]) -> Iterator[None]:
    """testcontainers' DockerCompose passes the process environment to compose."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def project_resources(project: str) -> dict[str, list[str]]:
    """Containers, networks and volumes that carry the project's label."""
    label = f"label={PROJECT_LABEL}={project}"
    found: dict[str, list[str]] = {}
    for kind, argv in (
        ("containers", ["docker", "ps", "-a", "-q", "--filter", label]),
        ("networks", ["docker", "network", "ls", "-q", "--filter", label]),
        ("volumes", ["docker", "volume", "ls", "-q", "--filter", label]),
    ):
        found[kind] = _run(argv, timeout=30).stdout.split()
    return found


def force_remove(project: str) -> None:
    """Last-resort cleanup by label, for a test that failed before its own teardown."""
    res = project_resources(project)
    if res["containers"]:
        _run(["docker", "rm", "-f", "-v", *res["containers"]], timeout=60)
    if res["networks"]:
        _run(["docker", "network", "rm", *res["networks"]], timeout=60)
    if res["volumes"]:
        _run(["docker", "volume", "rm", "-f", *res["volumes"]], timeout=60)


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    compose: object  # testcontainers.compose.DockerCompose
    up_seconds: float

    def host_port(self, service: str, container_port: int) -> int:
        out = _run(
            ["docker", "compose", "--env-file", str(IMAGES_ENV), "port", service, str(container_port)],
            timeout=30,
            env=self.env,
        )
        assert out.returncode == 0, out.stderr
        host, _, port = out.stdout.strip().rpartition(":")
        assert host == "127.0.0.1", f"{service}:{container_port} is published on {host}, not on 127.0.0.1 only"
        return int(port)


@pytest.fixture(scope="module")
def compose_stack(images: dict[str, str]) -> Iterator[Stack]:
    """The whole stack, up and healthy (``up --wait``); torn down in any case."""
    from testcontainers.compose import DockerCompose

    project = new_project_name()
    env = stack_env(project)
    compose = DockerCompose(REPO, compose_file_name=COMPOSE_FILE, env_file=str(IMAGES_ENV), wait=True, build=False)
    with patched_environ(env):
        started = time.monotonic()
        try:
            try:
                compose.start()
            except subprocess.CalledProcessError as exc:
                logs = _run(
                    ["docker", "compose", "--env-file", str(IMAGES_ENV), "logs", "--no-color", "--tail", "30"],
                    timeout=60,
                    env=env,
                ).stdout
                pytest.fail(
                    f"`docker compose up --wait` failed ({exc.returncode}):\n{exc.stderr.decode(errors='replace')}\n{logs}"
                )
            yield Stack(project, env, compose, time.monotonic() - started)
        finally:
            try:
                compose.stop(down=True)
            finally:
                force_remove(project)
