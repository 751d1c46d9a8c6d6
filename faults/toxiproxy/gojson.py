"""JSON encoding and decoding with the byte-level habits of Go's ``encoding/json``.

Toxiproxy clients compare bodies with what the Go server sends, so the encoder
reproduces Go's output exactly: compact separators, ``<``, ``>`` and ``&``
escaped as ``\\u003c`` etc., U+2028/U+2029 escaped, float32 values printed with
the shortest representation that round-trips in 32 bits, integers without a
fraction. Dict insertion order is kept (Go marshals struct fields in
declaration order); callers sort map keys themselves where Go sorts them.
The decoder reads one JSON value from the start of a body and ignores the rest,
like ``json.NewDecoder(r).Decode(&v)``, and words its errors like Go: bodies are
parsed by Python's C decoder and only a failure runs the port of Go's scanner
that finds Go's message.
"""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any

__all__ = ["Float32", "GoDecodeError", "Number", "decode_first", "dumps", "go_kind", "syntax_error", "to_float32"]


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


_NEEDS_ESCAPE = re.compile('["\\\\<>&\u2028\u2029\x00-\x1f\ud800-\udfff]')


def _encode_str(text: str) -> str:
    if not _NEEDS_ESCAPE.search(text):
        return f'"{text}"'
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


MAX_DEPTH = 32  # Go allows 10000; no API body needs more than 5


class Number:
    """A JSON number kept as its literal text, converted the way Go converts it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    @classmethod
    def of(cls, value: Any) -> Number | None:
        """``value`` as a Number if it is one (native ints and floats too), else None."""
        if isinstance(value, Number):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(repr(value))
        return None

    def as_int64(self) -> int | None:
        """Go's ``strconv.ParseInt(text, 10, 64)``: None when not an integer in range."""
        text = self.text
        digits = text[1:] if text.startswith("-") else text
        if not digits.isdigit() or not digits.isascii() or len(digits) > 19:
            return None
        value = int(text)
        return value if -(2**63) <= value < 2**63 else None

    def as_float32(self) -> float | None:
        """Go's ``strconv.ParseFloat(text, 32)``: None when out of float32 range."""
        try:
            value = to_float32(float(self.text))
        except (OverflowError, ValueError):
            return None
        return None if math.isinf(value) else value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Number) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Number({self.text!r})"


class _NotJson(ValueError):
    """NaN or Infinity: Python's decoder accepts them, Go's does not."""


def _reject_constant(text: str) -> Any:
    raise _NotJson(text)


_DECODER = json.JSONDecoder(parse_int=Number, parse_float=Number, parse_constant=_reject_constant)
_WS = " \t\r\n"
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_PAIR = re.compile(r"\[\]|\{\}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_first(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Decode the first JSON value of ``body`` like ``json.NewDecoder(r).Decode(&v)``.

    Trailing bytes are ignored; numbers come back as :class:`Number`; invalid
    UTF-8 and lone surrogates become U+FFFD. Errors raise :class:`GoDecodeError`
    with Go's words (``EOF``, ``unexpected EOF``, ``invalid character …``);
    nesting deeper than ``max_depth`` is an error as Go's is beyond 10000.
    """
    text = body.decode("utf-8", errors="replace")
    start = len(text) - len(text.lstrip(_WS))
    if start == len(text):
        raise GoDecodeError("EOF")
    try:
        value, end = _DECODER.raw_decode(text, start)
    except (json.JSONDecodeError, RecursionError, _NotJson):
        raise GoDecodeError(syntax_error(body, max_depth) or "unexpected EOF") from None
    if isinstance(value, Number) and text[end : end + 1] in (".", "e", "E"):
        problem = syntax_error(body, max_depth)  # Go may read on where Python stopped: "1.x"
        if problem:
            raise GoDecodeError(problem)
    if _nesting_exceeds(text[start:end], max_depth):
        raise GoDecodeError(syntax_error(body, max_depth) or "exceeded max depth")
    if _SURROGATE_ESCAPE.search(text, start, end):
        value = _replace_surrogates(value)
    return value


def _nesting_exceeds(text: str, limit: int) -> bool:
    """True if the (valid) JSON ``text`` nests deeper than ``limit``; C-speed passes only."""
    shape = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if len(shape) <= 2 * limit:
        return False
    for _ in range(limit):
        shape = _PAIR.sub("", shape)  # each pass removes exactly one level of leaves
        if not shape:
            return False
    return True


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


# ------------------------------------------------------------- Go's scanner

_DIGIT = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPED = frozenset(b'"\\/bfnrt')
_STRING_RUN = re.compile(rb'[^"\\\x00-\x1f]*')
_DIGITS = re.compile(rb"[0-9]*")
_SPACES = re.compile(rb"[ \t\r\n]*")
_LITERALS = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}
_AFTER_VALUE = {0x7B: (0x7D, "key", "after object key:value pair"), 0x5B: (0x5D, "value", "after array element")}
_GO_ESCAPES = {0x07: "\\a", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v", 0x5C: "\\\\"}


class _SyntaxError(Exception):
    pass


def quote_char(c: int) -> str:
    """Go's ``quoteChar``: how a byte is shown in a syntax error."""
    if c == 0x27:
        return "'\\''"
    if c == 0x22:
        return "'\"'"
    if c in _GO_ESCAPES:
        return f"'{_GO_ESCAPES[c]}'"
    if c < 0x20 or c == 0x7F:
        return f"'\\x{c:02x}'"
    if c >= 0x80 and not chr(c).isprintable():
        return f"'\\u{c:04x}'"
    return f"'{chr(c)}'"


def _invalid(c: int, context: str) -> _SyntaxError:
    return _SyntaxError(f"invalid character {quote_char(c)} {context}")


def syntax_error(data: bytes, max_depth: int = MAX_DEPTH) -> str | None:
    """The error Go's decoder reports for the first value of ``data``, or None if it is valid.

    A port of ``encoding/json``'s scanner (its messages and the byte they
    name), run only when a body failed to decode, so its speed matters little.
    """
    try:
        _scan(data, max_depth)
    except _SyntaxError as exc:
        return str(exc)
    except IndexError:
        return "unexpected EOF"
    return None


def _scan(data: bytes, max_depth: int) -> None:
    stack: list[int] = []  # open '{' and '['
    i = _SPACES.match(data, 0).end()  # type: ignore[union-attr]
    if i == len(data):
        raise _SyntaxError("EOF")
    want = "value"
    while True:
        i = _SPACES.match(data, i).end()  # type: ignore[union-attr]
        c = data[i]  # IndexError: the value is unfinished
        if want in ("value", "value or ]"):
            if want == "value or ]" and c == 0x5D:
                stack.pop()
                i += 1
            elif c in (0x7B, 0x5B):
                stack.append(c)
                if len(stack) > max_depth:
                    raise _invalid(c, "exceeded max depth")
                i += 1
                want = "key or }" if c == 0x7B else "value or ]"
                continue
            elif c == 0x22:
                i = _scan_string(data, i)
            elif c == 0x2D or c in _DIGIT:
                i = _scan_number(data, i)
                if not stack and i == len(data):
                    return  # a number ends at EOF at the top level
            elif c in _LITERALS:
                i = _scan_literal(data, i, _LITERALS[c])
            else:
                raise _invalid(c, "looking for beginning of value")
            want = "end"
        elif want in ("key", "key or }"):
            if want == "key or }" and c == 0x7D:
                stack.pop()
                i += 1
                want = "end"
            elif c == 0x22:
                i = _scan_string(data, i)
                want = ":"
                continue
            else:
                raise _invalid(c, "looking for beginning of object key string")
        elif want == ":":
            if c != 0x3A:
                raise _invalid(c, "after object key")
            i += 1
            want = "value"
            continue
        else:  # after a member's value or an array element
            close, after_comma, context = _AFTER_VALUE[stack[-1]]
            if c == 0x2C:
                want = after_comma
            elif c == close:
                stack.pop()
            else:
                raise _invalid(c, context)
            i += 1
        if want == "end" and not stack:
            return


def _scan_string(data: bytes, i: int) -> int:
    """``data[i]`` is the opening quote; return the index after the closing one."""
    i += 1
    while True:
        i = _STRING_RUN.match(data, i).end()  # type: ignore[union-attr]
        c = data[i]
        if c == 0x22:
            return i + 1
        if c != 0x5C:
            raise _invalid(c, "in string literal")
        c = data[i + 1]
        if c == 0x75:  # \uXXXX
            for k in range(i + 2, i + 6):
                if data[k] not in _HEX:
                    raise _invalid(data[k], "in \\u hexadecimal character escape")
            i += 6
        elif c in _ESCAPED:
            i += 2
        else:
            raise _invalid(c, "in string escape code")


def _scan_number(data: bytes, i: int) -> int:
    """Return the index after the number starting at ``data[i]``; EOF inside is IndexError."""
    if data[i] == 0x2D:
        i += 1
        if data[i] not in _DIGIT:
            raise _invalid(data[i], "in numeric literal")
    i = i + 1 if data[i] == 0x30 else _DIGITS.match(data, i).end()  # type: ignore[union-attr]
    if i < len(data) and data[i] == 0x2E:
        if data[i + 1] not in _DIGIT:
            raise _invalid(data[i + 1], "after decimal point in numeric literal")
        i = _DIGITS.match(data, i + 1).end()  # type: ignore[union-attr]
    if i < len(data) and data[i] in (0x65, 0x45):
        i += 1
        if data[i] in (0x2B, 0x2D):
            i += 1
        if data[i] not in _DIGIT:
            raise _invalid(data[i], "in exponent of numeric literal")
        i = _DIGITS.match(data, i).end()  # type: ignore[union-attr]
    return i


def _scan_literal(data: bytes, i: int, word: bytes) -> int:
    for k in range(1, len(word)):
        c = data[i + k]
        if c != word[k]:
            raise _invalid(c, f"in literal {word.decode()} (expecting {quote_char(word[k])})")
    return i + len(word)


def go_kind(value: Any) -> str:
    """How Go's decoder names a JSON value in an UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if Number.of(value) is not None:
        return "number"  # Go names the literal only for numeric targets (see model)
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null"
