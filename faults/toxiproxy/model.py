"""Pure logic of the control API: errors, request validation and JSON shapes.

Nothing here touches a socket. Every function takes decoded request data and
either returns plain values or raises :class:`ApiError` with the status and the
message the Go server uses, checked in the same order. Our own, stricter checks
(names, sizes, unknown attributes, attribute ranges, toxicity in [0, 1]) come
after the original's, so a request the original rejects is rejected here with
the same words.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from . import gojson
from .gojson import Float32, GoDecodeError, Number
from .toxics import REGISTRY, Toxic

VERSION = "2.12.0"

# Limits the original does not have (each answered 400): they bound what one
# client can make the server hold and serialise.
MAX_NAME = 200  # characters of a proxy or toxic name
MAX_ADDRESS = 300  # characters of a listen or upstream address
MAX_PROXIES = 1000
MAX_TOXICS = 32  # per proxy


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
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _type_error(value, where, go_type)
    return value


def _float32(value: Any, where: str) -> float:
    """A float32 field as Go decodes it: a number in float32 range."""
    number = Number.of(value)
    if number is None:
        raise _type_error(value, where, "float32")
    result = number.as_float32()
    if result is None:
        raise bad_body(f"json: cannot unmarshal number {number.text} into {where} of type float32")
    return result


def check_name(name: str, what: str) -> None:
    """Names are short, printable and free of ``/`` so every one can be addressed in a URL."""
    if len(name) > MAX_NAME:
        raise ApiError(f"{what} name too long: at most {MAX_NAME} characters", 400)
    if not name.isprintable() or "/" in name:
        raise ApiError(f"{what} name must be printable and must not contain '/'", 400)


def _check_address(value: str, field: str) -> None:
    if len(value) > MAX_ADDRESS:
        raise ApiError(f"{field} too long: at most {MAX_ADDRESS} characters", 400)


# ----------------------------------------------------------------------- toxics


@dataclass
class ToxicConfig:
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
    """Merge ``raw`` attributes into ``base`` with Go's int typing; unknown names are refused."""
    go_struct = f"toxics.{kind.go_struct}"
    values = dict(base)
    if raw is None:
        return values
    if not isinstance(raw, dict):
        raise _type_error(raw, "Go struct field .attributes", go_struct)
    known = {a.name.lower() for a in kind.attributes}
    for key in raw:
        if key.lower() not in known:  # the original ignores it: a misspelt attribute would do nothing
            raise bad_body(f"json: unknown field {gojson.dumps(key).decode()}")
    fields = struct_fields(raw, [a.name for a in kind.attributes], go_struct)
    for attr in kind.attributes:
        if attr.name not in fields:
            continue
        value = fields[attr.name]
        where = f"Go struct field {kind.go_struct}.attributes.{attr.name}"
        number = Number.of(value)
        if number is None:
            raise _type_error(value, where, attr.go_type)
        integer = number.as_int64()
        if integer is None:
            raise bad_body(f"json: cannot unmarshal number {number.text} into {where} of type {attr.go_type}")
        values[attr.name] = integer
    return values


def _check_ranges(kind: type[Toxic], attrs: Mapping[str, int], toxicity: float) -> None:
    if not 0.0 <= toxicity <= 1.0:
        raise ApiError("toxicity must be between 0 and 1", 400)
    for attr in kind.attributes:
        if attr.minimum is not None and attrs[attr.name] < attr.minimum:
            raise ApiError(f"invalid attribute {attr.name}: must be at least {attr.minimum}", 400)
        if attrs[attr.name] > attr.maximum:
            raise ApiError(f"invalid attribute {attr.name}: must be at most {attr.maximum}", 400)
    problem = kind.check(attrs)
    if problem:
        raise ApiError(problem, 400)


