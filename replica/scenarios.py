"""The scenario catalog: hypotheses about a failure, each with its expected fingerprint.

A scenario file (YAML, in ``faults/scenarios/``) names the faults to inject, the
backend to run (handler variant, server, startup mode) and the fingerprint the
hypothesis predicts. Its ``fixes`` map gives, per handler variant, the outcome
expected when that variant runs against the same cause; each entry becomes a
run of its own named ``<scenario>@<variant>``. Loading is strict: an unknown
key, a bad value or an unknown name (a failpoint the built-in backend does not
declare, a defect, a toxic type or attribute) is a
:class:`~replica.errors.ConfigError` that says which file and which field.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from faults import FailpointError, parse_spec
from faults.toxiproxy.toxics import REGISTRY as TOXICS
from replica.backend import injection
from replica.backend.handlers.variants import BUILTIN_HANDLERS
from replica.errors import ConfigError
from replica.fingerprint import Expectation
from replica.observation import BUILTIN_WELCOME, PING, PONG

CATALOG_DIR = Path(__file__).resolve().parent.parent / "faults" / "scenarios"
HOPS = ("postgres", "redis", "auth", "backend")
#: A hop of the fault proxy: one of :data:`HOPS` for the built-in backend, a
#: dependency's name (or ``backend``) for a user's project.
Hop = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
MAX_SCENARIO_BYTES = 1024 * 1024
#: libyaml's safe loader when PyYAML was built with it (the same documents, ~8x faster), else PyYAML's own.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: When the probe may start: once the backend answers ``/health``, or once that
#: startup phase has finished (read from ``/health/ready``; for background startup).
ProbeAfter = Literal["listening", "DEPENDENCIES", "DATABASE", "CACHE", "SERVICES"]


class BackendSpec(BaseModel):
    """How the backend under test is configured for a scenario."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    handler: str = "incident"
    server: Literal["uvicorn", "gunicorn"] = "uvicorn"
    startup_mode: Literal["blocking", "background"] = "blocking"
    environment: str = "staging"
    failpoints: str = ""
    defects: tuple[str, ...] = ()
    startup_wait_s: float | None = Field(default=None, ge=0)
    ws_ping_interval_s: float | None = Field(default=None, gt=0)
    ws_ping_timeout_s: float | None = Field(default=None, gt=0)

    @field_validator("failpoints")
    @classmethod
    def _spec_parses(cls, text: str) -> str:
        parse_spec(text)
        return text

    @field_validator("defects")
    @classmethod
    def _defects_exist(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        injection.parse_defects(",".join(names))
        return names


class ToxicSpec(BaseModel):
    """A network fault on one hop, added before the backend starts or once it answers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hop: Hop
    type: str
    stream: Literal["upstream", "downstream"] = "downstream"
    attributes: dict[str, int | float] = Field(default_factory=dict)
    toxicity: float = Field(default=1.0, ge=0, le=1)
    when: Literal["before_start", "after_ready"] = "before_start"
    #: ``ready``: removed once the backend is ready (a fault of the startup only).
    until: Literal["ready"] | None = None

    @field_validator("type")
    @classmethod
    def _type_exists(cls, name: str) -> str:
        if name not in TOXICS:
            raise ValueError(f"unknown toxic type {name!r} (known: {', '.join(TOXICS)})")
        return name

    def model_post_init(self, _context: object) -> None:
        known = [a.name for a in TOXICS[self.type].attributes]
        unknown = sorted(set(self.attributes) - set(known))
        if unknown:
            raise ValueError(f"{self.type} has no attribute {unknown[0]!r} (known: {', '.join(known) or 'none'})")


class HopDown(BaseModel):
    """A hop whose proxy is disabled: new connections refused, open ones closed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hop: Hop
    when: Literal["before_start", "after_ready"] = "before_start"


class ProbeSpec(BaseModel):
    """Client behaviour; defaults are those of the staging test against the built-in backend.

    A project's ``[probe]`` sets the paths, the welcome (a JSON subset, or None: none
    awaited), the ping exchange, and how the token is made: the stack's (``claims``
    None), minted with ``claims``, or read from the environment (``token_env``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ws_path: str = Field(default="/ws", pattern=r"^/")
    health_path: str | None = Field(default="/health", pattern=r"^/")
    welcome: dict[str, Any] | None = BUILTIN_WELCOME
    ping: dict[str, Any] | None = PING
    pong: dict[str, Any] = PONG
    claims: dict[str, Any] | None = None
    token_env: str | None = None
    e2e_headers: bool = True
    with_token: bool = True
    ping_interval_s: float | None = Field(default=20.0, gt=0)
    ping_timeout_s: float | None = Field(default=20.0, gt=0)
    welcome_timeout_s: float = Field(default=10.0, gt=0)
    pong_timeout_s: float = Field(default=5.0, gt=0)


class Scenario(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
    title: str
    hypothesis: str
    seed_hypothesis: bool = Field(default=False, description="one of the causes the seed's five-whys proposed")
    real_cause: bool = Field(default=False, description="the cause the public record shows")
    backend: BackendSpec = BackendSpec()
    toxics: tuple[ToxicSpec, ...] = ()
    down: tuple[HopDown, ...] = ()
    probe: ProbeSpec = ProbeSpec()
    ready_timeout_s: float = Field(default=20.0, gt=0)
    probe_after: ProbeAfter = "listening"
    expect: Expectation | None = Field(description="None: no expectation; the run is observed, not judged")
    fixes: dict[str, Expectation] = Field(default_factory=dict)

    def faults(self) -> list[tuple[str, str]]:
        """The faults applied, as (hop, what): ``("postgres", "latency latency=100 downstream")``;
        the backend's own failpoints and defects are on hop ``backend``."""
        found = []
        for t in self.toxics:
            attrs = " ".join(f"{k}={v}" for k, v in t.attributes.items())
            extra = (" " + t.when.replace("_", " ") if t.when != "before_start" else "") + (" until ready" if t.until else "")
            found.append((t.hop, " ".join(filter(None, (t.type, attrs, t.stream))) + extra))
        found += [(d.hop, "down" + (" after ready" if d.when == "after_ready" else "")) for d in self.down]
        if self.backend.failpoints:
            found.append(("backend", f"failpoints {self.backend.failpoints}"))
        found += [("backend", f"defect {d}") for d in self.backend.defects]
        return found

    def model_post_init(self, _context: object) -> None:
        unknown = sorted(set(self.fixes) - set(BUILTIN_HANDLERS))
        if unknown:
            raise ValueError(f"fixes: unknown handler variant {unknown[0]!r} (known: {', '.join(BUILTIN_HANDLERS)})")


class ScenarioRun(BaseModel):
    """One thing to run: a scenario with a handler and the outcome expected of it."""

    model_config = ConfigDict(frozen=True)

    name: str
    scenario: Scenario
    handler: str
    expect: Expectation | None
    expect_label: str = Field(default="", description="where the expectation came from, when not obvious")

    @cached_property
    def backend(self) -> BackendSpec:
        return self.scenario.backend.model_copy(update={"handler": self.handler})


def load_scenario(path: Path) -> Scenario:
    try:
        if path.stat().st_size > MAX_SCENARIO_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_SCENARIO_BYTES} bytes: not a scenario")
        data = yaml.load(path.read_text(), Loader=SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a scenario") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a scenario must be a mapping, got {type(data).__name__}")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        where, problem = first_problem(exc)
        raise ConfigError(f"{path}: {where}: {problem}") from exc
    if scenario.expect is None:
        raise ConfigError(f"{path}: expect: required (the fingerprint this hypothesis predicts)")
    placed = [(f"toxics.{i}.hop", t.hop) for i, t in enumerate(scenario.toxics)]
    placed += [(f"down.{i}.hop", d.hop) for i, d in enumerate(scenario.down)]
    for where, hop in placed:
        if hop not in HOPS:
            raise ConfigError(f"{path}: {where}: unknown hop {hop!r} (known: {', '.join(HOPS)})")
    if scenario.name != path.stem:
        raise ConfigError(f"{path}: name {scenario.name!r} must match the file name {path.stem!r}")
    try:
        injection.parse_failpoints(scenario.backend.failpoints)
    except FailpointError as exc:
        raise ConfigError(f"{path}: backend.failpoints: {exc}") from exc
    return scenario


