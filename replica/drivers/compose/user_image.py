"""A project's backend under the compose driver: its image, and a container of it per run.

The image is the project's ``[backend] image`` (it must be present: no registry is
asked), or built from ``[backend] build = "DIR"`` (a Dockerfile there; the context is
what ``docker build DIR`` would send, its ``.dockerignore`` applied). A build gets
the stack's images as build arguments (``PYTHON_IMAGE``, ``REPLICA_IMAGE`` from
``.replica/images.env``) and, when ``docker/ca-bundle.crt`` exists, that bundle as
``ca-bundle.crt`` at the root of its context (what pip trusts behind a TLS-inspecting
proxy), as ``scripts/make-images.sh`` does for the project's own images.

Each run gets a container of its own on the stack's network, named so the lane's
``backend`` proxy reaches it by name; its environment is the project's ``env``
rendered against the lane's proxies (at the proxy container's address), handed over in a file
only the harness can read. It listens on :data:`CONTAINER_PORT`, published on
127.0.0.1 only, for the readiness wait, which never goes through a proxy that gets
faults.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Mapping

import httpx

from replica.drivers.base import BackendOutcome
from replica.drivers.compose.docker import PROJECT_LABEL, docker, last_line, read_env_file, repo_root
from replica.errors import ConfigError, InfrastructureError
from replica.polling import wait_until_async
from replica.project import BackendConfig, Endpoint, Project, render, template_values
from replica.tls import client_ssl_context
from replica.user_backend import LOG_TAIL_LINES, import_failure

#: The port a project's backend listens on inside its container (``{port}``).
CONTAINER_PORT = 8000
BUILD_TIMEOUT_S = 900.0
SKIPPED_IN_CONTEXT = {".git", "__pycache__", ".venv", ".pytest_cache", ".mypy_cache"}


def ca_bundle() -> Path | None:
    """The extra CA bundle ``make images`` prepared (git-ignored), if any."""
    path = repo_root() / "docker" / "ca-bundle.crt"
    return path if path.is_file() and path.stat().st_size > 0 else None


def image_tag(project: Project) -> str:
    """The local tag a project's built image gets: one per build directory."""
    directory = (project.root / (project.backend.build or ".")).resolve()
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:10]
    return f"staging-replica/project-{directory.name.lower() or 'root'}:{digest}"


def ignore_patterns(directory: Path) -> list[str]:
    """The directory's ``.dockerignore`` patterns (what ``docker build DIR`` leaves out), plus caches and VCS."""
    ignore_file = directory / ".dockerignore"
    lines = ignore_file.read_text().splitlines() if ignore_file.is_file() else []
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [f"**/{name}" for name in sorted(SKIPPED_IN_CONTEXT)] + patterns


def build_context(directory: Path, ca: Path | None) -> bytes:
    """``directory`` as a tar build context as ``docker build DIR`` would send it, plus ``ca`` as ``ca-bundle.crt``.

    GNU tar format: ``docker build -`` takes a PAX-format stream for a Dockerfile."""
    from docker.utils.build import exclude_paths  # the .dockerignore rules, as Docker applies them

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(exclude_paths(str(directory), ignore_patterns(directory))):
            tar.add(directory / name, arcname=name, recursive=False)
        if ca is not None:
            tar.add(ca, arcname="ca-bundle.crt")
    return buffer.getvalue()


def project_image(project: Project, images_env: Path, progress=lambda _m: None) -> str:
    """The image a project's backend runs from: ``image`` (present), or ``build`` (built now)."""
    backend = project.backend
    if backend.image is not None:
        if docker(["image", "inspect", backend.image], timeout=30).returncode != 0:
            raise project.error("backend.image", f"image {backend.image!r} is not present: build or pull it first")
        return backend.image
    refusal = project.compose_refusal()
    if refusal is not None:
        raise refusal
    tag = image_tag(project)
    stack = read_env_file(images_env)
    args = [f"--build-arg={key}={stack[key]}" for key in ("PYTHON_IMAGE", "REPLICA_IMAGE") if stack.get(key)]
    progress(f"building {tag} from {project.root / backend.build}")
    context = build_context(project.root / backend.build, ca_bundle())
    out = docker(["build", "--force-rm", "--tag", tag, *args, "-"], timeout=BUILD_TIMEOUT_S, stdin=context)
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-15:] or out.stdout.strip().splitlines()[-15:])
        raise project.error("backend.build", f"`docker build` of {backend.build!r} failed:\n{tail}")
    return tag


def container_command(backend: BackendConfig, values: Mapping[str, str]) -> list[str]:
    """What the container runs: the ``command`` rendered, or the ``app`` served by the image's Python."""
    if backend.command is not None:
        return [render(arg, values) for arg in backend.command]
    bind = f"0.0.0.0:{values['port']}"
    if backend.server == "gunicorn":
        return [
            "python", "-m", "gunicorn", "--bind", bind, "--worker-class", "uvicorn.workers.UvicornWorker",
            "--workers", str(backend.workers), "--graceful-timeout", "2", backend.app or "",
        ]
    host, port = bind.split(":")
    return ["python", "-m", "uvicorn", "--host", host, "--port", port, backend.app or ""]


