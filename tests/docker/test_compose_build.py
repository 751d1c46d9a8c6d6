"""A project's image build that fails (``[backend] build``) is refused with the build's
own output, and leaves no container behind: the engine's classic builder keeps the
container of a failed step unless told otherwise (``--force-rm``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from replica.drivers.compose.docker import images_env_file
from replica.drivers.compose.user_image import project_image
from replica.errors import ConfigError
from replica.project import load_project

pytestmark = [pytest.mark.docker]


def exited_containers_of(image: str) -> set[str]:
    out = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", f"ancestor={image}", "--filter", "status=exited"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return set(out.stdout.split())


def test_a_failed_build_is_refused_and_leaves_no_container(images: dict[str, str], tmp_path: Path) -> None:
    base = images["REDIS_IMAGE"]
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(f"FROM {base}\nRUN echo the-step-that-fails && exit 3\n")
    (tmp_path / "replica.toml").write_text(
        '[backend]\napp = "svc:app"\nbuild = "app"\n\n[dependencies.postgres]\n'
    )
    project = load_project(tmp_path / "replica.toml")
    before = exited_containers_of(base)
    with pytest.raises(ConfigError, match="docker build") as refused:
        project_image(project, images_env_file())
    assert "the-step-that-fails" in str(refused.value)
    assert exited_containers_of(base) == before