def first_problem(exc: ValidationError) -> tuple[str, str]:
    """Where (``toxics.0.type``) and what is wrong, for the first error pydantic found."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    error = first.get("ctx", {}).get("error")
    return where, str(error) if isinstance(error, Exception) else first["msg"]


def builtin_backend(**options: object) -> BackendSpec:
    """The built-in backend configured from command-line options (``--failpoints``, ``--defects``, ...):
    a bad value is a :class:`ConfigError` naming the option, raised before anything starts."""
    try:
        spec = BackendSpec.model_validate(options)
        injection.parse_failpoints(spec.failpoints)
    except ValidationError as exc:
        where, problem = first_problem(exc)
        raise ConfigError(f"--{where.replace('_', '-')}: {problem}") from exc
    except FailpointError as exc:
        raise ConfigError(f"--failpoints: {exc}") from exc
    return spec


class Catalog:
    """Every scenario of a directory, and the runs they expand into."""

    def __init__(self, scenarios: list[Scenario]) -> None:
        self.scenarios = {s.name: s for s in scenarios}

    @classmethod
    def load(cls, directory: Path = CATALOG_DIR) -> "Catalog":
        paths = sorted(directory.glob("*.yaml"))
        if not paths:
            raise ConfigError(f"no scenarios found in {directory}")
        return cls([load_scenario(p) for p in paths])

    def runs(self) -> list[ScenarioRun]:
        """Every run: each scenario as written, then each of its fix checks."""
        out: list[ScenarioRun] = []
        for s in self.scenarios.values():
            out.append(ScenarioRun(name=s.name, scenario=s, handler=s.backend.handler, expect=s.expect))
            for variant, expect in s.fixes.items():
                if variant != s.backend.handler:
                    out.append(ScenarioRun(name=f"{s.name}@{variant}", scenario=s, handler=variant, expect=expect))
        return out

    def select(self, names: list[str], handler: str | None = None) -> list[ScenarioRun]:
        """Runs by name (``scenario`` or ``scenario@variant``), optionally with another handler.

        With ``handler``, each scenario runs once with that handler; its expectation is the
        scenario's entry for that variant, or, for a handler of the user's own
        (``module:function``), the one given for ``recommended``: a correct fix should look
        like it from the client's side.
        """
        by_name = {r.name: r for r in self.runs()}
        chosen: list[ScenarioRun] = []
        for name in names:
            if name not in by_name:
                known = ", ".join(sorted(self.scenarios))
                raise ConfigError(f"unknown scenario {name!r} (known: {known}; fix checks are named scenario@variant)")
            chosen.append(by_name[name])
        if handler is None:
            return chosen
        return [self.with_handler(r.scenario, handler) for r in chosen]

    def with_handler(self, scenario: Scenario, handler: str) -> ScenarioRun:
        if handler == scenario.backend.handler:
            expect, label = scenario.expect, ""
        elif handler in scenario.fixes:
            expect, label = scenario.fixes[handler], ""
        elif handler in BUILTIN_HANDLERS:
            raise ConfigError(f"scenario {scenario.name!r} gives no expected outcome for handler {handler!r}")
        elif "recommended" in scenario.fixes or scenario.backend.handler == "recommended":
            expect = scenario.fixes.get("recommended", scenario.expect)
            label = "as recommended"
        else:
            raise ConfigError(f"scenario {scenario.name!r} has no 'recommended' outcome to hold {handler!r} to")
        name = scenario.name if handler == scenario.backend.handler else f"{scenario.name}@{handler}"
        return ScenarioRun(name=name, scenario=scenario, handler=handler, expect=expect, expect_label=label)