def container_env(backend: BackendConfig, values: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    env = {"PYTHONUNBUFFERED": "1", "TZ": "UTC"}
    env.update({key: render(value, values) for key, value in backend.env.items()})
    env.update(extra)
    bad = [key for key, value in env.items() if "\n" in value]
    if bad:
        raise ConfigError(f"backend.env.{bad[0]}: a value with a line break cannot be passed to a container")
    return env


class ContainerBackend:
    """A lane's backend as a container of the project's image; a :class:`RunningBackend`."""

    def __init__(self, name: str, backend: BackendConfig) -> None:
        self.name = name
        self.backend = backend
        self.started = time.monotonic()
        self.base_url = ""

    @classmethod
    async def start(
        cls,
        *,
        name: str,
        image: str,
        network: str,
        compose_project: str,
        project: Project,
        endpoints: Mapping[str, Endpoint],
        secret: str,
        extra_env: Mapping[str, str],
    ) -> "ContainerBackend":
        values = template_values(endpoints, port=CONTAINER_PORT, secret=secret)
        env = container_env(project.backend, values, extra_env)
        started = cls(name, project.backend)
        with tempfile.TemporaryDirectory(prefix="replica-env-") as tmp:
            env_file = Path(tmp) / "env"
            env_file.touch(mode=0o600)
            env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
            argv = [
                "run", "--detach", "--init", "--name", name, "--network", network,
                "--label", f"{PROJECT_LABEL}={compose_project}", "--env-file", str(env_file),
                "--publish", f"127.0.0.1::{CONTAINER_PORT}", image, *container_command(project.backend, values),
            ]
            out = await asyncio.to_thread(docker, argv, timeout=60)
        if out.returncode != 0:
            await started.stop()
            raise InfrastructureError(f"cannot start the backend container {name}: {last_line(out.stderr)}")
        port = await asyncio.to_thread(docker, ["port", name, str(CONTAINER_PORT)], timeout=30)
        published = [line for line in port.stdout.split() if line.startswith("127.0.0.1:")]
        if not published:
            await started.stop()
            raise InfrastructureError(f"the backend container {name} publishes no port on 127.0.0.1")
        started.base_url = f"http://{published[0]}"
        return started

    async def exit_code(self) -> int | None:
        out = await asyncio.to_thread(
            docker, ["container", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", self.name], timeout=30
        )
        status, _, code = out.stdout.strip().partition(" ")
        if out.returncode != 0 or status in ("exited", "dead"):
            return int(code) if code.lstrip("-").isdigit() else -1
        return None

    async def log(self, n_lines: int = 40) -> str:
        out = await asyncio.to_thread(docker, ["logs", "--tail", str(n_lines), self.name], timeout=30)
        return (out.stdout + out.stderr).strip()

    async def stop(self) -> None:
        try:
            await asyncio.to_thread(docker, ["rm", "--force", "--volumes", self.name], timeout=60)
        except subprocess.TimeoutExpired:
            pass  # the stack's sweep by label removes it at the end

    async def _answers(self, client: httpx.AsyncClient) -> bool:
        response = await client.get(self.base_url + (self.backend.health or "/"))
        return response.is_success or self.backend.health is None

    async def wait_ready(self, timeout: float) -> BackendOutcome:
        """Until it serves (its ``health``, else any HTTP answer), exits, or ``timeout`` runs out."""
        exited: list[int] = []

        async def check() -> bool:
            code = await self.exit_code()
            if code is not None:
                exited.append(code)
                return True
            return await self._answers(client)

        async with httpx.AsyncClient(timeout=httpx.Timeout(1.0), trust_env=False, verify=client_ssl_context()) as client:
            try:
                await wait_until_async(check, timeout, what=f"{self.name} to serve", retry_on=(httpx.HTTPError, OSError))
            except InfrastructureError:
                what = f"GET {self.backend.health} never answered 2xx" if self.backend.health else "it never answered HTTP"
                return BackendOutcome(False, f"{self.name} did not serve within {timeout:g}s ({what})")
        if not exited:
            return BackendOutcome(True, "", round((time.monotonic() - self.started) * 1000, 1))
        tail = await self.log(LOG_TAIL_LINES)
        failure = import_failure(tail) if self.backend.app is not None else None
        detail = (
            f"backend.app {self.backend.app!r} cannot be imported in its image: {failure}"
            if failure
            else f"{self.name} exited with status {exited[0]} at startup; last lines of its log:\n{tail or '(empty)'}"
        )
        return BackendOutcome(False, detail, refused_settings=failure is not None, exit_status=exited[0])


__all__ = ["CONTAINER_PORT", "ContainerBackend", "build_context", "container_command", "ignore_patterns", "image_tag", "project_image"]
