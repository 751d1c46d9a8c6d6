"""Pure logic of the control API: errors, request validation and JSON shapes.

Nothing here touches a socket. Every function takes decoded request data and
either returns plain values or raises :class:`ApiError` with the status and the
message the Go server uses, checked in the same order. Our own, stricter checks
(attribute ranges, toxicity in [0, 1]) come last, so a request the original
rejects is rejected here with the same words.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from . import gojson
from .gojson import Float32, GoDecodeError
from .toxics import REGISTRY, Toxic

VERSION = "2.12.0"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Direction(str, enum.Enum):
    UPSTREAM = "upstream"  # client -> server
    DOWNSTREAM = "downstream"  # server -> client


class ApiError(Exception):
    """An error answered as ``{"error": message, "status": status}``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def with_suffix(self, suffix: str) -> ApiError:
        return ApiError(f"{self.message}{suffix}", self.status)


def bad_body(detail: str) -> ApiError:
    return ApiError(f"bad request body: {detail}", 400)


def missing_field(name: str) -> ApiError:
    return ApiError(f"missing required field: {name}", 400)


PROXY_NOT_FOUND = ("proxy not found", 404)
PROXY_EXISTS = ("proxy already exists", 409)
TOXIC_NOT_FOUND = ("toxic not found", 404)
TOXIC_EXISTS = ("toxic already exists", 409)
INVALID_STREAM = ("stream was invalid, can be either upstream or downstream", 400)
INVALID_TYPE = ("invalid toxic type", 400)


def error_body(message: str, status: int) -> bytes:
    """The body Go's ``http.Error`` sends for an API error (JSON + newline)."""
    return gojson.dumps({"error": message, "status": status}) + b"\n"


# --------------------------------------------------------------------- decoding


def decode(body: bytes) -> Any:
    try:
        return gojson.decode_first(body)
    except GoDecodeError as exc:
        raise bad_body(str(exc)) from None


def _type_error(value: Any, where: str, go_type: str) -> ApiError:
    return bad_body(f"json: cannot unmarshal {gojson.go_kind(value)} into {where} of type {go_type}")


def struct_fields(obj: Any, names: Iterable[str], go_type: str) -> dict[str, Any]:
    """Pick the known fields out of a JSON object as Go's decoder does.

    Keys match case-insensitively, the last occurrence wins and ``null`` leaves
    a field unset. A body that is not an object is a type error.
    """
    if not isinstance(obj, dict):
        if obj is None:
            return {}
        raise _type_error(obj, "Go value", go_type)
    wanted = {name.lower(): name for name in names}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = key if key in wanted.values() else wanted.get(key.lower())
        if name is not None and value is not None:
            out[name] = value
    return out


def _expect(value: Any, kind: type, where: str, go_type: str) -> Any:
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise _type_error(value, where, go_type)
    return value


# ----------------------------------------------------------------------- toxics


@dataclass
class ToxicSpec:
    """A toxic as configured through the API."""

    name: str
    type: str
    stream: str  # echoed as sent; matched case-insensitively
    toxicity: float
    attributes: dict[str, int]

    direction: Direction = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.direction = Direction(self.stream.lower())

    @property
    def kind(self) -> type[Toxic]:
        return REGISTRY[self.type]

    def to_json(self) -> dict[str, Any]:
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": Float32(self.toxicity),
        }


_WRAPPER = "toxics.ToxicWrapper"


def _wrapper_field(name: str) -> str:
    return f"Go struct field ToxicWrapper.{name}"


def _parse_attributes(kind: type[Toxic], raw: Any, base: Mapping[str, int]) -> dict[str, int]:
    """Merge ``raw`` attributes into ``base`` with Go's int typing, in field order."""
    go_struct = f"toxics.{kind.go_struct}"
    values = dict(base)
    if raw is None:
        return values
    if not isinstance(raw, dict):
        raise _type_error(raw, "Go struct field .attributes", go_struct)
    fields = struct_fields(raw, [a.name for a in kind.attributes], go_struct)
    for attr in kind.attributes:
        if attr.name not in fields:
            continue
        value = fields[attr.name]
        go_type = attr.go_type
        where = f"Go struct field {kind.go_struct}.attributes.{attr.name}"
        if isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
            raise _type_error(value, where, go_type)
        values[attr.name] = value
    return values


def _check_ranges(kind: type[Toxic], attrs: Mapping[str, int], toxicity: float) -> None:
    if not 0.0 <= toxicity <= 1.0:
        raise ApiError("toxicity must be between 0 and 1", 400)
    for attr in kind.attributes:
        if attr.minimum is not None and attrs[attr.name] < attr.minimum:
            raise ApiError(f"invalid attribute {attr.name}: must be at least {attr.minimum}", 400)
    problem = kind.check(attrs)
    if problem:
        raise ApiError(problem, 400)


