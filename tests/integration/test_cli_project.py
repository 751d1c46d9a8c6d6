"""``replica scenarios list --config``: a project's generic catalog, and a bad project file's exit 2."""

from __future__ import annotations

from tests.integration.cli_support import REPO, run_replica

EXAMPLE = REPO / "examples" / "chat" / "replica.toml"


def test_scenarios_list_shows_the_example_projects_generic_catalog(tmp_path):
    done = run_replica("scenarios", "list", "--config", str(EXAMPLE), state_dir=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in ("healthy", "postgres:down", "redis:hung", "startup.cache:raise", "ws.publish:delay"):
        assert f"│ {name} " in done.stdout
    assert "seed-1011" not in done.stdout
    assert "accepted, no welcome, 1013" in done.stdout  # redis:hung, held to the frozen replica-expect.yaml


def test_a_bad_project_file_exits_2_naming_file_key_and_what_is_allowed(tmp_path):
    bad = tmp_path / "replica.toml"
    bad.write_text('[backend]\napp = "chat.main:app"\n[backend.env]\nDB = "{postgress.url}"\n[dependencies.postgres]\n')
    done = run_replica("scenarios", "list", "--config", str(bad), state_dir=tmp_path, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert f"{bad}: backend.env.DB: {{postgress.url}} names no declared dependency 'postgress'" in message
    assert "{postgres.url}" in message