def parse_toxic_create(obj: Any, taken: Iterable[str]) -> ToxicConfig:
    """Validate a decoded ``POST /proxies/{p}/toxics`` body (after the 404 check)."""
    fields = struct_fields(obj, ["name", "type", "stream", "toxicity", "attributes"], _WRAPPER)
    for key in ("name", "type", "stream"):
        if key in fields:
            _expect(fields[key], str, _wrapper_field(key), "string")
    toxicity = _float32(fields["toxicity"], _wrapper_field("toxicity")) if "toxicity" in fields else 1.0
    stream = fields.get("stream", "downstream")
    if stream.lower() not in ("upstream", "downstream"):
        raise ApiError(*INVALID_STREAM)
    type_name = fields.get("type", "")
    name = fields.get("name", "") or f"{type_name}_{stream}"
    kind = REGISTRY.get(type_name)
    if kind is None:
        raise ApiError(*INVALID_TYPE)
    taken = set(taken)
    if name in taken:
        raise ApiError(*TOXIC_EXISTS)
    check_name(name, "toxic")
    if len(taken) >= MAX_TOXICS:
        raise ApiError(f"too many toxics: at most {MAX_TOXICS} per proxy", 400)
    attrs = _parse_attributes(kind, fields.get("attributes"), {a.name: 0 for a in kind.attributes})
    _check_ranges(kind, attrs, toxicity)
    return ToxicConfig(name, type_name, stream, toxicity, attrs)


def parse_toxic_update(obj: Any, current: ToxicConfig) -> ToxicConfig:
    """Validate a ``POST/PATCH /proxies/{p}/toxics/{t}`` body: attributes merge, toxicity kept if absent."""
    fields = struct_fields(obj, ["attributes", "toxicity"], "struct")
    toxicity = _float32(fields["toxicity"], "Go struct field .toxicity") if "toxicity" in fields else current.toxicity
    attrs = _parse_attributes(current.kind, fields.get("attributes"), current.attributes)
    _check_ranges(current.kind, attrs, toxicity)
    return ToxicConfig(current.name, current.type, current.stream, toxicity, attrs)


# ---------------------------------------------------------------------- proxies


@dataclass
class ProxyInput:
    """A proxy as requested by ``POST /proxies``, ``/populate`` or the config file."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True
    toxics: list[ToxicConfig] | None = None  # only from /populate and --config


_PROXY_FIELDS = ("name", "listen", "upstream", "enabled")


def _proxy_fields(obj: Any, go_type: str) -> dict[str, Any]:
    fields = struct_fields(obj, _PROXY_FIELDS, go_type)
    for key in ("name", "listen", "upstream"):
        if key in fields:
            _expect(fields[key], str, f"Go struct field Proxy.{key}", "string")
    if "enabled" in fields:
        _expect(fields["enabled"], bool, "Go struct field Proxy.enabled", "bool")
    for key in ("listen", "upstream"):
        if key in fields:
            _check_address(fields[key], key)
    return fields


def parse_proxy_create(obj: Any) -> ProxyInput:
    """Validate a decoded ``POST /proxies`` body; unknown fields are ignored."""
    fields = _proxy_fields(obj, "toxiproxy.Proxy")
    if not fields.get("name"):
        raise missing_field("name")
    if not fields.get("upstream"):
        raise missing_field("upstream")
    check_name(fields["name"], "proxy")
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
    if len(obj) > MAX_PROXIES:
        raise ApiError(f"too many proxies: at most {MAX_PROXIES}", 400)
    items: list[ProxyInput] = []
    for index, raw in enumerate(obj, start=1):
        fields = _proxy_fields(raw, "toxiproxy.Proxy")
        if not fields.get("name"):
            raise missing_field(f"name at proxy {index}")
        if not fields.get("upstream"):
            raise missing_field(f"upstream at proxy {index}")
        try:
            check_name(fields["name"], "proxy")
        except ApiError as exc:
            raise exc.with_suffix(f" at proxy {index}") from None
        toxics: list[ToxicConfig] | None = None
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


def proxy_json(name: str, listen: str, upstream: str, enabled: bool, toxics: list[ToxicConfig]) -> dict[str, Any]:
    """A proxy as the Go server marshals it (``Logger`` leak included, for byte fidelity)."""
    return {
        "name": name,
        "listen": listen,
        "upstream": upstream,
        "enabled": enabled,
        "Logger": {},
        "toxics": [t.to_json() for t in toxics],
    }


def ordered_toxics(toxics: Iterable[ToxicConfig]) -> list[ToxicConfig]:
    """Upstream toxics first, then downstream, each in insertion order."""
    items = list(toxics)
    return [t for t in items if t.direction is Direction.UPSTREAM] + [
        t for t in items if t.direction is Direction.DOWNSTREAM
    ]