def parse_toxic_create(obj: Any, taken: Iterable[str]) -> ToxicSpec:
    """Validate a decoded ``POST /proxies/{p}/toxics`` body (after the 404 check)."""
    fields = struct_fields(obj, ["name", "type", "stream", "toxicity", "attributes"], _WRAPPER)
    for key in ("name", "type", "stream"):
        if key in fields:
            _expect(fields[key], str, _wrapper_field(key), "string")
    if "toxicity" in fields:
        _expect(fields["toxicity"], float, _wrapper_field("toxicity"), "float32")
    stream = fields.get("stream", "downstream")
    if stream.lower() not in ("upstream", "downstream"):
        raise ApiError(*INVALID_STREAM)
    type_name = fields.get("type", "")
    name = fields.get("name", "") or f"{type_name}_{stream}"
    kind = REGISTRY.get(type_name)
    if kind is None:
        raise ApiError(*INVALID_TYPE)
    if name in set(taken):
        raise ApiError(*TOXIC_EXISTS)
    attrs = _parse_attributes(kind, fields.get("attributes"), {a.name: 0 for a in kind.attributes})
    toxicity = gojson.to_float32(float(fields.get("toxicity", 1.0)))
    _check_ranges(kind, attrs, toxicity)
    return ToxicSpec(name, type_name, stream, toxicity, attrs)


def parse_toxic_update(obj: Any, current: ToxicSpec) -> ToxicSpec:
    """Validate a ``POST/PATCH /proxies/{p}/toxics/{t}`` body: attributes merge, toxicity kept if absent."""
    fields = struct_fields(obj, ["attributes", "toxicity"], "struct")
    if "toxicity" in fields:
        _expect(fields["toxicity"], float, "Go struct field .toxicity", "float32")
    attrs = _parse_attributes(current.kind, fields.get("attributes"), current.attributes)
    toxicity = gojson.to_float32(float(fields.get("toxicity", current.toxicity)))
    _check_ranges(current.kind, attrs, toxicity)
    return ToxicSpec(current.name, current.type, current.stream, toxicity, attrs)


# ---------------------------------------------------------------------- proxies


@dataclass
class ProxyInput:
    """A proxy as requested by ``POST /proxies``, ``/populate`` or the config file."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True
    toxics: list[ToxicSpec] | None = None  # only from /populate and --config


_PROXY_FIELDS = ("name", "listen", "upstream", "enabled")


def _proxy_fields(obj: Any, go_type: str) -> dict[str, Any]:
    fields = struct_fields(obj, _PROXY_FIELDS, go_type)
    for key in ("name", "listen", "upstream"):
        if key in fields:
            _expect(fields[key], str, f"Go struct field Proxy.{key}", "string")
    if "enabled" in fields:
        _expect(fields["enabled"], bool, "Go struct field Proxy.enabled", "bool")
    return fields


def parse_proxy_create(obj: Any) -> ProxyInput:
    """Validate a decoded ``POST /proxies`` body; unknown fields are ignored."""
    fields = _proxy_fields(obj, "toxiproxy.Proxy")
    if not fields.get("name"):
        raise missing_field("name")
    if not fields.get("upstream"):
        raise missing_field("upstream")
    return ProxyInput(fields["name"], fields.get("listen", ""), fields["upstream"], fields.get("enabled", True))


@dataclass
class ProxyUpdate:
    listen: str
    upstream: str
    enabled: bool


def parse_proxy_update(obj: Any, listen: str, upstream: str, enabled: bool) -> ProxyUpdate:
    """Validate a ``POST/PATCH /proxies/{p}`` body; absent fields keep their values."""
    fields = _proxy_fields(obj, "toxiproxy.Proxy")
    return ProxyUpdate(fields.get("listen", listen), fields.get("upstream", upstream), fields.get("enabled", enabled))


_POPULATE_TYPE = '[]struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'


def parse_populate(obj: Any) -> list[ProxyInput]:
    """Validate a whole ``/populate`` array (or config file) before anything is created.

    Items may carry a ``toxics`` array (an extension; the original ignores it),
    validated like ``POST /proxies/{p}/toxics`` bodies.
    """
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise _type_error(obj, "Go value", _POPULATE_TYPE)
    items: list[ProxyInput] = []
    for index, raw in enumerate(obj, start=1):
        fields = _proxy_fields(raw, "toxiproxy.Proxy")
        if not fields.get("name"):
            raise missing_field(f"name at proxy {index}")
        if not fields.get("upstream"):
            raise missing_field(f"upstream at proxy {index}")
        toxics: list[ToxicSpec] | None = None
        raw_toxics = raw.get("toxics") if isinstance(raw, dict) else None
        if raw_toxics is not None:
            if not isinstance(raw_toxics, list):
                raise bad_body(f"toxics must be an array at proxy {index}")
            toxics = []
            for t_index, raw_toxic in enumerate(raw_toxics, start=1):
                try:
                    toxics.append(parse_toxic_create(raw_toxic, [t.name for t in toxics]))
                except ApiError as exc:
                    raise exc.with_suffix(f" at proxy {index} toxic {t_index}") from None
        items.append(
            ProxyInput(fields["name"], fields.get("listen", ""), fields["upstream"], fields.get("enabled", True), toxics)
        )
    return items


def proxy_json(name: str, listen: str, upstream: str, enabled: bool, toxics: list[ToxicSpec]) -> dict[str, Any]:
    """A proxy as the Go server marshals it (``Logger`` leak included, for byte fidelity)."""
    return {
        "name": name,
        "listen": listen,
        "upstream": upstream,
        "enabled": enabled,
        "Logger": {},
        "toxics": [t.to_json() for t in toxics],
    }


def ordered_toxics(toxics: Iterable[ToxicSpec]) -> list[ToxicSpec]:
    """Upstream toxics first, then downstream, each in insertion order."""
    items = list(toxics)
    return [t for t in items if t.direction is Direction.UPSTREAM] + [
        t for t in items if t.direction is Direction.DOWNSTREAM
    ]
