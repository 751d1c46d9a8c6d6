"""A user's project file, ``replica.toml``: their backend, its dependencies, its probe.

Loading is strict: an unknown key, a bad value, a template that names a dependency
that is not declared, or a backend that is told nowhere to listen is a
:class:`ProjectError` naming the file, the key and what is allowed (exit code 2).
Everything here is pure: reading the file is the only I/O.

Templates in ``env`` values and ``command`` items::

    {NAME.url} {NAME.host} {NAME.port}   a dependency, as the backend reaches it (its proxy)
    {port}                               the port this process listens on
    {fd}                                 a listening socket handed over (commands only)
    {secret}                             the run's secret (the probe's ``mint`` tokens are signed with it)
    {{ }}                                literal braces
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from faults import FailpointError, parse_spec
from faults.spec import check_point
from replica import PROJECT_FILE
from replica.errors import ConfigError

DEPENDENCY_KINDS = ("postgres", "redis", "http")
#: Names that give a dependency its kind without ``kind =``.
KIND_FROM_NAME = {"postgres": "postgres", "redis": "redis"}
ENDPOINT_FIELDS = ("url", "host", "port")
#: Hop names the harness uses itself; a dependency cannot take them.
RESERVED_NAMES = ("backend",)

_NAME = r"^[a-z][a-z0-9_-]*$"
_APP = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
_PATH = r"^/"
_TOKEN = r"^(none|mint|env:[A-Za-z_][A-Za-z0-9_]*)$"
#: What each pattern allows, in words, for error messages.
_PATTERN_WORDS = {
    _APP: 'a "module:attribute" such as "chat.main:app"',
    _PATH: 'a URL path starting with "/"',
    _TOKEN: '"none", "mint" or "env:NAME"',
}
_TEMPLATE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class ProjectError(ConfigError):
    """A project file that cannot be used; the message names file, key and what is allowed."""


# ------------------------------------------------------------------- templates


def template_fields(template: str) -> list[str]:
    """The fields a template names, e.g. ``["postgres.url"]``; a lone brace is an error."""
    fields: list[str] = []
    for match in _TEMPLATE.finditer(template):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        if match.group(1) is None:
            raise ValueError(f"a lone {token!r} (write {token * 2} for a literal brace)")
        fields.append(match.group(1).strip())
    return fields


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill a template's fields from ``values``; an unknown field is a ``KeyError``."""

    def fill(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        if match.group(1) is None:
            raise ValueError(f"a lone {token!r} in {template!r}")
        return values[match.group(1).strip()]

    return _TEMPLATE.sub(fill, template)


@dataclass(frozen=True)
class Endpoint:
    """Where a dependency is reached: ``url`` is what a client library takes."""

    host: str
    port: int
    url: str


def template_values(
    endpoints: Mapping[str, Endpoint], *, port: int, secret: str, fd: int | None = None
) -> dict[str, str]:
    """The values templates are rendered with, for one process."""
    values = {"port": str(port), "secret": secret}
    if fd is not None:
        values["fd"] = str(fd)
    for name, endpoint in endpoints.items():
        values[f"{name}.url"] = endpoint.url
        values[f"{name}.host"] = endpoint.host
        values[f"{name}.port"] = str(endpoint.port)
    return values


# ---------------------------------------------------------------------- models


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _ProcessFields(_Strict):
    app: str | None = Field(default=None, pattern=_APP)
    command: tuple[str, ...] | None = Field(default=None, min_length=1)
    path: str = "."
    health: str | None = Field(default=None, pattern=_PATH)
    env: dict[str, str] = Field(default_factory=dict)
    startup_timeout: float = Field(default=20.0, gt=0, le=600)


class ServiceConfig(_ProcessFields):
    """A process of the user's: an ASGI ``app`` or any ``command``, with its env."""

    server: Literal["uvicorn", "gunicorn"] = "uvicorn"
    workers: int = Field(default=1, ge=1, le=16)

    @model_validator(mode="after")
    def _one_of_app_or_command(self) -> "ServiceConfig":
        if (self.app is None) == (self.command is None):
            raise ValueError('give exactly one of app = "module:attribute" or command = ["program", ...]')
        if self.command is not None and "server" in self.model_fields_set:
            raise ValueError("server applies to app only: a command runs as written")
        return self


class BackendConfig(ServiceConfig):
    """The backend under test; ``image`` or ``build`` run it under the compose driver."""

    failpoints: tuple[str, ...] = ()
    image: str | None = None
    build: str | None = None

    @field_validator("failpoints")
    @classmethod
    def _points_are_names(cls, points: tuple[str, ...]) -> tuple[str, ...]:
        for point in points:
            check_point(point)
        if len(set(points)) != len(points):
            raise ValueError("a point is declared twice")
        return points

    @model_validator(mode="after")
    def _image_or_build(self) -> "BackendConfig":
        if self.image is not None and self.build is not None:
            raise ValueError('give image = "..." or build = "DIR", not both')
        return self


class DependencyConfig(_ProcessFields):
    """A dependency reached through its own fault proxy; ``http`` ones are the user's own services."""

    kind: Literal["postgres", "redis", "http"] | None = None

    def service(self) -> ServiceConfig:
        """This dependency as a process to start (``http`` kind only)."""
        return ServiceConfig(
            app=self.app, command=self.command, path=self.path, health=self.health,
            env=self.env, startup_timeout=self.startup_timeout,
        )


JsonScalar = Union[str, int, float, bool]


class PingConfig(_Strict):
    send: dict[str, Any] = Field(min_length=1)
    expect: dict[str, Any] = Field(min_length=1)


class ProbeConfig(_Strict):
    """How the probe talks to the backend's WebSocket."""

    path: str = Field(default="/ws", pattern=_PATH)
    token: str = Field(default="none", pattern=_TOKEN)
    claims: dict[str, JsonScalar | list[JsonScalar]] = Field(default_factory=lambda: {"sub": "replica-probe"})
    welcome: dict[str, Any] | None = None
    ping: PingConfig | None = None


class ProjectFile(_Strict):
    """The file's contents, as written."""

    backend: BackendConfig
    dependencies: dict[str, DependencyConfig] = Field(default_factory=dict)
    probe: ProbeConfig = ProbeConfig()


@dataclass(frozen=True)
class Dependency:
    name: str
    kind: Literal["postgres", "redis", "http"]
    config: DependencyConfig


@dataclass(frozen=True)
class Project:
    """A loaded, checked project: paths resolved, every dependency's kind known."""

    file: Path
    backend: BackendConfig
    dependencies: dict[str, Dependency]
    probe: ProbeConfig

    @property
    def root(self) -> Path:
        return self.file.parent

    @property
    def backend_path(self) -> Path:
        return (self.root / self.backend.path).resolve()

    @property
    def hops(self) -> tuple[str, ...]:
        """The fault proxy's hops for this project: each dependency, then the backend."""
        return (*self.dependencies, "backend")

    def error(self, key: str, problem: str) -> ProjectError:
        return ProjectError(f"{self.file}: {key}: {problem}")

    def compose_refusal(self) -> ProjectError | None:
        """Why the compose driver cannot run this project (it runs images and postgres/redis only), or None."""
        http = [name for name, dep in self.dependencies.items() if dep.kind == "http"]
        if http:
            return self.error(
                f"dependencies.{http[0]}", "the compose driver runs postgres and redis dependencies only: use --driver local"
            )
        if self.backend.image is None and self.backend.build is None:
            return self.error(
                "backend", 'the compose driver runs the backend from an image: add image = "..." or build = "DIR" (a Dockerfile)'
            )
        return None

    def check_failpoints(self, spec: str, *, source: str = "--failpoints") -> str:
        """``spec`` if it parses and arms only the points ``[backend] failpoints`` declares."""
        try:
            parse_spec(spec, declared=self.backend.failpoints)
        except FailpointError as exc:
            raise ProjectError(f"{source}: {exc} (the points are declared in {self.file}: backend.failpoints)") from None
        return spec


# --------------------------------------------------------------------- loading


def find_project(config: Path | None, cwd: Path) -> Project | None:
    """``--config PATH`` if given, else ``replica.toml`` in ``cwd``, else None (the built-in backend)."""
    if config is not None:
        return load_project(config)
    default = cwd / PROJECT_FILE
    return load_project(default) if default.is_file() else None


def load_project(path: Path) -> Project:
    path = Path(path).absolute()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ProjectError(f"{path}: no such file (give --config PATH to a replica.toml)") from None
    except OSError as exc:
        raise ProjectError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ProjectError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(f"{path}: not valid TOML: {exc}") from None
    return parse_project(data, path)


def parse_project(data: Mapping[str, Any], path: Path) -> Project:
    """Check a project file's parsed contents; ``path`` locates relative paths and names the file in errors."""
    try:
        parsed = ProjectFile.model_validate(data)
    except ValidationError as exc:
        raise ProjectError(f"{path}: {_describe(exc.errors()[0])}") from None
    dependencies = {name: _dependency(path, name, cfg) for name, cfg in parsed.dependencies.items()}
    project = Project(file=path, backend=parsed.backend, dependencies=dependencies, probe=parsed.probe)
    _check_paths(project)
    _check_templates(project)
    return project


def _dependency(file: Path, name: str, cfg: DependencyConfig) -> Dependency:
    key = f"dependencies.{name}"
    if not re.match(_NAME, name):
        raise ProjectError(f"{file}: {key}: a dependency name is lower case letters, digits, '-' and '_'")
    if name in RESERVED_NAMES:
        raise ProjectError(f"{file}: {key}: {name!r} is reserved for the backend's own hop; pick another name")
    kind = cfg.kind or KIND_FROM_NAME.get(name)
    if kind is None:
        raise ProjectError(
            f'{file}: {key}: no kind: set kind = "postgres" | "redis" | "http" '
            f"(only a dependency named {' or '.join(KIND_FROM_NAME)} gets its kind from its name)"
        )
    own_keys = sorted(cfg.model_fields_set - {"kind"})
    if kind == "http" and (cfg.app is None) == (cfg.command is None):
        raise ProjectError(f'{file}: {key}: an http dependency needs exactly one of app = "module:attribute" or command = [...]')
    if kind != "http" and own_keys:
        raise ProjectError(
            f"{file}: {key}.{own_keys[0]}: not allowed for kind {kind!r} (the harness starts {kind} itself; "
            f"app, command, path, health, env and startup_timeout are for kind 'http')"
        )
    return Dependency(name=name, kind=kind, config=cfg)


def _check_paths(project: Project) -> None:
    services = [("backend", project.backend)] + [
        (f"dependencies.{d.name}", d.config) for d in project.dependencies.values() if d.kind == "http"
    ]
    for key, service in services:
        if not (project.root / service.path).is_dir():
            raise project.error(f"{key}.path", f"{service.path!r} is not a directory (relative to {project.root})")
    if project.backend.build is not None and not (project.root / project.backend.build / "Dockerfile").is_file():
        raise project.error("backend.build", f"{project.backend.build!r} holds no Dockerfile (relative to {project.root})")


def _check_templates(project: Project) -> None:
    _check_service(project, "backend", project.backend, own=None)
    for dep in project.dependencies.values():
        if dep.kind == "http":
            _check_service(project, f"dependencies.{dep.name}", dep.config, own=dep.name)


def _check_service(project: Project, key: str, service: ServiceConfig | DependencyConfig, *, own: str | None) -> None:
    names = [n for n in project.dependencies if n != own]
    allowed = ["{port}", "{secret}"] + (["{fd}"] if service.command is not None else [])
    allowed += [f"{{{n}.{f}}}" for n in names for f in ENDPOINT_FIELDS]
    items = [(f"{key}.command[{i}]", t) for i, t in enumerate(service.command or ())]
    items += [(f"{key}.env.{k}", t) for k, t in service.env.items()]
    for where, template in items:
        try:
            fields = template_fields(template)
        except ValueError as exc:
            raise project.error(where, f"{template!r}: {exc}") from None
        for field in fields:
            if field in ("port", "secret") or (field == "fd" and service.command is not None):
                continue
            name, dot, attr = field.partition(".")
            if dot and name in names and attr in ENDPOINT_FIELDS:
                continue
            if dot and name not in project.dependencies:
                problem = f"{{{field}}} names no declared dependency {name!r}"
            elif dot and name == own:
                problem = f"{{{field}}}: a dependency does not reach itself through its proxy; use {{port}}"
            else:
                problem = f"unknown template {{{field}}}"
            raise project.error(where, f"{problem} (allowed: {', '.join(allowed)})")
    if service.command is not None:
        named = {f for _, t in items for f in template_fields(t)}
        if not named & {"port", "fd"}:
            raise project.error(
                f"{key}.command", "the program is told nowhere to listen: put {port} (or {fd}) in the command or an env value"
            )


# ------------------------------------------------------------- error messages


def _describe(error: Mapping[str, Any]) -> str:
    """One pydantic error as ``key: problem (allowed: ...)``."""
    loc = tuple(error["loc"])
    key = _key(loc)
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return f"{key}: unknown key (allowed here: {', '.join(allowed)})"
    if error["type"] == "missing":
        return f"{key}: missing (required)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch":
        message = f"allowed: {_PATTERN_WORDS[error['ctx']['pattern']]}"
    value = error.get("input")
    shown = f" = {value!r}" if isinstance(value, (str, int, float, bool)) and loc else ""
    return f"{key or '(top level)'}{shown}: {message}"


def _key(loc: tuple[Any, ...]) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif not str(part).startswith(("function-", "literal[")):
            key += ("." if key else "") + str(part)
    return key


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = ProjectFile
    for part in loc:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            model = field.annotation if field is not None else None
        else:  # dict[str, Model]: this part is the key
            model = typing.get_args(model)[-1] if typing.get_args(model) else None
        model = _unwrap_optional(model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation
