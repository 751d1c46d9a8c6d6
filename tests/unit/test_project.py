"""The project file: strict loading, clear errors, template rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from replica.project import (
    Endpoint,
    ProjectError,
    find_project,
    load_project,
    render,
    template_fields,
    template_values,
)

FULL = """
[backend]
app = "chat.main:app"
path = "."
health = "/health"
failpoints = ["startup.cache", "ws.publish"]
[backend.env]
ENVIRONMENT = "staging"
DATABASE_URL = "{postgres.url}"
BROADCAST_URL = "{redis.url}"
AUTH = "http://{auth.host}:{auth.port}"
JWT_SECRET = "{secret}"

[dependencies.postgres]
[dependencies.redis]
[dependencies.auth]
kind = "http"
app = "authsvc:app"
env = { SECRET = "{secret}", PORT = "{port}", DB = "{postgres.url}" }

[probe]
path = "/ws"
token = "mint"
welcome = { type = "system_message" }
ping = { send = { type = "ping" }, expect = { type = "pong" } }
"""


def write(tmp_path: Path, text: str, name: str = "replica.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ProjectError) as info:
        load_project(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert info.value.exit_code == 2
    return message


def test_the_issue_example_loads_with_kinds_resolved(tmp_path):
    project = load_project(write(tmp_path, FULL))
    assert project.backend.app == "chat.main:app"
    assert project.backend.failpoints == ("startup.cache", "ws.publish")
    assert {n: d.kind for n, d in project.dependencies.items()} == {"postgres": "postgres", "redis": "redis", "auth": "http"}
    assert project.hops == ("postgres", "redis", "auth", "backend")
    assert project.probe.token == "mint"
    assert project.probe.ping is not None and project.probe.ping.expect == {"type": "pong"}
    assert project.backend_path == tmp_path.resolve()
    assert project.dependencies["auth"].config.service().app == "authsvc:app"


def test_a_minimal_command_project_loads_with_defaults(tmp_path):
    project = load_project(write(tmp_path, '[backend]\ncommand = ["./serve", "--port", "{port}"]\n'))
    assert project.backend.command == ("./serve", "--port", "{port}")
    assert project.backend.health is None and project.dependencies == {}
    assert project.probe.path == "/ws" and project.probe.token == "none" and project.probe.welcome is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[backend]\napp = "a:b"\nport = 1\n', r"backend.port: unknown key \(allowed here: app, command, path"),
        ('[backend]\napp = "a:b"\n[probes]\n', r"probes: unknown key \(allowed here: backend, dependencies, probe\)"),
        ('[backend]\napp = "a:b"\n[dependencies.auth]\nkind = "http"\napp = "x:y"\nimage = "z"\n',
         r"dependencies.auth.image: unknown key \(allowed here: app, command, path, health, env, startup_timeout, kind\)"),
        ('[backend]\napp = "a:b"\n[probe.ping]\nsend = {type = "ping"}\nexpect = {type = "pong"}\nevery = 1\n',
         r"probe.ping.every: unknown key \(allowed here: send, expect\)"),
    ],
)
def test_an_unknown_key_is_named_with_the_keys_allowed_there(tmp_path, text, expected):
    assert_match(error_of(tmp_path, text), expected)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ('X = "{pg.url}"', r"backend.env.X: \{pg.url\} names no declared dependency 'pg' \(allowed: \{port\}, \{secret\}, \{redis.url\}"),
        ('X = "{redis.uri}"', r"backend.env.X: unknown template \{redis.uri\} \(allowed: .*\{redis.host\}, \{redis.port\}"),
        ('X = "{fd}"', r"backend.env.X: unknown template \{fd\}"),
        ('X = "{home}"', r"backend.env.X: unknown template \{home\}"),
        ('X = "{redis.url"', r"backend.env.X: '\{redis.url': a lone '\{' \(write \{\{ for a literal brace\)"),
    ],
)
def test_a_bad_template_names_the_key_and_the_templates_allowed(tmp_path, env, expected):
    text = f'[backend]\napp = "a:b"\n[backend.env]\n{env}\n[dependencies.redis]\n'
    assert_match(error_of(tmp_path, text), expected)


def test_an_http_dependency_does_not_reach_itself_through_its_proxy(tmp_path):
    text = '[backend]\napp = "a:b"\n[dependencies.auth]\nkind = "http"\ncommand = ["x", "{auth.port}"]\n'
    assert_match(error_of(tmp_path, text), r"dependencies.auth.command\[1\]: \{auth.port\}: a dependency does not reach itself.*use \{port\}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[backend]\napp = "a:b"\nserver = "hypercorn"\n', r"backend.server = 'hypercorn': Input should be 'uvicorn' or 'gunicorn'"),
        ('[backend]\napp = "chat.main"\n', r'backend.app = \'chat.main\': allowed: a "module:attribute" such as "chat.main:app"'),
        ('[backend]\napp = "a:b"\nhealth = "health"\n', r'backend.health = \'health\': allowed: a URL path starting with "/"'),
        ('[backend]\napp = "a:b"\n[probe]\ntoken = "jwt"\n', r'probe.token = \'jwt\': allowed: "none", "mint" or "env:NAME"'),
        ('[backend]\napp = "a:b"\nworkers = 0\n', r"backend.workers = 0: Input should be greater than or equal to 1"),
        ('[backend]\napp = "a:b"\ncommand = ["x", "{port}"]\n', r"backend: give exactly one of app"),
        ("[backend]\n", r"backend: give exactly one of app"),
        ('[backend]\ncommand = []\n', r"backend.command: .*at least 1 item"),
        ('[backend]\ncommand = ["x", "{port}"]\nserver = "gunicorn"\n', r"backend: server applies to app only"),
        ('[backend]\ncommand = ["./serve"]\n', r"backend.command: the program is told nowhere to listen: put \{port\} \(or \{fd\}\)"),
        ('[backend]\napp = "a:b"\nfailpoints = ["ws publish"]\n', r"backend.failpoints: bad failpoint name 'ws publish' \(use a dotted name such as ws.publish\)"),
        ('[backend]\napp = "a:b"\nfailpoints = ["a", "a"]\n', r"backend.failpoints: a point is declared twice"),
        ('[backend]\napp = "a:b"\nimage = "x"\nbuild = "."\n', r"give image = .* or build = .*, not both"),
        ('[backend]\napp = "a:b"\npath = "nowhere"\n', r"backend.path: 'nowhere' is not a directory"),
        ('[backend]\napp = "a:b"\nbuild = "."\n', r"backend.build: '.' holds no Dockerfile"),
        ("[probe]\n", r"backend: missing \(required\)"),
        ('[backend]\napp = "a:b"\n[dependencies.db]\n', r'dependencies.db: no kind: set kind = "postgres" \| "redis" \| "http"'),
        ('[backend]\napp = "a:b"\n[dependencies.cache]\nkind = "memcached"\n', r"dependencies.cache.kind = 'memcached': Input should be 'postgres', 'redis' or 'http'"),
        ('[backend]\napp = "a:b"\n[dependencies.redis]\napp = "x:y"\n', r"dependencies.redis.app: not allowed for kind 'redis'"),
        ('[backend]\napp = "a:b"\n[dependencies.auth]\nkind = "http"\n', r"dependencies.auth: an http dependency needs exactly one of app"),
        ('[backend]\napp = "a:b"\n[dependencies.auth]\nkind = "http"\ncommand = ["./auth"]\n', r"dependencies.auth.command: the program is told nowhere to listen"),
        ('[backend]\napp = "a:b"\n[dependencies.backend]\nkind = "redis"\n', r"dependencies.backend: 'backend' is reserved"),
        ('[backend]\napp = "a:b"\n[dependencies.Cache]\nkind = "redis"\n', r"dependencies.Cache: a dependency name is lower case"),
        ('[backend]\napp = "a:b"\n[probe.ping]\nsend = {}\nexpect = {type = "pong"}\n', r"probe.ping.send: .*at least 1 item"),
        ("[backend\n", r"not valid TOML"),
    ],
)
def test_a_bad_value_is_named(tmp_path, text, expected):
    assert_match(error_of(tmp_path, text), expected)


def test_a_command_may_be_told_its_port_through_the_env_or_take_a_socket(tmp_path):
    by_env = load_project(write(tmp_path, '[backend]\ncommand = ["./serve"]\nenv = { PORT = "{port}" }\n'))
    assert by_env.backend.env == {"PORT": "{port}"}
    by_fd = load_project(write(tmp_path, '[backend]\ncommand = ["./serve", "--fd", "{fd}"]\n'))
    assert by_fd.backend.command == ("./serve", "--fd", "{fd}")


def test_a_missing_or_unreadable_file(tmp_path):
    with pytest.raises(ProjectError, match=r"no such file \(give --config PATH"):
        load_project(tmp_path / "replica.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ProjectError, match="not UTF-8 text"):
        load_project(tmp_path / "bin.toml")


def test_find_project_prefers_config_then_the_current_directory(tmp_path):
    assert find_project(None, tmp_path) is None
    write(tmp_path, '[backend]\napp = "a:b"\n')
    assert find_project(None, tmp_path).backend.app == "a:b"
    other = tmp_path / "other"
    other.mkdir()
    write(other, '[backend]\napp = "c:d"\n', "custom.toml")
    assert find_project(other / "custom.toml", tmp_path).backend.app == "c:d"
    with pytest.raises(ProjectError):
        find_project(other / "missing.toml", tmp_path)


# ------------------------------------------------------------------ templates


def test_template_fields_and_rendering():
    assert template_fields("postgresql://{postgres.host}:{ postgres.port }/x{{y}}") == ["postgres.host", "postgres.port"]
    values = template_values(
        {"postgres": Endpoint("127.0.0.1", 5433, "postgresql://u:p@127.0.0.1:5433/db")}, port=8123, secret="s3", fd=5
    )
    assert values == {
        "port": "8123", "secret": "s3", "fd": "5", "postgres.url": "postgresql://u:p@127.0.0.1:5433/db",
        "postgres.host": "127.0.0.1", "postgres.port": "5433",
    }
    assert render("{postgres.url}?app={{name}}", values) == "postgresql://u:p@127.0.0.1:5433/db?app={name}"
    assert render("--port={port} --fd {fd} {secret}", values) == "--port=8123 --fd 5 s3"
    assert render("plain", {}) == "plain"
    with pytest.raises(KeyError):
        render("{redis.url}", values)
    with pytest.raises(ValueError, match="a lone '}'"):
        template_fields("x}")


def assert_match(message: str, pattern: str) -> None:
    import re

    assert re.search(pattern, message), f"{pattern!r} not in {message!r}"


def test_a_failpoint_spec_may_arm_only_declared_points(tmp_path):
    project = load_project(write(tmp_path, FULL))
    assert project.check_failpoints("ws.publish=raise(RuntimeError: x); startup.cache=skip") == (
        "ws.publish=raise(RuntimeError: x); startup.cache=skip"
    )
    with pytest.raises(ProjectError) as info:
        project.check_failpoints("ws.publsh=hang")
    message = str(info.value)
    assert message.startswith("--failpoints: ") and "unknown failpoint 'ws.publsh'; did you mean 'ws.publish'?" in message
    assert "(declared: startup.cache, ws.publish)" in message and f"declared in {project.file}: backend.failpoints" in message
    with pytest.raises(ProjectError, match="ws.publish=explode"):
        project.check_failpoints("ws.publish=explode")


def test_the_compose_driver_refuses_http_dependencies_and_a_backend_without_an_image(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    http = load_project(write(tmp_path, FULL.replace('path = "."', 'path = "."\nbuild = "."')))
    assert str(http.compose_refusal()) == (
        f"{tmp_path / 'replica.toml'}: dependencies.auth: the compose driver runs postgres and redis dependencies only: "
        "use --driver local"
    )
    no_image = load_project(write(tmp_path, '[backend]\napp = "chat.main:app"\n[dependencies.postgres]\n'))
    assert "backend: the compose driver runs the backend from an image" in str(no_image.compose_refusal())
    built = load_project(write(tmp_path, '[backend]\napp = "chat.main:app"\nbuild = "."\n[dependencies.postgres]\n'))
    assert built.compose_refusal() is None
