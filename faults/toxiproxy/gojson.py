"""JSON encoding and decoding with the byte-level habits of Go's ``encoding/json``.

Toxiproxy clients compare bodies with what the Go server sends, so the encoder
reproduces Go's output exactly: compact separators, ``<``, ``>`` and ``&``
escaped as ``\\u003c`` etc., U+2028/U+2029 escaped, float32 values printed with
the shortest representation that round-trips in 32 bits, integers without a
fraction. Dict insertion order is kept (Go marshals struct fields in
declaration order); callers sort map keys themselves where Go sorts them.
The decoder reads one JSON value from the start of a body and ignores the rest,
like ``json.NewDecoder(r).Decode(&v)``, and words its errors like Go.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

__all__ = ["Float32", "GoDecodeError", "decode_first", "dumps", "go_kind", "to_float32"]


class Float32(float):
    """A float that is encoded the way Go encodes a ``float32``."""


def to_float32(value: float) -> float:
    """Round ``value`` to the nearest float32 (as Go's decoder does)."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def _shortest_float32(value: float) -> str:
    f32 = to_float32(value)
    for digits in range(1, 10):
        text = f"{f32:.{digits}g}"
        if to_float32(float(text)) == f32:
            return _go_float_format(float(text), text)
    return _go_float_format(f32, repr(f32))


def _go_float_format(value: float, shortest: str) -> str:
    """Go prints floats with 'f' format unless the exponent is < -6 or >= 21 (then 'e', two-digit exponent)."""
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    if exponent < -6 or exponent >= 21:
        digits = len(shortest.replace("-", "").replace(".", "").split("e")[0].strip("0")) or 1
        mantissa, _, exp = f"{value:.{digits - 1}e}".partition("e")
        sign = "-" if exp.startswith("-") else "+"
        number = exp.lstrip("+-").lstrip("0").rjust(2, "0")
        return f"{mantissa}e{sign}{number}"
    text = format(value, "f") if "e" in shortest else shortest
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _encode_str(text: str) -> str:
    out = ['"']
    for ch in text:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, Float32):
        out.append(_shortest_float32(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_go_float_format(value, repr(value)))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not first:
                out.append(",")
            first = False
            out.append(_encode_str(str(key)))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:  # pragma: no cover - programming error
        raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Encode ``value`` exactly as Go's ``json.Marshal`` would."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


class GoDecodeError(ValueError):
    """A decoding error worded like Go's ``encoding/json``."""


_DECODER = json.JSONDecoder()
_WS = " \t\r\n"


def decode_first(body: bytes) -> Any:
    """Decode the first JSON value of ``body`` (trailing bytes are ignored).

    Raises :class:`GoDecodeError` with Go's wording: ``EOF`` for an empty body,
    ``unexpected EOF`` for a truncated value, ``invalid character …`` otherwise.
    """
    text = body.decode("utf-8", errors="replace")
    start = 0
    while start < len(text) and text[start] in _WS:
        start += 1
    if start == len(text):
        raise GoDecodeError("EOF")
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip(_WS)):
            raise GoDecodeError("unexpected EOF") from None
        ch = text[exc.pos]
        if exc.pos == start:
            raise GoDecodeError(f"invalid character {_quote_char(ch)} looking for beginning of value") from None
        raise GoDecodeError(f"invalid character {_quote_char(ch)} {_context(exc.msg)}") from None
    return value


def _quote_char(ch: str) -> str:
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    return f"'{ch}'"


def _context(msg: str) -> str:
    if "property name" in msg:
        return "looking for beginning of object key string"
    if "delimiter" in msg and "','" in msg:
        return "after object key:value pair"
    if "':'" in msg:
        return "after object key"
    return "looking for beginning of value"


def go_kind(value: Any) -> str:
    """How Go's decoder names a JSON value in an UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float)):
        return f"number {json.dumps(value)}" if isinstance(value, float) else "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null"
