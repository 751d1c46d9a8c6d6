"""A project under the compose driver: its build context, what its container runs, and
the projects it refuses before anything starts."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from replica.drivers.compose.driver import ComposeDriver
from replica.drivers.compose.user_image import (
    CONTAINER_PORT,
    build_context,
    container_command,
    container_env,
    image_tag,
    project_image,
)
from replica.errors import ConfigError
from replica.project import Endpoint, ProjectError, load_project, template_values

REPO = Path(__file__).resolve().parents[2]
CHAT = REPO / "examples" / "chat" / "replica.toml"


def project(tmp_path: Path, backend: str, deps: str = "[dependencies.postgres]\n"):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    file = tmp_path / "replica.toml"
    file.write_text(f"[backend]\n{backend}\n[backend.env]\nDB = \"{{postgres.url}}\"\nPORT = \"{{port}}\"\n{deps}")
    return load_project(file)


def values():
    endpoint = Endpoint(host="toxiproxy", port=20000, url="postgresql://u:p@toxiproxy:20000/db")
    return template_values({"postgres": endpoint}, port=CONTAINER_PORT, secret="s3")


def test_the_build_context_is_the_directory_without_caches_plus_the_ca_bundle(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("x = 1\n")
    (tmp_path / "app" / "__pycache__").mkdir()
    (tmp_path / "app" / "__pycache__" / "main.pyc").write_bytes(b"\0")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    ca = tmp_path.parent / f"{tmp_path.name}-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    with tarfile.open(fileobj=io.BytesIO(build_context(tmp_path, ca))) as tar:
        names = {Path(n).as_posix() for n in tar.getnames()}
        assert tar.extractfile("ca-bundle.crt").read() == ca.read_bytes()
    assert {"Dockerfile", "app/main.py", "ca-bundle.crt"} <= names
    assert not any("__pycache__" in n or ".git" in n for n in names)
    with tarfile.open(fileobj=io.BytesIO(build_context(tmp_path, None))) as tar:
        assert "ca-bundle.crt" not in tar.getnames()


def test_the_build_context_leaves_out_what_dockerignore_names_as_docker_does(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".dockerignore").write_text("# local only\nsecrets/\n*.log\n!keep.log\n**/node_modules\nDockerfile\n")
    for name in ("secrets/key.pem", "debug.log", "keep.log", "web/node_modules/x.js", "web/app.js", "app/main.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    context = build_context(tmp_path, None)
    assert b"@PaxHeader" not in context  # `docker build -` reads a PAX stream as a Dockerfile
    with tarfile.open(fileobj=io.BytesIO(context)) as tar:
        files = {Path(info.name).as_posix() for info in tar.getmembers() if info.isfile()}
    # The Dockerfile is sent even when ignored, as `docker build` sends it.
    assert files == {"Dockerfile", ".dockerignore", "keep.log", "web/app.js", "app/main.py"}


def test_an_app_is_served_on_the_container_port_and_a_command_runs_rendered(tmp_path):
    app = project(tmp_path, 'app = "chat.main:app"\nbuild = "."')
    assert container_command(app.backend, values()) == [
        "python", "-m", "uvicorn", "--host", "0.0.0.0", "--port", str(CONTAINER_PORT), "chat.main:app"
    ]
    gunicorn = project(tmp_path, 'app = "chat.main:app"\nserver = "gunicorn"\nworkers = 2\nbuild = "."')
    assert container_command(gunicorn.backend, values())[:4] == ["python", "-m", "gunicorn", "--bind"]
    assert "0.0.0.0:8000" in container_command(gunicorn.backend, values())
    command = project(tmp_path, 'command = ["./server", "--port", "{port}", "--db", "{postgres.url}"]\nimage = "x:1"')
    assert container_command(command.backend, values()) == [
        "./server", "--port", "8000", "--db", "postgresql://u:p@toxiproxy:20000/db"
    ]


def test_the_env_is_rendered_against_the_lanes_proxies(tmp_path):
    app = project(tmp_path, 'app = "chat.main:app"\nbuild = "."')
    env = container_env(app.backend, values(), {"REPLICA_FAILPOINTS": "ws.publish=raise"})
    assert env["DB"] == "postgresql://u:p@toxiproxy:20000/db"
    assert env["PORT"] == "8000" and env["REPLICA_FAILPOINTS"] == "ws.publish=raise"
    with pytest.raises(ConfigError, match="line break"):
        container_env(app.backend, values(), {"X": "a\nb"})


def test_a_project_without_image_or_build_is_refused_with_what_to_add(tmp_path):
    plain = project(tmp_path, 'app = "chat.main:app"')
    with pytest.raises(ProjectError, match=r'backend: the compose driver runs the backend from an image: add image = "..." or build'):
        project_image(plain, tmp_path / "images.env")


def test_an_http_dependency_is_refused_before_anything_starts(tmp_path):
    deps = '[dependencies.postgres]\n[dependencies.auth]\nkind = "http"\napp = "authsvc:app"\n'
    with_http = project(tmp_path, 'app = "chat.main:app"\nbuild = "."', deps)
    with pytest.raises(ProjectError, match=r"dependencies.auth: the compose driver runs postgres and redis dependencies only"):
        ComposeDriver("sr-unit", project=with_http)


def test_the_example_project_builds_its_own_image_under_a_stable_tag():
    chat = load_project(CHAT)
    assert chat.backend.build == "." and (chat.root / "Dockerfile").is_file()
    assert image_tag(chat) == image_tag(load_project(CHAT))
    assert image_tag(chat).startswith("staging-replica/project-chat:")
